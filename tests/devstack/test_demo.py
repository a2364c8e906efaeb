"""The pieces of ``make demo`` that can be checked quickly: the message sinks, the process stack's
stop (no orphan, even a grandchild that left the process group), the configuration it hands Airflow.

The end-to-end proof is ``make demo-check`` (in ``.ci/run``): the real stack, events pushed until Sent.
"""

from __future__ import annotations

import json
import smtplib
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from devstack import demo
from devstack.simulators import Simulators
from devstack.sinks import MailSink
from devstack.stack import AirflowConfig, Stack, StackError, postgres_connection, sqlalchemy_uri

from messagecenter.airflow.readers import delivery_findings
from messagecenter.airflow.transports import smpp_receiver
from messagecenter.core.settings import get_settings
from messagecenter.execution.receipts import drain_receipts
from messagecenter.templates.files import load_template_file
from messagecenter.templates.publishing import publish_templates
from tests.support.builders import push, run_batch
from tests.support.soap import start_server


def _mail(to: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "shop@example.com", to, subject
    msg.set_content(f"body of {subject}")
    return msg


def test_mail_sink_keeps_each_mail_as_a_numbered_eml_file_across_runs(tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    with MailSink(mail_dir) as sink, smtplib.SMTP("127.0.0.1", sink.port) as client:
        client.send_message(_mail("ann@example.com", "first"))
        client.send_message(_mail("bob@example.com", "second"))
    assert sorted(p.name for p in mail_dir.iterdir()) == ["1.eml", "2.eml"]
    assert "Subject: second" in (mail_dir / "2.eml").read_text()
    with MailSink(mail_dir) as sink, smtplib.SMTP("127.0.0.1", sink.port) as client:  # a second demo run
        client.send_message(_mail("cy@example.com", "third"))
    assert "Subject: third" in (mail_dir / "3.eml").read_text()
    assert sink.connection()["extra"]["disable_tls"] is True


def test_mail_sink_refuses_bounce_recipients_as_a_receiving_server_would(tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    with MailSink(mail_dir) as sink, smtplib.SMTP("127.0.0.1", sink.port) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as hard:
            client.send_message(_mail("bounce-demo@example.com", "hard"))
        with pytest.raises(smtplib.SMTPRecipientsRefused) as soft:
            client.send_message(_mail("SoftBounce-ann@example.com", "soft"))
        client.send_message(_mail("ann@example.com", "kept"), from_addr="bounce+1a-abc@bounces.example.com")
    assert hard.value.recipients == {
        "bounce-demo@example.com": (
            550,
            b"5.1.1 <bounce-demo@example.com>: Recipient address rejected: User unknown",
        )
    }
    assert soft.value.recipients == {"SoftBounce-ann@example.com": (452, b"4.2.2 Mailbox full")}
    assert [p.name for p in mail_dir.iterdir()] == ["1.eml"]  # refused mail is not kept
    kept = (mail_dir / "1.eml").read_text()
    assert kept.splitlines()[0] == "Return-Path: <bounce+1a-abc@bounces.example.com>"
    assert "Subject: kept" in kept


def test_the_refused_texts_qualify_as_campaign_would() -> None:
    from devstack.sinks import refusal

    from messagecenter.feedback.qualification import qualify
    from messagecenter.feedback.types import FailureReason, FailureType

    hard = qualify(refusal("bounce-x@example.com") or "")
    soft = qualify(refusal("softbounce-x@example.com") or "")
    assert (hard.type, hard.reason) == (FailureType.HARD, FailureReason.USER_UNKNOWN)
    assert (soft.type, soft.reason) == (FailureType.SOFT, FailureReason.MAILBOX_FULL)
    assert refusal("ann.bounce-x@example.com") is None


PROVIDERS = {"mc_sms": "smpp", "mc_push_android": "fcm", "mc_push_ios": "apns"}


def test_the_demo_simulators_take_an_sms_and_a_push_per_platform_over_the_real_protocols(
    tmp_path: Path, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the demo's connections point at: the SMSC over SMPP (a receipt per SMS, UNDELIV for a
    +999 number), FCM with its OAuth2 server, APNs over HTTP/2 and TLS; each accepted message is a
    line of sms.log or push.log, and the receipts turn the delivery logs delivered or failed."""
    dbs = demo.Databases(mc_dsn="host=/tmp/pg dbname=mc", airflow_dsn="host=/tmp/pg dbname=af")
    password = demo.smsc_password(tmp_path)  # the demo's, as an SMPP bind carries it
    with MailSink(tmp_path / "mail") as mail, Simulators(tmp_path, smsc_password=password) as providers:
        env = demo.connections_env(dbs, mail, providers)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        conn_types = {
            name: json.loads(env[f"AIRFLOW_CONN_{name.upper()}"])["conn_type"] for name in PROVIDERS
        }
        assert conn_types == PROVIDERS
        publish_templates(conn, load_template_file(demo.EXAMPLE_TEMPLATES))
        sms, dead, android, ios = push(
            conn,
            "batch",
            {"type": "OTP", "channel": "sms", "mobile_phone": "+33612345678", "ctx": {"code": "4711"}},
            {"type": "OTP", "channel": "sms", "mobile_phone": "+999123", "ctx": {"code": "1"}},
            {"type": "ORDER_SHIPPED", "channel": "android", "push_token": "dev-1", "ctx": {"orderId": "7"}},
            {
                "type": "ORDER_SHIPPED",
                "channel": "ios",
                "push_token": demo.IOS_DEVICE_TOKEN,
                "ctx": {"orderId": "7"},
            },
        )
        run_batch(conn)
        dsn = conn.info.dsn
        providers.smsc.wait_for(lambda: providers.smsc.pending_receipts == 2)
        drain_receipts(
            smpp_receiver(),
            lambda: psycopg.connect(dsn, autocommit=True),
            get_settings().feedback,
            lifetime_seconds=2,
        )
        assert providers.counts == {"sms": 2, "push": 2}
        # The doctor probes each provider where its connection type reaches it (not mc_push: unused).
        probed = {f.what: (f.level, f.message) for f in delivery_findings()}
        assert set(probed) == {
            "mc_smtp (email)",
            "mc_sms (sms)",
            "mc_push_android (android)",
            "mc_push_ios (ios)",
        }
        assert {level for level, _ in probed.values()} == {"ok"}
        assert f"smpp://127.0.0.1:{providers.smsc.port}" in probed["mc_sms (sms)"][1]
        assert providers.smsc.binds_refused == []  # the connection's account is the SMSC's
    [sms_probe] = [f for f in delivery_findings() if f.what == "mc_sms (sms)"]
    assert sms_probe.level == "error"  # the SMSC stopped
    assert "does not answer" in sms_probe.message
    logs = {
        row[0]: row[1:]
        for row in conn.execute("SELECT event_id, status, delivery, failure_type FROM mc.delivery_log")
    }
    assert logs[sms] == (2, 1, None)  # Sent, then delivered by its receipt
    assert demo._sms_delivered(dsn, "+33612345678")  # what demo-check waits for
    assert logs[dead][:2] == (4, 2)  # Delivery failed by its UNDELIV receipt
    assert logs[android] == logs[ios] == (2, None, None)
    texts = [json.loads(line) for line in (tmp_path / "sms.log").read_text().splitlines()]
    assert texts[0] | {"from": "MCDEMO"} == texts[0]
    assert {t["to"]: t["part_text"] for t in texts} == {
        "33612345678": "Your code is 4711",
        "999123": "Your code is 1",
    }
    pushes = {p["platform"]: p for p in map(json.loads, (tmp_path / "push.log").read_text().splitlines())}
    assert pushes["android"]["token"] == "dev-1"
    assert pushes["ios"]["token"] == demo.IOS_DEVICE_TOKEN
    assert (
        pushes["ios"]["aps"] | {"badge": 1, "sound": "default", "thread-id": "orders"} == pushes["ios"]["aps"]
    )
    assert pushes["ios"]["aps"]["alert"] == {"title": "Shipped", "body": "Order 7 is on its way"}
    android = pushes["android"]["android"]
    assert (android["collapse_key"], android["notification"]["sound"]) == ("order-shipped", "default")


@pytest.mark.parametrize("sms", ["twilio", "vonage"])
def test_the_demo_sms_over_twilio_or_vonage_is_delivered_by_its_callback_through_the_api(
    tmp_path: Path, conn: psycopg.Connection[Any], db_dsn: str, monkeypatch: pytest.MonkeyPatch, sms: str
) -> None:
    """With ``MC_DEMO_SMS`` twilio or vonage, ``mc_sms`` is that provider's fake: each SMS asks for
    status callbacks at ``MC_PUBLIC_URL``, which the fake posts, signed, to the real API (uvicorn,
    the demo's connections in its environment); ``mc_feedback_<provider>`` verifies them and the
    delivery log turns delivered, or failed for a +999 number."""
    dbs = demo.Databases(mc_dsn=db_dsn, airflow_dsn=db_dsn)
    with MailSink(tmp_path / "mail") as mail, Simulators(tmp_path, sms=sms) as providers:
        env = demo.connections_env(dbs, mail, providers)
        sms_conn = json.loads(env["AIRFLOW_CONN_MC_SMS"])
        assert (sms_conn["conn_type"], sms_conn["extra"]["provider"]) == ("messagecenter_http", sms)
        assert json.loads(env[f"AIRFLOW_CONN_MC_FEEDBACK_{sms.upper()}"])["password"]
        server, url = start_server(db_dsn, {**env, "MC_API_TOKENS": "t"})
        try:
            for name, value in {**env, "MC_PUBLIC_URL": url}.items():
                monkeypatch.setenv(name, value)
            get_settings.cache_clear()
            publish_templates(conn, load_template_file(demo.EXAMPLE_TEMPLATES))
            ok, dead = push(
                conn,
                "batch",
                {"type": "OTP", "channel": "sms", "mobile_phone": "+33612345678", "ctx": {"code": "4711"}},
                {"type": "OTP", "channel": "sms", "mobile_phone": "+999123456", "ctx": {"code": "1"}},
            )
            run_batch(conn)
            # Twilio: sent, then delivered / undelivered per message; Vonage: a receipt per message.
            callbacks = providers.rest.wait_for_callbacks(4 if sms == "twilio" else 2)
            assert [c.status for c in callbacks] == [200] * len(callbacks), callbacks
            assert providers.rest.violations == []
            deadline = time.monotonic() + 10
            while not demo._sms_delivered(db_dsn, "+33612345678") and time.monotonic() < deadline:
                time.sleep(0.1)  # the API commits right after its answer
        finally:
            server.terminate()
            server.wait(timeout=30)
            get_settings.cache_clear()
    logs = {
        row[0]: row[1:]
        for row in conn.execute("SELECT event_id, status, delivery, failure_type FROM mc.delivery_log")
    }
    assert logs[ok] == (2, 1, None)  # Sent, then delivered by its callback
    assert logs[dead][:2] == (4, 2)  # Delivery failed by its callback
    assert demo._sms_delivered(db_dsn, "+33612345678")  # what demo-check waits for
    lines = [json.loads(line) for line in (tmp_path / "sms.log").read_text().splitlines()]
    assert sorted((line["provider"], line["to"].lstrip("+")) for line in lines) == [
        (sms, "33612345678"),
        (sms, "999123456"),
    ]
    assert {line["text"] for line in lines} == {"Your code is 4711", "Your code is 1"}
    assert providers.counts["sms"] == 2


# A component that forks one child in its process group and one that escapes it with setsid(), then
# waits: stop() must end all three.
FORKER = """
import os, subprocess, sys, time
stay = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
away = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print(stay.pid, away.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _config(tmp_path: Path) -> AirflowConfig:
    return AirflowConfig(home=tmp_path / "airflow", metadata_dsn="host=/tmp/pg dbname=airflow", port=1)


def test_stop_ends_every_component_and_what_it_forked(tmp_path: Path) -> None:
    with Stack(_config(tmp_path), tmp_path / "logs") as stack:
        component = stack.spawn("forker", [sys.executable, "-c", FORKER])
        deadline = time.monotonic() + 30
        while not component.log_path.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        stay, away = map(int, component.log_path.read_text().split())
        stack.check_alive()
        started = time.monotonic()
    assert time.monotonic() - started < 15
    assert component.process.returncode is not None
    assert _gone(stay)
    assert _gone(away)


def test_check_alive_names_the_dead_component_with_its_log(tmp_path: Path) -> None:
    stack = Stack(_config(tmp_path), tmp_path / "logs")
    component = stack.spawn(
        "broken", [sys.executable, "-c", "print('no such table: dag'); raise SystemExit(3)"]
    )
    component.process.wait(30)
    with pytest.raises(StackError, match=r"broken exited with code 3(.|\n)*no such table: dag"):
        stack.check_alive()
    stack.stop()


def test_every_component_gets_the_same_airflow_settings_and_no_leaked_one(tmp_path: Path) -> None:
    config = AirflowConfig(
        home=tmp_path,
        metadata_dsn="host=/tmp/demo/pgdata user=postgres dbname=messagecenter_airflow",
        port=8123,
        executor="CeleryExecutor",
        extra={"AIRFLOW_CONN_MC_EXECUTION": "{}"},
    )
    env = config.env(
        {"AIRFLOW__CORE__EXECUTOR": "KubernetesExecutor", "AIRFLOW_CONN_OTHER": "x", "HOME": "/h"}
    )
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "AIRFLOW_CONN_OTHER" not in env
    assert env["HOME"] == "/h"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == config.jwt_secret
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://postgres@/messagecenter_airflow?host=%2Ftmp%2Fdemo%2Fpgdata"
    )
    config.write_passwords_file()
    assert json.loads(config.passwords_file.read_text()) == {"admin": config.admin_password}
    assert config.passwords_file.stat().st_mode & 0o077 == 0


def test_database_urls_for_tcp_and_socket_servers() -> None:
    tcp = "host=127.0.0.1 port=5433 user=mc password=p@ss dbname=mc"
    assert sqlalchemy_uri(tcp) == "postgresql+psycopg2://mc:p%40ss@127.0.0.1:5433/mc"
    assert postgres_connection(tcp, instance_id=1) == {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5433,
        "schema": "mc",
        "login": "mc",
        "password": "p@ss",
        "extra": {"instance_id": 1},
    }
    assert postgres_connection("host=/run/pg dbname=x")["host"] == "/run/pg"


def test_demo_secrets_are_generated_once_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MC_API_TOKENS", raising=False)
    token = demo.api_token(tmp_path)
    assert demo.api_token(tmp_path) == token
    assert len(token) >= 24
    assert (tmp_path / "api-token").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("MC_API_TOKENS", "from-env,second")
    assert demo.api_token(tmp_path) == "from-env"


def test_demo_feedback_settings_sign_with_a_private_secret_and_point_at_the_api(tmp_path: Path) -> None:
    env = demo.feedback_env(tmp_path, "http://127.0.0.1:8080")
    assert demo.feedback_env(tmp_path, "http://127.0.0.1:8080") == env  # kept across runs
    assert len(env["MC_FEEDBACK_SECRET"]) >= 32
    assert (tmp_path / "feedback-secret").stat().st_mode & 0o077 == 0
    assert env["MC_PUBLIC_URL"] == "http://127.0.0.1:8080/messagecenter"


def test_demo_smtp_connection_sends_with_a_verp_return_path(tmp_path: Path) -> None:
    dbs = demo.Databases(mc_dsn="host=/tmp/pg dbname=mc", airflow_dsn="host=/tmp/pg dbname=af")
    with MailSink(tmp_path / "mail") as mail, Simulators(tmp_path) as provider:
        env = demo.connections_env(dbs, mail, provider)
    smtp = json.loads(env["AIRFLOW_CONN_MC_SMTP"])
    assert smtp["extra"]["return_path_domain"] == demo.BOUNCE_DOMAIN
    assert smtp["port"] == mail.port
