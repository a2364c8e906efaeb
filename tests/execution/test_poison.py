"""One bad event never blocks or re-sends its neighbours: poison isolation in a delivery chunk.

Bad events are planted straight in the queue (intake refuses most of them today, but rows written
by an older version, by hand or by a bug must still never take a chunk down), among good ones, in
every way an event's data can go wrong: loading, rendering, building and encoding the message.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
import pytest

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import ProcessingSettings
from messagecenter.core.types import Status
from messagecenter.templates.rendering import Renderer
from tests.support.builders import publish, push

SETTINGS = ProcessingSettings(retry_backoff_seconds=0, max_tries=3, deliver_chunk=25, min_shard_size=10_000)
TEMPLATES = {
    "templates": [
        {
            "event_type": "WELCOME",
            "channel": "email",
            "subject": "Welcome {{ ctx.name }}",
            "text": "Hello {{ ctx.name }}{% if ctx.pad is defined %}{{ 'x' * ctx.pad }}{% endif %}"
            "{% if ctx.spin is defined %}{% for i in range(ctx.spin) %}{% for j in range(ctx.spin) %}"
            "{% endfor %}{% endfor %}{% endif %}",
        }
    ]
}

# How each planted event is made bad: SQL run on its row, or a ctx that only rendering trips on.
BAD_ROWS: dict[str, tuple[str, str]] = {
    "number Python cannot hold": ("ctx", """'{"name": "x", "n": 1e5000}'"""),
    "integer over 4,300 digits": ("ctx", "('{\"name\": \"x\", \"n\": 1' || repeat('0', 4400) || '}')::jsonb"),
    "ctx nested 3,000 deep": ("ctx", "(repeat('{\"a\": ', 3000) || '1' || repeat('}', 3000))::jsonb"),
    "ctx not an object": ("ctx", "'[1, 2, 3]'"),
    "scheduled before year 1 in UTC": ("scheduled", "'0001-01-01 00:00:00+14'::timestamptz"),
}
BAD_CTX: dict[str, dict[str, Any]] = {
    "missing ctx key": {},
    "output of a gigabyte": {"name": "x", "pad": 10**9},
    "a render that never ends": {"name": "x", "spin": 100_000},
}
# Bad-looking but deliverable: the subject is flattened to one printable line.
ODD_BUT_GOOD: dict[str, dict[str, Any]] = {
    "vertical tab in the subject": {"name": "A-1\u000bNote"},
    "line breaks in the subject": {"name": "A\r\nBcc: evil@example.com"},
    "NUL-free unicode": {"name": "Zoë 🎉 \u2028"},
}


def _good(n: int) -> dict[str, Any]:
    return {"type": "WELCOME", "email": f"good{n}@example.com", "ctx": {"name": f"Good {n}"}}


def test_every_good_event_is_sent_once_whatever_its_neighbours(
    conn: psycopg.Connection, smtp_sink: Any
) -> None:
    publish(conn, TEMPLATES)
    plan: list[tuple[str, dict[str, Any]]] = []  # (what, event), good ones around each bad one
    for what in [*BAD_ROWS, *BAD_CTX, *ODD_BUT_GOOD]:
        plan.append(("good", _good(len(plan))))
        ctx = {**BAD_CTX, **ODD_BUT_GOOD}.get(what, {"name": "planted"})
        plan.append((what, {"type": "WELCOME", "email": f"p{len(plan)}@example.com", "ctx": ctx}))
    plan.append(("good", _good(len(plan))))
    ids = push(conn, "batch", *(event for _, event in plan))
    what_of = {event_id: what for event_id, (what, _) in zip(ids, plan, strict=True)}
    for event_id, what in what_of.items():
        if what in BAD_ROWS:
            column, value = BAD_ROWS[what]
            conn.execute(f"UPDATE mc.batch_event SET {column} = {value} WHERE id = %s", (event_id,))

    (shard,) = execution.split_queue(conn, "batch", SETTINGS)
    execution.link_templates(conn, shard)
    counts = execution.deliver_shard(
        conn, shard, SETTINGS, transport_for=transport_for, renderer=Renderer(time_limit=0.5)
    )
    execution.update_events_status(conn)

    bad = set(BAD_ROWS) | set(BAD_CTX)
    assert counts.failed == len(bad)
    assert counts.sent == len(ids) - len(bad)
    logs = {
        event_id: (status, error)
        for event_id, status, error in conn.execute("SELECT event_id, status, error FROM mc.delivery_log")
    }
    assert set(logs) == set(ids)  # every event has its one final log, in one run
    for event_id, what in what_of.items():
        status, error = logs[event_id]
        if what in bad:
            assert status == Status.FAILED, what
            assert error, what
        else:
            assert status == Status.SENT, (what, error)
    errors = {what_of[i]: logs[i][1] for i in ids if what_of[i] in bad}
    assert "cannot load ctx" in errors["number Python cannot hold"]
    assert "cannot load ctx" in errors["ctx nested 3,000 deep"]
    assert "not an object" in errors["ctx not an object"]
    assert "scheduled" in errors["scheduled before year 1 in UTC"]
    assert "'name' is undefined" in errors["missing ctx key"]
    assert "limit" in errors["output of a gigabyte"]
    assert "longer than 0.5 s" in errors["a render that never ends"]

    # Each deliverable event was mailed exactly once; no planted one was mailed.
    mailed = Counter(smtp_sink.recorder.event_ids())
    assert set(mailed.values()) == {1}
    assert set(mailed) == {i for i in ids if what_of[i] not in bad}
    subjects = {int(r.mail["X-MC-Event-Id"]): str(r.mail["Subject"]) for r in smtp_sink.recorder.received}
    for event_id, what in what_of.items():
        if what in ODD_BUT_GOOD:
            assert "\n" not in subjects[event_id]
            assert "\x0b" not in subjects[event_id]
    assert not any(r.mail.get_all("Bcc") for r in smtp_sink.recorder.received)  # no header injected


def test_a_transport_that_raises_fails_that_event_only(
    conn: psycopg.Connection, smtp_sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug a message's content shows in the transport (an exception, not a classified answer)
    fails that event, final: it is never retried, so never sent twice."""
    from messagecenter.delivery import smtp

    publish(conn, TEMPLATES)
    ids = push(conn, "batch", *[_good(n) for n in range(6)])
    original = smtp.SmtpTransport.send

    def send(self: smtp.SmtpTransport, message: Any) -> Any:
        if message.event_id == ids[2]:
            raise RuntimeError("boom")
        return original(self, message)

    monkeypatch.setattr(smtp.SmtpTransport, "send", send)
    (shard,) = execution.split_queue(conn, "batch", SETTINGS)
    execution.link_templates(conn, shard)
    counts = execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)
    assert (counts.sent, counts.failed, counts.retried) == (5, 1, 0)
    error = conn.execute("SELECT error FROM mc.delivery_log WHERE event_id = %s", (ids[2],)).fetchone()
    assert error == ("internal error: RuntimeError: boom",)
    assert sorted(smtp_sink.recorder.event_ids()) == sorted(i for i in ids if i != ids[2])
