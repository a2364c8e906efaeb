"""zeep, a WSDL-driven SOAP client: it reads our WSDL and calls PushEvent / PushEvents on both
services, and Logon, as a generated client of Campaign's WSDL does."""

from __future__ import annotations

import pytest
import requests
import zeep
from lxml import etree

from messagecenter.core.ids import split_event_id
from tests.support.soap import INSTANCE_ID, TOKEN, LiveApi

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SERVICES = [("nms:rtEvent", "rt", "rtEvent"), ("nms:batchEvent", "batch", "batchEvent")]


def client(live: LiveApi, schema: str) -> zeep.Client:
    return zeep.Client(f"{live.url}/nl/jsp/schemawsdl.jsp?schema={schema}")


def stored_ctx(live: LiveApi, queue: str, event_id: int) -> dict[str, object]:
    response = requests.get(f"{live.url}/api/v1/events/{queue}/{event_id}", headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    ctx: dict[str, object] = response.json()["ctx"]
    return ctx


@pytest.mark.parametrize(("schema", "queue", "element"), SERVICES)
def test_push_event(live: LiveApi, schema: str, queue: str, element: str) -> None:
    event = etree.fromstring(
        f'<{element} type="welcome" email="zeep@example.com" wishedChannel="0">'
        f'<ctx><firstName>Zoé</firstName><customer title="Ms"/></ctx></{element}>'
    )
    event_id = client(live, schema).service.PushEvent(
        sessiontoken=f"mc/{TOKEN}", domEvent={"_value_1": event}
    )
    assert isinstance(event_id, int)
    assert split_event_id(event_id)[0] == INSTANCE_ID
    assert stored_ctx(live, queue, event_id) == {"firstName": "Zoé", "customer": {"@title": "Ms"}}


@pytest.mark.parametrize(("schema", "queue", "element"), SERVICES)
def test_push_events(live: LiveApi, schema: str, queue: str, element: str) -> None:
    events = etree.fromstring(
        "<Events>"
        + "".join(
            f'<{element} type="news" email="z{i}@example.com"><ctx><n>{i}</n></ctx></{element}>'
            for i in range(4)
        )
        + "</Events>"
    )
    collection = client(live, schema).service.PushEvents(
        sessiontoken=f"mc/{TOKEN}", domEventCollection={"_value_1": events}
    )
    assert collection.tag == f"{{urn:{schema}}}{element}-collection"
    ids = [int(item.get("id")) for item in collection]
    assert [stored_ctx(live, queue, i) for i in ids] == [{"n": str(i)} for i in range(4)]


def test_bad_credentials_are_a_soap_fault(live: LiveApi) -> None:
    event = etree.fromstring('<rtEvent type="welcome" email="zeep@example.com"/>')
    with pytest.raises(zeep.exceptions.Fault) as raised:
        client(live, "nms:rtEvent").service.PushEvent(sessiontoken="mc/wrong", domEvent={"_value_1": event})
    assert (
        raised.value.message
        == "Error while reading parameters of method 'PushEvent' of service 'nms:rtEvent'."
    )
    assert raised.value.code == "SOAP-ENV:Client"
    assert raised.value.detail.text == "Invalid login or password. Connection denied."


def test_logon_then_push_with_the_session_token(live: LiveApi) -> None:
    session = client(live, "xtk:session").service.Logon(
        sessiontoken="",
        strLogin="mc",
        strPassword=TOKEN,
        elemParameters={"_value_1": etree.Element("parameters")},
    )
    assert session.pstrSessionToken.startswith("___")
    event = etree.fromstring('<rtEvent type="welcome" email="zeep@example.com"/>')
    event_id = client(live, "nms:rtEvent").service.PushEvent(
        sessiontoken=session.pstrSessionToken, domEvent={"_value_1": event}
    )
    assert event_id > 0
