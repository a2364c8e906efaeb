"""Message Center's connection types: declared to Airflow as a provider, shown in the "Add connection"
form with labelled fields, read by the code that uses the connections (every field the form saves,
no field the form lacks), and tested by the form's "Test" button against the simulators.

The provider is found through the installed package's entry point (``pip install -e .``, which
``make test`` runs); the tests that need it say so when it is missing.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections import UserDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from devstack.push import FakeApns, OAuthServer, apns_key, service_account
from devstack.smsc import running_smsc
from psycopg.conninfo import conninfo_to_dict

from messagecenter.airflow import connection_types
from messagecenter.airflow.connection_types import (
    APNS_CONN_TYPE,
    EXECUTION_CONN_TYPE,
    FCM_CONN_TYPE,
    HTTP_CONN_TYPE,
    SMPP_CONN_TYPE,
    SMTP_CONN_TYPE,
    ApnsProviderHook,
    ExecutionInstanceHook,
    FcmProviderHook,
    HttpProviderHook,
    SmppProviderHook,
    SmtpProviderHook,
    get_provider_info,
    plain_extra,
)
from messagecenter.airflow.hooks import conninfo_from_airflow, instance_id_of
from messagecenter.airflow.transports import (
    apns_account_from_airflow,
    apns_transport,
    fcm_account_from_airflow,
    fcm_transport,
    http_api_from_airflow,
    http_transport,
    smpp_config_from_airflow,
    smpp_receiver,
    smpp_transport,
    smtp_transport,
)
from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import get_settings
from messagecenter.db import schema
from messagecenter.delivery import Outcome, OutgoingMessage
from tests.support.builders import airflow_uri, needs_install
from tests.support.sinks import HttpSink, SmtpSink, free_port

TYPES = {
    EXECUTION_CONN_TYPE: "Message Center execution instance",
    SMTP_CONN_TYPE: "Message Center SMTP provider",
    HTTP_CONN_TYPE: "Message Center SMS / push provider",
    SMPP_CONN_TYPE: "Message Center SMPP (SMSC)",
    FCM_CONN_TYPE: "Message Center FCM (Firebase push)",
    APNS_CONN_TYPE: "Message Center APNs (Apple push)",
}
PROVIDER_TYPES = (SMTP_CONN_TYPE, HTTP_CONN_TYPE, SMPP_CONN_TYPE, FCM_CONN_TYPE, APNS_CONN_TYPE)
HOOKS: dict[str, Any] = {
    EXECUTION_CONN_TYPE: ExecutionInstanceHook,
    SMTP_CONN_TYPE: SmtpProviderHook,
    HTTP_CONN_TYPE: HttpProviderHook,
    SMPP_CONN_TYPE: SmppProviderHook,
    FCM_CONN_TYPE: FcmProviderHook,
    APNS_CONN_TYPE: ApnsProviderHook,
}


def declared() -> dict[str, dict[str, Any]]:
    """Each connection type's declaration, by type."""
    return {t["connection-type"]: t for t in get_provider_info()["connection-types"]}


def form_fields(conn_type: str) -> dict[str, dict[str, Any]]:
    fields: dict[str, dict[str, Any]] = declared()[conn_type]["conn-fields"]
    return fields


def use(monkeypatch: pytest.MonkeyPatch, conn_id: str, connection: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


def execution_connection(dsn: str, conn_type: str = EXECUTION_CONN_TYPE, **extra: Any) -> dict[str, Any]:
    """A connection of ``conn_type`` to the database of ``dsn``, as the form fills it."""
    p = conninfo_to_dict(dsn)
    return {
        "conn_type": conn_type,
        "host": p.get("host") or "localhost",
        "port": int(p.get("port") or 5432),
        "schema": p["dbname"],
        "login": p.get("user") or "postgres",
        "extra": extra,
    }


# --- What Airflow reads ---------------------------------------------------------------------------


def test_provider_info_declares_the_six_types_and_passes_airflows_schemas() -> None:
    import airflow
    import jsonschema
    from airflow.providers_manager import _create_provider_info_schema_validator

    info = get_provider_info()
    _create_provider_info_schema_validator().validate(info)
    # The stricter schema of a provider.yaml: what a conn-field and a ui-field-behaviour may hold.
    provider_yaml = json.loads((Path(airflow.__file__).parent / "provider.yaml.schema.json").read_text())
    jsonschema.validate(info["connection-types"], provider_yaml["properties"]["connection-types"])
    assert info["package-name"] == "messagecenter"
    types = declared()
    assert {name: t["hook-name"] for name, t in types.items()} == TYPES
    assert {name: t["hook-class-name"] for name, t in types.items()} == {
        name: f"{hook.__module__}.{hook.__name__}" for name, hook in HOOKS.items()
    }
    execution = types[EXECUTION_CONN_TYPE]
    assert execution["conn-fields"]["instance_id"]["label"] == "Instance id"
    # Not nullable: the form refuses to save without it.
    assert execution["conn-fields"]["instance_id"]["schema"]["type"] == "integer"
    assert execution["ui-field-behaviour"]["relabeling"] == {"schema": "Database"}
    for provider in PROVIDER_TYPES:
        assert {"max_connections", "max_rate", "deadline"} <= set(types[provider]["conn-fields"])
    assert "from_email" in types[SMTP_CONN_TYPE]["conn-fields"]
    assert types[HTTP_CONN_TYPE]["conn-fields"]["token"]["schema"]["format"] == "password"

    smpp = types[SMPP_CONN_TYPE]["ui-field-behaviour"]
    assert (smpp["hidden-fields"], smpp["relabeling"]) == (["schema"], {"login": "System id"})
    assert types[SMPP_CONN_TYPE]["conn-fields"]["bind_mode"]["schema"]["enum"] == [
        "transmitter",
        "transceiver",
    ]
    for push, password in (
        (FCM_CONN_TYPE, "Service account key (JSON)"),
        (APNS_CONN_TYPE, "Signing key (.p8 PEM)"),
    ):
        behaviour = types[push]["ui-field-behaviour"]
        assert sorted(behaviour["hidden-fields"]) == ["host", "login", "port", "schema"]
        assert behaviour["relabeling"] == {"password": password}
    apns = types[APNS_CONN_TYPE]["conn-fields"]
    # Required: the form refuses to save without them, as the transport would refuse to send.
    assert [name for name, field in apns.items() if "null" not in field["schema"]["type"]] == [
        "team_id",
        "key_id",
        "topic",
    ]
    assert apns["environment"]["schema"]["enum"] == ["production", "sandbox"]


@needs_install
def test_the_installed_entry_point_names_get_provider_info() -> None:
    [entry_point] = [
        ep
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
        if ep.dist is not None and ep.dist.name == "messagecenter"
    ]
    assert entry_point.load() is get_provider_info


@needs_install
def test_providers_manager_finds_the_hooks_and_their_form_widgets() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert manager.providers["messagecenter"].version == importlib.metadata.version("messagecenter")
    widgets = manager.connection_form_widgets
    instance_id = widgets[f"extra__{EXECUTION_CONN_TYPE}__instance_id"]
    assert instance_id.hook_class_name == f"{ExecutionInstanceHook.__module__}.ExecutionInstanceHook"
    assert instance_id.field["schema"]["title"] == "Instance id"
    # Every field of every form, none taken first by another provider's widget of the same name.
    ours = {name for name, widget in widgets.items() if widget.package_name == "messagecenter"}
    assert ours == {f"extra__{conn_type}__{name}" for conn_type in TYPES for name in form_fields(conn_type)}
    assert widgets[f"extra__{HTTP_CONN_TYPE}__token"].is_sensitive
    assert widgets[f"extra__{SMPP_CONN_TYPE}__window"].field["schema"]["title"] == "Window"
    assert widgets[f"extra__{APNS_CONN_TYPE}__team_id"].hook_class_name.endswith(".ApnsProviderHook")
    behaviours = manager.field_behaviours
    assert behaviours[EXECUTION_CONN_TYPE]["relabeling"] == {"schema": "Database"}
    assert behaviours[SMPP_CONN_TYPE]["relabeling"] == {"login": "System id"}
    assert behaviours[SMPP_CONN_TYPE]["placeholders"]["port"] == "2775"
    assert behaviours[FCM_CONN_TYPE]["relabeling"] == {"password": "Service account key (JSON)"}
    assert "host" in behaviours[APNS_CONN_TYPE]["hidden_fields"]

    hooks = ProvidersManagerTaskRuntime().hooks  # imports each hook class
    for conn_type, hook_class in HOOKS.items():
        info = hooks[conn_type]
        assert info is not None, f"{conn_type}: hook not importable"
        assert info.hook_name == TYPES[conn_type]
        assert info.connection_id_attribute_name == hook_class.conn_name_attr
        assert info.connection_testable


# --- The code reads what the form saves -----------------------------------------------------------


def test_plain_extra_reads_the_form_of_airflow_3_and_of_airflow_2() -> None:
    prefix = f"extra__{EXECUTION_CONN_TYPE}__"
    assert plain_extra({"instance_id": 3, "sslmode": None, "connect_timeout": ""}, EXECUTION_CONN_TYPE) == {
        "instance_id": 3
    }
    assert plain_extra({f"{prefix}instance_id": "4"}, EXECUTION_CONN_TYPE) == {"instance_id": "4"}
    assert plain_extra({f"{prefix}instance_id": 4, "instance_id": 5}, EXECUTION_CONN_TYPE) == {
        "instance_id": 5
    }
    # Another type's prefix is not ours.
    assert plain_extra({"extra__postgres__instance_id": 4}, EXECUTION_CONN_TYPE) == {
        "extra__postgres__instance_id": 4
    }


def test_an_execution_instance_connection_connects_like_postgres(
    monkeypatch: pytest.MonkeyPatch, db_dsn: str
) -> None:
    conn = execution_connection(db_dsn, instance_id=7, sslmode="disable", connect_timeout=None)
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_ROUEN", json.dumps(conn))
    conninfo = conninfo_from_airflow("mc_exec_rouen")
    assert conninfo_to_dict(conninfo)["sslmode"] == "disable"
    with psycopg.connect(conninfo) as opened:
        assert opened.info.dbname == conn["schema"]
    assert instance_id_of("mc_exec_rouen") == 7
    newest = schema.available_migrations("execution")[-1].version
    assert ExecutionInstanceHook("mc_exec_rouen").test_connection() == (
        True,
        f"instance 7, execution schema version {newest}",
    )


def test_an_execution_instance_saved_by_airflow_2s_form_is_read_too(
    monkeypatch: pytest.MonkeyPatch, db_dsn: str
) -> None:
    conn = execution_connection(db_dsn, **{f"extra__{EXECUTION_CONN_TYPE}__instance_id": "12"})
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_NANTES", json.dumps(conn))
    assert instance_id_of("mc_exec_nantes") == 12


def test_the_hook_says_what_is_wrong_with_an_execution_instance(
    monkeypatch: pytest.MonkeyPatch, empty_db_dsn: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_BREST", json.dumps(execution_connection(empty_db_dsn)))
    ok, message = ExecutionInstanceHook("mc_exec_brest").test_connection()
    assert not ok
    assert "instance_id" in message
    connection = execution_connection(empty_db_dsn, instance_id=2)
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_BREST", json.dumps(connection))
    ok, message = ExecutionInstanceHook("mc_exec_brest").test_connection()
    assert not ok
    assert "db upgrade --conn mc_exec_brest" in message
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_BREST", json.dumps({**connection, "conn_type": "mysql"}))
    with pytest.raises(ConfigError, match="must be of type postgres or messagecenter_execution"):
        conninfo_from_airflow("mc_exec_brest")


def test_an_smtp_provider_connection_sends_with_the_limits_of_its_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SmtpSink() as sink:
        conn = json.loads(sink.connection(max_connections=3, max_rate=2.5, deadline=None))
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", json.dumps({**conn, "conn_type": SMTP_CONN_TYPE}))
        transport = smtp_transport("mc_smtp")
        assert (transport.max_connections, transport.max_rate, transport.deadline) == (3, 2.5, 60.0)
        assert SmtpProviderHook("mc_smtp").test_connection() == (True, "connected and authenticated")
        with transport:
            message = OutgoingMessage(event_id=11, channel=0, address="a@example.com", subject="Hi", text="x")
            result = transport.send(message)
        assert result.outcome is Outcome.SENT, result.error
        assert sink.recorder.event_ids() == [11]


def test_an_http_provider_connection_posts_with_the_fields_of_its_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with HttpSink() as provider:
        conn = {
            "conn_type": HTTP_CONN_TYPE,
            "host": "127.0.0.1",
            "port": provider.port,
            # As the form saves it: the object field as JSON, empty fields as null.
            "extra": {
                "endpoint": "/v1/send",
                "token": "t0k",
                "headers": {"X-Account": "acme"},
                "max_connections": 4,
                "max_rate": None,
                "deadline": 5,
            },
        }
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", json.dumps(conn))
        ok, message = HttpProviderHook("mc_sms").test_connection()
        assert ok, message
        assert message.endswith(f"http://127.0.0.1:{provider.port}/v1/send")
        transport = http_transport("mc_sms")
        assert (transport.max_connections, transport.max_rate, transport.deadline) == (4, None, 5.0)
        with transport:
            result = transport.send(OutgoingMessage(event_id=3, channel=1, address="+33600000000", text="x"))
        assert result.outcome is Outcome.SENT, result.error
        [request] = provider.requests
        assert request.path == "/v1/send"
        assert request.headers["Authorization"] == "Bearer t0k"
        assert request.headers["X-Account"] == "acme"


# --- Every field the form saves is read, and nothing the form lacks ----------------------------------


class _Reading(UserDict[str, Any]):
    """A connection's extra (as :func:`plain_extra` returns it) that notes each field read from it."""

    def __init__(self, fields: dict[str, Any], read: set[str]) -> None:
        self.read = read
        super().__init__(fields)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


@pytest.fixture
def fields_read(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The extra fields the transports read: each reads its connection's extra through
    ``plain_extra``, which this wraps (its answer unchanged)."""
    read: set[str] = set()
    real = connection_types.plain_extra
    monkeypatch.setattr(
        connection_types, "plain_extra", lambda extra, kind: _Reading(real(extra, kind), read)
    )
    return read


LIMITS = {"max_connections": 3, "max_rate": 20, "deadline": 12}


def test_the_smpp_form_has_the_fields_the_smpp_transport_reads(
    monkeypatch: pytest.MonkeyPatch, fields_read: set[str]
) -> None:
    extra = {
        "system_type": "VMA",
        "source_addr": "SHOP",
        "source_addr_ton": 5,
        "source_addr_npi": 0,
        "window": 4,
        "bind_mode": "transceiver",
        "receipt_bind_mode": "transceiver",
        **LIMITS,
    }
    assert set(extra) == set(form_fields(SMPP_CONN_TYPE))
    use(
        monkeypatch,
        "mc_sms",
        {"conn_type": "smpp", "host": "smsc.example.com", "login": "shop", "extra": extra},
    )
    transport = smpp_transport("mc_sms")
    config = smpp_config_from_airflow("mc_sms")
    receiver = smpp_receiver("mc_sms")
    assert fields_read == set(extra)
    assert (transport.binds, transport.window, transport.bind_mode, transport.deadline) == (
        3,
        4,
        "transceiver",
        12,
    )
    assert (config.system_type, config.source(), receiver.mode) == ("VMA", ("SHOP", 5, 0), "transceiver")


def test_the_fcm_form_has_the_fields_the_fcm_transport_reads(
    monkeypatch: pytest.MonkeyPatch, fields_read: set[str]
) -> None:
    key, _ = service_account("https://oauth2.example.com/token", project_id="from-key")
    extra = {
        "project_id": "shop-app",
        "base_url": "https://fcm.example.com",
        "ca_file": "/etc/ca.pem",
        **LIMITS,
    }
    assert set(extra) == set(form_fields(FCM_CONN_TYPE))
    use(monkeypatch, "mc_push_android", {"conn_type": "fcm", "password": json.dumps(key), "extra": extra})
    transport = fcm_transport("mc_push_android")
    account = fcm_account_from_airflow("mc_push_android")
    assert fields_read == set(extra)  # the key in the password: the extra "service_account" is not read
    assert (transport.max_connections, transport.max_rate, transport.deadline) == (3, 20, 12)
    assert account.send_url == "https://fcm.example.com/v1/projects/shop-app/messages:send"
    assert account.ca_file == "/etc/ca.pem"


def test_the_apns_form_has_the_fields_the_apns_transport_reads(
    monkeypatch: pytest.MonkeyPatch, fields_read: set[str]
) -> None:
    key, _ = apns_key()
    extra = {
        "team_id": "TEAM123456",
        "key_id": "KEY1234567",
        "topic": "com.example.shop",
        "environment": "sandbox",
        "base_url": "https://apns.example.com",
        "ca_file": "/etc/ca.pem",
        "time_to_live": 600,
        **LIMITS,
    }
    assert set(extra) == set(form_fields(APNS_CONN_TYPE))
    use(monkeypatch, "mc_push_ios", {"conn_type": "apns", "password": key, "extra": extra})
    transport = apns_transport("mc_push_ios")
    account = apns_account_from_airflow("mc_push_ios")
    assert fields_read == set(extra)  # the key in the password: the extra "private_key" is not read
    assert (transport.max_connections, transport.max_rate, transport.deadline) == (3, 20, 12)
    assert (account.team_id, account.key_id, account.topic) == (
        "TEAM123456",
        "KEY1234567",
        "com.example.shop",
    )
    assert (account.base_url, account.ca_file, account.time_to_live) == (
        "https://apns.example.com",
        "/etc/ca.pem",
        600,
    )


def test_the_http_form_has_the_fields_the_generic_twilio_and_vonage_apis_read(
    monkeypatch: pytest.MonkeyPatch, fields_read: set[str]
) -> None:
    generic = {"endpoint": "/v1/send", "token": "t0k", "headers": {"X-Account": "acme"}, **LIMITS}
    use(monkeypatch, "mc_sms", {"conn_type": HTTP_CONN_TYPE, "host": "sms.example.com", "extra": generic})
    http_transport("mc_sms")
    assert http_api_from_airflow("mc_sms").url == "http://sms.example.com/v1/send"
    assert fields_read == {"provider", *generic}
    twilio = {
        "provider": "twilio",
        "from": "+15005550006",
        "messaging_service_sid": "MG0123",
        "base_url": "https://twilio.example.com",
        **LIMITS,
    }
    use(
        monkeypatch,
        "mc_sms",
        {"conn_type": HTTP_CONN_TYPE, "login": "AC1", "password": "pw", "extra": twilio},
    )
    http_transport("mc_sms")
    http_api_from_airflow("mc_sms")
    vonage = {
        "provider": "vonage",
        "from": "SHOP",
        "signature_secret": "s3cret",
        "signature_method": "sha256",
    }
    use(monkeypatch, "mc_sms", {"conn_type": HTTP_CONN_TYPE, "login": "key", "extra": vonage})
    http_api_from_airflow("mc_sms")
    assert fields_read == set(form_fields(HTTP_CONN_TYPE)) == set(generic) | set(twilio) | set(vonage)


def test_the_smtp_form_has_the_fields_the_transport_and_airflows_smtp_hook_read(
    monkeypatch: pytest.MonkeyPatch, fields_read: set[str]
) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    ours = {"return_path_domain": "bounces.example.com", **LIMITS}
    smtp_hooks = {
        "from_email": "shop@example.com",
        "disable_ssl": True,
        "disable_tls": True,
        "timeout": 7,
        "retry_limit": 2,
    }
    assert set(form_fields(SMTP_CONN_TYPE)) == set(ours) | set(smtp_hooks)
    connection = {"conn_type": SMTP_CONN_TYPE, "host": "mail.example.com", "extra": {**ours, **smtp_hooks}}
    use(monkeypatch, "mc_smtp", connection)
    transport = smtp_transport("mc_smtp")
    assert fields_read == set(ours)
    assert (transport.max_connections, transport.max_rate, transport.deadline) == (3, 20, 12)
    # The others are SmtpHook's, which opens the transport's connections (and reads its extra itself).
    hook = SmtpHook("mc_smtp")
    hook.smtp_connection = hook.get_connection("mc_smtp")
    assert (hook.from_email, hook.use_ssl, hook.smtp_starttls, hook.timeout, hook.smtp_retry_limit) == (
        "shop@example.com",
        False,
        False,
        7,
        2,
    )


def stated_default(conn_type: str, field: str) -> str:
    """The default a form's field description states ("... (default 32)", "Default transmitter: ...")."""
    description = form_fields(conn_type)[field]["description"]
    match = re.search(r"[Dd]efault:? (\S+?)[.,;:)]*(?:\s|$)", description)
    assert match, f"{conn_type}.{field}: no default stated in {description!r}"
    return match[1]


def left_empty(conn_type: str, **required: Any) -> dict[str, Any]:
    """The extra the form saves when only the required fields are filled: null for every other."""
    return {name: required.get(name) for name in form_fields(conn_type)}


def stated_limits(conn_type: str) -> tuple[int, None, float]:
    return (
        int(stated_default(conn_type, "max_connections")),
        None,
        float(stated_default(conn_type, "deadline")),
    )


def test_fields_left_empty_mean_the_defaults_the_forms_state(
    monkeypatch: pytest.MonkeyPatch, fields_read: set[str]
) -> None:
    def limits(transport: Any) -> tuple[int, float | None, float]:
        return transport.max_connections, transport.max_rate, transport.deadline

    def read_only_its_fields(conn_type: str) -> None:
        """Even a field read only when another is empty (a fallback) is one of the form's."""
        assert fields_read <= set(form_fields(conn_type))
        fields_read.clear()

    smtp = {"conn_type": SMTP_CONN_TYPE, "host": "h", "extra": left_empty(SMTP_CONN_TYPE)}
    use(monkeypatch, "mc_smtp", smtp)
    assert limits(smtp_transport("mc_smtp")) == stated_limits(SMTP_CONN_TYPE)
    read_only_its_fields(SMTP_CONN_TYPE)

    use(
        monkeypatch, "mc_sms", {"conn_type": HTTP_CONN_TYPE, "host": "h", "extra": left_empty(HTTP_CONN_TYPE)}
    )
    assert limits(http_transport("mc_sms")) == stated_limits(HTTP_CONN_TYPE)
    assert http_api_from_airflow("mc_sms").url == "http://h/"
    read_only_its_fields(HTTP_CONN_TYPE)

    use(monkeypatch, "mc_sms", {"conn_type": "smpp", "host": "h", "extra": left_empty(SMPP_CONN_TYPE)})
    smpp = smpp_transport("mc_sms")
    assert (smpp.binds, smpp.max_rate, smpp.deadline) == stated_limits(SMPP_CONN_TYPE)
    assert smpp.window == int(stated_default(SMPP_CONN_TYPE, "window"))
    assert smpp.bind_mode == stated_default(SMPP_CONN_TYPE, "bind_mode")
    assert smpp_receiver("mc_sms").mode == stated_default(SMPP_CONN_TYPE, "receipt_bind_mode")
    placeholders = declared()[SMPP_CONN_TYPE]["ui-field-behaviour"]["placeholders"]
    config = smpp_config_from_airflow("mc_sms")
    assert config.port == int(placeholders["port"])
    assert (config.system_type, config.source()) == ("", ("", 0, 0))
    read_only_its_fields(SMPP_CONN_TYPE)

    key, _ = service_account("https://oauth2.example.com/token", project_id="from-key")
    fcm = {"conn_type": "fcm", "password": json.dumps(key), "extra": left_empty(FCM_CONN_TYPE)}
    use(monkeypatch, "mc_push_android", fcm)
    assert limits(fcm_transport("mc_push_android")) == stated_limits(FCM_CONN_TYPE)
    account = fcm_account_from_airflow("mc_push_android")
    assert (account.project_id, account.base_url) == ("from-key", stated_default(FCM_CONN_TYPE, "base_url"))
    assert account.ca_file is None
    read_only_its_fields(FCM_CONN_TYPE)

    ids = {"team_id": "TEAM123456", "key_id": "KEY1234567", "topic": "com.example.shop"}
    apns = {"conn_type": "apns", "password": apns_key()[0], "extra": left_empty(APNS_CONN_TYPE, **ids)}
    use(monkeypatch, "mc_push_ios", apns)
    assert limits(apns_transport("mc_push_ios")) == stated_limits(APNS_CONN_TYPE)
    ios = apns_account_from_airflow("mc_push_ios")
    assert stated_default(APNS_CONN_TYPE, "environment") == "production"
    assert (ios.base_url, ios.ca_file) == ("https://api.push.apple.com", None)
    assert ios.time_to_live == int(stated_default(APNS_CONN_TYPE, "time_to_live"))
    read_only_its_fields(APNS_CONN_TYPE)


# --- The "Test" button of the SMPP, FCM and APNs forms, against the simulators -------------------------


def test_the_smpp_test_binds_with_the_account_and_submits_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_smsc(accounts={"shop": "s3cret"}) as smsc:
        account = {"conn_type": "smpp", "host": "127.0.0.1", "port": smsc.port, "login": "shop"}
        use(monkeypatch, "mc_sms", {**account, "password": "s3cret", "extra": left_empty(SMPP_CONN_TYPE)})
        assert SmppProviderHook("mc_sms").test_connection() == (
            True,
            f"bound to SIMSC at 127.0.0.1:{smsc.port} as transmitter 'shop', then unbound; nothing submitted",
        )
        smsc.wait_for(lambda: not smsc.sessions)  # unbound
        use(monkeypatch, "mc_sms", {**account, "password": "guessed", "extra": {"bind_mode": "transceiver"}})
        assert SmppProviderHook("mc_sms").test_connection() == (
            False,
            "SMPP 'mc_sms': bind refused: 0x0000000E ESME_RINVPASWD (Invalid Password)",
        )
        assert (smsc.binds_refused, smsc.link_submits, smsc.submits) == (["shop"], 0, [])
    port = free_port()
    use(monkeypatch, "mc_sms", {**account, "port": port, "password": "s3cret"})
    ok, message = SmppProviderHook("mc_sms").test_connection()
    assert not ok
    assert message.startswith(f"SMPP 'mc_sms': cannot bind to 127.0.0.1:{port}: ")
    use(monkeypatch, "mc_sms", {**account, "extra": {"window": 0}})
    assert SmppProviderHook("mc_sms").test_connection() == (
        False,
        "connection 'mc_sms': extra 'window' must be in (0, 1000], got 0",
    )
    # SMPP 3.4 caps the account's strings; a longer password would be cut by the client, then refused.
    use(monkeypatch, "mc_sms", {**account, "password": "nine-char"})
    assert SmppProviderHook("mc_sms").test_connection() == (
        False,
        "connection 'mc_sms': the SMPP password has at most 8 characters",
    )
    use(monkeypatch, "mc_sms", {**account, "login": "x" * 16})
    with pytest.raises(ConfigError, match="the SMPP login has at most 15 characters"):
        smpp_config_from_airflow("mc_sms")


def test_the_fcm_test_obtains_an_access_token_and_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with OAuthServer() as oauth:
        use(monkeypatch, "mc_push_android", {"conn_type": "fcm", "password": json.dumps(oauth.account)})
        assert FcmProviderHook("mc_push_android").test_connection() == (
            True,
            "access token obtained for mc-sender@mc-test.iam.gserviceaccount.com, project 'mc-test'; "
            "nothing sent (messages go to https://fcm.googleapis.com/v1/projects/mc-test/messages:send)",
        )
        assert len(oauth.issued) == 1
        unknown, _ = service_account(oauth.token_uri)  # a key the token endpoint does not know
        use(monkeypatch, "mc_push_android", {"conn_type": "fcm", "password": json.dumps(unknown)})
        assert FcmProviderHook("mc_push_android").test_connection() == (
            False,
            f"no access token from {oauth.token_uri}: invalid_grant: assertion: InvalidSignatureError: "
            "Signature verification failed",
        )
        assert len(oauth.issued) == 1
    use(monkeypatch, "mc_push_android", {"conn_type": "fcm", "password": '{"client_email": "x@example.com"}'})
    assert FcmProviderHook("mc_push_android").test_connection() == (
        False,
        "connection 'mc_push_android': the service account key is not a JSON key file's content",
    )


def test_the_apns_test_signs_a_provider_token_without_contacting_apple(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with FakeApns(tmp_path) as apple:
        # As the form saves it: the PEM pasted into the one-line password field loses its line breaks.
        password = apple.private_key.replace("\n", "")
        fields = {name: value for name, value in apple.connection()["extra"].items() if value}
        connection = {
            "conn_type": "apns",
            "password": password,
            "extra": left_empty(APNS_CONN_TYPE, **fields),
        }
        use(monkeypatch, "mc_push_ios", connection)
        ok, message = ApnsProviderHook("mc_push_ios").test_connection()
        assert ok, message
        assert message.startswith("the key signs provider tokens (team TEAM123456, key KEY1234567, ")
        assert message.endswith(
            "Apple is not contacted: only a message to a device shows that it accepts the key"
        )
        assert apple.connections == 0
        # The key the form saved is the one the transport signs with, and the (fake) APNs accepts.
        with apns_transport("mc_push_ios") as transport:
            sent = transport.send(
                OutgoingMessage(event_id=5, channel=41, address="a1b2", subject="Hi", text="x")
            )
        assert sent.outcome is Outcome.SENT, sent.error

    use(
        monkeypatch,
        "mc_push_ios",
        {**connection, "password": "-----BEGIN PRIVATE KEY-----MIIBAD-----END PRIVATE KEY-----"},
    )
    ok, message = ApnsProviderHook("mc_push_ios").test_connection()
    assert not ok
    assert message.startswith("the private key is not a PEM key: ")
    rsa, _ = service_account("https://oauth2.example.com/token")  # a PEM key, not an EC P-256 one
    use(monkeypatch, "mc_push_ios", {**connection, "password": rsa["private_key"]})
    assert ApnsProviderHook("mc_push_ios").test_connection() == (
        False,
        "the private key is not an EC P-256 key (an APNs .p8 key)",
    )
    use(monkeypatch, "mc_push_ios", {**connection, "extra": {"topic": "com.example.shop"}})
    assert ApnsProviderHook("mc_push_ios").test_connection() == (
        False,
        "connection 'mc_push_ios' has no extra 'team_id', 'key_id'",
    )


# --- Through Airflow's API server ---------------------------------------------------------------------


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch, db_dsn: str, airflow_db: Path, tmp_path: Path) -> Iterator[None]:
    # The same settings as tests/airflow/test_plugin.py: Airflow loads the plugin (and its API's settings)
    # once per process, whichever test comes first.
    for name, value in {
        "MC_API_TOKENS": "plugin-token",
        "AIRFLOW_CONN_MC_EXECUTION": airflow_uri(db_dsn),
        "MC_INSTANCE_ID": "9",
        "MC_REGISTRY_CACHE": str(tmp_path / "registry.json"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.airflow
@needs_install
# Airflow 3.3.2's own connection test (Connection.get_hook) still reads ProvidersManager.hooks.
@pytest.mark.filterwarnings("ignore:ProvidersManager.hooks is deprecated:FutureWarning")
def test_the_api_server_offers_the_form_and_registers_the_instance_it_saves(
    api_env: None, db_dsn: str
) -> None:
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    from messagecenter.airflow import registry

    purge_cached_app()
    app = create_app(apps="core")
    conn = execution_connection(db_dsn, instance_id=6, sslmode=None, connect_timeout=None)
    body = {"connection_id": "mc_exec_form", **conn, "extra": json.dumps(conn["extra"])}
    try:
        with TestClient(app) as client:
            meta = {m["connection_type"]: m for m in client.get("/ui/connections/hook_meta").json()}
            execution = meta[EXECUTION_CONN_TYPE]
            assert execution["hook_name"] == "Message Center execution instance"
            assert execution["extra_fields"]["instance_id"]["schema"]["title"] == "Instance id"
            assert execution["standard_fields"]["url_schema"]["title"] == "Database"
            assert meta[SMTP_CONN_TYPE]["extra_fields"]["max_rate"]["schema"]["title"].startswith("Max rate")

            # The form's "Test" button: Airflow instantiates our hook for the connection.
            tested = client.post("/api/v2/connections/test", json=body)
            newest = schema.available_migrations("execution")[-1].version
            expected = f"instance 6, execution schema version {newest}"
            assert tested.json() == {"status": True, "message": expected}

            created = client.post("/api/v2/connections", json=body)
            assert created.status_code == 201, created.text
            assert "form" in registry.registered_instances()
            auth = {"Authorization": "Bearer plugin-token"}
            listed = client.get("/messagecenter/api/v1/archiving", headers=auth)
            assert "mcArchiving_form" in {w["dag_id"] for w in listed.json()}
            assert client.delete("/api/v2/connections/mc_exec_form").status_code == 204
            assert "form" not in registry.registered_instances()
    finally:
        purge_cached_app()


@pytest.mark.airflow
@needs_install
@pytest.mark.filterwarnings("ignore:ProvidersManager.hooks is deprecated:FutureWarning")
def test_the_api_server_offers_the_provider_forms_and_their_test_buttons(api_env: None) -> None:
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    def body(conn_type: str, **fields: Any) -> dict[str, Any]:
        """What the form posts: the extra as JSON text, every field of the form in it."""
        extra = left_empty(conn_type, **fields.pop("extra", {}))
        return {
            "connection_id": f"mc_{conn_type}_form",
            "conn_type": conn_type,
            **fields,
            "extra": json.dumps(extra),
        }

    purge_cached_app()
    app = create_app(apps="core")
    try:
        with TestClient(app) as client:
            meta = {m["connection_type"]: m for m in client.get("/ui/connections/hook_meta").json()}
            smpp = meta[SMPP_CONN_TYPE]
            assert smpp["hook_name"] == "Message Center SMPP (SMSC)"
            assert smpp["standard_fields"]["login"]["title"] == "System id"
            assert smpp["standard_fields"]["url_schema"]["hidden"]
            assert smpp["standard_fields"]["port"]["placeholder"] == "2775"
            assert smpp["extra_fields"]["bind_mode"]["schema"]["enum"] == ["transmitter", "transceiver"]
            for push, password in (
                (FCM_CONN_TYPE, "Service account key (JSON)"),
                (APNS_CONN_TYPE, "Signing key (.p8 PEM)"),
            ):
                standard = meta[push]["standard_fields"]
                assert standard["password"]["title"] == password
                assert all(standard[name]["hidden"] for name in ("host", "port", "login", "url_schema"))
            assert meta[APNS_CONN_TYPE]["extra_fields"]["team_id"]["schema"]["title"] == "Team id"

            def test(connection: dict[str, Any]) -> Any:
                return client.post("/api/v2/connections/test", json=connection).json()

            with running_smsc(accounts={"shop": "s3cret"}) as smsc:
                account = {"host": "127.0.0.1", "port": smsc.port, "login": "shop"}
                tested = test(body(SMPP_CONN_TYPE, **account, password="s3cret"))
                assert tested["status"], tested
                assert tested["message"].endswith("as transmitter 'shop', then unbound; nothing submitted")
                tested = test(body(SMPP_CONN_TYPE, **account, password="guessed"))
                assert tested["status"] is False
                assert "ESME_RINVPASWD" in tested["message"]

            with OAuthServer() as oauth:
                tested = test(body(FCM_CONN_TYPE, password=json.dumps(oauth.account)))
                assert tested["status"], tested
                assert tested["message"].startswith("access token obtained for mc-sender@")
                unknown, _ = service_account(oauth.token_uri)
                tested = test(body(FCM_CONN_TYPE, password=json.dumps(unknown)))
                assert tested["status"] is False
                assert "invalid_grant" in tested["message"]

            ids = {"team_id": "TEAM123456", "key_id": "KEY1234567", "topic": "com.example.shop"}
            pasted = apns_key()[0].replace("\n", "")  # the password field drops the line breaks
            tested = test(body(APNS_CONN_TYPE, password=pasted, extra=ids))
            assert tested["status"], tested
            assert tested["message"].startswith(
                "the key signs provider tokens (team TEAM123456, key KEY1234567"
            )
            tested = test(body(APNS_CONN_TYPE, password="not a key", extra=ids))
            assert tested["status"] is False
            assert "has no private key" in tested["message"]
    finally:
        purge_cached_app()


# --- docs/providers.md ------------------------------------------------------------------------------

PROVIDERS_PAGE = Path(__file__).parents[2] / "docs" / "providers.md"


def test_the_providers_page_documents_every_field_of_every_provider_form() -> None:
    text = PROVIDERS_PAGE.read_text()
    for conn_type in PROVIDER_TYPES:
        assert f"(`{conn_type}`)" in text
        missing = [name for name in form_fields(conn_type) if f"`{name}`" not in text]
        assert missing == [], f"{conn_type}: fields not in docs/providers.md"


def test_the_providers_page_examples_are_connections_the_transports_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    examples = re.findall(
        r"^airflow connections add (\S+) --conn-json '(.+)'$", PROVIDERS_PAGE.read_text(), re.M
    )
    builders = {
        SMTP_CONN_TYPE: smtp_transport,
        HTTP_CONN_TYPE: http_api_from_airflow,
        SMPP_CONN_TYPE: smpp_transport,
        FCM_CONN_TYPE: fcm_transport,
        APNS_CONN_TYPE: apns_account_from_airflow,
    }
    assert {json.loads(example)["conn_type"] for _, example in examples} == set(builders)
    for conn_id, example in examples:
        connection = json.loads(example)
        conn_type = connection["conn_type"]
        assert set(connection.get("extra", {})) <= set(form_fields(conn_type)), example
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", example)
        builders[conn_type](conn_id)
