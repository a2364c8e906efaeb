"""Hostile input over HTTP: a 4xx naming the field, nothing stored; whatever is stored reads back."""

from __future__ import annotations

import json

import psycopg
import pytest
from fastapi.testclient import TestClient

from messagecenter.api import create_app
from messagecenter.core.settings import IntakeSettings, Settings
from tests.support.builders import API_TOKEN

ORDER = {"type": "ORDER_CONFIRMATION", "email": "ann@example.com", "ctx": {"orderId": "A-1"}}
JSON = {"Content-Type": "application/json"}


def stored(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT (SELECT count(*) FROM mc.rt_event) + (SELECT count(*) FROM mc.batch_event)"
    ).fetchone()[0]


def batch_with(second: bytes) -> bytes:
    """A batch whose item 1 is ``second`` (raw JSON text): the error must name item 1."""
    return b'{"events": [' + json.dumps(ORDER).encode() + b", " + second + b"]}"


HOSTILE = {
    "ctx-1e5000": (b'{"type": "A", "ctx": {"a": 1e5000}}', "ctx", "finite doubles"),
    "ctx-4301-digits": (b'{"type": "A", "ctx": {"a": 1' + b"0" * 4300 + b"}}", "ctx", "signed 64-bit"),
    "ctx-past-int64": (b'{"type": "A", "ctx": {"a": [9223372036854775808]}}', "ctx", "signed 64-bit"),
    "ctx-1e131071": (b'{"type": "A", "ctx": {"a": 1e131071}}', "ctx", "finite doubles"),
    "ctx-1e-400": (b'{"type": "A", "ctx": {"a": 1e-400}}', "ctx", "after the decimal point"),
    "ctx-nul-value": (b'{"type": "A", "ctx": {"a": "\\u0000"}}', "ctx", "NUL"),
    "ctx-nul-key": (b'{"type": "A", "ctx": {"\\u0000": 1}}', "ctx", "NUL"),
    "ctx-33-deep": (b'{"type": "A", "ctx": {"a": ' + b"[" * 32 + b"]" * 32 + b"}}", "ctx", "deeper than 32"),
    "ctx-2000-deep": (b'{"type": "A", "ctx": {"a": ' + b"[" * 2000 + b"]" * 2000 + b"}}", "ctx", "deeper"),
    "ctx-invalid-utf8": (b'{"type": "A", "ctx": {"a": "\xff"}}', "ctx", "invalid UTF-8"),
    "ctx-lone-surrogate": (b'{"type": "A", "ctx": {"a": "\\ud800"}}', "ctx", "surrogate"),
    "origin-nul": (b'{"type": "A", "origin": "x\\u0000"}', "origin", "NUL"),
    "external-id-nul": (b'{"type": "A", "external_id": "\\u0000"}', "external_id", "NUL"),
    "language-invalid-utf8": (b'{"type": "A", "language": "\xc3("}', "language", "invalid UTF-8"),
    "email-newline": (b'{"type": "A", "email": "ann@example.com\\n"}', "email", "regex"),
    "scheduled-before-year-1": (
        b'{"type": "A", "scheduled": "0001-01-01T00:00:00+01:00"}',
        "scheduled",
        "UTC",
    ),
    "scheduled-after-9999": (b'{"type": "A", "scheduled": "9999-12-31T23:00:00-05:00"}', "scheduled", "UTC"),
}


@pytest.mark.parametrize(("event", "field", "fragment"), HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("shape", ["single", "batch"])
def test_hostile_event_is_422_naming_the_field_and_nothing_is_stored(
    client: TestClient, conn: psycopg.Connection, event: bytes, field: str, fragment: str, shape: str
) -> None:
    body = event if shape == "single" else batch_with(event)
    response = client.post("/api/v1/events/batch", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == (["body", field] if shape == "single" else ["body", "events", 1, field])
    assert fragment in error["msg"]
    assert stored(conn) == 0


def test_invalid_utf8_outside_any_field_is_422(client: TestClient, conn: psycopg.Connection) -> None:
    response = client.post("/api/v1/events/rt", content=b'\xff{"type": "A"}', headers=JSON)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]
    assert stored(conn) == 0


def test_values_at_the_limits_are_stored_and_read_back(client: TestClient) -> None:
    ctx = (
        b'{"max": 9223372036854775807, "min": -9223372036854775808, "big": 1.7976931348623157e308,'
        b' "tiny": 5e-324, "nested": ' + b"[" * 31 + b"]" * 31 + b', "text": "\\\\u0000 \\ud83d\\ude00"}'
    )
    for scheduled in (b"1900-01-01T00:00:00Z", b"9999-12-30T23:59:59.999999Z", b"1900-01-01T00:30:00-01:00"):
        body = b'{"type": "A", "scheduled": "' + scheduled + b'", "ctx": ' + ctx + b"}"
        created = client.post("/api/v1/events/rt", content=body, headers=JSON)
        assert created.status_code == 201, created.text
        read = client.get(f"/api/v1/events/rt/{created.json()['id']}")
        assert read.status_code == 200, read.text
        got, sent = read.json()["ctx"], json.loads(ctx)
        # PostgreSQL stores numbers as decimals: 1.79...e308 comes back written out in full.
        assert float(got.pop("big")) == sent.pop("big")
        assert got == sent


def test_depth_limit_is_a_setting(db_dsn: str) -> None:
    app = create_app(Settings(api_tokens=(API_TOKEN,), intake=IntakeSettings(max_ctx_depth=2)), dsn=db_dsn)
    with TestClient(app, headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        assert client.post("/api/v1/events/rt", json={"type": "A", "ctx": {"a": {"b": 1}}}).status_code == 201
        refused = client.post("/api/v1/events/rt", json={"type": "A", "ctx": {"a": {"b": [1]}}})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["msg"] == "ctx is nested deeper than 2 levels"


def test_body_over_the_limit_is_413_and_stores_nothing(db_dsn: str, conn: psycopg.Connection) -> None:
    app = create_app(
        Settings(api_tokens=(API_TOKEN,), intake=IntakeSettings(max_body_bytes=1024)), dsn=db_dsn
    )
    with TestClient(app, headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        response = client.post("/api/v1/events/rt", json={**ORDER, "ctx": {"blob": "x" * 2000}})
    assert response.status_code == 413
    assert response.json() == {"detail": "request body over 1024 bytes"}
    assert stored(conn) == 0


# Idempotency over HTTP.


def test_replay_with_another_body_is_409_naming_the_key(client: TestClient, conn: psycopg.Connection) -> None:
    key = {"Idempotency-Key": "order-7"}
    first = client.post("/api/v1/events/rt", json=ORDER, headers=key)
    changed = client.post("/api/v1/events/rt", json={**ORDER, "ctx": {"orderId": "A-2"}}, headers=key)
    assert first.status_code == 201
    assert changed.status_code == 409
    assert changed.json() == {"detail": "Idempotency-Key 'order-7' was already used for a different request"}
    assert "Idempotent-Replayed" not in changed.headers
    assert stored(conn) == 1
    same = client.post("/api/v1/events/rt", json=ORDER, headers=key)
    assert (same.status_code, same.json(), same.headers["Idempotent-Replayed"]) == (201, first.json(), "true")


def test_nul_in_the_idempotency_key_is_422(client: TestClient, conn: psycopg.Connection) -> None:
    response = client.post("/api/v1/events/rt", json=ORDER, headers={"Idempotency-Key": "a\x00b"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
    assert stored(conn) == 0


def test_batch_replay_with_another_body_is_409(client: TestClient, conn: psycopg.Connection) -> None:
    key = {"Idempotency-Key": "B"}
    events = [{**ORDER, "ctx": {"n": n}} for n in range(3)]
    assert client.post("/api/v1/events/batch", json={"events": events}, headers=key).status_code == 201
    longer = client.post("/api/v1/events/batch", json={"events": [*events, ORDER]}, headers=key)
    assert longer.status_code == 409
    assert "'B'" in longer.json()["detail"]
    assert stored(conn) == 3


def test_external_id_reused_for_another_event_is_409(client: TestClient, conn: psycopg.Connection) -> None:
    client.post("/api/v1/events/rt", json={**ORDER, "external_id": "order-9"})
    other = client.post(
        "/api/v1/events/rt", json={"events": [ORDER, {**ORDER, "external_id": "order-9", "language": "fr"}]}
    )
    assert other.status_code == 409
    assert (
        other.json()["detail"] == "external_id 'order-9' (event 1) is already stored with different content"
    )
    assert stored(conn) == 1


def test_keys_of_different_sources_do_not_collide(client: TestClient, conn: psycopg.Connection) -> None:
    batch = client.post(
        "/api/v1/events/rt", json={"events": [ORDER, ORDER]}, headers={"Idempotency-Key": "K"}
    )
    single = client.post("/api/v1/events/rt", json=ORDER, headers={"Idempotency-Key": "K#0"})
    external = client.post("/api/v1/events/rt", json={**ORDER, "external_id": "K#0"})
    assert [r.status_code for r in (batch, single, external)] == [201, 201, 201]
    ids = [*batch.json()["ids"], single.json()["id"], external.json()["id"]]
    assert len(set(ids)) == 4
    assert not any("Idempotent-Replayed" in r.headers for r in (batch, single, external))
    assert stored(conn) == 4


# The OpenAPI document says all of it.

ERRORS = {
    ("/api/v1/events/{queue}", "post"): {"201", "401", "409", "413", "422", "503"},
    ("/api/v1/events/{queue}/{event_id}", "get"): {"200", "401", "404", "422", "503"},
    ("/api/v1/health", "get"): {"200", "401", "503"},
}


def test_openapi_declares_every_answer_with_its_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for (path, method), codes in ERRORS.items():
        responses = spec["paths"][path][method]["responses"]
        assert set(responses) == codes, path
        for code in codes - {"200", "201"}:
            ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
            body = schemas[ref.rsplit("/", 1)[1]]
            assert list(body["properties"]) == ["detail"], (path, code)
    push = spec["paths"]["/api/v1/events/{queue}"]["post"]
    assert "Idempotent-Replayed" in push["responses"]["201"]["headers"]
    # The body as configured: the batch limit of this app (100), ctx values as intake accepts them.
    single, batch = push["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert batch["properties"]["events"]["maxItems"] == 100
    assert single["properties"]["ctx"]["additionalProperties"] == {"$ref": "#/components/schemas/CtxValue"}
    assert "CtxValue" in schemas
