"""Providers that hang: an overall deadline per send, a circuit breaker per provider, and the guards
of a delivery (each provider's breaker and rate limiter)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from messagecenter.airflow.transports import http_transport, smtp_transport
from messagecenter.delivery import NullTransport, Outcome, OutgoingMessage
from messagecenter.delivery.guards import CircuitBreaker, ProviderGuards, breaker_for
from tests.support.builders import SETTINGS, publish, push
from tests.support.sinks import SENDER, Reply

SMS = OutgoingMessage(event_id=7, channel=1, address="+33600000000", text="code 1234")
MAIL = OutgoingMessage(event_id=8, channel=0, address="ann@example.com", subject="s", text="t")


@contextmanager
def trickling_server(handle: Any) -> Iterator[int]:
    """A TCP server on a free port that gives each connection to ``handle(sock)`` in a thread."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_quietly, args=(handle, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def _quietly(handle: Any, client: socket.socket) -> None:
    with client, contextlib.suppress(OSError):  # the client gave up: expected
        handle(client)


def trickle(sock: socket.socket, data: bytes, every: float = 0.2) -> None:
    for byte in data:
        sock.sendall(bytes([byte]))
        time.sleep(every)


def test_http_provider_trickling_its_answer_is_cut_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    def handle(sock: socket.socket) -> None:
        sock.recv(65536)  # the request (small: one read)
        trickle(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with trickling_server(handle) as port:
        conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "extra": {"deadline": 1}}
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", json.dumps(conn))
        with http_transport("mc_sms", timeout=10) as transport:  # each byte comes well within 10 s
            start = time.monotonic()
            result = transport.send(SMS)
            elapsed = time.monotonic() - start
    assert result.outcome is Outcome.TRANSIENT
    assert "deadline of 1 s" in (result.error or "")
    assert elapsed < 2.5


def test_smtp_server_trickling_its_answer_is_cut_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    def handle(sock: socket.socket) -> None:
        reader = sock.makefile("rb")
        sock.sendall(b"220 trickle ESMTP\r\n")
        while line := reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                sock.sendall(b"250 trickle\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                sock.sendall(b"250 OK\r\n")
            elif verb == b"DATA":
                sock.sendall(b"354 go on\r\n")
                while reader.readline() not in (b".\r\n", b""):
                    pass
                for _ in range(30):  # a multi-line answer, one line at a time: each read is quick
                    sock.sendall(b"250-still working\r\n")
                    time.sleep(0.3)
                sock.sendall(b"250 queued\r\n")
            elif verb == b"QUIT":
                sock.sendall(b"221 bye\r\n")
                return

    with trickling_server(handle) as port:
        extra = {"from_email": SENDER, "disable_ssl": True, "disable_tls": True, "timeout": 10}
        conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {**extra, "deadline": 1}}
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", json.dumps(conn))
        with smtp_transport("mc_smtp") as transport:
            start = time.monotonic()
            result = transport.send(MAIL)
            elapsed = time.monotonic() - start
    assert result.outcome is Outcome.TRANSIENT
    assert "deadline of 1 s" in (result.error or "")
    assert elapsed < 3


def test_circuit_breaker_opens_after_consecutive_transient_failures_and_half_opens() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=0.2)
    for _ in range(2):
        breaker.record(Outcome.TRANSIENT)
    assert breaker.allow()
    breaker.record(Outcome.SENT)  # a success resets the count
    for _ in range(3):
        breaker.record(Outcome.TRANSIENT)
    assert not breaker.allow()
    time.sleep(0.25)
    assert breaker.allow()  # half open: one try
    breaker.record(Outcome.TRANSIENT)
    assert not breaker.allow()  # failed again: open at once
    time.sleep(0.25)
    breaker.record(Outcome.PERMANENT)  # the provider answers (even a refusal): closed
    assert breaker.allow()


def test_circuit_breaker_trips_at_once_on_a_refused_account_and_half_opens() -> None:
    breaker = CircuitBreaker(threshold=5, cooldown=0.2)
    breaker.trip("the provider refused the account")
    assert not breaker.allow()
    assert breaker.reason == "the provider refused the account"
    time.sleep(0.25)
    assert breaker.allow()  # half open: one try
    breaker.record(Outcome.TRANSIENT)
    assert not breaker.allow()  # still failing: open again at once, not after five more
    time.sleep(0.25)
    breaker.record(Outcome.SENT)
    assert breaker.allow()


def test_a_hung_provider_costs_a_chunk_a_few_deadlines_not_one_per_message(
    conn: Any, http_sinks: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from messagecenter import execution
    from messagecenter.airflow.transports import transport_for

    sms = http_sinks["sms"]
    sms.replies.extend(Reply(delay=2.0) for _ in range(40))
    monkeypatch.setenv(
        "AIRFLOW_CONN_MC_SMS",
        json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": sms.port,
                "extra": {"deadline": 0.3, "max_connections": 2},
            }
        ),
    )
    publish(conn)
    push(
        conn,
        "batch",
        *(
            {"type": "OTP", "channel": "sms", "mobile_phone": "+3360000000", "ctx": {"code": n}}
            for n in range(20)
        ),
    )
    settings = replace(SETTINGS, min_shard_size=10_000)
    (shard,) = execution.split_queue(conn, "batch", settings)
    execution.link_templates(conn, shard)
    start = time.monotonic()
    counts = execution.deliver_shard(conn, shard, settings, transport_for=transport_for)
    elapsed = time.monotonic() - start
    assert counts.sent == counts.failed == 0
    assert counts.retried >= 20
    assert len(sms.requests) <= 5 + 2  # the breaker's threshold and what was in flight, not 20
    assert elapsed < 5  # 20 x 0.3 s deadline would be 6 s; 20 x 2 s answers, 40 s
    # All retried later, none lost or failed; the events not tried keep their error count, and
    # none is due again before the breaker half opens.
    rows = conn.execute(
        "SELECT status, errors, next_try > now() + interval '20 seconds' FROM mc.batch_event"
    ).fetchall()
    assert {status for status, _, _ in rows} == {1}
    assert sum(errors for _, errors, _ in rows) <= 5 + 2
    assert sum(later for _, _, later in rows) >= 14


def test_provider_guards_read_the_transports_name_and_max_rate(conn: Any) -> None:
    """One breaker per provider name, shared by its channels; a rate limiter only for a provider
    whose transport sets ``max_rate``, built once per channel and closed with the guards."""

    class Limited(NullTransport):
        name = "mc_sms"
        max_rate = 50.0

    transports = {0: NullTransport(), 1: Limited(), 41: Limited()}
    with ProviderGuards(transports.__getitem__, breaker_threshold=2, breaker_cooldown=5.0) as guards:
        email_breaker, email_limiter = guards.guards(conn, 0)
        sms_breaker, sms_limiter = guards.guards(conn, 1)
        push_breaker, _ = guards.guards(conn, 41)
        assert email_limiter is None
        assert sms_limiter is not None
        assert (sms_limiter.provider, sms_limiter.rate) == ("mc_sms", 50.0)
        assert push_breaker is sms_breaker is breaker_for("mc_sms", threshold=2, cooldown=5.0)
        assert email_breaker is breaker_for("null", threshold=2, cooldown=5.0)
        assert (email_breaker.threshold, email_breaker.cooldown) == (2, 5.0)
        assert guards.guards(conn, 1) == (sms_breaker, sms_limiter)
        sms_limiter.wait_turn()  # reserves slots on a connection of its own
        assert sms_limiter._conn is not None
    assert sms_limiter._conn is None
