from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from messagecenter.core.ids import split_event_id

ORDER = {"type": "ORDER_CONFIRMATION", "email": "ann@example.com", "ctx": {"orderId": "A-1"}}


def count(conn: psycopg.Connection, queue: str = "rt") -> int:
    return conn.execute(f"SELECT count(*) FROM mc.{queue}_event").fetchone()[0]


def test_push_one_event_then_read_it_back(client: TestClient) -> None:
    response = client.post("/api/v1/events/rt", json=ORDER)
    assert response.status_code == 201, response.text
    event_id = response.json()["id"]
    assert split_event_id(event_id)[0] == 5
    got = client.get(f"/api/v1/events/rt/{event_id}")
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == 0
    assert body["status_name"] == "Pending"
    assert body["type"] == "ORDER_CONFIRMATION"
    assert body["channel"] == "email"
    assert body["ctx"] == {"orderId": "A-1"}


def test_push_batch_returns_ids_in_order(client: TestClient, conn: psycopg.Connection) -> None:
    events = [
        {"type": "OTP", "channel": "sms", "mobile_phone": "+3361234567", "ctx": {"n": n}} for n in range(50)
    ]
    response = client.post("/api/v1/events/batch", json={"events": events})
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    assert len(ids) == 50
    assert client.get(f"/api/v1/events/batch/{ids[7]}").json()["ctx"] == {"n": 7}
    assert count(conn, "batch") == 50
    assert count(conn, "rt") == 0


def test_idempotency_key_makes_a_retry_return_the_same_id(
    client: TestClient, conn: psycopg.Connection
) -> None:
    first = client.post("/api/v1/events/rt", json=ORDER, headers={"Idempotency-Key": "k-1"})
    retry = client.post("/api/v1/events/rt", json=ORDER, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == retry.status_code == 201
    assert retry.json()["id"] == first.json()["id"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count(conn) == 1


def test_external_id_makes_a_retried_batch_store_nothing_new(
    client: TestClient, conn: psycopg.Connection
) -> None:
    batch = {"events": [{**ORDER, "external_id": f"order-{n}"} for n in range(3)]}
    first = client.post("/api/v1/events/rt", json=batch).json()["ids"]
    again = client.post("/api/v1/events/rt", json=batch).json()["ids"]
    assert first == again
    assert count(conn) == 3


def test_get_unknown_event_is_404(client: TestClient) -> None:
    response = client.get("/api/v1/events/rt/123")
    assert response.status_code == 404
    assert response.json()["detail"] == "no event 123 in queue rt"


def test_unknown_queue_is_422(client: TestClient) -> None:
    response = client.post("/api/v1/events/urgent", json=ORDER)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "queue"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdC10b2tlbi0xOg=="}],
    ids=["missing", "wrong", "not-bearer"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/events/rt"), ("GET", "/api/v1/events/rt/1"), ("GET", "/api/v1/health")],
)
def test_calls_without_a_valid_token_are_401_and_store_nothing(
    client: TestClient, conn: psycopg.Connection, headers: dict[str, str], method: str, path: str
) -> None:
    client.headers.pop("Authorization")
    response = client.request(method, path, json=ORDER if method == "POST" else None, headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "missing or invalid bearer token"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert count(conn) == 0


def test_second_configured_token_is_accepted(client: TestClient) -> None:
    response = client.get("/api/v1/health", headers={"Authorization": "Bearer test-token-2"})
    assert response.status_code == 200


def _detail(response) -> list[dict]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "loc", "fragment"),
    [
        ({"email": "a@b.c"}, ["body", "type"], "missing required field `type`"),
        ({"type": "OTP", "channel": "fax"}, ["body", "channel"], "Invalid enum value 'fax'"),
        ({"type": "OTP", "scheduled": "next tuesday"}, ["body", "scheduled"], "datetime"),
        ({"type": "OTP", "ctx": ["not", "an", "object"]}, ["body", "ctx"], "ctx must be a JSON object"),
        ({"type": "OTP", "email": "not-an-address"}, ["body", "email"], "matching regex"),
        ({"type": "OTP", "colour": "blue"}, ["body", "colour"], "unknown field `colour`"),
        ({"type": ""}, ["body", "type"], "length >= 1"),
        ({"type": 42}, ["body", "type"], "Expected `str`, got `int`"),
    ],
    ids=[
        "missing-type",
        "wrong-channel",
        "bad-scheduled",
        "ctx-not-object",
        "bad-email",
        "unknown-field",
        "empty-type",
        "type-not-a-string",
    ],
)
def test_bad_single_event_is_422_naming_the_field(
    client: TestClient, conn: psycopg.Connection, body: dict, loc: list, fragment: str
) -> None:
    (error,) = _detail(client.post("/api/v1/events/rt", json=body))
    assert error["loc"] == loc
    assert fragment in error["msg"]
    assert count(conn) == 0


def test_bad_item_in_a_batch_is_named_by_index_and_nothing_is_stored(
    client: TestClient, conn: psycopg.Connection
) -> None:
    events = [ORDER] * 5 + [{**ORDER, "channel": "pigeon"}] + [ORDER] * 3
    (error,) = _detail(client.post("/api/v1/events/rt", json={"events": events}))
    assert error["loc"] == ["body", "events", 5, "channel"]
    assert count(conn) == 0


def test_batch_over_the_limit_is_refused(client: TestClient, conn: psycopg.Connection) -> None:
    (error,) = _detail(client.post("/api/v1/events/batch", json={"events": [ORDER] * 101}))
    assert error["loc"] == ["body", "events"]
    assert "at most 100 events per request, got 101" in error["msg"]
    assert count(conn, "batch") == 0


def test_empty_batch_is_refused(client: TestClient) -> None:
    (error,) = _detail(client.post("/api/v1/events/batch", json={"events": []}))
    assert error["loc"] == ["body", "events"]


def test_oversized_ctx_is_refused(client: TestClient, conn: psycopg.Connection) -> None:
    big = {**ORDER, "ctx": {"blob": "x" * (64 * 1024)}}
    (error,) = _detail(client.post("/api/v1/events/rt", json={"events": [ORDER, big]}))
    assert error["loc"] == ["body", "events", 1, "ctx"]
    assert error["msg"] == "ctx is larger than 65536 bytes"
    assert count(conn) == 0


def test_malformed_json_is_422(client: TestClient, conn: psycopg.Connection) -> None:
    response = client.post(
        "/api/v1/events/rt", content=b'{"type": "OTP",', headers={"Content-Type": "application/json"}
    )
    (error,) = _detail(response)
    assert error["type"] == "json_invalid"
    assert error["msg"].startswith("malformed JSON")
    assert count(conn) == 0


def test_naive_scheduled_time_is_utc(client: TestClient) -> None:
    event_id = client.post("/api/v1/events/rt", json={**ORDER, "scheduled": "2031-05-06T07:08:09"}).json()[
        "id"
    ]
    assert client.get(f"/api/v1/events/rt/{event_id}").json()["scheduled"] == "2031-05-06T07:08:09Z"


def test_openapi_documents_the_push_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    push = spec["paths"]["/api/v1/events/{queue}"]["post"]
    schemas = push["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert {s["title"] for s in schemas} == {"EventIn", "EventBatchIn"}
    assert push["operationId"] == "events-push_events"
