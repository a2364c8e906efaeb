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

import httpx
import psutil
import pytest
from devstack import demo
from devstack.sinks import MailSink, ProviderSink
from devstack.stack import AirflowConfig, Stack, StackError, postgres_connection, sqlalchemy_uri


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


def test_provider_sink_logs_each_json_body_per_endpoint(tmp_path: Path) -> None:
    with ProviderSink(tmp_path) as sink:
        base = f"http://127.0.0.1:{sink.port}"
        first = httpx.post(f"{base}/sms", json={"to": "+33612345678", "text": "Your code is 4711"})
        httpx.post(f"{base}/push", json={"token": "t1", "title": "Shipped"})
        unknown = httpx.post(f"{base}/fax", json={})
        not_json = httpx.post(f"{base}/sms", content=b"{")
    assert first.status_code == 200
    assert first.json()["id"].startswith("sms-")
    assert (unknown.status_code, not_json.status_code) == (404, 400)
    assert [json.loads(line) for line in (tmp_path / "sms.log").read_text().splitlines()] == [
        {"to": "+33612345678", "text": "Your code is 4711"}
    ]
    assert json.loads((tmp_path / "push.log").read_text())["token"] == "t1"
    assert sink.connection("push")["extra"] == {"endpoint": "/push"}


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
    with MailSink(tmp_path / "mail") as mail, ProviderSink(tmp_path) as provider:
        env = demo.connections_env(dbs, mail, provider)
    smtp = json.loads(env["AIRFLOW_CONN_MC_SMTP"])
    assert smtp["extra"]["return_path_domain"] == demo.BOUNCE_DOMAIN
    assert smtp["port"] == mail.port
