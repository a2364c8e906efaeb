"""The settings: each declared once (core/settings.py), read from the environment, refused naming the
variable; the configuration reference is generated from the declarations, and nothing else reads
a setting's variable or restates its default."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from datetime import timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any

import pytest

from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import (
    OTHER_VARIABLES,
    Declared,
    IntakeSettings,
    ProcessingSettings,
    Settings,
    declared_settings,
    load_settings,
    reference_markdown,
)
from tests.support.builders import REPO

DECLARED = list(declared_settings())
SETTING_VARIABLES = {item.env: item for item in DECLARED}
BOUNDED = [
    item for item in DECLARED if item.declaration.low is not None and item.declaration.high is not None
]
PAIRS = [item for item in DECLARED if item.default.__class__ is tuple and len(item.default) == 2]


def num(value: float) -> str:
    """A bound as the error message writes it."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def value_at(settings: Settings, item: Declared) -> Any:
    return attrgetter(item.path)(settings)


def test_settings_defaults() -> None:
    settings = load_settings({})
    assert settings.role == "all"
    assert settings.instance_id == 1
    assert settings.execution_conn_id == "mc_execution"
    assert settings.control_conn_id == "mc_control"
    assert settings.api_tokens == ()
    assert settings.runs_control
    assert settings.runs_execution
    assert settings == Settings()


@pytest.mark.parametrize("item", DECLARED, ids=lambda item: item.env)
def test_a_setting_left_unset_or_blank_is_its_declared_default(item: Declared) -> None:
    assert value_at(load_settings({}), item) == item.default
    assert value_at(load_settings({item.env: "  "}), item) == item.default


def test_settings_read_the_environment() -> None:
    settings = load_settings(
        {
            "MC_ROLE": "Execution",
            "MC_INSTANCE_ID": "7",
            "MC_EXECUTION_CONN_ID": "mc_exec_paris",
            "MC_API_TOKENS": " a1, b2 ,,",
            "MC_EXECUTION_QUEUE": "mc_exec",
            "MC_MAX_BATCH": "50",
            "MC_RETRY_BACKOFF_SECONDS": "0.5",
            "MC_HEARTBEAT_MAX_AGE_SECONDS": "120",
            "MC_ALERT_PENDING": "10,20.5",
            "MC_RETENTION_DAYS": "7",
            "MC_ARCHIVE_OVERLAP_SECONDS": "60",
        }
    )
    assert settings.role == "execution"
    assert not settings.runs_control
    assert settings.instance_id == 7
    assert settings.execution_conn_id == "mc_exec_paris"
    assert settings.api_tokens == ("a1", "b2")
    assert settings.execution_queue == "mc_exec"
    assert settings.intake.max_batch == 50
    assert settings.processing.retry_backoff_seconds == 0.5
    assert settings.monitoring.heartbeat_max_age == 120
    assert settings.monitoring.alerts.pending == (10, 20.5)
    assert settings.archiving.retention == timedelta(days=7)
    assert settings.archiving.archive_overlap == timedelta(minutes=1)


def sample(item: Declared) -> str:
    """A valid value of ``item`` other than its default, as its variable would hold it."""
    declaration, default = item.declaration, item.default
    if item.type_text == "choice":
        return "control"
    if isinstance(default, tuple) and len(default) == 2 and declaration.low is not None:
        return "0.5,2.5"
    if isinstance(default, tuple):
        return "t1,t2"
    if isinstance(default, str):
        return (default + "_other").ljust(32, "x")  # long enough for a secret
    assert declaration.high is not None, item.env
    return str(int(declaration.high))


@pytest.mark.parametrize("item", DECLARED, ids=lambda item: item.env)
def test_each_setting_reads_its_own_variable(item: Declared) -> None:
    raw = sample(item)
    settings = load_settings({item.env: raw})
    assert value_at(settings, item) == item.parse(raw) != item.default
    # and only its own attribute
    others = [other for other in DECLARED if other is not item]
    assert all(value_at(settings, other) == other.default for other in others)


def test_every_setting_is_declared_once_with_its_variable_and_help() -> None:
    variables = [item.env for item in DECLARED]
    assert len(variables) == len(set(variables))
    assert all(re.fullmatch(r"MC_[A-Z0-9_]+", variable) for variable in variables)
    assert all(item.declaration.help for item in DECLARED)
    assert not set(variables) & {name for name, _, _ in OTHER_VARIABLES}
    # Numbers and durations declare both bounds, and the default lies within them.
    for item in DECLARED:
        if item.type_text in ("integer", "number", "integer or empty") or item.declaration.unit:
            assert item in BOUNDED, item.env
    for item in BOUNDED:
        if item.default is not None:
            raw = item.shown(item.default)
            assert item.parse(raw) == item.default, item.env


@pytest.mark.parametrize("item", BOUNDED, ids=lambda item: item.env)
def test_each_bound_is_enforced_naming_the_variable(item: Declared) -> None:
    low, high = item.declaration.low, item.declaration.high
    assert low is not None
    assert high is not None
    step = 0.5 if item.type_text == "number" else 1
    for outside in (low - step, high + step):
        with pytest.raises(
            ConfigError, match=rf"^{item.env} must be between {num(low)} and {num(high)}, got "
        ):
            load_settings({item.env: num(outside)})
    for inside in (low, high):
        assert value_at(load_settings({item.env: num(inside)}), item) == item.parse(num(inside))
    with pytest.raises(ConfigError, match=rf"^{item.env} must be an? (integer|number) between"):
        load_settings({item.env: "many"})


@pytest.mark.parametrize("item", BOUNDED, ids=lambda item: item.env)
def test_floats_are_accepted_only_where_the_type_is_float(item: Declared) -> None:
    low = item.declaration.low
    assert low is not None
    half = num(low + 0.5)
    if item.type_text == "number":
        assert value_at(load_settings({item.env: half}), item) == low + 0.5
    else:
        with pytest.raises(ConfigError, match=rf"^{item.env} must be an integer"):
            load_settings({item.env: half})


@pytest.mark.parametrize("item", PAIRS, ids=lambda item: item.env)
def test_alert_levels_are_two_ordered_numbers(item: Declared) -> None:
    for bad in ("10", "a,b", "1,2,3"):
        with pytest.raises(ConfigError, match=rf"^{item.env} must be two numbers 'warning,alert'"):
            load_settings({item.env: bad})
    for bad in ("5,1", "-1,2", "nan,1"):
        with pytest.raises(ConfigError, match=rf"^{item.env}: want 0 <= warning <= alert"):
            load_settings({item.env: bad})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MC_ROLE": "master"}, "MC_ROLE must be one of control, execution, all; got 'master'"),
        ({"MC_INSTANCE_ID": "0"}, "MC_INSTANCE_ID must be between 1 and 255, got 0"),
        ({"MC_INSTANCE_ID": "256"}, "MC_INSTANCE_ID must be between 1 and 255"),
        ({"MC_INSTANCE_ID": "one"}, "MC_INSTANCE_ID must be an integer"),
        ({"MC_MAX_BATCH": "0"}, "MC_MAX_BATCH must be between"),
        ({"MC_RENDER_TIMEOUT_SECONDS": "nan"}, "MC_RENDER_TIMEOUT_SECONDS must be between 1 and 3600"),
        ({"MC_RETRY_BACKOFF_SECONDS": "inf"}, "MC_RETRY_BACKOFF_SECONDS must be between 0 and 86400"),
    ],
)
def test_settings_refuse_bad_values_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(env)


def test_declared_defaults_are_the_dataclass_defaults() -> None:
    """The default lives in the field: what code reading a class attribute sees is the declaration."""
    assert ProcessingSettings.render_max_chars == ProcessingSettings().render_max_chars
    assert IntakeSettings().soap_events_limit == IntakeSettings.max_batch


# The reference page and the rest of the repository.


def test_configuration_reference_is_generated_from_the_declarations() -> None:
    page = (REPO / "docs" / "configuration.md").read_text()
    assert page == reference_markdown(), "docs/configuration.md is stale: run `make config-docs`"
    for item in DECLARED:
        assert f"| `{item.env}` |" in page


def _python_files() -> list[Path]:
    files = [*(REPO / "plugins").rglob("*.py"), *(REPO / "dags").glob("*.py")]
    return [path for path in files if path != REPO / "plugins" / "messagecenter" / "core" / "settings.py"]


def test_no_setting_variable_is_read_outside_the_settings_module() -> None:
    """Settings are read through ``get_settings()``; the few other ``MC_*`` variables are documented."""
    other = {name for name, _, _ in OTHER_VARIABLES}
    found: dict[str, set[str]] = {}
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            constant = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if constant and re.fullmatch(r"MC_[A-Z0-9_]+", node.value):
                found.setdefault(node.value, set()).add(str(path.relative_to(REPO)))
    assert not found.keys() & SETTING_VARIABLES.keys(), {
        k: found[k] for k in found.keys() & SETTING_VARIABLES
    }
    assert found.keys() <= other, "document it in OTHER_VARIABLES, or make it a setting"


def _literal(node: ast.expr, constants: dict[str, Any]) -> Any:
    """The value of a constant expression (numbers, arithmetic, ``timedelta(...)``, a known name)."""
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    names = {"timedelta": timedelta}
    allowed = (ast.Constant, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop, ast.keyword, ast.Load)
    for part in ast.walk(node):
        call = isinstance(part, ast.Call) and isinstance(part.func, ast.Name) and part.func.id in names
        if not (isinstance(part, allowed) or call or (isinstance(part, ast.Name) and part.id in names)):
            raise ValueError("not a constant expression")
    return eval(compile(ast.Expression(node), "<default>", "eval"), names)


def _restates(name: str, value: Any) -> list[str]:
    """Settings whose default ``value`` is, under a name that says so (``DEFAULT_*`` or the setting's)."""
    lowered = name.lower()
    return [
        item.env
        for item in DECLARED
        if value is not None  # "no value" restates nothing (an unset optional setting, a None constant)
        and type(value) is type(item.default)
        and value == item.default
        and (lowered.startswith("default_") or item.path.rsplit(".", 1)[-1] in lowered)
    ]


def _parameter_defaults(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[str, ast.expr]]:
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    defaulted = positional[len(positional) - len(arguments.defaults) :]
    pairs = list(zip(defaulted, arguments.defaults, strict=True))
    pairs += [(a, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if d]
    return [(argument.arg, default) for argument, default in pairs]


def _constant_or_none(node: ast.expr, constants: dict[str, Any]) -> Any:
    try:
        return _literal(node, constants)
    except (ValueError, TypeError, NameError, SyntaxError):
        return None


def test_no_setting_default_is_restated() -> None:
    """A default is written once, in its declaration; code that needs it reads the settings (or the
    dataclass attribute, e.g. ``ProcessingSettings.render_max_chars``)."""
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text())
        where = str(path.relative_to(REPO))
        assigned = [node for node in tree.body if isinstance(node, ast.Assign) and len(node.targets) == 1]
        constants = {
            node.targets[0].id: _constant_or_none(node.value, {})
            for node in assigned
            if isinstance(node.targets[0], ast.Name)
        }
        offenders += [f"{where}: {n} = {e}" for n, v in constants.items() for e in _restates(n, v)]
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                for name, default in _parameter_defaults(function):
                    value = _constant_or_none(default, constants)
                    offenders += [f"{where}: {function.name}({name}=) = {e}" for e in _restates(name, value)]
    assert offenders == []


def test_only_the_reference_lists_the_settings() -> None:
    """Other documents link to docs/configuration.md instead of keeping a table that drifts."""
    row = re.compile(r"^\|\s*`(MC_[A-Z0-9_]+)`", re.MULTILINE)
    tracked = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=REPO, capture_output=True, text=True, check=True
    )
    for path in (REPO / name for name in tracked.stdout.split()):
        if path == REPO / "docs" / "configuration.md":
            continue
        rows = set(row.findall(path.read_text())) & SETTING_VARIABLES.keys()
        assert not rows, f"{path.relative_to(REPO)} tabulates settings {sorted(rows)}: link the reference"


def test_make_config_docs_writes_the_reference() -> None:
    """``make config-docs`` runs the settings module, which prints the page."""
    assert "-m messagecenter.core.settings > docs/configuration.md" in (REPO / "Makefile").read_text()
    env = {**os.environ, "PYTHONPATH": "plugins"}
    out = subprocess.run(
        [sys.executable, "-m", "messagecenter.core.settings"],
        cwd=REPO,
        env=env,
        capture_output=True,
        check=True,
    )
    assert out.stdout.decode() == reference_markdown()
    assert out.stderr == b""


def test_a_feedback_secret_too_short_to_sign_with_is_refused() -> None:
    with pytest.raises(ConfigError, match="MC_FEEDBACK_SECRET must be at least 32 bytes"):
        load_settings({"MC_FEEDBACK_SECRET": "short"})
    assert load_settings({"MC_FEEDBACK_SECRET": "s" * 32}).feedback.key == b"s" * 32
