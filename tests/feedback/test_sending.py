"""What the send side does for feedback: VERP return paths, one-click unsubscribe, quarantine checks."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import ProcessingSettings, get_settings
from messagecenter.core.types import Channel
from messagecenter.feedback import unsubscribe, verp
from messagecenter.feedback.quarantine import AddressStatus, get_state, set_status
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates

SECRET = "s" * 40
SETTINGS = ProcessingSettings(retry_backoff_seconds=0, max_tries=3, deliver_chunk=50, min_shard_size=10)


def template(*, list_unsubscribe: bool = False) -> dict[str, Any]:
    item = {"event_type": "RESET", "channel": "email", "subject": "Reset", "text": "Hi {{ ctx.name }}"}
    if list_unsubscribe:
        item["list_unsubscribe"] = True
    return {"templates": [item]}


def deliver(conn: psycopg.Connection[Any], *emails: str, **template_options: bool) -> list[int]:
    """Publish the template, push one batch event per address, and run the batch workflow."""
    publish_templates(conn, parse_templates(template(**template_options)))
    events = [event_from_dict({"type": "RESET", "email": e, "ctx": {"name": "x"}}) for e in emails]
    ids = store.insert_events(conn, "batch", events, instance_id=1).ids
    for shard in execution.split_queue(conn, "batch", SETTINGS):
        execution.link_templates(conn, shard)
        execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)
    execution.update_events_status(conn)
    return ids


def status_and_error(conn: psycopg.Connection[Any], event_id: int) -> tuple[int, str | None]:
    row = conn.execute(
        "SELECT e.status, l.error FROM mc.batch_event e JOIN mc.delivery_log l ON l.event_id = e.id "
        "WHERE e.id = %s",
        (event_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.fixture
def feedback_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_FEEDBACK_SECRET", SECRET)
    monkeypatch.setenv("MC_PUBLIC_URL", "https://mc.example.com/messagecenter")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_each_mail_carries_its_own_signed_return_path(conn, monkeypatch, feedback_on, smtp_sink) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", smtp_sink.connection(return_path_domain="bounces.example.com"))
    ids = deliver(conn, "ann@example.com", "bob@example.com")
    envelopes = {int(r.mail["X-MC-Event-Id"]): r.mail_from for r in smtp_sink.recorder.received}
    assert set(envelopes) == set(ids)
    for event_id, mail_from in envelopes.items():
        assert mail_from.endswith("@bounces.example.com")
        assert verp.event_id_from(mail_from, SECRET.encode()) == event_id
        assert verp.event_id_from(mail_from, b"another key, 32 bytes long......") is None


def test_without_a_secret_the_sender_is_the_envelope(conn, monkeypatch, smtp_sink) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", smtp_sink.connection(return_path_domain="bounces.example.com"))
    get_settings.cache_clear()
    deliver(conn, "ann@example.com", list_unsubscribe=True)
    (received,) = smtp_sink.recorder.received
    assert not received.mail_from.endswith("@bounces.example.com")
    assert received.mail["List-Unsubscribe"] is None


def test_a_template_asks_for_one_click_unsubscribe_headers(conn, feedback_on, smtp_sink) -> None:
    (event_id,) = deliver(conn, "Ann@Example.com", list_unsubscribe=True)
    (received,) = smtp_sink.recorder.received
    assert received.mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = received.mail["List-Unsubscribe"].strip().strip("<>")
    assert url.startswith("https://mc.example.com/messagecenter/api/v1/unsubscribe/")
    found = unsubscribe.read_token(url.rsplit("/", 1)[1], SECRET.encode())
    assert found == unsubscribe.Unsubscription(
        Channel.EMAIL, "ann@example.com", event_id
    )  # lower-cased at intake


def test_a_template_without_the_flag_has_no_unsubscribe_header(conn, feedback_on, smtp_sink) -> None:
    deliver(conn, "ann@example.com")
    (received,) = smtp_sink.recorder.received
    assert received.mail["List-Unsubscribe"] is None


def test_quarantined_and_denylisted_addresses_are_ignored(conn, smtp_sink) -> None:
    set_status(conn, Channel.EMAIL, "gone@example.com", AddressStatus.QUARANTINE)
    set_status(conn, Channel.EMAIL, "angry@example.com", AddressStatus.DENYLISTED)
    gone, angry, fine = deliver(conn, "gone@example.com", "angry@example.com", "fine@example.com")
    assert status_and_error(conn, gone) == (3, "address in quarantine")
    assert status_and_error(conn, angry) == (3, "address in quarantine")
    assert status_and_error(conn, fine) == (2, None)
    assert [r.rcpt_tos for r in smtp_sink.recorder.received] == [["fine@example.com"]]


def test_an_address_with_errors_is_sent_to_and_a_success_makes_it_valid(conn, smtp_sink) -> None:
    conn.execute(
        "INSERT INTO mc.quarantine (channel, address, status, errors, last_error) "
        "VALUES (0, 'flaky@example.com', 1, 2, now())"
    )
    (event_id,) = deliver(conn, "flaky@example.com")
    assert status_and_error(conn, event_id) == (2, None)
    assert get_state(conn, Channel.EMAIL, "flaky@example.com").status == AddressStatus.VALID


def test_relays_get_the_headers_that_echo_our_event_id(conn, smtp_sink) -> None:
    (event_id,) = deliver(conn, "ann@example.com")
    (received,) = smtp_sink.recorder.received
    mail = received.mail
    assert json.loads(mail["X-SMTPAPI"]) == {"unique_args": {"mc_event_id": str(event_id)}}
    assert json.loads(mail["X-Mailgun-Variables"]) == {"mc_event_id": str(event_id)}
    assert mail["X-PM-Metadata-mc_event_id"] == str(event_id)
    assert mail["X-SES-MESSAGE-TAGS"] == f"mc_event_id={event_id}"
