"""The package's boundaries: what production installs, where SQL lives, what DAG files import."""

from __future__ import annotations

import ast
import re

import pytest

from messagecenter.db import queries
from tests.conftest import REPO

DEV_ONLY = ("pgserver", "aiosmtpd", "fasteners")  # aiosmtpd's atpublic is a production pin


def _pinned(path: str) -> set[str]:
    names = set()
    for line in (REPO / path).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^]]*\])?==", line.strip())
        if match:
            names.add(match[1].lower().replace("_", "-"))
    return names


def test_production_requirements_carry_no_development_stack() -> None:
    production = _pinned("requirements.txt")
    assert not production & set(DEV_ONLY)
    assert set(DEV_ONLY) <= _pinned("requirements-dev.txt")
    assert "-r requirements-dev.txt" in (REPO / "requirements-test.txt").read_text()
    # The image installs the production set only.
    assert "requirements-dev" not in (REPO / "Dockerfile").read_text()


def test_every_statement_name_is_unique_and_loaded() -> None:
    names = []
    for path in (queries.sql_dir() / "queries").glob("*.sql"):
        names += re.findall(r"^-- name: (\w+)\s*$", path.read_text(), re.MULTILINE)
    assert len(names) == len(set(names))
    assert set(names) == set(queries.statements())


def test_the_routing_rule_is_written_once() -> None:
    """'The most recently published version wins' is one statement, which every reader runs."""
    ordering = re.compile(r"published_at\s+DESC,\s*version\s+DESC", re.IGNORECASE)
    holders = [name for name, text in queries.statements().items() if ordering.search(text)]
    assert holders == ["current_templates"]
    for path in (REPO / "plugins").rglob("*.py"):
        assert not ordering.search(path.read_text()), f"{path} writes the routing rule again"


def test_no_sql_is_written_in_python() -> None:
    statement = re.compile(r"""["'](SELECT|INSERT INTO|UPDATE|DELETE FROM|COPY|LOCK TABLE|CREATE)\s""")
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "plugins" / "messagecenter").rglob("*.py")
        if statement.search(path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize("path", sorted((REPO / "dags").glob("*.py")), ids=lambda p: p.name)
def test_dag_files_import_only_the_airflow_layer(path) -> None:
    """A DAG file is wiring: its tasks come from messagecenter.airflow, its logic is a hop away."""
    tree = ast.parse(path.read_text())
    imported = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("messagecenter")
    ]
    assert imported, f"{path.name} imports nothing of messagecenter"
    assert all(module.startswith("messagecenter.airflow") for module in imported), imported


BENCHMARKS = sorted(p for p in (REPO / "bench").glob("*.py") if not p.name.startswith("__"))


@pytest.mark.parametrize(
    "path", sorted((REPO / "bench").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO / "bench"))
)
def test_benchmarks_import(path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark is not run by the tests, but its imports (and its harness's) must follow the package."""
    import runpy

    monkeypatch.syspath_prepend(str(REPO / "bench"))  # as `python bench/<name>.py` has it
    namespace = runpy.run_path(str(path), run_name="bench_import_check")  # __main__ only runs it
    if path in BENCHMARKS:
        assert callable(namespace["measure"]), f"{path.name} has no measure(report, databases)"


def test_make_bench_runs_every_benchmark() -> None:
    """`make bench` (python -m bench) runs each module of bench/, and nothing else."""
    from bench.__main__ import BENCHMARKS as listed

    assert sorted(listed) == [p.stem for p in BENCHMARKS]
    assert len(set(listed)) == len(listed)
