"""The OpenAPI document says exactly which ``scheduled`` values the push accepts: with or without an
offset (naive times are UTC), not "date-time", which requires one."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

ACCEPTED = [
    "2030-01-02T03:04:05",  # naive: UTC
    "2030-01-02 03:04:05.123456",
    "2030-01-02T03:04:05Z",
    "2030-01-02t05:04:05+02:00",
    "2030-01-02T05:04:05+0200",
]
REFUSED = ["2030-01-02", "2030-01-02T03:04", "03:04:05", "2030-01-02T03:04:05 UTC", "10000-01-01T00:00:00"]


def scheduled_schema(client: TestClient) -> dict[str, Any]:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/v1/events/{queue}"]["post"]["requestBody"]["content"]["application/json"]
    single, _ = body["schema"]["oneOf"]
    (option,) = [o for o in single["properties"]["scheduled"]["anyOf"] if o.get("type") == "string"]
    return option


def matches(schema: dict[str, Any], value: str) -> bool:
    # JSON Schema's `$` ends the input, as Python's `\Z` does.
    return re.fullmatch(schema["pattern"].replace("$", "\\Z"), value) is not None


def test_the_document_does_not_require_an_offset(client: TestClient) -> None:
    schema = scheduled_schema(client)
    assert schema.get("format") != "date-time"  # RFC 3339's date-time has an offset, always
    assert "naive times are UTC" in schema["description"]
    assert any(not re.search(r"(Z|[+-]\d\d:?\d\d)$", example) for example in schema["examples"])
    assert all(matches(schema, example) for example in schema["examples"])


def test_what_the_pattern_accepts_the_api_stores_and_the_rest_it_refuses(client: TestClient) -> None:
    schema = scheduled_schema(client)
    for value in ACCEPTED:
        assert matches(schema, value), value
        created = client.post("/api/v1/events/batch", json={"type": "A", "scheduled": value})
        assert created.status_code == 201, created.text
        event = client.get(f"/api/v1/events/batch/{created.json()['id']}").json()
        assert event["scheduled"].startswith("2030-01-02T03:04:05"), value  # naive as is, offsets converted
    for value in REFUSED:
        assert not matches(schema, value), value
        refused = client.post("/api/v1/events/batch", json={"type": "A", "scheduled": value})
        assert refused.status_code == 422, refused.text
