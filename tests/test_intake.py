from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from messagecenter.intake.decode import IntakeError, decode_push, event_from_dict, request_schema


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_single_event_is_decoded_with_defaults() -> None:
    (event,), is_batch = decode_push(body({"type": "OTP"}))
    assert not is_batch
    assert event.type == "OTP"
    assert event.channel == "email"
    assert event.channel_code == 0
    assert event.ctx_json == "{}"


def test_batch_is_recognised_by_its_events_key() -> None:
    events, is_batch = decode_push(b' \n{ "events" : [{"type": "A", "channel": "ios"}, {"type": "B"}]}')
    assert is_batch
    assert [(e.type, e.channel_code) for e in events] == [("A", 41), ("B", 0)]


def test_single_event_with_events_inside_ctx_is_still_single() -> None:
    (event,), is_batch = decode_push(body({"type": "A", "ctx": {"events": [1, 2]}}))
    assert not is_batch
    assert json.loads(event.ctx_json) == {"events": [1, 2]}


def test_ctx_is_kept_as_the_json_text_sent() -> None:
    event = event_from_dict({"type": "A", "ctx": {"name": "Zoé", "n": [1, {"x": None}]}})
    assert json.loads(event.ctx_json) == {"name": "Zoé", "n": [1, {"x": None}]}


def test_naive_scheduled_is_utc_and_aware_is_kept() -> None:
    naive = event_from_dict({"type": "A", "scheduled": "2030-01-02T03:04:05"})
    aware = event_from_dict({"type": "A", "scheduled": "2030-01-02T03:04:05+02:00"})
    assert naive.scheduled == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert aware.scheduled == datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "loc", "error_type"),
    [
        (
            {"events": [{"type": "A"}, {"type": "B", "channel": "fax"}]},
            ["body", "events", 1, "channel"],
            "value_error",
        ),
        ({"events": [{"type": "A"}, {"email": "x@y.z"}]}, ["body", "events", 1, "type"], "missing"),
        ({"events": [{"type": "A", "bogus": 1}]}, ["body", "events", 0, "bogus"], "extra_forbidden"),
        ({"events": [{"type": "A"}], "extra": 1}, ["body", "extra"], "extra_forbidden"),
        ({"events": [{"type": "A"}, {"type": "B", "ctx": 3}]}, ["body", "events", 1, "ctx"], "value_error"),
        ({"events": []}, ["body", "events"], "too_short"),
        ({"events": "A"}, ["body", "events"], "value_error"),
        ([{"type": "A"}], ["body"], "value_error"),
    ],
)
def test_errors_name_the_item_and_field(payload: object, loc: list, error_type: str) -> None:
    with pytest.raises(IntakeError) as caught:
        decode_push(body(payload))
    (error,) = caught.value.errors
    assert error["loc"] == loc
    assert error["type"] == error_type


def test_limits_come_from_the_caller() -> None:
    with pytest.raises(IntakeError, match="at most 2 events per request, got 3"):
        decode_push(body({"events": [{"type": "A"}] * 3}), max_batch=2)
    with pytest.raises(IntakeError, match="ctx is larger than 300 bytes"):
        decode_push(body({"type": "A", "ctx": {"k": "v" * 300}}), max_ctx_bytes=300)


def test_nul_in_ctx_is_refused() -> None:
    with pytest.raises(IntakeError, match="NUL"):
        decode_push(body({"type": "A", "ctx": {"k": "a\u0000b"}}))


def test_malformed_json_is_reported_as_such() -> None:
    with pytest.raises(IntakeError) as caught:
        decode_push(b'{"type": "A",')
    assert caught.value.errors[0]["type"] == "json_invalid"


def test_request_schema_offers_both_shapes() -> None:
    single, batch = request_schema()["oneOf"]
    assert single["required"] == ["type"]
    assert set(single["properties"]["channel"]["enum"]) == {"email", "sms", "ios", "android"}
    assert batch["properties"]["events"]["items"] is single
