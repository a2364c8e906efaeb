"""Airflow connections: one lookup with one error, and the API tokens read and compared in one place."""

from __future__ import annotations

import json

import pytest

from messagecenter.airflow.connections import api_tokens, get_connection, matching_token
from messagecenter.airflow.hooks import conninfo_from_airflow, instance_id_of
from messagecenter.airflow.transports import endpoint_from_airflow
from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import Settings


def test_a_missing_connection_names_itself_and_how_to_add_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MC_NOWHERE", raising=False)
    with pytest.raises(ConfigError) as caught:
        get_connection("mc_nowhere")
    message = str(caught.value)
    assert message.startswith("Airflow connection 'mc_nowhere' is not defined")
    assert "`airflow connections add`" in message
    assert "AIRFLOW_CONN_MC_NOWHERE" in message
    # Every reader of a connection says the same.
    for read in (conninfo_from_airflow, instance_id_of, endpoint_from_airflow):
        with pytest.raises(ConfigError, match=r"'mc_nowhere' is not defined .*AIRFLOW_CONN_MC_NOWHERE"):
            read("mc_nowhere")


def test_a_defined_connection_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_SOMEWHERE", json.dumps({"conn_type": "http", "host": "h.example"}))
    assert get_connection("mc_somewhere").host == "h.example"


def test_api_tokens_come_from_the_settings_else_the_mc_api_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_API", json.dumps({"conn_type": "generic", "password": " t1, t2 ,,"}))
    assert api_tokens(Settings(api_tokens=("s1",))) == ("s1",)
    assert api_tokens(Settings()) == ("t1", "t2")
    monkeypatch.delenv("AIRFLOW_CONN_MC_API")
    assert api_tokens(Settings()) == ()


def test_a_presented_token_matches_only_a_whole_token() -> None:
    tokens = ("alpha-token", "beta-token")
    assert matching_token(tokens, "beta-token") == "beta-token"
    assert matching_token(tokens, "beta-toke") is None
    assert matching_token(tokens, "beta-token ") is None
    assert matching_token(tokens, "") is None
    assert matching_token((), "alpha-token") is None
