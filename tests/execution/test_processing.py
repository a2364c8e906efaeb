"""The execution workflows' logic against a real PostgreSQL and real SMTP / HTTP sinks."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import psycopg

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.execution import results
from messagecenter.intake import store
from tests.support.builders import SETTINGS, TEMPLATES, publish, push, run_batch

ORDER = {
    "type": "ORDER_CONFIRMATION",
    "email": "ann@example.com",
    "ctx": {"orderId": "A-1", "firstName": "Ann"},
}


def statuses(conn: psycopg.Connection, queue: str = "batch") -> dict[int, int]:
    return dict(conn.execute(f"SELECT id, status FROM mc.{queue}_event").fetchall())


def event(conn: psycopg.Connection, event_id: int, queue: str = "batch") -> dict[str, Any]:
    row = store.get_event(conn, queue, event_id)
    assert row is not None
    return row


def delivery_log(conn: psycopg.Connection, event_id: int) -> tuple:
    return conn.execute(
        "SELECT status, address, error, tries, message_id FROM mc.delivery_log WHERE event_id = %s",
        (event_id,),
    ).fetchone()


def test_email_event_is_sent_with_its_rendered_parts(conn: psycopg.Connection, smtp_sink: Any) -> None:
    publish(conn)
    (event_id,) = push(conn, "batch", ORDER)
    counts = run_batch(conn)
    assert (counts.claimed if counts.claimed else 1, counts.linked, counts.sent, counts.copied) == (
        1,
        1,
        1,
        1,
    )
    row = event(conn, event_id)
    assert (row["status"], row["status_name"]) == (2, "Sent")
    assert row["template_version"] == 1
    (mail,) = [r.mail for r in smtp_sink.recorder.received]
    assert mail["Subject"] == "Order A-1 confirmed"
    assert mail["To"] == "ann@example.com"
    assert int(mail["X-MC-Event-Id"]) == event_id
    assert mail.get_body(("plain",)).get_content().strip() == "Hello Ann, order A-1"
    assert "<p>Hello Ann</p>" in mail.get_body(("html",)).get_content()
    status, address, error, tries, message_id = delivery_log(conn, event_id)
    assert (status, address, error, tries) == (2, "ann@example.com", None, 1)
    assert message_id == mail["Message-ID"].strip()


def test_sms_and_push_go_to_their_http_providers(
    conn: psycopg.Connection, http_sinks: dict[str, Any]
) -> None:
    publish(conn)
    sms_id, push_id = push(
        conn,
        "batch",
        {"type": "OTP", "channel": "sms", "mobile_phone": "+33612345678", "ctx": {"code": "4711"}},
        {"type": "SHIPPED", "channel": "android", "push_token": "tok-1", "ctx": {"orderId": "B-2"}},
    )
    run_batch(conn)
    assert statuses(conn) == {sms_id: 2, push_id: 2}
    (sms,) = http_sinks["sms"].requests
    assert sms.body == {"to": "+33612345678", "text": "Your code is 4711", "event_id": sms_id}
    (notification,) = http_sinks["push"].requests
    assert notification.body["to"] == "tok-1"
    assert notification.body["body"] == "Order B-2"
    assert notification.body["platform"] == "android"


def test_unknown_event_type_is_not_taken_into_account_and_never_retried(
    conn: psycopg.Connection, smtp_sink: Any
) -> None:
    publish(conn)
    (event_id,) = push(conn, "batch", {**ORDER, "type": "NO_SUCH_TEMPLATE"})
    assert run_batch(conn).not_taken == 1
    assert event(conn, event_id)["status"] == 5
    publish(
        conn,
        {"templates": [{"event_type": "NO_SUCH_TEMPLATE", "channel": "email", "subject": "s", "text": "t"}]},
    )
    run_batch(conn)
    assert event(conn, event_id)["status"] == 5
    assert smtp_sink.recorder.received == []


def test_routing_picks_the_latest_published_version(conn: psycopg.Connection, smtp_sink: Any) -> None:
    publish(conn)
    changed = {"templates": [{**TEMPLATES["templates"][0], "subject": "Version two {{ ctx.orderId }}"}]}
    publish(conn, changed)
    (event_id,) = push(conn, "batch", ORDER)
    run_batch(conn)
    assert event(conn, event_id)["template_version"] == 2
    assert smtp_sink.recorder.received[0].mail["Subject"] == "Version two A-1"


def test_scheduled_event_waits_until_its_time(conn: psycopg.Connection, smtp_sink: Any) -> None:
    publish(conn)
    later, now = push(conn, "batch", {**ORDER, "scheduled": "2099-01-01T00:00:00Z"}, ORDER)
    run_batch(conn)
    assert statuses(conn) == {later: 0, now: 2}
    conn.execute("UPDATE mc.batch_event SET scheduled = now() - interval '1 second' WHERE id = %s", (later,))
    run_batch(conn)
    assert statuses(conn) == {later: 2, now: 2}


def test_transient_errors_retry_with_backoff_then_succeed(conn: psycopg.Connection, smtp_sink: Any) -> None:
    publish(conn)
    smtp_sink.recorder.data_replies.extend(["451 4.3.0 try again later"])
    (event_id,) = push(conn, "batch", ORDER)
    settings = replace(SETTINGS, retry_backoff_seconds=3600)
    assert run_batch(conn, settings).retried == 1
    row = event(conn, event_id)
    assert (row["status"], row["errors"]) == (1, 1)
    assert row["next_try"] > row["last_modified"]  # an hour of backoff: not due
    assert run_batch(conn, settings).sent == 0  # not retried before its time
    conn.execute("UPDATE mc.batch_event SET next_try = now() WHERE id = %s", (event_id,))
    assert run_batch(conn, settings).sent == 1
    assert event(conn, event_id)["status"] == 2
    assert delivery_log(conn, event_id)[3] == 2  # sent on the second try


def test_retry_exhaustion_fails_the_delivery(conn: psycopg.Connection, smtp_sink: Any) -> None:
    publish(conn)
    smtp_sink.recorder.data_replies.extend(["451 4.3.0 busy"] * 3)
    (event_id,) = push(conn, "batch", ORDER)
    for _ in range(3):
        run_batch(conn)
    row = event(conn, event_id)
    assert (row["status"], row["errors"]) == (4, 3)
    status, _, error, tries, _ = delivery_log(conn, event_id)
    assert (status, tries) == (4, 3)
    assert error.startswith("max tries (3) reached")
    assert "451" in error


def test_permanent_error_fails_at_once(conn: psycopg.Connection, smtp_sink: Any) -> None:
    publish(conn)
    smtp_sink.recorder.data_replies.append("550 5.1.1 no such user")
    (event_id,) = push(conn, "batch", ORDER)
    run_batch(conn)
    assert event(conn, event_id)["status"] == 4
    assert "550" in delivery_log(conn, event_id)[2]


def test_ignored_without_address_in_quarantine_or_empty(conn: psycopg.Connection, smtp_sink: Any) -> None:
    publish(conn)
    publish(
        conn, {"templates": [{"event_type": "EMPTY", "channel": "email", "subject": "s", "text": "{{ '' }}"}]}
    )
    conn.execute("INSERT INTO mc.quarantine (channel, address) VALUES (0, 'bounced@example.com')")
    no_address, quarantined, empty, fine = push(
        conn,
        "batch",
        {"type": "ORDER_CONFIRMATION", "ctx": ORDER["ctx"]},
        {**ORDER, "email": "Bounced@Example.com"},
        {**ORDER, "type": "EMPTY"},
        ORDER,
    )
    run_batch(conn)
    assert statuses(conn) == {no_address: 3, quarantined: 3, empty: 3, fine: 2}
    assert delivery_log(conn, no_address)[2] == "no e-mail address"
    assert delivery_log(conn, quarantined)[2] == "address in quarantine"
    assert delivery_log(conn, empty)[2] == "empty message"
    assert smtp_sink.recorder.event_ids() == [fine]


def test_render_error_fails_that_event_only(conn: psycopg.Connection, smtp_sink: Any) -> None:
    publish(conn)
    broken, fine = push(conn, "batch", {**ORDER, "ctx": {"firstName": "Bob"}}, ORDER)
    run_batch(conn)
    assert statuses(conn) == {broken: 4, fine: 2}
    assert "render error" in delivery_log(conn, broken)[2]
    assert "orderId" in delivery_log(conn, broken)[2]


def test_undelivered_events_expire_after_their_validity(conn: psycopg.Connection) -> None:
    old, fresh = push(conn, "rt", ORDER, ORDER)
    conn.execute("UPDATE mc.rt_event SET created = now() - interval '2 hours' WHERE id = %s", (old,))
    assert execution.expire_events(conn, SETTINGS).expired == 1
    assert statuses(conn, "rt") == {old: 6, fresh: 0}


def test_an_event_expiring_mid_delivery_takes_its_delivery_status(
    conn: psycopg.Connection, db_dsn: str
) -> None:
    """expire_events waits for a delivery chunk's row lock, then expires the event the chunk has
    just delivered: the status copy still gives it the status of its delivery log."""
    (late,) = push(conn, "batch", ORDER)
    conn.execute(
        "UPDATE mc.batch_event SET status = 1, next_try = now(), created = now() - interval '2 days'"
    )
    with psycopg.connect(db_dsn) as worker:
        worker.execute("SELECT id FROM mc.batch_event WHERE id = %s FOR UPDATE", (late,))  # a chunk's claim

        def expire() -> None:
            with psycopg.connect(db_dsn, application_name="mc-test-expire") as other:
                execution.expire_events(other, SETTINGS)

        expiring = threading.Thread(target=expire)
        expiring.start()
        waiting = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'mc-test-expire' AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + 10
        while not conn.execute(waiting).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.execute(
            "INSERT INTO mc.delivery_log (event_id, queue, status, channel) VALUES (%s, 'batch', 2, 0)",
            (late,),
        )
        worker.commit()
        expiring.join(timeout=10)
    assert statuses(conn) == {late: 6}
    assert execution.update_events_status(conn).copied == 1
    assert statuses(conn) == {late: 2}


def test_every_status_is_reached(conn: psycopg.Connection, smtp_sink: Any, monkeypatch: Any) -> None:
    publish(conn)
    # One message at a time, so the sink's answers go to the events in their order.
    monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", smtp_sink.connection(max_connections=1))
    smtp_sink.recorder.data_replies.extend(["250 OK", "550 5.7.1 rejected"])
    pending, *_ = push(conn, "batch", {**ORDER, "scheduled": "2099-01-01T00:00:00Z"})
    sent, failed, ignored, not_taken = push(
        conn, "batch", ORDER, ORDER, {**ORDER, "email": None}, {**ORDER, "type": "UNKNOWN"}
    )
    expired, in_delivery = push(conn, "batch", ORDER, ORDER)
    conn.execute("UPDATE mc.batch_event SET created = now() - interval '3 days' WHERE id = %s", (expired,))
    settings = replace(SETTINGS, batch_validity_seconds=86_400)
    execution.expire_events(conn, settings)
    # in_delivery: linked by a split, but its delivery task has not run yet
    shards = execution.split_queue(conn, "batch", settings)
    for shard in shards:
        execution.link_templates(conn, shard)
    conn.execute(
        "UPDATE mc.batch_event SET next_try = now() + interval '1 hour' WHERE id = %s", (in_delivery,)
    )
    for shard in shards:
        execution.deliver_shard(conn, shard, settings, transport_for=transport_for)
    execution.update_events_status(conn)
    assert statuses(conn) == {
        pending: 0,
        in_delivery: 1,
        sent: 2,
        ignored: 3,
        failed: 4,
        not_taken: 5,
        expired: 6,
    }


def test_shards_do_not_grow_with_volume(conn: psycopg.Connection) -> None:
    publish(conn)
    settings = replace(SETTINGS, parallelism=4, min_shard_size=10, claim_chunk=300)
    push(conn, "batch", *[ORDER] * 1000, *[{**ORDER, "type": "OTP"}] * 30)
    shards = execution.split_queue(conn, "batch", settings)
    by_type: dict[str, list[execution.Shard]] = {}
    for shard in shards:
        by_type.setdefault(shard.event_type, []).append(shard)
    assert len(by_type["ORDER_CONFIRMATION"]) == 4
    assert len(by_type["OTP"]) == 3
    claimed = conn.execute("SELECT count(*) FROM mc.batch_event WHERE batch_id IS NOT NULL").fetchone()[0]
    assert claimed == 1030
    # The shards' id ranges cover every claimed event exactly once.
    covered = sum(
        conn.execute(
            "SELECT count(*) FROM mc.batch_event WHERE event_type = %s AND id BETWEEN %s AND %s",
            (s.event_type, s.min_id, s.max_id),
        ).fetchone()[0]
        for s in shards
    )
    assert covered == 1030


def test_split_respects_the_run_cap(conn: psycopg.Connection) -> None:
    push(conn, "batch", *[ORDER] * 50)
    shards = execution.split_queue(conn, "batch", replace(SETTINGS, max_events_per_run=20, claim_chunk=7))
    assert sum(s.count for s in shards) <= 20
    assert conn.execute("SELECT count(*) FROM mc.batch_event WHERE batch_id IS NOT NULL").fetchone()[0] == 20


def test_split_claims_in_place(conn: psycopg.Connection) -> None:
    """The split's lease is in no index and the queue keeps free space: claiming is a HOT update."""
    push(conn, "batch", *[ORDER] * 200)
    execution.split_queue(conn, "batch", SETTINGS)
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    updated, hot = conn.execute(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'mc.batch_event'::regclass"
    ).fetchone()
    assert updated == 200
    assert hot >= 0.8 * updated  # with the lease in next_try (indexed), none was


def test_claimed_events_come_back_after_the_lease(conn: psycopg.Connection, smtp_sink: Any) -> None:
    publish(conn)
    (event_id,) = push(conn, "batch", ORDER)
    execution.split_queue(conn, "batch", SETTINGS)  # a split whose link task never ran (crash)
    assert run_batch(conn).sent == 0  # leased: not claimable yet
    conn.execute(
        "UPDATE mc.batch_event SET claimed_until = now() - interval '1 second' WHERE id = %s", (event_id,)
    )
    assert run_batch(conn).sent == 1
    assert event(conn, event_id)["status"] == 2


def test_status_copy_skips_nothing_committed_late(conn: psycopg.Connection, db_dsn: str) -> None:
    """A delivery log whose transaction commits after a status run has moved on is still copied."""
    a, b = push(conn, "batch", ORDER, ORDER)
    conn.execute("UPDATE mc.batch_event SET status = 1, next_try = now() + interval '5 minutes'")
    with psycopg.connect(db_dsn) as late:
        late.execute(
            "INSERT INTO mc.delivery_log (event_id, queue, status, channel) VALUES (%s, 'batch', 2, 0)", (a,)
        )
        conn.execute(
            "INSERT INTO mc.delivery_log (event_id, queue, status, channel) VALUES (%s, 'batch', 3, 0)", (b,)
        )
        assert execution.update_events_status(conn).copied == 1
        late.commit()
    assert execution.update_events_status(conn).copied == 1
    assert statuses(conn) == {a: 2, b: 3}


def test_backoff_doubles_and_is_capped() -> None:
    assert [execution.backoff(n, 60) for n in (1, 2, 3)] == [60, 120, 240]
    assert execution.backoff(30, 60) == 3600


def test_a_second_final_log_for_an_event_is_dropped_not_an_error(conn: psycopg.Connection) -> None:
    """Two workers that both delivered an event (a lease ran out mid-send) write one final log."""
    a, b = push(conn, "batch", ORDER, ORDER)

    def row(event_id: int, status: int, error: str | None) -> tuple[Any, ...]:
        return (event_id, "batch", status, 0, "ann@example.com", None, None, None, None, error, 1)

    with conn.transaction():
        results.insert_logs(conn, [row(a, 2, None)])  # the fast path: COPY
    with conn.transaction():
        results.insert_logs(conn, [row(a, 4, "late duplicate"), row(b, 2, None)])  # the fallback
    logs = conn.execute("SELECT event_id, status, error FROM mc.delivery_log ORDER BY event_id").fetchall()
    assert logs == [(a, 2, None), (b, 2, None)]
