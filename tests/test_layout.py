"""The package's boundaries: what production installs, where SQL lives, what DAG files import, and
how the tests are laid out (one folder per source package, shared helpers in tests/support)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from messagecenter.db import queries
from tests.support.builders import REPO

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


# --- The tests' layout -----------------------------------------------------------------------------

TESTS = REPO / "tests"
# A test folder per source package of plugins/messagecenter, the CLI module and the development stack.
AXES = {
    "core",
    "db",
    "intake",
    "execution",
    "delivery",
    "templates",
    "control",
    "monitoring",
    "feedback",
    "airflow",
    "api",
    "cli",
    "devstack",
}
REPOSITORY_WIDE = {"test_layout.py", "test_docs.py"}  # the only tests at the top of tests/
SUPPORT = "tests.support"  # what tests share: no test module imports another


def _test_files() -> list[Path]:
    return sorted({*TESTS.rglob("test_*.py"), *TESTS.rglob("*_test.py")})


def test_test_folders_mirror_the_source_packages() -> None:
    source = REPO / "plugins" / "messagecenter"
    for axis in AXES:
        mirrored = (source / axis, source / f"{axis}.py", REPO / axis)
        assert any(path.exists() for path in mirrored), f"tests/{axis}/ mirrors no package or module"
    folders = {path.name for path in TESTS.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders - AXES == {"support"}


def test_every_test_file_sits_in_the_folder_of_what_it_tests() -> None:
    misplaced = [
        str(path.relative_to(REPO))
        for path in _test_files()
        if (path.parent == TESTS and path.name not in REPOSITORY_WIDE)
        or (path.parent != TESTS and path.relative_to(TESTS).parts[0] not in AXES)
    ]
    assert misplaced == [], (
        "move each into tests/<package it tests>/ (only repository-wide checks at the top)"
    )


def test_every_test_folder_is_a_package() -> None:
    folders = {path.parent for path in TESTS.rglob("*.py")}
    assert sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").exists()) == []


def _imported(path: Path) -> list[str]:
    """Every module (or name) ``path`` imports, absolute; a relative import as its dots and name."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names += [module + ("" if module.endswith(".") else ".") + alias.name for alias in node.names]
    return names


def test_no_test_module_imports_another() -> None:
    """Helpers and shared data come from tests.support; fixtures from conftest.py, which pytest loads."""
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for name in _imported(path)
        if name.startswith(".")
        or (name.partition(".")[0] == "tests" and not (name == SUPPORT or name.startswith(f"{SUPPORT}.")))
    ]
    assert offenders == [], "import these from tests.support (or make them fixtures in a conftest.py)"
