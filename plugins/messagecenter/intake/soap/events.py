"""Campaign events (``<rtEvent>``, ``<batchEvent>``) as the events of the REST push contract.

Each XML event becomes the JSON event the REST API takes, which then goes through the REST API's own
decoding and validation (:func:`messagecenter.intake.decode.decode_push`): the same limits, the same
checks, the same stored row, the same idempotency (``externalId`` is ``external_id``).

The rules are documented once, for integrators, in docs/soap.md: which attribute becomes which REST
field ("Event attributes", :data:`ATTRIBUTES` here), how ``<ctx>`` becomes a JSON object ("``ctx``:
from XML to JSON") and what goes into ``ctx["#event"]``. tests/intake/soap/test_mapping.py holds them.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from messagecenter.core.settings import IntakeSettings
from messagecenter.core.types import Channel
from messagecenter.intake.decode import EventIn, IntakeError, decode_push
from messagecenter.intake.soap.envelope import local_name, parse_xml

# Attribute of the XML event -> field of the REST event.
ATTRIBUTES = {
    "type": "type",
    "email": "email",
    "mobilePhone": "mobile_phone",
    "wishedChannel": "channel",
    "externalId": "external_id",
    "language": "language",
    "country": "country",
    "origin": "origin",
    "scheduled": "scheduled",
    "registrationToken": "push_token",
}
# Field of the REST event -> how an error names it in the XML.
XML_NAMES = {field: f"@{attribute}" for attribute, field in ATTRIBUTES.items()} | {"ctx": "ctx"}
EVENT_KEY = "#event"  # in ctx: what the event element carries beyond the REST fields
TEXT_KEY = "#text"
EVENT_ELEMENTS = frozenset({"rtEvent", "batchEvent"})
CHANNELS = {str(int(c)): c.label for c in Channel} | {c.label: c.label for c in Channel}
_CHANNEL_CHOICES = ", ".join(f"{int(c)} ({c.label})" for c in Channel)
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_NO_SECONDS = re.compile(r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2})([Zz]|[+-]\d{2}(?::?\d{2})?)?\Z")
_ENCODER = msgspec.json.Encoder()


class EventRefused(ValueError):
    """An event (or the collection) cannot be taken; the message says which and why."""


def _elements(parent: Any) -> list[Any]:
    return [child for child in parent if isinstance(child.tag, str)]


def _qualified(element: Any, key: str) -> str:
    """The name of an attribute in a namespace, ``{uri}local``, with the prefix it has in scope."""
    uri, _, local = key[1:].partition("}")
    if uri == _XML_NS:
        return f"xml:{local}"
    prefix = next((p for p, u in element.nsmap.items() if u == uri and p), None)
    return f"{prefix}:{local}" if prefix else local


def _object(element: Any, level: int, limit: int) -> dict[str, Any]:
    """``element`` as an object (the rule of the module doc); ``level``: the object's JSON level."""
    obj: dict[str, Any] = {}
    attrib = element.attrib
    if attrib:
        for key, value in attrib.items():
            obj["@" + (_qualified(element, key) if key[0] == "{" else key)] = value
    text = element.text or ""
    for child in element:
        tag = child.tag
        if isinstance(tag, str):
            name = local_name(tag)
            value = _value(child, level + 1, limit)
            if name in obj:
                present = obj[name]
                if type(present) is list:
                    present.append(value)
                else:
                    obj[name] = [present, value]
            else:
                obj[name] = value
        tail = child.tail
        if tail:
            text += tail
    if text and not text.isspace():
        obj[TEXT_KEY] = text
    return obj


def _value(element: Any, level: int, limit: int) -> Any:
    if level > limit:
        # Its parent is an object at a level past the limit: the JSON is too deep whatever follows.
        raise EventRefused(f"ctx: ctx is nested deeper than {limit - 1} levels")
    if not len(element) and not element.attrib:
        return element.text or ""
    return _object(element, level, limit)


def ctx_from_xml(xml: str | bytes, limits: IntakeSettings) -> dict[str, Any]:
    """The JSON ``ctx`` of a ``<ctx>`` element given as XML text (to check a mapping, or convert the
    seed data of Campaign templates); parsed as safely as a request, nested at most as deep."""
    root = parse_xml(xml.encode() if isinstance(xml, str) else xml, None, ("", ""))
    return _object(root, 1, limits.max_ctx_depth + 1)


def _channel(value: str) -> str:
    label = CHANNELS.get(value.strip().lower())
    if label is None:
        raise EventRefused(f"@wishedChannel: must be one of {_CHANNEL_CHOICES}, got {_shown(value)}")
    return label


def _scheduled(value: str) -> str:
    """An XTK or ISO 8601 date as the RFC 3339 text the REST contract reads (naive is UTC there)."""
    value = value.strip()
    if _DATE_ONLY.match(value):
        return f"{value}T00:00:00Z"
    match = _NO_SECONDS.match(value)
    return f"{match[1]}:00{match[2] or ''}" if match else value


def event_dict(element: Any, limits: IntakeSettings) -> dict[str, Any]:
    """The REST event (a JSON-ready dict) of one XML event element, before validation (``ctx`` is
    refused here past the depth limit, the rest by :func:`decode_push`)."""
    limit = limits.max_ctx_depth + 1
    event: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in element.attrib.items():
        field = None if key[0] == "{" else ATTRIBUTES.get(key)
        if field is None:
            extra["@" + (_qualified(element, key) if key[0] == "{" else key)] = value
        elif value:
            if field == "channel":
                value = _channel(value)
            elif field == "scheduled":
                value = _scheduled(value)
            event[field] = value
    ctx: dict[str, Any] | None = None
    text = element.text or ""
    for child in element:
        tag = child.tag
        if isinstance(tag, str):
            name = local_name(tag)
            if name == "ctx":
                if ctx is not None:
                    raise EventRefused("ctx: the event has more than one ctx element")
                ctx = _object(child, 1, limit)
            elif name in extra:
                present = extra[name]
                value = _value(child, 3, limit)
                extra[name] = [*present, value] if type(present) is list else [present, value]
            else:
                extra[name] = _value(child, 3, limit)
        if child.tail:
            text += child.tail
    if text and not text.isspace():
        extra[TEXT_KEY] = text
    if ctx is None:
        ctx = {}
    if extra:
        ctx[EVENT_KEY] = extra
    event["ctx"] = ctx
    return event


def event_elements(param: Any, *, many: bool, max_events: int) -> list[Any]:
    """The event elements of the document parameter.

    ``PushEvent``: the parameter's first element, whatever its name (``rtEvent``, ``batchEvent``, or
    the parameter's own name, as Adobe's SDK writes a ``nms:batchEvent`` event). ``PushEvents``: the
    parameter's children when they are all ``rtEvent`` / ``batchEvent`` elements, else the children of
    its single child, the wrapper (``<Events>`` in Adobe's example; any name).
    """
    children = _elements(param)
    if not many:
        if not children:
            raise EventRefused("the event parameter holds no event element")
        return children[:1]
    if children and all(local_name(c.tag) in EVENT_ELEMENTS for c in children):
        events = children
    elif len(children) == 1:
        events = _elements(children[0])
    else:
        raise EventRefused(
            "the collection must be event elements (rtEvent, batchEvent), or one element wrapping them"
        )
    if not events:
        raise EventRefused("the collection holds no event")
    if len(events) > max_events:
        raise EventRefused(f"at most {max_events} events per PushEvents call, got {len(events)}")
    return events


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...({len(str(value))} characters)"


def _where(index: int | None) -> str:
    return "event" if index is None else f"event {index}"


def _detail(error: dict[str, Any], many: bool, dicts: list[dict[str, Any]]) -> str:
    """An error of the REST decoder, located in the XML: ``event 3, @email: invalid value 'x'``."""
    loc: list[Any] = list(error["loc"][1:])
    index = None
    if many:
        if loc[:1] == ["events"]:
            loc = loc[1:]
        if loc and isinstance(loc[0], int):
            index, loc = loc[0], loc[1:]
    field = loc[0] if loc else None
    message = error["msg"]
    if error.get("type") == "missing":
        message = "is required"
    elif "matching regex" in message and field is not None:
        message = f"invalid value {_shown(dicts[index or 0].get(field))}"
    if field is None:
        return message
    return f"{_where(index)}, {XML_NAMES.get(field, field)}: {message}"


def decode_events(param: Any, limits: IntakeSettings, *, many: bool) -> list[EventIn]:
    """The validated events of a ``PushEvent`` (``many=False``) or ``PushEvents`` document parameter,
    exactly as the REST API decodes the same events sent as JSON.

    :param limits: the settings' intake limits (``settings.intake``); a ``PushEvents`` call holds at
        most ``limits.soap_events_limit`` events.
    :raises EventRefused: naming the event (its index in the collection) and attribute at fault.
    """
    max_events = limits.soap_events_limit
    elements = event_elements(param, many=many, max_events=max_events)
    dicts = []
    for index, element in enumerate(elements):
        try:
            dicts.append(event_dict(element, limits))
        except EventRefused as exc:
            raise EventRefused(f"{_where(index if many else None)}, {exc}") from None
    body = _ENCODER.encode({"events": dicts} if many else dicts[0])
    try:
        events, _ = decode_push(body, limits, max_events=max_events)
    except IntakeError as exc:
        raise EventRefused(_detail(exc.errors[0], many, dicts)) from None
    return events
