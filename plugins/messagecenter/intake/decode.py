"""Decode and validate pushed events: the contract of ``POST /api/v1/events/{queue}``.

The intake path is the hottest code of an execution instance, so events are decoded with msgspec
(already an Airflow dependency): one pass over the bytes, about five times faster than building
pydantic models, and ``ctx`` stays raw JSON text that goes to ``COPY`` as is instead of being parsed
into Python objects and serialised again. Errors are reported like FastAPI's: ``loc``, ``msg`` and
``type``, naming the item index and the field.

Intake refuses whatever it could not store, or could not read back, so that a stored event is always
readable (by ``GET``, by the delivery workers) within bounded memory:

* the body must be UTF-8 (anywhere, ``ctx`` included);
* text fields and ``ctx`` (its strings and keys) must not hold NUL characters (PostgreSQL refuses
  them); lone UTF-16 surrogate escapes are malformed JSON;
* ``scheduled`` must fall from 1900-01-01 to 9999-12-30 once converted to UTC;
* ``ctx`` must be an object of at most ``max_ctx_bytes`` bytes, nested at most ``max_ctx_depth``
  deep (``ctx`` itself is level 1): the limits are the settings' (:class:`IntakeSettings`);
* numbers in ``ctx``: an integer (no fraction, no exponent) must fit a signed 64-bit integer
  (-9223372036854775808 to 9223372036854775807; send larger identifiers as strings); any other
  number must be a finite double (magnitude at most about 1.8e308) with at most
  :data:`MAX_FRACTION_DIGITS` digits after the decimal point once written without exponent (as
  PostgreSQL stores it: ``1e-5`` is ``0.00001``). PostgreSQL writes numbers out in full, so a
  stored ``ctx`` reads back at most about 50 times larger than sent (``1e308``: 5 bytes, 309 digits).

The checks cost next to nothing for ordinary events: a byte-level look at the whole body proves most
of them at once (no ``\\u0000`` escape: no NUL; no run of 19 digits and no 3-digit exponent: every
number is in range; no more ``{`` and ``[`` in a ``ctx`` than the depth limit: not too deep). Only a
``ctx`` the look cannot clear is parsed and walked.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from messagecenter.core.settings import IntakeSettings, get_settings
from messagecenter.core.types import Channel, ChannelName

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Digits after the decimal point a ctx number may expand to: enough for every double (the smallest,
# 5e-324, needs 324), far below PostgreSQL's numeric limit (16,383).
MAX_FRACTION_DIGITS = 340
# ``scheduled`` once in UTC. The last day of year 9999 is left out: read back in a session whose time
# zone is ahead of UTC, it would land in year 10000, which Python's datetime cannot hold.
SCHEDULED_MIN = datetime(1900, 1, 1, tzinfo=UTC)
SCHEDULED_MAX = datetime(9999, 12, 30, 23, 59, 59, 999_999, tzinfo=UTC)
SCHEDULED_RANGE = "from 1900-01-01 to 9999-12-30 in UTC"
EMPTY_CTX = msgspec.Raw(b"{}")
_CHANNEL_CODES = {channel.label: int(channel) for channel in Channel}
# The text fields that may hold a NUL (the patterns of type, email and mobile_phone exclude it).
_NUL_FIELDS = ("push_token", "external_id", "language", "country", "origin")

# Patterns end in \Z: "$" would also match before a final newline ("OTP\n", "ann@example.com\n").
EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+\Z")]
# No "@", control character or whitespace (spelled out: Python's and JSON Schema's \s differ).
_EMAIL_PART = r"[^@\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+"
Email = Annotated[str, msgspec.Meta(max_length=254, pattern=rf"^{_EMAIL_PART}@{_EMAIL_PART}\Z")]
Phone = Annotated[str, msgspec.Meta(max_length=32, pattern=r"^\+?[0-9][0-9 ().-]{2,31}\Z")]
PushToken = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Language = Annotated[str, msgspec.Meta(min_length=1, max_length=35)]
Country = Annotated[str, msgspec.Meta(min_length=1, max_length=8)]


class EventIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One event pushed by an external application.

    ``ctx`` is the personalisation object, kept as raw JSON; ``scheduled`` is ISO 8601 (naive = UTC).
    """

    type: EventType
    channel: ChannelName = "email"
    email: Email | None = None
    mobile_phone: Phone | None = None
    push_token: PushToken | None = None
    external_id: Text | None = None
    language: Language | None = None
    country: Country | None = None
    origin: Text | None = None
    scheduled: datetime | None = None
    ctx: msgspec.Raw = msgspec.field(default_factory=lambda: EMPTY_CTX)  # a factory keeps the schema JSON

    def __post_init__(self) -> None:
        if self.scheduled is not None and self.scheduled.tzinfo is None:
            self.scheduled = self.scheduled.replace(tzinfo=UTC)

    @property
    def channel_code(self) -> int:
        return _CHANNEL_CODES[self.channel]

    @property
    def ctx_json(self) -> str:
        """``ctx`` as JSON text, as stored."""
        return bytes(self.ctx).decode()


class EventBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """Several events in one request, stored all or nothing."""

    events: list[EventIn]


class IntakeError(ValueError):
    """The body was refused; ``errors`` are FastAPI-style dicts (``type``, ``loc``, ``msg``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def _error(loc: list[str | int], msg: str, error_type: str = "value_error") -> IntakeError:
    return IntakeError([{"type": error_type, "loc": loc, "msg": msg}])


_SINGLE = msgspec.json.Decoder(EventIn)
_BATCH = msgspec.json.Decoder(EventBatchIn)
_ANY = msgspec.json.Decoder()
# A valid batch has exactly one key, "events", so its first key tells the two shapes apart.
_BATCH_SHAPE = re.compile(rb'\A\s*\{\s*"events"\s*:')
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_FIELD_IN_MSG = re.compile(r"(?:missing required|unknown) field `([^`]+)`")
_BYTE_IN_MSG = re.compile(r"\(byte (\d+)\)")

# The byte-level look: digits become "0", "E" becomes "e", signs go. A number that may be out of range
# then shows as a run of 19 zeros (19 digits: past int64, or a long fraction) or "0e000" (an exponent
# of 3 digits or more: past the double range, or expanded by PostgreSQL to hundreds of digits).
# Strings can match too (a hex token): that only sends their ctx to the exact check.
_NUMBER_LOOK = bytes.maketrans(b"123456789E", b"000000000e")
_LONG_DIGITS = b"0" * 19
_BIG_EXPONENT = b"0e000"
_NUL_ESCAPE = b"\\u0000"
# Exact checks: a JSON string (to blank out), a number, an innermost container (to peel off).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NUMBER = re.compile(rb"-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?")
_INNERMOST = re.compile(rb"\{[^{}\[\]]*\}|\[[^{}\[\]]*\]")
_LONE_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]', re.DOTALL)
_SCAN_LIMIT = 8 * 1024 * 1024  # error path only: how far into a body we look for the field at fault


def _loc(message: str) -> tuple[str, list[str | int]]:
    """Split msgspec's ``"Expected ... - at `$.events[3].channel`"`` into message and location."""
    text, _, path = message.partition(" - at `")
    loc: list[str | int] = [m[1] or int(m[2]) for m in _PATH_PART.finditer(path.rstrip("`"))]
    field = _FIELD_IN_MSG.search(text)
    if field:
        loc.append(field[1])
    return text, loc


def _error_type(message: str) -> str:
    if "missing required field" in message:
        return "missing"
    if "unknown field" in message:
        return "extra_forbidden"
    return "value_error"


def decode_push(
    body: bytes, limits: IntakeSettings, *, max_events: int | None = None
) -> tuple[list[EventIn], bool]:
    """Decode a push body: one event, or ``{"events": [...]}``. Return the events and whether it was
    a batch; raise :class:`IntakeError` naming the item and field of the first problem.

    :param limits: the settings' intake limits (``settings.intake``).
    :param max_events: most events in a batch when not ``limits.max_batch`` (a SOAP call's limit).
    """
    max_batch = limits.max_batch if max_events is None else max_events
    max_ctx_depth = limits.max_ctx_depth
    is_batch = _BATCH_SHAPE.match(body) is not None
    if not body.isascii():
        bad = _utf8_error(body)
        if bad is not None:
            loc = _field_at(body, is_batch, offset=bad)
            raise _error(loc, f"invalid UTF-8 at byte {bad}", "unicode_error")
    try:
        events = _BATCH.decode(body).events if is_batch else [_SINGLE.decode(body)]
    except msgspec.ValidationError as exc:
        text, loc = _loc(str(exc))
        raise _error(["body", *loc], text, _error_type(text)) from None
    except msgspec.DecodeError as exc:
        message, at = f"malformed JSON: {exc}", _BYTE_IN_MSG.search(str(exc))
        offset = int(at[1]) if at else None
        lone = None if at else _LONE_SURROGATE.search(body)  # msgspec says "truncated" for one
        if lone:
            offset, message = lone.start(), f"malformed JSON: lone UTF-16 surrogate at byte {lone.start()}"
        loc = ["body"] if offset is None else _field_at(body, is_batch, offset=offset)
        raise _error(loc, message, "json_invalid") from None
    except RecursionError:
        loc = _field_at(body, is_batch, depth=max_ctx_depth)
        what = "ctx is" if loc[-1] == "ctx" else "JSON"
        raise _error(loc, f"{what} nested deeper than {max_ctx_depth} levels") from None
    if is_batch and not events:
        raise _error(["body", "events"], "at least one event", "too_short")
    if len(events) > max_batch:
        message = f"at most {max_batch} events per request, got {len(events)}"
        raise _error(["body", "events"], message, "too_long")
    check_events(events, limits, prefix=["body", "events"] if is_batch else ["body"], body=body)
    return events, is_batch


def check_events(
    events: Sequence[EventIn],
    limits: IntakeSettings,
    prefix: list[str | int],
    *,
    body: bytes | None = None,
) -> None:
    """What msgspec's types do not say: ``ctx`` (see the module doc), NUL in text fields, the range of
    ``scheduled`` (which is converted to UTC here).

    ``body``, the request the events come from, lets a byte-level look at it clear most checks at once.
    """
    max_ctx_bytes, max_ctx_depth = limits.max_ctx_bytes, limits.max_ctx_depth
    look = None if body is None else body.translate(_NUMBER_LOOK, b"+-")
    numbers_suspect = look is None or _LONG_DIGITS in look or _BIG_EXPONENT in look
    nul_suspect = body is None or _NUL_ESCAPE in body
    in_batch = len(prefix) > 1
    for index, event in enumerate(events):
        raw = bytes(event.ctx)
        problem = field = None
        if raw[:1] != b"{":
            problem = "ctx must be a JSON object"
        elif len(raw) > max_ctx_bytes:
            problem = f"ctx is larger than {max_ctx_bytes} bytes"
        elif (
            raw.count(b"{") + raw.count(b"[") > max_ctx_depth
            or (numbers_suspect and _ctx_numbers_suspect(raw))
            or (nul_suspect and _NUL_ESCAPE in raw)
            or (body is None and not raw.isascii())
        ):
            problem = ctx_problem(raw, max_ctx_depth)
        if problem:
            field = "ctx"
        elif nul_suspect:
            field = next((f for f in _NUL_FIELDS if "\x00" in (getattr(event, f) or "")), None)
            problem = f"{field} must not contain NUL characters" if field else None
        scheduled = event.scheduled
        if not problem and scheduled is not None:
            if not SCHEDULED_MIN <= scheduled <= SCHEDULED_MAX:
                field, problem = "scheduled", f"scheduled must be {SCHEDULED_RANGE}"
            elif scheduled.tzinfo is not UTC:
                event.scheduled = scheduled.astimezone(UTC)
        if problem and field:
            raise _error([*prefix, index, field] if in_batch else [*prefix, field], problem)


def _ctx_numbers_suspect(raw: bytes) -> bool:
    look = raw.translate(_NUMBER_LOOK, b"+-")
    return _LONG_DIGITS in look or _BIG_EXPONENT in look


def ctx_problem(raw: bytes, max_depth: int) -> str | None:
    """The exact check of one ``ctx`` (valid JSON text, as msgspec let it through): what is wrong with
    it, or ``None``. Costs a parse; :func:`check_events` calls it only when its cheap look is not enough.
    """
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        return f"ctx is not valid UTF-8 (byte {exc.start})"
    skeleton = _STRING.sub(b'""', raw)  # no string left: brackets and digits are structure and numbers
    depth, peeled = 0, skeleton
    while True:
        peeled, found = _INNERMOST.subn(b"0", peeled)
        if not found:
            break
        depth += 1
        if depth > max_depth:
            return f"ctx is nested deeper than {max_depth} levels"
    for number in _NUMBER.finditer(skeleton):
        problem = _number_problem(number)
        if problem:
            return problem
    if _NUL_ESCAPE in raw:
        try:
            value = _ANY.decode(raw)
        except (msgspec.DecodeError, RecursionError) as exc:  # not expected once the checks above pass
            return f"ctx cannot be read back: {exc}"
        if _holds_nul(value):
            return "ctx must not contain NUL characters"
    return None


def _number_problem(number: re.Match[bytes]) -> str | None:
    text = number[0]
    shown = text.decode() if len(text) <= 40 else f"{text[:20].decode()}...({len(text)} characters)"
    integer, fraction, exponent = number[1], number[2] or b"", number[3]
    if not fraction and exponent is None:
        if len(integer) > 19 or not INT64_MIN <= int(text) <= INT64_MAX:
            return f"ctx number {shown} is out of range: integers must fit a signed 64-bit integer"
        return None
    if not math.isfinite(float(text)):
        return f"ctx number {shown} is out of range: numbers must be finite doubles"
    shift = 0  # where the exponent moves the decimal point (past any limit: a stand-in)
    if exponent:
        digits = exponent.lstrip(b"+-").lstrip(b"0")
        shift = int(exponent) if len(digits) <= 6 else (-(10**7) if exponent[:1] == b"-" else 10**7)
    if len(fraction) - shift > MAX_FRACTION_DIGITS:
        return (
            f"ctx number {shown} is out of range: at most {MAX_FRACTION_DIGITS} digits"
            " after the decimal point once written without exponent"
        )
    return None


def _holds_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _utf8_error(body: bytes) -> int | None:
    """Offset of the first byte that is not UTF-8, or ``None`` (validated in chunks: bounded memory)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view, chunk = memoryview(body), 1 << 20
    try:
        for start in range(0, len(body), chunk):
            decoder.decode(view[start : start + chunk], final=start + chunk >= len(body))
    except UnicodeDecodeError:
        try:
            body.decode()
        except UnicodeDecodeError as exc:
            return exc.start
    return None


def _field_at(
    body: bytes, is_batch: bool, *, offset: int | None = None, depth: int | None = None
) -> list[str | int]:
    """``loc`` of the field holding byte ``offset``, or of the first value nested more than ``depth``
    levels deep in a field (error path only: a scan of the body up to there)."""
    # Containers open around the point: [is_object, key or index, expecting a key].
    stack: list[list[Any]] = []
    limit = None if depth is None else depth + (3 if is_batch else 1)
    end = min(len(body), _SCAN_LIMIT if offset is None else offset + 1)
    if offset is not None and offset > _SCAN_LIMIT:
        return ["body"]
    found = offset is not None
    for token in _TOKEN.finditer(body, 0, end):
        if offset is not None and token.start() > offset:
            break
        char = token[0][:1]
        if char in b"{[":
            stack.append([char == b"{", None if char == b"{" else 0, char == b"{"])
            if limit is not None and len(stack) > limit:
                found = True
                break
        elif char in b"}]":
            if stack:
                stack.pop()
        elif char == b",":
            if stack:
                top = stack[-1]
                if top[0]:
                    top[1], top[2] = None, True
                else:
                    top[1] += 1
        elif char == b'"' and stack and stack[-1][0] and stack[-1][2]:
            stack[-1][1], stack[-1][2] = token[0][1:-1].decode(errors="replace"), False
    if not found:
        return ["body"]
    path = [frame[1] for frame in stack if frame[1] is not None]
    keep = 3 if is_batch else 1
    if is_batch and path[:1] != ["events"]:
        keep = 1
    return ["body", *path[:keep]]


def event_from_dict(data: dict[str, Any]) -> EventIn:
    """Build one validated event from a Python dict (CLI, tests, DAG code), under this process's limits."""
    events, _ = decode_push(msgspec.json.encode(data), get_settings().intake)
    return events[0]


# The OpenAPI document of the push body. JSON Schema patterns are ECMA-262: `$` ends the input, as
# `\Z` does in Python (whose `$` also matches before a final newline).
_NO_NUL = "^[^\\u0000]*$"
_DATE_TIME = (
    # RFC 3339 as msgspec reads it, the offset optional (naive is UTC), in years 1901-9998 (whatever
    # the offset, in the accepted range); February stops at the 28th (the 29th of leap years is
    # accepted too).
    "^(?:190[1-9]|19[1-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-"
    "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
    "[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
    "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?$"
)
CTX_VALUE_REF = "#/components/schemas/CtxValue"


def schema_components() -> dict[str, Any]:
    """Schemas the push body refers to, for the OpenAPI document's ``components/schemas``."""
    ref = {"$ref": CTX_VALUE_REF}
    return {
        "CtxValue": {
            "title": "CtxValue",
            "description": "A value in ctx (see ctx for the limits JSON Schema cannot say: size, depth).",
            "anyOf": [
                {"type": "null"},
                {"type": "boolean"},
                {"type": "string", "pattern": _NO_NUL},
                {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
                {"type": "number", "description": "a finite double (an integer is one without exponent)"},
                {"type": "array", "items": ref},
                {"type": "object", "propertyNames": {"pattern": _NO_NUL}, "additionalProperties": ref},
            ],
        }
    }


def request_schema(limits: IntakeSettings) -> dict[str, Any]:
    """JSON Schema of the push body (one event or a batch) under ``limits``, for the OpenAPI document
    (``ctx`` values refer to :func:`schema_components`)."""
    (event,), components = msgspec.json.schema_components([EventIn], ref_template="{name}")
    event = components["EventIn"]
    properties = event["properties"]
    for name, field in properties.items():
        for option in field.get("anyOf", [field]):
            if option.get("type") != "string":
                continue
            pattern = option.get("pattern")
            if pattern:
                option["pattern"] = pattern.replace("\\Z", "$")
            elif name != "scheduled":
                option["pattern"] = _NO_NUL
    for option in properties["scheduled"]["anyOf"]:
        if option.get("type") == "string":
            # No "format": "date-time": that one requires an offset, and a naive time is accepted.
            option.pop("format", None)
            option.update(
                pattern=_DATE_TIME,
                description="A date and time as in RFC 3339, with an offset or without one: naive times "
                f"are UTC (T or a space between date and time); accepted {SCHEDULED_RANGE}",
                examples=["2030-01-02T03:04:05Z", "2030-01-02T05:04:05+02:00", "2030-01-02T03:04:05"],
            )
    properties["ctx"] = {
        "type": "object",
        "description": (
            f"Personalisation data, a JSON object: at most {limits.max_ctx_bytes} bytes, nested at most "
            f"{limits.max_ctx_depth} levels (ctx is level 1), no NUL character in its strings or keys; "
            "an integer (no fraction, no exponent) fits a signed 64-bit integer, any other number "
            f"is a finite double with at most {MAX_FRACTION_DIGITS} digits "
            "after the decimal point once written without exponent."
        ),
        "propertyNames": {"pattern": _NO_NUL},
        "additionalProperties": {"$ref": CTX_VALUE_REF},
    }
    batch = {
        "title": "EventBatchIn",
        "type": "object",
        "properties": {
            "events": {"type": "array", "items": event, "minItems": 1, "maxItems": limits.max_batch}
        },
        "required": ["events"],
        "additionalProperties": False,
    }
    return {"oneOf": [event, batch]}
