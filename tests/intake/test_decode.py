from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from messagecenter.core.settings import IntakeSettings, load_settings
from messagecenter.intake import decode
from messagecenter.intake.decode import (
    IntakeError,
    ctx_problem,
    decode_push,
    event_from_dict,
    request_schema,
    schema_components,
)

LIMITS = IntakeSettings()


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_single_event_is_decoded_with_defaults() -> None:
    (event,), is_batch = decode_push(body({"type": "OTP"}), LIMITS)
    assert not is_batch
    assert event.type == "OTP"
    assert event.channel == "email"
    assert event.channel_code == 0
    assert event.ctx_json == "{}"


def test_batch_is_recognised_by_its_events_key() -> None:
    events, is_batch = decode_push(
        b' \n{ "events" : [{"type": "A", "channel": "ios"}, {"type": "B"}]}', LIMITS
    )
    assert is_batch
    assert [(e.type, e.channel_code) for e in events] == [("A", 41), ("B", 0)]


def test_single_event_with_events_inside_ctx_is_still_single() -> None:
    (event,), is_batch = decode_push(body({"type": "A", "ctx": {"events": [1, 2]}}), LIMITS)
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
        decode_push(body(payload), LIMITS)
    (error,) = caught.value.errors
    assert error["loc"] == loc
    assert error["type"] == error_type


def test_limits_come_from_the_settings() -> None:
    limits = load_settings({"MC_MAX_BATCH": "2", "MC_MAX_CTX_BYTES": "300"}).intake
    with pytest.raises(IntakeError, match="at most 2 events per request, got 3"):
        decode_push(body({"events": [{"type": "A"}] * 3}), limits)
    with pytest.raises(IntakeError, match="ctx is larger than 300 bytes"):
        decode_push(body({"type": "A", "ctx": {"k": "v" * 300}}), limits)
    assert decode_push(body({"events": [{"type": "A"}] * 3}), limits, max_events=3)


def test_nul_in_ctx_is_refused() -> None:
    with pytest.raises(IntakeError, match="NUL"):
        decode_push(body({"type": "A", "ctx": {"k": "a\u0000b"}}), LIMITS)


def test_malformed_json_is_reported_as_such() -> None:
    with pytest.raises(IntakeError) as caught:
        decode_push(b'{"type": "A",', LIMITS)
    assert caught.value.errors[0]["type"] == "json_invalid"


def test_request_schema_offers_both_shapes() -> None:
    single, batch = request_schema(LIMITS)["oneOf"]
    assert single["required"] == ["type"]
    assert set(single["properties"]["channel"]["enum"]) == {"email", "sms", "ios", "android"}
    assert batch["properties"]["events"]["items"] is single


# Hostile input: whatever intake could not store, or could not read back, is refused naming the field.

BIG_INT = "1" + "0" * 4300  # 4,301 digits: past Python's int-from-text limit as well


@pytest.mark.parametrize(
    ("ctx_text", "fragment"),
    [
        ('{"a": 1e5000}', "finite doubles"),
        ('{"a": -1e309}', "finite doubles"),
        ('{"a": 1e131071}', "finite doubles"),  # 9 bytes, 131,072 digits in PostgreSQL's numeric
        (f'{{"a": {BIG_INT}}}', "signed 64-bit"),
        ('{"a": 9223372036854775808}', "signed 64-bit"),
        ('{"a": -9223372036854775809}', "signed 64-bit"),
        ('{"a": [1, {"b": 18446744073709551616}]}', "signed 64-bit"),
        ('{"a": 1e-400}', "340 digits after the decimal point"),
        ('{"a": 0e-99999}', "340 digits after the decimal point"),
        ('{"a": 0.' + "0" * 400 + "1}", "340 digits after the decimal point"),
        ('{"a": "x\\u0000"}', "NUL"),
        ('{"a\\u0000": 1}', "NUL"),
        ('{"a": [{"b": ["\\u0000"]}]}', "NUL"),
        ('{"a": ' + "[" * 32 + "]" * 32 + "}", "nested deeper than 32 levels"),
        ('{"a": ' * 1100 + "1" + "}" * 1100, "nested deeper than 32 levels"),  # past msgspec's recursion
    ],
)
def test_ctx_intake_could_not_store_or_read_back_is_refused(ctx_text: str, fragment: str) -> None:
    raw = '{"events": [{"type": "A"}, {"type": "B", "ctx": ' + ctx_text + "}]}"
    with pytest.raises(IntakeError, match=fragment) as caught:
        decode_push(raw.encode(), LIMITS)
    (error,) = caught.value.errors
    assert error["loc"] == ["body", "events", 1, "ctx"]


@pytest.mark.parametrize(
    "ctx_text",
    [
        '{"a": 9223372036854775807, "b": -9223372036854775808, "c": -0}',
        '{"a": 1.7976931348623157e308, "b": -1e308, "c": 5e-324, "d": 2.5E+3, "e": 1e-05}',
        '{"a": 0e99999999, "b": 0.1234567890123456789012345, "c": 12345678901234567.5}',
        '{"a": "1e5000 and 99999999999999999999 in a string", "b": "\\\\u0000 is not a NUL"}',
        '{"a": "' + "[" * 100 + '", "b": "{{{{"}',  # brackets in strings are not nesting
        '{"a": ' + "[" * 31 + "]" * 31 + "}",  # 32 levels, ctx included
        '{"emoji": "\\ud83d\\ude00", "hex": "3e1234567890123456789abcdef"}',
    ],
)
def test_ctx_at_the_limits_is_accepted(ctx_text: str) -> None:
    (event,), _ = decode_push(b'{"type": "A", "ctx": ' + ctx_text.encode() + b"}", LIMITS)
    assert event.ctx_json == ctx_text


def test_ctx_limits_agree_with_the_cheap_look() -> None:
    """The byte-level look only skips the exact check; it never decides otherwise than the check."""
    samples = [
        "0", "-0", "1e2", "1e99", "1e-99", "1e100", "1e-100", "1e308", "1e309", "5e-324", "1e-340",
        "1e-341", "123456789012345678", "1234567890123456789", "9223372036854775807",
        "9223372036854775808", "0.000000000000000001e-99", "1.5E+300", "12.5e-320",
    ]  # fmt: skip
    for number in samples:
        raw = f'{{"n": [{number}]}}'.encode()
        exact = ctx_problem(raw, LIMITS.max_ctx_depth)
        try:
            decode_push(b'{"type": "A", "ctx": ' + raw + b"}", LIMITS)
            looked = None
        except IntakeError as exc:
            looked = exc.errors[0]["msg"]
        assert looked == exact, number


def test_ordinary_ctx_needs_no_exact_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path: events like the benchmark's are cleared by the byte-level look alone."""

    def parse(*_: object) -> None:
        raise AssertionError("the exact ctx check ran")

    monkeypatch.setattr(decode, "ctx_problem", parse)
    events = [
        {
            "type": "ORDER_CONFIRMATION",
            "email": f"customer{n}@example.com",
            "scheduled": "2031-05-06T07:08:09+02:00",
            "ctx": {
                "firstName": "Zoé",
                "orderId": f"A-{n}",
                "total": 42.5,
                "items": [{"sku": "X1", "qty": 2}],
            },
        }
        for n in range(1000)
    ]
    decoded, _ = decode_push(body({"events": events}), LIMITS)
    assert len(decoded) == 1000


def test_depth_limit_comes_from_the_caller() -> None:
    nested = body({"type": "A", "ctx": {"a": {"b": {"c": 1}}}})
    assert decode_push(nested, replace(LIMITS, max_ctx_depth=3))
    with pytest.raises(IntakeError, match="nested deeper than 2 levels"):
        decode_push(nested, replace(LIMITS, max_ctx_depth=2))


@pytest.mark.parametrize("field", ["email", "push_token", "external_id", "language", "country", "origin"])
def test_nul_in_a_text_field_is_refused(field: str) -> None:
    value = "ann\u0000@example.com" if field == "email" else "a\u0000b"
    with pytest.raises(IntakeError) as caught:
        decode_push(body({"events": [{"type": "A"}, {"type": "B", field: value}]}), LIMITS)
    (error,) = caught.value.errors
    assert error["loc"] == ["body", "events", 1, field]


@pytest.mark.parametrize(
    ("field", "value"), [("type", "OTP\n"), ("email", "ann@example.com\n"), ("mobile_phone", "+3361234567\n")]
)
def test_patterns_do_not_let_a_final_newline_through(field: str, value: str) -> None:
    payload = {"type": "OTP", field: value}
    with pytest.raises(IntakeError) as caught:
        decode_push(body(payload), LIMITS)
    assert caught.value.errors[0]["loc"] == ["body", field]


@pytest.mark.parametrize(
    "scheduled",
    [
        "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
        "1899-12-31T23:59:59Z",
        "1900-01-01T00:30:00+01:00",
        "9999-12-31T00:00:00Z",
        "9999-12-30T23:00:00-05:00",  # 9999-12-31 in UTC
    ],
)
def test_scheduled_out_of_range_in_utc_is_refused(scheduled: str) -> None:
    with pytest.raises(IntakeError, match="from 1900-01-01 to 9999-12-30 in UTC") as caught:
        decode_push(body({"events": [{"type": "A"}, {"type": "B", "scheduled": scheduled}]}), LIMITS)
    assert caught.value.errors[0]["loc"] == ["body", "events", 1, "scheduled"]


def test_scheduled_at_the_limits_is_accepted_in_utc() -> None:
    low = event_from_dict({"type": "A", "scheduled": "1900-01-01T00:00:00Z"})
    high = event_from_dict({"type": "A", "scheduled": "9999-12-30T23:59:59.999999+00:00"})
    shifted = event_from_dict({"type": "A", "scheduled": "1900-01-01T00:30:00-01:00"})
    assert low.scheduled == datetime(1900, 1, 1, tzinfo=UTC)
    assert high.scheduled == datetime(9999, 12, 30, 23, 59, 59, 999_999, tzinfo=UTC)
    assert shifted.scheduled == datetime(1900, 1, 1, 1, 30, tzinfo=UTC)
    assert shifted.scheduled.tzinfo is UTC


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (b'{"events": [{"type": "A"}, {"type": "B", "ctx": {"k": "\xff"}}]}', ["body", "events", 1, "ctx"]),
        (b'{"events": [{"type": "A"}, {"type": "B", "ctx": {"\xc3": 1}}]}', ["body", "events", 1, "ctx"]),
        (
            b'{"events": [{"type": "A"}, {"type": "B", "origin": "\xed\xa0\x80"}]}',
            ["body", "events", 1, "origin"],
        ),
        (b'{"type": "A", "language": "fr\xff"}', ["body", "language"]),
        (b'{"type": "A", "ctx": {}}\xff', ["body"]),
    ],
)
def test_invalid_utf8_anywhere_is_refused_naming_the_field(raw: bytes, loc: list) -> None:
    with pytest.raises(IntakeError, match="invalid UTF-8") as caught:
        decode_push(raw, LIMITS)
    (error,) = caught.value.errors
    assert error["loc"] == loc


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (
            rb'{"events": [{"type": "A"}, {"type": "B", "ctx": {"k": "\ud800"}}]}',
            ["body", "events", 1, "ctx"],
        ),
        (rb'{"type": "A", "origin": "\udc00x"}', ["body", "origin"]),
        (b'{"type": "A", "ctx": {"n": 01}}', ["body", "ctx"]),
        (b'{"type": "A", "ctx": {"n": NaN}}', ["body", "ctx"]),
    ],
)
def test_malformed_json_names_the_field_where_it_can(raw: bytes, loc: list) -> None:
    with pytest.raises(IntakeError) as caught:
        decode_push(raw, LIMITS)
    (error,) = caught.value.errors
    assert error["type"] == "json_invalid"
    assert error["loc"] == loc


def test_request_schema_says_what_intake_refuses() -> None:
    single, batch = request_schema(replace(LIMITS, max_batch=7, max_ctx_bytes=300))["oneOf"]
    assert batch["properties"]["events"]["maxItems"] == 7
    ctx = single["properties"]["ctx"]
    assert "at most 300 bytes" in ctx["description"]
    assert ctx["additionalProperties"] == {"$ref": "#/components/schemas/CtxValue"}
    branches = schema_components()["CtxValue"]["anyOf"]
    integer = next(b for b in branches if b.get("type") == "integer")
    assert (integer["minimum"], integer["maximum"]) == (-(2**63), 2**63 - 1)
    assert single["properties"]["origin"]["anyOf"][0]["pattern"] == "^[^\\u0000]*$"
    assert single["properties"]["type"]["pattern"].endswith("$")  # JSON Schema's, not Python's \Z
    assert "9999-12-30" in single["properties"]["scheduled"]["anyOf"][0]["description"]
