"""Raw SOAP requests against the real standalone API (uvicorn): every request variant real clients send,
every credential route, a fault for every error, hostile XML, and the stored event against REST's."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from messagecenter.api.soap import SESSION_SECONDS, issue_session_token
from messagecenter.core.ids import split_event_id
from tests.support.soap import (
    INSTANCE_ID,
    MAX_BODY,
    MAX_EVENTS,
    OTHER_TOKEN,
    SOAP_ENV,
    TOKEN,
    LiveApi,
    answer,
    envelope,
    fault,
    plid,
    plids,
    post,
    push_event,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}
LOGIN_FAULT = (
    "SOAP-ENV:Client",
    "Error while reading parameters of method 'PushEvent' of service 'nms:rtEvent'.",
    "Invalid login or password. Connection denied.",
)


def rest_event(live: LiveApi, queue: str, event_id: int) -> dict[str, Any]:
    response = requests.get(f"{live.url}/api/v1/events/{queue}/{event_id}", headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def assert_refused(
    live: LiveApi, body: bytes, expected: tuple[str, str, str | None] | None = None, **kw: Any
):
    """The call is answered with a fault (returned), nothing is stored, and the answer is fast."""
    before = live.stored()
    start = time.monotonic()
    response = post(live.url, body, **kw)
    elapsed = time.monotonic() - start
    got = fault(response)
    assert live.stored() == before, "refused, but stored"
    assert elapsed < 2, f"answered in {elapsed:.1f} s"
    if expected is not None:
        assert got == expected
    return got


# -- The request variants seen in the wild -----------------------------------------------------------

EVENT = '<rtEvent type="welcome" email="ann@example.com"><ctx><firstName>Ann</firstName></ctx></rtEvent>'
VARIANTS: dict[str, tuple[bytes, dict[str, str], dict[str, str]]] = {
    # (body, headers, query): Adobe's raw HTTP example, quoted SOAPAction, an XML declaration, the SOAP
    # 1.2 media type without charset.
    "prefixed, qualified parameters": (
        b'<?xml version="1.0" encoding="utf-8"?>  ' + push_event(EVENT),
        {"Content-Type": "application/soap+xml;", "SOAPAction": '"nms:rtEvent#PushEvent"'},
        {},
    ),
    # Adobe's doc example: the token unqualified, domEvent qualified.
    "prefixed, unqualified token": (
        envelope(
            f"<urn:PushEvent><sessiontoken>mc/{TOKEN}</sessiontoken><urn:domEvent>{EVENT}</urn:domEvent>"
            "</urn:PushEvent>"
        ),
        {"SOAPAction": "nms:rtEvent#PushEvent"},
        {},
    ),
    # A Node.js client: default namespace, so rtEvent itself is in urn:nms:rtEvent; unquoted action.
    "default namespace": (
        envelope(
            f'<PushEvent xmlns="urn:nms:rtEvent"><sessiontoken>mc/{TOKEN}</sessiontoken>'
            f"<domEvent>{EVENT}</domEvent></PushEvent>"
        ),
        {"Content-Type": "text/xml;charset=UTF-8", "soapAction": "nms:rtEvent#PushEvent"},
        {},
    ),
    # Adobe's push example: the same with xmlns="" on the event.
    'default namespace, xmlns="" on the event': (
        envelope(
            f'<PushEvent xmlns="urn:nms:rtEvent"><sessiontoken>mc/{TOKEN}</sessiontoken><domEvent>'
            + EVENT.replace("<rtEvent ", '<rtEvent xmlns="" ')
            + "</domEvent></PushEvent>"
        ),
        {"SOAPAction": "nms:rtEvent#PushEvent"},
        {},
    ),
    # Adobe's JavaScript SDK: m: prefix, <event> parameter, SOAP header cookie, action in the URL too.
    "acc-js-sdk": (
        (
            "<SOAP-ENV:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema'"
            " xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'"
            f" xmlns:SOAP-ENV='{SOAP_ENV}' xmlns:ns='http://xml.apache.org/xml-soap'>"
            f"<SOAP-ENV:Header><Cookie>__sessiontoken=mc/{TOKEN}</Cookie><X-Security-Token/></SOAP-ENV:Header>"
            "<SOAP-ENV:Body><m:PushEvent xmlns:m='urn:nms:rtEvent'"
            " SOAP-ENV:encodingStyle='http://schemas.xmlsoap.org/soap/encoding/'>"
            f'<sessiontoken xsi:type="xsd:string">mc/{TOKEN}</sessiontoken>'
            '<event xsi:type="" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml">'
            f"{EVENT}</event></m:PushEvent></SOAP-ENV:Body></SOAP-ENV:Envelope>"
        ).encode(),
        {
            "Content-Type": "application/soap+xml;charset=UTF-8",
            "SoapAction": "nms:rtEvent#PushEvent",
            "X-Security-Token": "",
            "X-Session-Token": f"mc/{TOKEN}",
            "ACC-SDK-Version": "@adobe/acc-js-sdk 1.2.0",
        },
        {"soapAction": "nms:rtEvent#PushEvent"},
    ),
    # A .NET client: empty qualified token (the session is in the cookie), domDoc parameter.
    ".NET, domDoc and cookie": (
        envelope(f"<urn:PushEvent><urn:sessiontoken/><urn:domDoc>{EVENT}</urn:domDoc></urn:PushEvent>"),
        {"SOAPAction": "nms:rtEvent#PushEvent", "Cookie": f"__sessiontoken=mc/{TOKEN}"},
        {},
    ),
    # No SOAPAction: the method is the Body's first child.
    "no SOAPAction": (push_event(EVENT), {}, {}),
    # A stale client library's action name: the Body says PushEvent.
    "unknown SOAPAction": (push_event(EVENT), {"SOAPAction": "nms:rtEvent#PushRtEvent"}, {}),
    # The action only in the query string.
    "action in the query": (push_event(EVENT), {}, {"soapAction": "nms:rtEvent#PushEvent"}),
}


@pytest.mark.parametrize(("body", "headers", "query"), VARIANTS.values(), ids=VARIANTS.keys())
def test_request_variants_push_the_event(
    live: LiveApi, body: bytes, headers: dict[str, str], query: dict[str, str]
) -> None:
    response = requests.post(
        f"{live.url}/nl/jsp/soaprouter.jsp",
        data=body,
        headers={"Content-Type": "text/xml; charset=utf-8", **headers},
        params=query,
        timeout=30,
    )
    event_id = plid(response)
    assert event_id > 0
    assert split_event_id(event_id)[0] == INSTANCE_ID
    stored = rest_event(live, "rt", event_id)
    assert (stored["type"], stored["email"], stored["ctx"]) == (
        "welcome",
        "ann@example.com",
        {"firstName": "Ann"},
    )


def test_the_answer_is_byte_for_byte_a_campaign_answer(live: LiveApi) -> None:
    response = post(live.url, push_event(EVENT))
    event_id = plid(response)
    assert response.content.decode() == (
        "<?xml version='1.0'?>\n"
        "<SOAP-ENV:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema'"
        " xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' xmlns:ns='urn:nms:rtEvent'"
        " xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'>\n"
        "<SOAP-ENV:Body>\n"
        "<PushEventResponse xmlns='urn:nms:rtEvent'"
        " SOAP-ENV:encodingStyle='http://schemas.xmlsoap.org/soap/encoding/'>\n"
        f"<plId xsi:type='xsd:long'>{event_id}</plId>\n"
        "</PushEventResponse>\n"
        "</SOAP-ENV:Body>\n"
        "</SOAP-ENV:Envelope>\n"
    )


@pytest.mark.parametrize("element", ["batchEvent", "rtEvent"])
def test_batch_event_service_pushes_to_the_batch_queue(live: LiveApi, element: str) -> None:
    event = f'<{element} type="news" email="bob@example.com"><ctx><n>1</n></ctx></{element}>'
    body = push_event(event, service="nms:batchEvent")
    event_id = plid(post(live.url, body, action="nms:batchEvent#PushEvent"), "nms:batchEvent")
    assert rest_event(live, "batch", event_id)["ctx"] == {"n": "1"}


@pytest.mark.parametrize(("service", "queue"), [("nms:rtEvent", "rt"), ("nms:batchEvent", "batch")])
def test_push_events_stores_all_and_answers_the_ids_in_order(live: LiveApi, service: str, queue: str) -> None:
    name = service.partition(":")[2]
    events = "".join(
        f'<{name} type="order_confirmation" email="c{i}@example.com" wishedChannel="0">'
        f'<ctx><order number="{i}"/></ctx></{name}>'
        for i in range(3)
    )
    body = push_event(f"<Events>{events}</Events>", service=service, method="PushEvents")
    ids = plids(post(live.url, body, action=f"{service}#PushEvents"), service)
    assert len(ids) == 3
    assert [rest_event(live, queue, i)["ctx"]["order"]["@number"] for i in ids] == ["0", "1", "2"]


# -- Credentials ------------------------------------------------------------------------------------


def empty_token_push() -> bytes:
    return push_event(EVENT, token="")


CREDENTIALS = {
    "login/token in sessiontoken": (push_event(EVENT, token=f"anyone/{OTHER_TOKEN}"), {}, {}),
    "an indented sessiontoken": (push_event(EVENT, token=f"\n      mc/{TOKEN}\n   "), {}, {}),
    "bearer header": (empty_token_push(), {"Authorization": f"Bearer {TOKEN}"}, {}),
    "X-Session-Token header": (empty_token_push(), {"X-Session-Token": f"mc/{TOKEN}"}, {}),
    "__sessiontoken cookie": (empty_token_push(), {}, {"__sessiontoken": f"mc/{TOKEN}"}),
    "SOAP header cookie": (
        envelope(
            f"<urn:PushEvent><urn:sessiontoken/><urn:domEvent>{EVENT}</urn:domEvent></urn:PushEvent>",
            header=f"<soapenv:Header><Cookie>a=b; __sessiontoken=mc/{TOKEN}</Cookie></soapenv:Header>",
        ),
        {},
        {},
    ),
    "a bad credential next to a good one": (
        push_event(EVENT, token="mc/wrong"),
        {"Authorization": f"Bearer {TOKEN}"},
        {},
    ),
}


@pytest.mark.parametrize(("body", "headers", "cookies"), CREDENTIALS.values(), ids=CREDENTIALS.keys())
def test_credential_routes(
    live: LiveApi, body: bytes, headers: dict[str, str], cookies: dict[str, str]
) -> None:
    assert plid(post(live.url, body, headers=headers, cookies=cookies)) > 0


BAD_CREDENTIALS = {
    "wrong password": (push_event(EVENT, token="mc/wrong"), {}),
    "empty password": (push_event(EVENT, token="mc/"), {}),
    "no credential at all": (empty_token_push(), {}),
    "the bare token, no login": (push_event(EVENT, token=TOKEN), {}),
    "wrong bearer": (empty_token_push(), {"Authorization": "Bearer wrong"}),
    "bearer scheme missing": (empty_token_push(), {"Authorization": TOKEN}),
    "forged session token": (push_event(EVENT, token="___7fffffff.00.deadbeef"), {}),
    "session token of another secret": (push_event(EVENT, token=issue_session_token("not-a-token")), {}),
    "expired session token": (
        push_event(EVENT, token=issue_session_token(TOKEN, now=time.time() - SESSION_SECONDS - 60)),
        {},
    ),
}


@pytest.mark.parametrize(("body", "headers"), BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
def test_bad_credentials_get_campaigns_login_fault_and_store_nothing(
    live: LiveApi, body: bytes, headers: dict[str, str]
) -> None:
    assert_refused(live, body, LOGIN_FAULT, headers=headers)


def logon(live: LiveApi, method: str, params: str) -> requests.Response:
    body = envelope(f"<urn:{method}><urn:sessiontoken/>{params}</urn:{method}>", service="xtk:session")
    return post(live.url, body, action=f"xtk:session#{method}")


@pytest.mark.parametrize(
    ("method", "params"),
    [
        (
            "Logon",
            f"<urn:strLogin>mc</urn:strLogin><urn:strPassword>{TOKEN}</urn:strPassword><urn:elemParameters/>",
        ),
        ("BearerTokenLogon", f"<urn:strBearerToken>{OTHER_TOKEN}</urn:strBearerToken>"),
    ],
)
def test_logon_gives_a_session_token_for_push_event(live: LiveApi, method: str, params: str) -> None:
    element = answer(logon(live, method, params))
    assert element.tag == f"{{urn:xtk:session}}{method}Response"
    session = element.findtext("{urn:xtk:session}pstrSessionToken")
    assert session.startswith("___")
    assert element.findtext("{urn:xtk:session}pstrSecurityToken").startswith("@")
    assert element.find(".//{urn:xtk:session}userInfo") is not None
    assert plid(post(live.url, push_event(EVENT, token=session))) > 0
    assert plid(post(live.url, empty_token_push(), cookies={"__sessiontoken": session})) > 0
    logoff = envelope("<urn:Logoff><urn:sessiontoken/></urn:Logoff>", service="xtk:session")
    assert (
        answer(post(live.url, logoff, action="xtk:session#Logoff")).tag == "{urn:xtk:session}LogoffResponse"
    )


def test_logon_with_a_wrong_password_is_refused(live: LiveApi) -> None:
    response = logon(live, "Logon", "<urn:strLogin>mc</urn:strLogin><urn:strPassword>x</urn:strPassword>")
    assert fault(response) == (
        "SOAP-ENV:Client",
        "Error while reading parameters of method 'Logon' of service 'xtk:session'.",
        "Invalid login or password. Connection denied.",
    )


@pytest.mark.parametrize("action", ["xtk:persist#GetEntityIfMoreRecent", "xtk:session#GetEntityIfMoreRecent"])
def test_schema_lookup_answers_the_event_schemas(live: LiveApi, action: str) -> None:
    def lookup(pk: str, token: str = f"mc/{TOKEN}") -> requests.Response:
        params = f"<pk>{pk}</pk><md5/><mustExist>false</mustExist>"
        body = envelope(
            f"<m:GetEntityIfMoreRecent xmlns:m='urn:xtk:persist'><sessiontoken>{token}</sessiontoken>{params}"
            "</m:GetEntityIfMoreRecent>"
        )
        return post(live.url, body, action=action)

    element = answer(lookup("xtk:schema|nms:rtEvent"))
    assert element.tag == "{urn:wpp:default}GetEntityIfMoreRecentResponse"
    schema = element.find("{urn:wpp:default}pdomDoc/{urn:wpp:default}schema")
    assert (schema.get("namespace"), schema.get("name")) == ("nms", "rtEvent")
    methods = [m.get("name") for m in schema.iter("{urn:wpp:default}method")]
    assert methods == ["PushEvent", "PushEvents"]
    assert len(answer(lookup("xtk:schema|nms:recipient")).find("{urn:wpp:default}pdomDoc")) == 0
    assert fault(lookup("xtk:schema|nms:rtEvent", token="mc/wrong"))[2] == LOGIN_FAULT[2]


# -- Faults -----------------------------------------------------------------------------------------

EXECUTION = "SOP-330011 Error while executing the method '{}' of service 'nms:rtEvent'."
FAULTS = {
    "invalid email": (
        push_event('<rtEvent type="welcome" email="not-an-address"/>'),
        "PushEvent",
        ("SOAP-ENV:Client", EXECUTION.format("PushEvent"), "event, @email: invalid value 'not-an-address'"),
    ),
    "missing type": (
        push_event('<rtEvent email="ann@example.com"/>'),
        "PushEvent",
        ("SOAP-ENV:Client", EXECUTION.format("PushEvent"), "event, @type: is required"),
    ),
    "unknown channel": (
        push_event('<rtEvent type="T" wishedChannel="3"/>'),
        "PushEvent",
        (
            "SOAP-ENV:Client",
            EXECUTION.format("PushEvent"),
            "event, @wishedChannel: must be one of 0 (email), 1 (sms), 41 (ios), 42 (android), got '3'",
        ),
    ),
    "one bad event of a collection": (
        push_event('<Events><rtEvent type="A"/><rtEvent type="B" email="x"/></Events>', method="PushEvents"),
        "PushEvents",
        ("SOAP-ENV:Client", EXECUTION.format("PushEvents"), "event 1, @email: invalid value 'x'"),
    ),
    "no event document": (
        envelope(f"<urn:PushEvent><urn:sessiontoken>mc/{TOKEN}</urn:sessiontoken></urn:PushEvent>"),
        "PushEvent",
        (
            "SOAP-ENV:Client",
            "Error while reading parameters of method 'PushEvent' of service 'nms:rtEvent'.",
            "the event document (second parameter) is missing",
        ),
    ),
    "empty collection": (
        push_event("<Events/>", method="PushEvents"),
        "PushEvents",
        ("SOAP-ENV:Client", EXECUTION.format("PushEvents"), "the collection holds no event"),
    ),
    "too many events": (
        push_event("<Events>" + '<rtEvent type="A"/>' * (MAX_EVENTS + 1) + "</Events>", method="PushEvents"),
        "PushEvents",
        (
            "SOAP-ENV:Client",
            EXECUTION.format("PushEvents"),
            f"at most {MAX_EVENTS} events per PushEvents call, got {MAX_EVENTS + 1}",
        ),
    ),
    "unknown method": (
        envelope(f"<urn:PushIt><urn:sessiontoken>mc/{TOKEN}</urn:sessiontoken></urn:PushIt>"),
        "PushIt",
        (
            "SOAP-ENV:Client",
            "SOP-330006 The method 'PushIt' is not defined in SOAP service 'nms:rtEvent'.",
            None,
        ),
    ),
}


@pytest.mark.parametrize(("body", "method", "expected"), FAULTS.values(), ids=FAULTS.keys())
def test_each_error_gets_its_fault_and_stores_nothing(
    live: LiveApi, body: bytes, method: str, expected: tuple[str, str, str | None]
) -> None:
    assert_refused(live, body, expected, action=f"nms:rtEvent#{method}")


def test_malformed_xml_gets_campaigns_invalid_message_fault(live: LiveApi) -> None:
    body = push_event('<rtevent type="create_account" email="a@example.com"></rtEvent>')
    code, string, detail = assert_refused(live, body)
    assert (code, string) == (
        "SOAP-ENV:Client",
        # Campaign's sentence, with service and method swapped as in Campaign.
        "The XML SOAP message is invalid (service 'PushEvent', method 'nms:rtEvent').",
    )
    assert detail is not None
    assert detail.startswith("(1:")
    assert "rtevent" in detail
    assert b"<![CDATA[" in post(live.url, body).content


def test_an_external_id_is_an_idempotency_key_shared_with_rest(live: LiveApi) -> None:
    event = (
        '<rtEvent type="welcome" email="ann@example.com" externalId="soap-x1"><ctx><a>1</a></ctx></rtEvent>'
    )
    first = plid(post(live.url, push_event(event)))
    assert plid(post(live.url, push_event(event))) == first  # a replay: the same id, stored once
    same = {"type": "welcome", "email": "ann@example.com", "external_id": "soap-x1", "ctx": {"a": "1"}}
    # The content compared is the decoded event with ctx as sent: the SOAP ctx is compact JSON.
    compact = json.dumps(same, separators=(",", ":"))
    rest = requests.post(f"{live.url}/api/v1/events/rt", data=compact, headers=JSON_AUTH, timeout=30)
    assert (rest.status_code, rest.json()["id"], rest.headers.get("Idempotent-Replayed")) == (
        201,
        first,
        "true",
    )
    other = {**same, "ctx": {"a": "2"}}
    assert (
        requests.post(f"{live.url}/api/v1/events/rt", json=other, headers=AUTH, timeout=30).status_code == 409
    )
    assert_refused(
        live,
        push_event(event.replace("<a>1</a>", "<a>2</a>")),
        (
            "SOAP-ENV:Client",
            EXECUTION.format("PushEvent"),
            "@externalId 'soap-x1' is already stored with different content",
        ),
    )


# -- Hostile XML ------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
    + "]>"
)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port nobody should connect to (an external entity or DTD pointing at it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        yield sock


def test_external_entities_are_not_fetched(live: LiveApi, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    for doctype in (
        '<!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        f'<!DOCTYPE e [<!ENTITY xxe SYSTEM "http://127.0.0.1:{port}/x">]>',
        f'<!DOCTYPE e SYSTEM "http://127.0.0.1:{port}/e.dtd">',
        f'<!DOCTYPE e [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p.dtd"> %p;]>',
    ):
        body = doctype.encode() + push_event('<rtEvent type="T"><ctx><a>&xxe;</a></ctx></rtEvent>')
        _, string, detail = assert_refused(live, body)
        assert string.startswith("The XML SOAP message is invalid")
        assert "root:" not in (detail or "")
    with pytest.raises(BlockingIOError):
        listener.accept()


HOSTILE = {
    "billion laughs": BILLION_LAUGHS.encode()
    + push_event('<rtEvent type="T"><ctx><a>&lol9;</a></ctx></rtEvent>'),
    "internal entity": b'<!DOCTYPE e [<!ENTITY x "y">]>' + push_event('<rtEvent type="T" email="&x;"/>'),
    "10,000 levels deep": push_event(
        '<rtEvent type="T"><ctx>' + "<a>" * 10_000 + "</a>" * 10_000 + "</ctx></rtEvent>"
    ),
    "over the size limit": push_event(
        '<rtEvent type="T"><ctx>' + "<a>x</a>" * (MAX_BODY // 8) + "</ctx></rtEvent>"
    ),
    "not XML": b"\x00\xff garbage",
    "empty body": b"",
    "not a SOAP envelope": b'<PushEvent xmlns="urn:nms:rtEvent"><sessiontoken/></PushEvent>',
    "invalid UTF-8": push_event('<rtEvent type="T"><ctx><a>@@</a></ctx></rtEvent>').replace(b"@@", b"\xff"),
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_xml_gets_a_fast_fault_and_stores_nothing(live: LiveApi, body: bytes) -> None:
    _, string, _ = assert_refused(live, body)
    assert string.startswith("The XML SOAP message is invalid")


def test_a_chunked_body_over_the_limit_is_cut_short(live: LiveApi) -> None:
    chunk = b"<a>" * 8192

    def chunks() -> Iterator[bytes]:
        yield push_event("<rtEvent type='T'><ctx>").rsplit(b"</urn:domEvent>", 1)[0]
        for _ in range(MAX_BODY // len(chunk) + 2):
            yield chunk

    before = live.stored()
    response = requests.post(
        f"{live.url}/nl/jsp/soaprouter.jsp",
        data=chunks(),
        headers={"SOAPAction": "nms:rtEvent#PushEvent"},
        timeout=30,
    )
    assert fault(response)[2] == f"the request body is larger than {MAX_BODY} bytes"
    assert live.stored() == before


def test_ctx_deeper_than_the_limit_is_refused_like_rest(live: LiveApi) -> None:
    body = push_event('<rtEvent type="T"><ctx>' + "<a>" * 40 + "x" + "</a>" * 40 + "</ctx></rtEvent>")
    assert assert_refused(live, body)[2] == "event, ctx: ctx is nested deeper than 32 levels"


# -- Charsets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (push_event('<rtEvent type="T"><ctx><a>Zoé</a></ctx></rtEvent>'), "text/xml"),
        (
            push_event('<rtEvent type="T"><ctx><a>Zoé</a></ctx></rtEvent>').decode().encode("latin-1"),
            "text/xml; charset=ISO-8859-1",
        ),
        (
            b'<?xml version="1.0" encoding="ISO-8859-1"?>'
            + push_event('<rtEvent type="T"><ctx><a>Zoé</a></ctx></rtEvent>').decode().encode("latin-1"),
            "text/xml",
        ),
        (
            '<?xml version="1.0" encoding="UTF-16"?>'.encode("utf-16")
            + push_event('<rtEvent type="T"><ctx><a>Zoé</a></ctx></rtEvent>').decode().encode("utf-16")[2:],
            "text/xml",
        ),
        (
            b'<?xml version="1.0" encoding="UTF-8"?>'
            + push_event('<rtEvent type="T"><ctx><a>Zoé</a></ctx></rtEvent>').decode().encode("latin-1"),
            "text/xml; charset=latin-1",
        ),
    ],
    ids=[
        "UTF-8 by default",
        "charset parameter",
        "XML declaration",
        "UTF-16 with a BOM",
        "charset parameter over the declaration",
    ],
)
def test_charsets(live: LiveApi, body: bytes, content_type: str) -> None:
    event_id = plid(post(live.url, body, headers={"Content-Type": content_type}))
    assert rest_event(live, "rt", event_id)["ctx"] == {"a": "Zoé"}


def test_an_unknown_charset_is_a_fault(live: LiveApi) -> None:
    body = push_event('<rtEvent type="T"/>')
    detail = assert_refused(live, body, headers={"Content-Type": "text/xml; charset=klingon"})[2]
    assert detail == "unknown charset 'klingon'"


# -- The stored event is REST's ---------------------------------------------------------------------


def test_a_soap_event_reads_back_as_the_same_event_pushed_by_rest(live: LiveApi) -> None:
    xml = (
        '<rtEvent type="create_account" email="esther.hall@example.com" origin="eShopping" wishedChannel="0"'
        ' language="english" country="EN" mobilePhone="+447700123123"'
        ' scheduled="2030-12-01 10:00:00.000Z"><ctx><website name="eShopping"/>'
        '<customer title="Ms" firstName="Esther"/><items><item>a</item><item>b</item></items></ctx></rtEvent>'
    )
    body = {
        "type": "create_account",
        "channel": "email",
        "email": "esther.hall@example.com",
        "origin": "eShopping",
        "language": "english",
        "country": "EN",
        "mobile_phone": "+447700123123",
        "scheduled": "2030-12-01T10:00:00Z",
        "ctx": {
            "website": {"@name": "eShopping"},
            "customer": {"@title": "Ms", "@firstName": "Esther"},
            "items": {"item": ["a", "b"]},
        },
    }
    for queue, service in (("rt", "nms:rtEvent"), ("batch", "nms:batchEvent")):
        soap_id = plid(
            post(live.url, push_event(xml, service=service), action=f"{service}#PushEvent"), service
        )
        rest = requests.post(f"{live.url}/api/v1/events/{queue}", json=body, headers=AUTH, timeout=30)
        assert rest.status_code == 201, rest.text
        varying = {"id": None, "created": None, "last_modified": None}
        soap_event = rest_event(live, queue, soap_id) | varying
        assert soap_event == rest_event(live, queue, rest.json()["id"]) | varying
        assert soap_event["status_name"] == "Pending"


# -- WSDL and the OpenAPI document ------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["nms:rtEvent", "nms:batchEvent", "xtk:session"])
def test_wsdl(live: LiveApi, schema: str) -> None:
    response = requests.get(f"{live.url}/nl/jsp/schemawsdl.jsp", params={"schema": schema}, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert f'<soap:address location="{live.url}/nl/jsp/soaprouter.jsp"/>' in response.text
    assert (
        requests.post(f"{live.url}/nl/jsp/schemawsdl.jsp?schema={schema}", timeout=30).text == response.text
    )


def test_unknown_wsdl_is_404(live: LiveApi) -> None:
    response = requests.get(f"{live.url}/nl/jsp/schemawsdl.jsp?schema=nms:recipient", timeout=30)
    assert response.status_code == 404


def test_soap_is_not_in_the_openapi_document(live: LiveApi) -> None:
    paths = requests.get(f"{live.url}/openapi.json", timeout=30).json()["paths"]
    assert not [path for path in paths if path.startswith("/nl")]
