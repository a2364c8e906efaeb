"""SmtpTransport against a real SMTP server (aiosmtpd, in process) through an Airflow env connection."""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from messagecenter.airflow.transports import smtp_transport
from messagecenter.core.errors import ConfigError
from messagecenter.delivery import Outcome, OutgoingMessage
from tests.support.sinks import SENDER, Recorder, free_port

CONN_ID = "mc_smtp_test"


def use_connection(monkeypatch: pytest.MonkeyPatch, port: int, **extra: Any) -> None:
    """Define Airflow connection CONN_ID as an env var: plain SMTP (no SSL, no STARTTLS), no retries."""
    extras = {"from_email": SENDER, "disable_ssl": True, "disable_tls": True, "timeout": 5, "retry_limit": 0}
    conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {**extras, **extra}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Recorder, Controller]]]:
    """Start an SMTP server with a Recorder and point CONN_ID at it."""
    controllers: list[Controller] = []

    def start(port: int | None = None, **recorder_args: Any) -> tuple[Recorder, Controller]:
        recorder = Recorder(**recorder_args)
        controller = Controller(recorder, hostname="127.0.0.1", port=port or free_port())
        controller.start()
        controllers.append(controller)
        use_connection(monkeypatch, controller.port)
        return recorder, controller

    yield start
    for controller in controllers:
        with contextlib.suppress(AssertionError):  # already stopped by the test
            controller.stop()


def email(event_id: int = 1, **kwargs: Any) -> OutgoingMessage:
    fields = {
        "address": "jane@example.org",
        "subject": "Votre commande n°42 ✓",
        "html": "<p>Bonjour <b>Jane</b></p>",
        "text": "Bonjour Jane",
    }
    return OutgoingMessage(event_id=event_id, channel=0, **{**fields, **kwargs})


def test_sends_multipart_alternative_with_tracing_headers(smtp_server):
    recorder, _ = smtp_server()
    with smtp_transport(CONN_ID) as transport:
        result = transport.send(email(event_id=123_456))

    assert result.outcome is Outcome.SENT, result.error
    [got] = recorder.received
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ["jane@example.org"]
    mail = got.mail
    assert mail.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content().strip() for part in mail.iter_parts()}
    assert parts == {"text/plain": "Bonjour Jane", "text/html": "<p>Bonjour <b>Jane</b></p>"}
    assert mail["Subject"] == "Votre commande n°42 ✓"
    assert mail["To"] == "jane@example.org"
    assert mail["From"] == SENDER
    assert mail["X-MC-Event-Id"] == "123456"
    assert mail["Date"] is not None
    assert result.message_id is not None
    assert mail["Message-ID"] == result.message_id
    assert result.message_id.endswith("@example.com>")  # domain of the sender
    assert result.provider_answer


@pytest.mark.parametrize(
    ("html", "text", "content_type"),
    [("<p>only html</p>", None, "text/html"), (None, "only text", "text/plain")],
)
def test_a_single_part_is_sent_alone(smtp_server, html, text, content_type):
    recorder, _ = smtp_server()
    with smtp_transport(CONN_ID) as transport:
        result = transport.send(email(html=html, text=text))

    assert result.outcome is Outcome.SENT, result.error
    mail = recorder.received[0].mail
    assert mail.get_content_type() == content_type
    assert mail.get_content().strip() == (html or text)


def test_one_connection_per_with_block(smtp_server):
    recorder, _ = smtp_server()
    with smtp_transport(CONN_ID) as transport:
        results = [transport.send(email(event_id=i, address=f"u{i}@example.org")) for i in range(3)]
    with smtp_transport(CONN_ID) as transport:
        results.append(transport.send(email(event_id=3)))

    assert [r.outcome for r in results] == [Outcome.SENT] * 4
    assert [r.mail["X-MC-Event-Id"] for r in recorder.received] == ["0", "1", "2", "3"]
    assert len({r.message_id for r in results}) == 4
    first_block = {r.peer for r in recorder.received[:3]}
    assert len(first_block) == 1  # three messages, one connection
    assert recorder.received[3].peer not in first_block  # the next block opens its own


def test_from_email_argument_overrides_the_connection(smtp_server):
    recorder, _ = smtp_server()
    with smtp_transport(CONN_ID, from_email="Shop <shop@shop.example>") as transport:
        result = transport.send(email())

    assert result.outcome is Outcome.SENT, result.error
    got = recorder.received[0]
    assert got.mail_from == "shop@shop.example"
    assert got.mail["From"] == "Shop <shop@shop.example>"
    assert result.message_id.endswith("@shop.example>")


def test_missing_sender_is_a_config_error(monkeypatch, smtp_server):
    _, controller = smtp_server()
    use_connection(monkeypatch, controller.port, from_email=None)
    with pytest.raises(ConfigError, match="from_email"), smtp_transport(CONN_ID):
        pass


@pytest.mark.parametrize(
    ("server_args", "outcome", "code"),
    [
        ({"data_replies": deque(["451 4.3.0 try later"])}, Outcome.TRANSIENT, 451),
        ({"data_replies": deque(["554 5.7.1 message rejected as spam"])}, Outcome.PERMANENT, 554),
        ({"rcpt_reply": "550 5.1.1 no such user"}, Outcome.PERMANENT, 550),
        ({"rcpt_reply": "452 4.2.2 mailbox full"}, Outcome.TRANSIENT, 452),
    ],
    ids=["data-451", "data-554", "rcpt-550", "rcpt-452"],
)
def test_refusals_are_classified_by_code(smtp_server, server_args, outcome, code):
    recorder, _ = smtp_server(**server_args)
    with smtp_transport(CONN_ID) as transport:
        refused = transport.send(email(event_id=1))
        recorder.rcpt_reply = None
        after = transport.send(email(event_id=2))

    assert refused.outcome is outcome
    assert refused.message_id is None
    assert str(code) in refused.error
    assert refused.provider_answer.startswith(str(code))
    assert refused.extra["smtp_code"] == code
    # The connection survives a refusal (smtplib sends RSET): the next message goes through on it.
    assert after.outcome is Outcome.SENT, after.error
    assert len(set(recorder.peers)) == 1


def test_421_reconnects_and_sends_the_message_again_once(smtp_server):
    recorder, _ = smtp_server(data_replies=deque(["421 4.7.0 too many messages, closing"]))
    with smtp_transport(CONN_ID) as transport:
        first = transport.send(email(event_id=1))
        second = transport.send(email(event_id=2))
        opened = transport.connections_opened

    assert first.outcome is Outcome.SENT, first.error  # in the same chunk, on a new connection
    assert second.outcome is Outcome.SENT, second.error
    assert opened == 2
    assert len(set(recorder.peers)) == 2
    assert [r.mail["X-MC-Event-Id"] for r in recorder.received] == ["1", "2"]


def test_a_second_421_in_a_row_is_a_transient_error(smtp_server):
    recorder, _ = smtp_server(data_replies=deque(["421 4.7.0 busy", "421 4.7.0 still busy"]))
    with smtp_transport(CONN_ID) as transport:
        first = transport.send(email(event_id=1))
        opened = transport.connections_opened

    assert first.outcome is Outcome.TRANSIENT
    assert "421" in first.error
    assert opened == 2  # one reconnect, not more
    assert recorder.received == []


def test_server_gone_mid_chunk_is_transient_and_reconnects_once(smtp_server):
    recorder, controller = smtp_server()
    with smtp_transport(CONN_ID) as transport:
        ok = transport.send(email(event_id=1))
        controller.stop()  # drops the open connection; nothing listens any more
        lost = transport.send(email(event_id=2))
        reconnect = transport.send(email(event_id=3))
        smtp_server(port=controller.port)  # the server is back, but this chunk gave up on it
        gave_up = transport.send(email(event_id=4))
        opened = transport.connections_opened

    assert ok.outcome is Outcome.SENT
    assert lost.outcome is reconnect.outcome is gave_up.outcome is Outcome.TRANSIENT
    assert "connection lost" in lost.error
    assert "cannot open SMTP connection" in reconnect.error  # the one reconnect, refused
    assert gave_up.error == reconnect.error
    assert opened == 1
    assert [r.mail["X-MC-Event-Id"] for r in recorder.received] == ["1"]
    with smtp_transport(CONN_ID) as transport:  # the next chunk connects again
        assert transport.send(email(event_id=5)).outcome is Outcome.SENT


def test_refused_port_is_transient_for_every_message(monkeypatch):
    use_connection(monkeypatch, free_port())
    with smtp_transport(CONN_ID) as transport:
        results = [transport.send(email(event_id=i)) for i in range(2)]

    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert CONN_ID in results[0].error
    assert "ConnectionRefusedError" in results[0].error
    assert transport.connections_opened == 0


def test_undefined_connection_is_transient():
    with smtp_transport("mc_smtp_not_defined") as transport:
        result = transport.send(email())

    assert result.outcome is Outcome.TRANSIENT
    assert "mc_smtp_not_defined" in result.error


@pytest.mark.parametrize(
    "message",
    [
        email(subject="Hello\r\nBcc: victim@example.org"),
        email(address="jane@example.org\nBcc: victim@example.org"),
        email(address="not-an-address"),
    ],
    ids=["header-injection", "address-injection", "no-at-sign"],
)
def test_unsendable_message_is_permanent_and_nothing_is_sent(smtp_server, message):
    recorder, _ = smtp_server()
    with smtp_transport(CONN_ID) as transport:
        bad = transport.send(message)
        good = transport.send(email(event_id=2))

    assert bad.outcome is Outcome.PERMANENT
    assert bad.error
    assert good.outcome is Outcome.SENT
    assert [r.mail["X-MC-Event-Id"] for r in recorder.received] == ["2"]


def test_long_ascii_lines_are_encoded_and_arrive_intact(smtp_server):
    recorder, _ = smtp_server()
    html = "<p>" + "x" * 3000 + "</p>"
    with smtp_transport(CONN_ID) as transport:
        assert transport.send(email(html=html, text=None)).outcome is Outcome.SENT
    mail = recorder.received[0].mail
    assert mail["Content-Transfer-Encoding"] == "base64"
    assert mail.get_content().strip() == html
