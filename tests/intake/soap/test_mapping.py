"""The XML -> JSON rules, without HTTP: ctx, event attributes, what is kept beyond the REST fields,
and that an XML event decodes to exactly the event the REST contract decodes from the same JSON."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from lxml import etree

from messagecenter.core.settings import IntakeSettings
from messagecenter.intake.decode import decode_push
from messagecenter.intake.soap import EventRefused, SoapFault, ctx_from_xml, decode_events, parse_action
from messagecenter.intake.soap.envelope import parse_call
from messagecenter.intake.soap.wsdl import SCHEMAS, wsdl
from messagecenter.templates.sandbox import make_environment
from tests.support.soap import push_event

LIMITS = IntakeSettings(soap_max_events=10)


def decode_one(event_xml: str, **limits: Any) -> Any:
    param = etree.fromstring(f"<domEvent>{event_xml}</domEvent>")
    (event,) = decode_events(param, replace(LIMITS, **limits), many=False)
    return event


def ctx_of(event_xml: str) -> dict[str, Any]:
    return msgspec.json.decode(bytes(decode_one(event_xml).ctx))


CTX_RULE = {
    "text elements are strings": (
        "<ctx><firstName>ABC</firstName><lastName>DEF</lastName></ctx>",
        {"firstName": "ABC", "lastName": "DEF"},
    ),
    "attributes are @keys": (
        '<ctx><website name="eShopping" url="http://www.eShopping.uk"/><account label="0068"/>'
        '<customer title="Ms" firstName="Esther" lastName="Hall"/></ctx>',
        {
            "website": {"@name": "eShopping", "@url": "http://www.eShopping.uk"},
            "account": {"@label": "0068"},
            "customer": {"@title": "Ms", "@firstName": "Esther", "@lastName": "Hall"},
        },
    ),
    "repeated elements are lists, a single one is not": (
        '<ctx><items><item sku="A"/><item sku="B"/></items><gift><item sku="C"/></gift></ctx>',
        {"items": {"item": [{"@sku": "A"}, {"@sku": "B"}]}, "gift": {"item": {"@sku": "C"}}},
    ),
    "repeated text elements": ("<ctx><tag>a</tag><tag>b</tag><tag/></ctx>", {"tag": ["a", "b", ""]}),
    "text next to attributes is #text": (
        '<ctx><price currency="EUR">12.50</price></ctx>',
        {"price": {"@currency": "EUR", "#text": "12.50"}},
    ),
    "mixed content joins its text pieces": (
        "<ctx><p>Hello <b>Ann</b>, welcome<br/>!</p></ctx>",
        {"p": {"b": "Ann", "br": "", "#text": "Hello , welcome!"}},
    ),
    "layout whitespace is dropped, a text element's whitespace kept": (
        "<ctx>\n  <a>\n    <b> x </b>\n  </a>\n  <c>  </c>\n</ctx>",
        {"a": {"b": " x "}, "c": "  "},
    ),
    "empty elements are empty strings": ("<ctx><a/><b></b></ctx>", {"a": "", "b": ""}),
    "ctx attributes and text": ('<ctx lang="fr">hi<a>1</a></ctx>', {"@lang": "fr", "a": "1", "#text": "hi"}),
    "local names; namespaced attributes keep their prefix": (
        '<ctx xmlns:p="urn:p" xmlns="urn:d"><p:a p:b="1" xml:lang="fr" c="2">t</p:a></ctx>',
        {"a": {"@p:b": "1", "@xml:lang": "fr", "@c": "2", "#text": "t"}},
    ),
    "CDATA is text, entities are characters, comments are dropped": (
        "<ctx><a><![CDATA[<b>&]]></a><!-- no --><b>&amp;&lt;&#233;</b></ctx>",
        {"a": "<b>&", "b": "&<é"},
    ),
    "numbers stay strings": ("<ctx><total>42.50</total><n>007</n></ctx>", {"total": "42.50", "n": "007"}),
}


@pytest.mark.parametrize(("xml", "expected"), CTX_RULE.values(), ids=CTX_RULE.keys())
def test_ctx_rule(xml: str, expected: dict[str, Any]) -> None:
    assert ctx_from_xml(xml, LIMITS) == expected
    assert ctx_of(f'<rtEvent type="T">{xml}</rtEvent>') == expected


def test_templates_reach_ctx_as_campaign_templates_do() -> None:
    """``<%= rtEvent.ctx.firstName %>`` is ``{{ ctx.firstName }}``; ``<%= rtEvent.ctx.customer.@title %>``
    is ``{{ ctx.customer['@title'] }}``; repeated elements loop."""
    ctx = ctx_from_xml(
        '<ctx><firstName>Esther</firstName><customer title="Ms" lastName="Hall"/>'
        '<items><item sku="A">Pen</item><item sku="B">Ink</item></items></ctx>',
        LIMITS,
    )
    template = make_environment(autoescape=False).from_string(
        "{{ ctx.firstName }} / {{ ctx.customer['@title'] }} {{ ctx.customer['@lastName'] }} / "
        "{% for item in ctx.items.item %}{{ item['@sku'] }}={{ item['#text'] }} {% endfor %}"
    )
    assert template.render(ctx=ctx) == "Esther / Ms Hall / A=Pen B=Ink "


def test_attributes_map_to_the_rest_fields() -> None:
    event = decode_one(
        '<rtEvent type="create_account" email="esther.hall@example.com" origin="eShopping"'
        ' wishedChannel="0" externalId="1596" language="english" country="EN"'
        ' mobilePhone="+447700123123" scheduled="2026-12-01 10:00:00.000Z"'
        ' registrationToken="c3dd"><ctx><a>1</a></ctx></rtEvent>'
    )
    assert (event.type, event.channel, event.email, event.mobile_phone, event.push_token) == (
        "create_account",
        "email",
        "esther.hall@example.com",
        "+447700123123",
        "c3dd",
    )
    assert (event.external_id, event.language, event.country, event.origin) == (
        "1596",
        "english",
        "EN",
        "eShopping",
    )
    assert event.scheduled == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert bytes(event.ctx) == b'{"a":"1"}'


@pytest.mark.parametrize(
    ("value", "channel"),
    [
        ("0", "email"),
        ("1", "sms"),
        ("41", "ios"),
        ("42", "android"),
        ("email", "email"),
        ("SMS", "sms"),
        ("iOS", "ios"),
        ("Android", "android"),
        ("", "email"),
    ],
)
def test_wished_channel_codes_and_labels(value: str, channel: str) -> None:
    assert decode_one(f'<rtEvent type="T" wishedChannel="{value}"/>').channel == channel


def test_an_unknown_channel_is_refused_naming_the_attribute() -> None:
    with pytest.raises(EventRefused, match=r"event, @wishedChannel: must be one of 0 \(email\).*got '2'"):
        decode_one('<rtEvent type="T" wishedChannel="2"/>')


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-01 10:00:00.000Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01 10:00:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01T10:00:00+02:00", datetime(2026, 12, 1, 8, tzinfo=UTC)),
        ("2026-12-01T10:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01 10:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_scheduled_xtk_and_iso_dates(value: str, expected: datetime) -> None:
    assert decode_one(f'<rtEvent type="T" scheduled="{value}"/>').scheduled == expected


def test_what_rest_has_no_field_for_is_kept_in_ctx_event() -> None:
    ctx = ctx_of(
        '<rtEvent wishedChannel="41" type="rt_push" registrationToken="c3dd" hashlpId="27EE"'
        ' correlationId="415b" emailFormat="2" xmlns="">'
        '<mobileApp uuid="236B" _operation="none"/><ctx><a>1</a></ctx></rtEvent>'
    )
    assert ctx == {
        "a": "1",
        "#event": {
            "@hashlpId": "27EE",
            "@correlationId": "415b",
            "@emailFormat": "2",
            "mobileApp": {"@uuid": "236B", "@_operation": "none"},
        },
    }
    assert ctx_of('<rtEvent type="T"><ctx/></rtEvent>') == {}
    assert ctx_of('<rtEvent type="T"/>') == {}


def test_empty_attributes_are_absent() -> None:
    event = decode_one('<rtEvent type="T" email="" mobilePhone="" externalId="" scheduled=""/>')
    assert (event.email, event.mobile_phone, event.external_id, event.scheduled) == (None, None, None, None)


REST_EQUIVALENTS = [
    (
        '<rtEvent type="welcome" email="a@example.com" wishedChannel="0" language="en">'
        "<ctx><firstName>Alex</firstName></ctx></rtEvent>",
        {"type": "welcome", "email": "a@example.com", "language": "en", "ctx": {"firstName": "Alex"}},
    ),
    (
        '<batchEvent type="OTP" wishedChannel="sms" mobilePhone="+33612345678" externalId="otp-1"'
        ' scheduled="2030-01-02 03:04:05.000Z"><ctx><code>123456</code></ctx></batchEvent>',
        {
            "type": "OTP",
            "channel": "sms",
            "mobile_phone": "+33612345678",
            "external_id": "otp-1",
            "scheduled": "2030-01-02T03:04:05Z",
            "ctx": {"code": "123456"},
        },
    ),
]


@pytest.mark.parametrize(("xml", "json"), REST_EQUIVALENTS)
def test_an_xml_event_decodes_to_the_rest_event(xml: str, json: dict[str, Any]) -> None:
    (rest,), _ = decode_push(msgspec.json.encode(json), LIMITS)
    soap = decode_one(xml)
    assert msgspec.structs.asdict(soap) | {"ctx": None} == msgspec.structs.asdict(rest) | {"ctx": None}
    assert msgspec.json.decode(bytes(soap.ctx)) == msgspec.json.decode(bytes(rest.ctx))


def test_the_rest_validation_applies_naming_event_and_attribute() -> None:
    with pytest.raises(EventRefused, match=r"^event, @email: invalid value 'not-an-address'$"):
        decode_one('<rtEvent type="T" email="not-an-address"/>')
    with pytest.raises(EventRefused, match=r"^event, @type: is required$"):
        decode_one('<rtEvent email="a@example.com"/>')
    with pytest.raises(EventRefused, match=r"^event, @scheduled: scheduled must be from 1900-01-01"):
        decode_one('<rtEvent type="T" scheduled="1800-01-01 00:00:00.000Z"/>')
    param = etree.fromstring('<c><Events><rtEvent type="A"/><rtEvent type="B" mobilePhone="x"/></Events></c>')
    with pytest.raises(EventRefused, match=r"^event 1, @mobilePhone: invalid value 'x'$"):
        decode_events(param, LIMITS, many=True)


def nested(levels: int) -> str:
    return "<ctx>" + "<a>" * levels + "x" + "</a>" * levels + "</ctx>"


def test_ctx_depth_is_the_rest_limit() -> None:
    assert decode_one(f'<rtEvent type="T">{nested(4)}</rtEvent>', max_ctx_depth=4)
    with pytest.raises(EventRefused, match="ctx is nested deeper than 4 levels"):
        decode_one(f'<rtEvent type="T">{nested(5)}</rtEvent>', max_ctx_depth=4)
    with pytest.raises(EventRefused, match="ctx is nested deeper than 4 levels"):
        decode_one(f'<rtEvent type="T">{nested(200)}</rtEvent>', max_ctx_depth=4)
    # A repeated element adds a level (its list), as in JSON.
    with pytest.raises(EventRefused, match="ctx is nested deeper than 3 levels"):
        decode_one('<rtEvent type="T"><ctx><a><b><c>1</c></b><b/></a></ctx></rtEvent>', max_ctx_depth=3)


def test_ctx_size_is_the_rest_limit() -> None:
    big = "<ctx>" + "<a>x</a>" * 100 + "</ctx>"
    with pytest.raises(EventRefused, match="ctx is larger than 256 bytes"):
        decode_one(f'<rtEvent type="T">{big}</rtEvent>', max_ctx_bytes=256)


@pytest.mark.parametrize(
    ("collection", "types"),
    [
        ('<Events><rtEvent type="A"/><rtEvent type="B"/></Events>', ["A", "B"]),
        ('<anyWrapper><batchEvent type="A"/></anyWrapper>', ["A"]),
        ('<rtEvent type="A"/><rtEvent type="B"/>', ["A", "B"]),
        ('<rtEvent type="A"/>', ["A"]),
    ],
)
def test_push_events_collections(collection: str, types: list[str]) -> None:
    param = etree.fromstring(f"<domEventCollection>{collection}</domEventCollection>")
    assert [e.type for e in decode_events(param, LIMITS, many=True)] == types


def test_push_events_limits_the_number_of_events() -> None:
    param = etree.fromstring("<c><Events>" + '<rtEvent type="A"/>' * 11 + "</Events></c>")
    with pytest.raises(EventRefused, match="at most 10 events per PushEvents call, got 11"):
        decode_events(param, LIMITS, many=True)
    with pytest.raises(EventRefused, match="holds no event"):
        decode_events(etree.fromstring("<c><Events/></c>"), LIMITS, many=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"nms:rtEvent#PushEvent"', ("nms:rtEvent", "PushEvent")),
        ("nms:batchEvent#PushEvents", ("nms:batchEvent", "PushEvents")),
        (" 'xtk:session#Logon' ", ("xtk:session", "Logon")),
        ("xtk:persist|xtk:session#GetEntityIfMoreRecent", ("xtk:persist", "GetEntityIfMoreRecent")),
        ("urn:nms:rtEvent#PushEvent", ("nms:rtEvent", "PushEvent")),
        ("", None),
        ('""', None),
        ("PushEvent", None),
    ],
)
def test_soap_action_forms(value: str, expected: tuple[str, str] | None) -> None:
    assert parse_action(value) == expected


def test_the_method_comes_from_the_body_when_the_action_is_unknown() -> None:
    body = push_event('<rtEvent type="T"/>')
    assert (lambda c: (c.service, c.method))(parse_call(body, soap_action="nms:rtEvent#PushRtEvent")) == (
        "nms:rtEvent",
        "PushEvent",
    )
    assert parse_call(body).method == "PushEvent"
    with pytest.raises(SoapFault, match="SOP-330006 The method 'Nope' is not defined in SOAP service"):
        parse_call(body.replace(b"PushEvent", b"Nope"))


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_wsdl_is_well_formed(schema: str) -> None:
    root = etree.fromstring(wsdl(schema, "http://h/nl/jsp/soaprouter.jsp"))
    assert root.get("targetNamespace") == f"urn:{schema}"
