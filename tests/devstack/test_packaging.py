"""``pip install .`` gives a working package: built from exactly what the Docker image copies,
installed on its own (no checkout next to it), it finds its SQL and page files, and Airflow finds it
as a provider through its entry point.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.builders import REPO, dockerfile_instructions

# Run by the installed copy, in a fresh interpreter whose path starts with the install folder.
CHECK = """
import importlib.metadata, json, sys
from pathlib import Path

import messagecenter
from messagecenter.db import queries, schema

site = Path(sys.argv[1])
points = [
    (ep.value, str(ep.dist.locate_file("")))
    for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
    if ep.dist is not None and ep.dist.name == "messagecenter"
]
from airflow.providers_manager import ProvidersManager

manager = ProvidersManager()
print(json.dumps({
    "module": messagecenter.__file__,
    "sql_dir": str(queries.sql_dir()),
    "statements": len(queries.statements()),
    "migrations": len(schema.available_migrations("execution")),
    "entry_points": points,
    "provider": manager.providers["messagecenter"].version,
    "widgets": sorted(k for k in manager._connection_form_widgets_from_metadata if "messagecenter" in k),
}))
"""


def copy_like_the_dockerfile(image: Path) -> Path:
    """Do the Dockerfile's COPY instructions into ``image`` (image path ``/x`` is ``image/x``); return
    the folder its ``pip install`` installs."""
    instructions = dockerfile_instructions()
    for instruction, args in instructions:
        if instruction != "COPY":
            continue
        *sources, dest = [arg for arg in args.split() if not arg.startswith("--")]
        target = image / dest.lstrip("/")
        for source in (REPO / s for s in sources):
            if source.is_dir():
                shutil.copytree(
                    source, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
                )
            else:
                into = target / source.name if dest.endswith("/") else target
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, into)
    installed = [
        word
        for instruction, args in instructions
        if instruction == "RUN"
        for command in args.split("&&")
        if "pip install" in command
        for word in command.split()
        if word.startswith("/") and (image / word.lstrip("/") / "pyproject.toml").is_file()
    ]
    assert len(installed) == 1, f"one `pip install <project folder>` expected, got {installed}"
    return image / installed[0].lstrip("/")


def test_pip_install_of_the_docker_build_context_gives_a_working_provider_package(tmp_path: Path) -> None:
    project = copy_like_the_dockerfile(tmp_path / "image")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(project)],
        check=True,
        capture_output=True,
        text=True,
    )
    package = site / "messagecenter"
    assert (package / "sql" / "queries").is_dir(), "the wheel must carry include/sql"
    assert (package / "api" / "static" / "page.html").is_file()
    assert (package / "api" / "static" / "uplot" / "uPlot.iife.min.js").is_file()
    assert not (site / "messagecenter_plugin.py").exists(), "the plugin stays in the plugins folder"
    entry_points = (next(site.glob("messagecenter-*.dist-info")) / "entry_points.txt").read_text()
    assert "[apache_airflow_provider]" in entry_points
    assert "messagecenter.airflow.connection_types:get_provider_info" in entry_points

    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", CHECK, str(site)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert Path(found["module"]).is_relative_to(site)
    assert Path(found["sql_dir"]) == package / "sql"
    assert found["statements"] > 10
    assert found["migrations"] == len(list((REPO / "include" / "sql" / "execution").glob("*.sql")))
    assert ["messagecenter.airflow.connection_types:get_provider_info", str(site)] in found["entry_points"]
    assert found["provider"] == "0.1.0"
    assert "extra__messagecenter_execution__instance_id" in found["widgets"]
