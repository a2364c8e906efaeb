"""Delivery feedback as operators see it: the page's figures from a real database, the doctor's
checks and messages, and what the doctor reads on real databases."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
import pytest

from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import AlertLevels, FeedbackSettings, Settings, get_settings, load_settings
from messagecenter.execution.heartbeat import TECHNICAL_WORKFLOWS, record_heartbeat
from messagecenter.monitoring import doctor, indicators
from messagecenter.monitoring.doctor import Finding
from tests.support.builders import FIRST_EVENT, SENT, UNQUALIFIED, airflow_uri, seed_feedback

DAY = 86_400
SECRET = "s" * 32
# --- Settings ------------------------------------------------------------------------------------------


def test_feedback_alert_levels_and_window_are_settings() -> None:
    defaults = Settings().monitoring
    assert defaults.alerts.bounce_rate_percent == (2, 5)
    assert defaults.alerts.complaint_rate_percent == (0.1, 0.3)
    assert defaults.feedback_window == DAY
    changed = load_settings(
        {
            "MC_ALERT_COMPLAINT_RATE": "0.05,0.2",
            "MC_ALERT_BOUNCE_RATE": "1,3",
            "MC_FEEDBACK_WINDOW_SECONDS": "3600",
        }
    ).monitoring
    assert changed.alerts.complaint_rate_percent == (0.05, 0.2)
    assert changed.alerts.bounce_rate_percent == (1, 3)
    assert changed.feedback_window == 3600
    with pytest.raises(ConfigError, match="MC_ALERT_COMPLAINT_RATE"):
        load_settings({"MC_ALERT_COMPLAINT_RATE": "0.3,0.1"})
    with pytest.raises(ConfigError, match="MC_FEEDBACK_WINDOW_SECONDS"):
        load_settings({"MC_FEEDBACK_WINDOW_SECONDS": "10"})


# --- The page's figures ----------------------------------------------------------------------------------


def test_feedback_block_from_a_real_database(conn: psycopg.Connection[Any]) -> None:
    seed_feedback(conn)
    block = indicators.feedback_overview(conn, AlertLevels(), DAY)
    assert (block["sent"], block["bounced"], block["complained"]) == (SENT, 6, 1)
    assert block["bounce_rate_percent"] == {"value": 3.0, "level": "warning", "thresholds": [2, 5]}
    assert block["complaint_rate_percent"] == {"value": 0.5, "level": "alert", "thresholds": [0.1, 0.3]}
    assert block["complaint_line_percent"] == 0.3
    quarantine = block["quarantine"]
    assert quarantine["totals"] == {"with_errors": 0, "quarantine": 6, "denylisted": 2}
    assert quarantine["by_reason"][0] == {
        "reason": "User unknown",
        "with_errors": 0,
        "quarantine": 5,
        "denylisted": 0,
    }
    reasons = {row["reason"]: row for row in quarantine["by_reason"]}
    assert reasons["Denylisted address"]["denylisted"] == 1  # the complaint
    assert reasons["Not defined"]["quarantine"] == 1  # the unknown text, hard by the provider's word
    assert reasons["Not defined"]["denylisted"] == 1  # the operator's, no reason given
    [text] = block["unqualified"]["top"]
    assert block["unqualified"]["count"] == 1
    assert text["text"] == UNQUALIFIED
    assert text["example"] == UNQUALIFIED
    assert text["occurrences"] == 1
    assert block["unmatched"] == 1
    assert indicators.instance_overview(conn, AlertLevels(), DAY)["feedback"] == block


def test_only_the_window_counts(conn: psycopg.Connection[Any]) -> None:
    seed_feedback(conn)
    conn.execute(
        "UPDATE mc.delivery_log SET created = now() - interval '2 hours' WHERE event_id >= %s",
        (FIRST_EVENT + 100,),
    )
    conn.execute("UPDATE mc.feedback_message SET last_seen = now() - interval '2 hours'")
    hour = indicators.feedback_overview(conn, AlertLevels(), 3600)
    assert (hour["sent"], hour["bounced"], hour["complained"]) == (100, 6, 1)
    assert hour["bounce_rate_percent"]["level"] == "alert"  # 6 %
    assert hour["unqualified"] == {"count": 0, "top": []}
    assert indicators.feedback_overview(conn, AlertLevels(), DAY)["unqualified"]["count"] == 1


def test_nothing_sent_is_no_rate(conn: psycopg.Connection[Any]) -> None:
    block = indicators.feedback_overview(conn, AlertLevels(), DAY)
    assert block["sent"] == 0
    assert block["bounce_rate_percent"]["value"] == 0.0
    assert block["complaint_rate_percent"]["level"] == "ok"
    assert block["quarantine"] == {
        "totals": {"with_errors": 0, "quarantine": 0, "denylisted": 0},
        "by_reason": [],
    }
    assert block["unmatched"] == 0


# --- The doctor's checks ----------------------------------------------------------------------------------

LEVELS = (0.1, 0.3)


def test_complaint_rate_warns_past_its_warning_level_and_errs_at_the_03_line() -> None:
    def check(complained: int, sent: int) -> Finding:
        return doctor.check_complaint_rate(complained, sent, levels=LEVELS, window_seconds=DAY)

    assert check(0, 0).message == "nothing sent in the last 24 h"
    low = check(1, 2000)
    assert low.level == "ok"
    assert low.message.startswith("0.05 % (1 of 2000 sent in the last 24 h)")
    warned = check(3, 2000)
    assert warned.level == "warning"
    assert "at or past the warning level 0.1 %" in warned.message
    assert "Gmail and Yahoo require bulk senders to stay under 0.3 %" in warned.message
    at_line = check(6, 2000)
    assert at_line.level == "error"
    assert at_line.message.startswith("0.3 % (6 of 2000")
    assert "alert level 0.3 % (MC_ALERT_COMPLAINT_RATE" in at_line.message
    assert "one-click unsubscribe" in at_line.message
    remote = doctor.check_complaint_rate(1, 10, levels=LEVELS, window_seconds=3600, where=" on paris")
    assert (remote.what, remote.level) == ("complaint rate on paris", "error")
    assert "in the last 1 h" in remote.message


def test_bounce_rate_levels() -> None:
    def check(bounced: int, sent: int) -> Finding:
        return doctor.check_bounce_rate(bounced, sent, levels=(2, 5), window_seconds=DAY)

    assert [check(n, 100).level for n in (0, 1, 2, 4, 5, 50)] == [
        "ok",
        "ok",
        "warning",
        "warning",
        "error",
        "error",
    ]
    assert "MC_ALERT_BOUNCE_RATE" in check(5, 100).message
    assert "quarantine list" in check(2, 100).message
    assert check(0, 0).level == "ok"


def test_quarantine_and_unqualified_texts() -> None:
    counts = doctor.check_quarantine({"with_errors": 1, "quarantine": 6, "denylisted": 2}, unmatched=3)
    assert counts.level == "ok"
    assert counts.message == (
        "1 with errors, 6 in quarantine, 2 denylisted; "
        "3 feedback item(s) kept unmatched (no delivery log found yet)"
    )
    assert doctor.check_unqualified_texts(0, None, window_seconds=DAY).level == "ok"
    found = doctor.check_unqualified_texts(4, "frobnicated", window_seconds=DAY, where=" on paris")
    assert (found.what, found.level) == ("unqualified feedback texts on paris", "warning")
    assert "4 text(s) seen in the last 24 h match no rule (most frequent: 'frobnicated')" in found.message
    assert "`python -m messagecenter feedback texts --unqualified`" in found.message
    assert "`python -m messagecenter feedback rule-add`" in found.message


def test_secret_and_bounce_mailbox() -> None:
    off = doctor.check_feedback_secret(False)
    assert off.level == "warning"
    assert "VERP return paths and one-click unsubscribe are off" in off.message
    assert doctor.check_feedback_secret(True).level == "ok"
    plain = doctor.check_bounce_mailbox(False, secret_set=False)
    assert (plain.level, plain.message) == ("ok", "no bounce mailbox: bounces are not read")
    unread = doctor.check_bounce_mailbox(False, secret_set=True)
    assert unread.level == "warning"
    assert "point at a mailbox nobody reads" in unread.message
    assert "mc_bounce_mailbox" in unread.message
    assert doctor.check_bounce_mailbox(True, secret_set=True).level == "ok"


# --- What the doctor reads ----------------------------------------------------------------------------------


def states_of(paused: bool | None) -> Any:
    def read(dag_ids: Iterable[str]) -> dict[str, bool | None]:
        return dict.fromkeys(dag_ids, paused)

    return read


@pytest.fixture
def clean_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def by_what(findings: list[Finding]) -> dict[str, Finding]:
    return {f.what: f for f in findings}


def test_execution_doctor_reads_the_feedback_of_its_database(
    db_dsn: str, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch, clean_settings: None
) -> None:
    from messagecenter.airflow.readers import execution_findings

    monkeypatch.setenv("AIRFLOW_CONN_MC_EXECUTION", airflow_uri(db_dsn))
    monkeypatch.delenv("AIRFLOW_CONN_MC_BOUNCE_MAILBOX", raising=False)
    seed_feedback(conn)
    found = by_what(execution_findings(Settings(), read_states=states_of(False), probe_delivery=False))
    assert found["complaint rate"].level == "error"
    assert found["complaint rate"].message.startswith("0.5 % (1 of 200 sent in the last 24 h)")
    assert found["bounce rate"].level == "warning"
    assert found["quarantine"].message.startswith("0 with errors, 6 in quarantine, 2 denylisted; 1 feedback")
    assert found["unqualified feedback texts"].level == "warning"
    assert UNQUALIFIED in found["unqualified feedback texts"].message
    assert found["feedback secret (MC_FEEDBACK_SECRET)"].level == "warning"
    assert found["bounce mailbox (mc_bounce_mailbox)"].level == "ok"  # no VERP: nothing points at it

    with_secret = Settings(feedback=FeedbackSettings(secret=SECRET))
    found = by_what(execution_findings(with_secret, read_states=states_of(False), probe_delivery=False))
    assert found["feedback secret (MC_FEEDBACK_SECRET)"].level == "ok"
    assert found["bounce mailbox (mc_bounce_mailbox)"].level == "warning"
    mailbox = {"conn_type": "imap", "host": "127.0.0.1", "login": "bounces", "password": "x"}
    monkeypatch.setenv("AIRFLOW_CONN_MC_BOUNCE_MAILBOX", json.dumps(mailbox))
    found = by_what(execution_findings(with_secret, read_states=states_of(False), probe_delivery=False))
    assert found["bounce mailbox (mc_bounce_mailbox)"].level == "ok"


def test_control_doctor_reads_the_feedback_of_each_instance(
    make_db: Any, monkeypatch: pytest.MonkeyPatch, clean_settings: None
) -> None:
    from messagecenter.airflow.readers import control_findings

    control, paris = make_db(), make_db()
    monkeypatch.setenv("AIRFLOW_CONN_MC_CONTROL", airflow_uri(control))
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_PARIS", airflow_uri(paris) + "?instance_id=1")
    with psycopg.connect(paris, autocommit=True) as p:
        seed_feedback(p)
        for workflow in TECHNICAL_WORKFLOWS:
            record_heartbeat(p, workflow, 0, 0)
    found = by_what(control_findings(Settings(), read_states=states_of(False), instances=lambda: ["paris"]))
    assert found["complaint rate on paris"].level == "error"
    assert found["bounce rate on paris"].level == "warning"
    assert found["unqualified feedback texts on paris"].level == "warning"
    assert found["quarantine on paris"].level == "ok"
    assert "feedback secret (MC_FEEDBACK_SECRET)" not in found  # another deployment's setting
