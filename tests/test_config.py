from __future__ import annotations

import pytest

from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import load_settings


def test_settings_defaults() -> None:
    settings = load_settings({})
    assert settings.role == "all"
    assert settings.instance_id == 1
    assert settings.execution_conn_id == "mc_execution"
    assert settings.api_tokens == ()
    assert settings.runs_control
    assert settings.runs_execution


def test_settings_read_the_environment() -> None:
    settings = load_settings(
        {
            "MC_ROLE": "Execution",
            "MC_INSTANCE_ID": "7",
            "MC_EXECUTION_CONN_ID": "mc_exec_paris",
            "MC_API_TOKENS": " a1, b2 ,,",
            "MC_EXECUTION_QUEUE": "mc_exec",
        }
    )
    assert settings.role == "execution"
    assert not settings.runs_control
    assert settings.instance_id == 7
    assert settings.execution_conn_id == "mc_exec_paris"
    assert settings.api_tokens == ("a1", "b2")
    assert settings.execution_queue == "mc_exec"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MC_ROLE": "master"}, "MC_ROLE must be one of"),
        ({"MC_INSTANCE_ID": "0"}, "MC_INSTANCE_ID must be between 1 and 255, got 0"),
        ({"MC_INSTANCE_ID": "256"}, "MC_INSTANCE_ID must be between 1 and 255"),
        ({"MC_INSTANCE_ID": "one"}, "MC_INSTANCE_ID must be an integer"),
        ({"MC_MAX_BATCH": "0"}, "MC_MAX_BATCH must be between"),
    ],
)
def test_settings_refuse_bad_values_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)
