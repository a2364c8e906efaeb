"""The README's tour as ``make demo-check`` runs it, and the demo's console: its status line, the
line per message kept in a file, the banner printed again from ``.demo/``.

The tour itself runs against the real stack in ``make demo-check`` (``.ci/run``); here, what decides
which commands it runs and how they run.
"""

from __future__ import annotations

import logging
import shlex
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import psycopg
import pytest
from devstack import demo, tour
from devstack.simulators import Simulators
from devstack.sinks import MailSink
from devstack.stack import AirflowConfig, Stack, StackError

from messagecenter.cli import build_parser
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict


def test_the_tour_runs_the_readme_code_blocks_in_order() -> None:
    commands = tour.tour_commands()
    text = tour.README.read_text()
    section = text[text.index(tour.TOUR_START) : text.index(tour.TOUR_END)]
    assert commands[0] == "source .demo/env"  # every step needs the demo's settings
    at = 0
    for command in commands:  # each after the one before it
        at = section.index(command.splitlines()[-1], at)
    in_blocks = _code_lines(section)
    assert [line.strip() for command in commands for line in command.splitlines()] == in_blocks
    wanted = (
        "airflow dags unpause",
        "templates load",
        "airflow dags trigger publishTemplates",
        "airflow connections add mc_exec_paris",
        "--add-instance paris",
        "airflow connections delete mc_exec_paris",
        "archiving backfill",
        "quarantine list",
        '"channel": "sms"',
        '"channel": "android"',
        '"channel": "ios"',
    )
    for needle in wanted:
        assert any(needle in command for command in commands), needle


def _code_lines(section: str) -> list[str]:
    """Each line inside the section's ``bash`` fences, unindented (blank and comment lines left out)."""
    inside, lines = False, []
    for line in section.splitlines():
        text = line.strip()
        if text.startswith("```"):
            inside = text == "```bash"
        elif inside and text and not text.startswith("#"):
            lines.append(text)
    return lines


def test_every_message_center_command_of_the_tour_parses() -> None:
    """A renamed option or subcommand fails here at once, not only in the demo check."""
    parser = build_parser()
    commands = [c for c in tour.tour_commands() if c.startswith("python -m messagecenter ")]
    assert len(commands) >= 3
    for command in commands:
        args = parser.parse_args(shlex.split(command)[3:])
        assert callable(args.func), command


def test_the_check_rewrites_only_the_demo_folder(tmp_path: Path) -> None:
    assert tour.in_folder("source .demo/env", tmp_path) == f"source {tmp_path}/env"
    assert tour.in_folder("cp a.yaml .demo/t.yaml", tmp_path) == f"cp a.yaml {tmp_path}/t.yaml"
    assert tour.in_folder("cat x.demo/y ./.demo/z", tmp_path) == "cat x.demo/y ./.demo/z"


def test_the_tour_shell_keeps_its_state_and_reports_each_command(tmp_path: Path) -> None:
    with tour.Shell(tmp_path, {"PATH": "/usr/bin:/bin"}) as shell:
        assert shell.run("ID=$(echo '{\"id\": 42}' | tr -dc 0-9)").code == 0
        echoed = shell.run("echo got $ID")
        assert (echoed.code, echoed.output) == (0, "got 42\n")
        assert shell.run("printf 'no newline'").output == "no newline"
        assert shell.run("cat").code == 0  # reads /dev/null, not the commands that follow
        assert shell.run("false | cat").code == 1  # pipefail: a failing pipeline fails
        assert shell.run("echo a \\\n  b").output == "a b\n"
        slow = shell.run("sleep 30", timeout=0.5)
        assert slow.code is None
        assert slow.seconds < 10


def test_the_sinks_count_what_they_got_and_log_each_message_to_a_file(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "sinks.log"
    demo.messages_to_file(log_file)
    try:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "shop@example.com", "ann@example.com", "hello"
        msg.set_content("body")
        with MailSink(tmp_path / "mail") as mail, smtplib.SMTP("127.0.0.1", mail.port) as client:
            client.send_message(msg)
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.send_message(msg, to_addrs=["bounce-x@example.com"])
        assert mail.counts == {"accepted": 1, "refused": 1}
        lines = log_file.read_text().splitlines()
        assert len(lines) == 2
        assert "mail to ann@example.com" in lines[0]
        assert "refused" in lines[1]
    finally:
        sinks_log = logging.getLogger("devstack.sinks")
        for handler in list(sinks_log.handlers):
            sinks_log.removeHandler(handler)
            handler.close()
        sinks_log.propagate = True


def test_the_status_line_counts_events_and_says_when_airflow_is_not_healthy(
    tmp_path: Path, db_dsn: str
) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        events = [event_from_dict({"type": "OTP", "channel": "sms", "ctx": {}}) for _ in range(3)]
        ids = store.insert_events(conn, "rt", events, instance_id=1).ids
        conn.execute("UPDATE mc.rt_event SET status = 2 WHERE id = %s", (ids[0],))
    config = AirflowConfig(home=tmp_path / "airflow", metadata_dsn="host=/nowhere dbname=x", port=1)
    with (
        Stack(config, tmp_path / "logs") as stack,
        MailSink(tmp_path / "mail") as mail,
        Simulators(tmp_path) as provider,
    ):
        line, healthy = demo.StatusLine(stack, db_dsn, mail, provider).read()
    assert not healthy  # nothing answers on port 1
    assert "0/0 Airflow processes up, health unreadable" in line
    assert "events: 3 pushed, 1 sent, 0 failed, 0 ignored, 2 pending" in line
    assert "sinks: 0 mail(s) (0 refused), 0 SMS, 0 push" in line


def _write_demo_folder(demo_dir: Path, **connections: str) -> None:
    config = AirflowConfig(home=demo_dir / "airflow", metadata_dsn="host=/x dbname=af", port=1)
    env = {
        **config.env({"PATH": "/usr/bin"}),
        **connections,
        demo.API_VAR: "http://127.0.0.1:1/messagecenter/api/v1",
        demo.TOKEN_VAR: "the-token",
        demo.DSN_VAR: "host=/x dbname=messagecenter",
    }
    demo.write_env_file(demo_dir / "env", env)
    (demo_dir / "api-token").write_text("the-token\n")
    (demo_dir / "admin-password").write_text("admin-pw\n")
    (demo_dir / "viewer-password").write_text("viewer-pw\n")


def test_demo_info_prints_the_banner_again_from_the_demo_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MC_DEMO_DIR", str(tmp_path))
    assert demo.main(["--info"]) == 1  # no demo ran there yet
    assert "make demo" in capsys.readouterr().err
    _write_demo_folder(tmp_path)
    started = time.monotonic()
    assert demo.main(["--info"]) == 0
    assert time.monotonic() - started < 10  # nothing started
    shown = capsys.readouterr().out
    assert "NOT running" in shown  # nothing answers on port 1
    for wanted in (
        "admin / admin-pw",
        "viewer / viewer-pw",
        "API token:    the-token",
        "http://127.0.0.1:1/messagecenter/api/v1",
        "host=/x dbname=messagecenter",
        f"{tmp_path / 'admin-password'}",
        f"{tmp_path / 'api-token'}",
        f"source {tmp_path / 'env'}",
        "make demo-info",
        "sinks.log",
        "MC_DEMO_SMS=smpp: an SMSC over SMPP",
    ):
        assert wanted in shown, wanted


def test_the_demo_sms_provider_is_smpp_unless_mc_demo_sms_names_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(demo.SMS_VAR, raising=False)
    assert demo.sms_provider() == "smpp"
    monkeypatch.setenv(demo.SMS_VAR, " Twilio ")
    assert demo.sms_provider() == "twilio"
    monkeypatch.setenv(demo.SMS_VAR, "sinch")
    with pytest.raises(StackError, match=r"MC_DEMO_SMS='sinch': .* one of smpp, twilio, vonage"):
        demo.sms_provider()
    # The banner says which provider a demo folder's mc_sms reaches.
    sms = '{"conn_type": "messagecenter_http", "extra": {"provider": "vonage"}}'
    _write_demo_folder(tmp_path, AIRFLOW_CONN_MC_SMS=sms)
    shown = demo.banner(demo.DemoInfo.read(tmp_path), running=False)
    assert "MC_DEMO_SMS=vonage: a Vonage simulator" in shown
