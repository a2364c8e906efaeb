from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from messagecenter.core.ids import split_event_id
from messagecenter.db import queries, schema
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


# Idempotency: one namespace per source, and a key never answers for other content.


def keys_stored(conn: psycopg.Connection, queue: str = "rt") -> set[str]:
    rows = conn.execute(f"SELECT idempotency_key FROM mc.{queue}_event WHERE idempotency_key IS NOT NULL")
    return {key for (key,) in rows}


def count(conn: psycopg.Connection, queue: str = "rt") -> int:
    return conn.execute(f"SELECT count(*) FROM mc.{queue}_event").fetchone()[0]


def test_each_source_has_its_own_namespace(conn: psycopg.Connection) -> None:
    batch = store.insert_events(conn, "rt", [event(), event()], instance_id=1, idempotency_key="K")
    single = store.insert_events(conn, "rt", [event()], instance_id=1, idempotency_key="K#0")
    by_external_id = store.insert_events(conn, "rt", [event(external_id="K#1")], instance_id=1)
    batch_of_one = store.insert_events(conn, "rt", [event()], instance_id=1, idempotency_key="L", batch=True)
    assert single.replayed == by_external_id.replayed == batch_of_one.replayed == 0
    assert len({*batch.ids, *single.ids, *by_external_id.ids, *batch_of_one.ids}) == 5
    assert keys_stored(conn) == {"b:K#0", "b:K#1", "h:K#0", "x:K#1", "b:L#0"}


def test_a_header_key_takes_precedence_over_external_ids(conn: psycopg.Connection) -> None:
    store.insert_events(conn, "rt", [event(external_id="e1")], instance_id=1, idempotency_key="e1")
    (other,) = store.insert_events(conn, "rt", [event(external_id="e1")], instance_id=1).ids
    assert keys_stored(conn) == {"h:e1", "x:e1"}
    assert count(conn) == 2
    assert other in store.insert_events(conn, "rt", [event(external_id="e1")], instance_id=1).ids


def test_replay_with_other_content_is_a_conflict_and_stores_nothing(conn: psycopg.Connection) -> None:
    (first,) = store.insert_events(conn, "rt", [event(ctx={"n": 1})], instance_id=1, idempotency_key="K").ids
    with pytest.raises(store.IdempotencyConflict, match="Idempotency-Key 'K' was already used") as caught:
        store.insert_events(conn, "rt", [event(ctx={"n": 2})], instance_id=1, idempotency_key="K")
    assert (caught.value.key, caught.value.source) == ("K", "Idempotency-Key")
    assert count(conn) == 1
    again = store.insert_events(conn, "rt", [event(ctx={"n": 1})], instance_id=1, idempotency_key="K")
    assert (again.ids, again.replayed) == ([first], 1)


@pytest.mark.parametrize(
    "change",
    [
        {"email": "bob@example.com"},
        {"channel": "sms"},
        {"scheduled": "2031-01-01T00:00:00Z"},
        {"language": "fr"},
    ],
)
def test_every_field_counts_as_content(conn: psycopg.Connection, change: dict) -> None:
    store.insert_events(conn, "rt", [event()], instance_id=1, idempotency_key="K")
    with pytest.raises(store.IdempotencyConflict):
        store.insert_events(conn, "rt", [event(**change)], instance_id=1, idempotency_key="K")


def test_same_content_written_differently_is_a_replay(conn: psycopg.Connection) -> None:
    """Content is the event as decoded: defaults filled in, ``scheduled`` as an instant."""
    first = event(scheduled="2031-01-01T02:00:00+02:00")
    same = event_from_dict(
        {
            "type": "ORDER_CONFIRMATION",
            "channel": "email",
            "email": "ann@example.com",
            "origin": None,
            "scheduled": "2031-01-01T00:00:00Z",
        }
    )
    (event_id,) = store.insert_events(conn, "rt", [first], instance_id=1, idempotency_key="K").ids
    assert store.insert_events(conn, "rt", [same], instance_id=1, idempotency_key="K").ids == [event_id]


def test_batch_replayed_with_other_events_is_a_conflict(conn: psycopg.Connection) -> None:
    events = [event(ctx={"n": n}) for n in range(3)]
    store.insert_events(conn, "batch", events, instance_id=1, idempotency_key="B")
    for other in (
        [*events[:2], event(ctx={"n": 99})],  # an item changed
        [*events, event(ctx={"n": 3})],  # one more
        events[:2],  # one fewer
    ):
        with pytest.raises(store.IdempotencyConflict, match="'B'"):
            store.insert_events(conn, "batch", other, instance_id=1, idempotency_key="B")
    assert count(conn, "batch") == 3
    assert store.insert_events(conn, "batch", events, instance_id=1, idempotency_key="B").replayed == 3


def test_a_key_answers_for_one_shape_of_request(conn: psycopg.Connection) -> None:
    store.insert_events(conn, "rt", [event()], instance_id=1, idempotency_key="S")
    with pytest.raises(store.IdempotencyConflict):  # the same event, now as a batch of one
        store.insert_events(conn, "rt", [event()], instance_id=1, idempotency_key="S", batch=True)
    store.insert_events(conn, "rt", [event(), event()], instance_id=1, idempotency_key="B")
    with pytest.raises(store.IdempotencyConflict):
        store.insert_events(conn, "rt", [event()], instance_id=1, idempotency_key="B")
    assert count(conn) == 3


def test_external_id_with_other_content_is_a_conflict_naming_the_event(conn: psycopg.Connection) -> None:
    store.insert_events(conn, "rt", [event(external_id="order-9")], instance_id=1)
    with pytest.raises(store.IdempotencyConflict, match=r"external_id 'order-9' \(event 1\)") as caught:
        store.insert_events(
            conn,
            "rt",
            [event(external_id="order-10"), event(external_id="order-9", ctx={"x": 1})],
            instance_id=1,
        )
    assert (caught.value.source, caught.value.index) == ("external_id", 1)
    assert count(conn) == 1  # order-10 was not stored either: all or nothing


def test_same_external_id_twice_in_a_request_with_other_content_is_a_conflict(
    conn: psycopg.Connection,
) -> None:
    with pytest.raises(store.IdempotencyConflict, match="order-1"):
        store.insert_events(
            conn,
            "rt",
            [event(external_id="order-1"), event(external_id="order-1", language="fr")],
            instance_id=1,
        )
    assert count(conn) == 0


def test_events_stored_before_hashes_existed_still_replay(conn: psycopg.Connection) -> None:
    (event_id,) = store.insert_events(conn, "rt", [event()], instance_id=1, idempotency_key="old").ids
    conn.execute("UPDATE mc.rt_event SET request_hash = NULL")
    replay = store.insert_events(conn, "rt", [event(language="fr")], instance_id=1, idempotency_key="old")
    assert (replay.ids, replay.replayed) == ([event_id], 1)


def test_only_keyed_events_carry_a_hash(conn: psycopg.Connection) -> None:
    store.insert_events(conn, "rt", [event(), event(external_id="e")], instance_id=1)
    rows = conn.execute("SELECT external_id, length(request_hash) FROM mc.rt_event ORDER BY id").fetchall()
    assert rows == [(None, None), ("e", 16)]


@pytest.mark.parametrize(("content", "replayed"), [({"n": 1}, True), ({"n": 2}, False)])
def test_a_concurrent_push_of_the_same_key_is_retried(
    conn: psycopg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch, content: dict, replayed: bool
) -> None:
    """Another request stores our key between our lookup and our write: the unique index refuses our
    write, and the retry finds the other's event (the same content: a replay; other content: 409)."""
    real_query, raced = store.query, []

    def query(name: str, *args: object, **kwargs: object) -> object:
        if name == "allocate_sequences" and not raced:
            raced.append(True)
            with psycopg.connect(db_dsn, autocommit=True) as other:
                store.insert_events(other, "rt", [event(ctx={"n": 1})], instance_id=1, idempotency_key="R")
        return real_query(name, *args, **kwargs)

    monkeypatch.setattr(store, "query", query)
    if replayed:
        result = store.insert_events(conn, "rt", [event(ctx=content)], instance_id=1, idempotency_key="R")
        assert result.replayed == 1
    else:
        with pytest.raises(store.IdempotencyConflict):
            store.insert_events(conn, "rt", [event(ctx=content)], instance_id=1, idempotency_key="R")
    assert raced
    assert count(conn) == 1


def test_upgrade_moves_existing_keys_to_their_namespace(empty_db_dsn: str, tmp_path: Path) -> None:
    """Migration 0006: keys stored by version 5 are found again by the same retries."""
    shipped = schema.available_migrations("execution")
    (tmp_path / "execution").mkdir()
    for migration in shipped[:5]:
        path = tmp_path / "execution" / f"{migration.version:04}_{migration.name}.sql"
        path.write_text(migration.sql)
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        schema.upgrade(conn, "execution", root=tmp_path)
        for n, (key, external_id) in enumerate(
            [("K", None), ("K#0", None), ("K#1", None), ("order-1", "order-1"), ("H", "order-2")], start=1
        ):
            conn.execute(
                "INSERT INTO mc.batch_event (id, event_type, idempotency_key, external_id)"
                " VALUES (%s, 'A', %s, %s)",
                (n, key, external_id),
            )
        schema.upgrade(conn, "execution")
        assert keys_stored(conn, "batch") == {"h:K", "b:K#0", "b:K#1", "x:order-1", "h:H"}
        replay = store.insert_events(
            conn, "batch", [event(external_id="order-1")], instance_id=1, idempotency_key=None
        )
        assert (replay.ids, replay.replayed) == ([4], 1)
        duplicate = conn.execute(
            "INSERT INTO mc.batch_event (id, event_type, idempotency_key) VALUES (9, 'A', 'h:K')"
            " ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
        )
        assert duplicate.rowcount == 0  # the unique index is back
