from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from messagecenter.core.ids import split_event_id
from messagecenter.db import queries
from messagecenter.intake import store
from messagecenter.intake.decode import EventIn, event_from_dict


def event(**fields: object) -> EventIn:
    return event_from_dict({"type": "ORDER_CONFIRMATION", "email": "ann@example.com", **fields})


def test_insert_one_event_stores_every_intake_column(conn: psycopg.Connection) -> None:
    scheduled = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    pushed = event(
        channel="sms",
        mobile_phone="+33 6 12 34 56 78",
        external_id="ext-1",
        language="fr",
        country="FR",
        origin="shop",
        scheduled=scheduled.isoformat(),
        ctx={"orderId": 42, "firstName": "Zoé"},
    )
    (event_id,) = store.insert_events(conn, "rt", [pushed], instance_id=3).ids
    row = store.get_event(conn, "rt", event_id)
    assert row is not None
    assert split_event_id(event_id)[0] == 3
    assert row["type"] == "ORDER_CONFIRMATION"
    assert row["channel"] == "sms"
    assert row["status"] == 0
    assert row["status_name"] == "Pending"
    assert row["mobile_phone"] == "+33 6 12 34 56 78"
    assert (row["external_id"], row["language"], row["country"], row["origin"]) == (
        "ext-1",
        "fr",
        "FR",
        "shop",
    )
    assert row["scheduled"] == scheduled
    assert row["ctx"] == {"orderId": 42, "firstName": "Zoé"}
    assert row["queue"] == "rt"


def test_insert_batch_returns_ids_in_request_order(conn: psycopg.Connection) -> None:
    events = [event(ctx={"n": n}) for n in range(500)]
    result = store.insert_events(conn, "batch", events, instance_id=1)
    assert len(result.ids) == 500
    assert result.ids == sorted(result.ids)
    assert result.replayed == 0
    for n in (0, 250, 499):
        assert store.get_event(conn, "batch", result.ids[n])["ctx"] == {"n": n}
    assert store.status_counts(conn, "batch") == {0: 500}
    assert store.get_event(conn, "rt", result.ids[0]) is None


def test_idempotency_key_returns_the_same_ids_and_stores_nothing_new(conn: psycopg.Connection) -> None:
    events = [event(ctx={"n": n}) for n in range(3)]
    first = store.insert_events(conn, "rt", events, instance_id=1, idempotency_key="req-1")
    again = store.insert_events(conn, "rt", events, instance_id=1, idempotency_key="req-1")
    assert again.ids == first.ids
    assert again.replayed == 3
    assert store.status_counts(conn, "rt") == {0: 3}


def test_external_id_deduplicates_without_a_key(conn: psycopg.Connection) -> None:
    (first,) = store.insert_events(conn, "rt", [event(external_id="order-9")], instance_id=1).ids
    result = store.insert_events(
        conn, "rt", [event(external_id="order-9"), event(external_id="order-10"), event()], instance_id=1
    )
    assert result.ids[0] == first
    assert result.replayed == 1
    assert len(set(result.ids)) == 3
    assert store.status_counts(conn, "rt") == {0: 3}


def test_duplicate_keys_inside_one_batch_share_one_event(conn: psycopg.Connection) -> None:
    result = store.insert_events(
        conn, "rt", [event(external_id="a"), event(external_id="a"), event(external_id="b")], instance_id=1
    )
    assert result.ids[0] == result.ids[1] != result.ids[2]
    assert store.status_counts(conn, "rt") == {0: 2}


def test_keys_are_per_queue(conn: psycopg.Connection) -> None:
    (rt_id,) = store.insert_events(conn, "rt", [event(external_id="k")], instance_id=1).ids
    (batch_id,) = store.insert_events(conn, "batch", [event(external_id="k")], instance_id=1).ids
    assert rt_id != batch_id


def test_failed_batch_stores_nothing(conn: psycopg.Connection) -> None:
    conn.execute("ALTER TABLE mc.rt_event ADD CONSTRAINT no_bob CHECK (email <> 'bob@example.com')")
    with pytest.raises(psycopg.errors.CheckViolation):
        store.insert_events(conn, "rt", [event(), event(email="bob@example.com")], instance_id=1)
    assert store.status_counts(conn, "rt") == {}


def test_pending_counts_cover_both_queues(conn: psycopg.Connection) -> None:
    store.insert_events(conn, "rt", [event(), event()], instance_id=1)
    store.insert_events(conn, "batch", [event()], instance_id=1)
    conn.execute("UPDATE mc.rt_event SET status = 2 WHERE id = (SELECT min(id) FROM mc.rt_event)")
    assert store.pending_counts(conn) == {"rt": 1, "batch": 1}


def test_unknown_queue_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown queue 'urgent'"):
        queries.event_table("urgent")
