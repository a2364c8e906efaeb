"""Adobe's own JavaScript SDK (@adobe/acc-js-sdk 1.2.0, from the npm registry, run by node) pushes
events through its Message Center API unchanged: ``client.NLWS.nmsRtEvent.pushEvent(...)``.

Whatever the SDK calls on its way (the ``nms:rtEvent`` schema through
``xtk:persist#GetEntityIfMoreRecent``, ``Logon``, ``BearerTokenLogon``, ``Logoff``) is answered as a
Campaign server answers it, or the SDK would fail before pushing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from messagecenter.core.ids import split_event_id
from tests.support.soap import INSTANCE_ID, OTHER_TOKEN, TOKEN, LiveApi, run_sdk

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The event of the SDK's Message Center sample ("600 - message center - push event.js").
SAMPLE = {"wishedChannel": 0, "type": "welcome", "email": "alex@example.com", "ctx": {"$firstName": "Alex"}}


def stored(live: LiveApi, queue: str, event_id: str) -> dict[str, Any]:
    response = requests.get(f"{live.url}/api/v1/events/{queue}/{event_id}", headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


@pytest.mark.parametrize(
    ("mode", "credential", "calls"),
    [
        # ofSessionToken(url, "mc/<password>"): no logon call, the token on every call.
        ("session", f"mc/{TOKEN}", ["xtk:persist#GetEntityIfMoreRecent", "nms:rtEvent#PushEvent"]),
        # ofImsBearerToken: Authorization: Bearer on every call.
        (
            "ims-bearer",
            OTHER_TOKEN,
            ["xtk:persist#GetEntityIfMoreRecent", "nms:rtEvent#PushEvent", "xtk:session#Logoff"],
        ),
        # ofBearerToken: exchanged for a session token by xtk:session#BearerTokenLogon.
        (
            "bearer",
            TOKEN,
            [
                "xtk:session#BearerTokenLogon",
                "xtk:persist#GetEntityIfMoreRecent",
                "nms:rtEvent#PushEvent",
                "xtk:session#Logoff",
            ],
        ),
        # ofUserAndPassword: xtk:session#Logon, then the session and security tokens.
        (
            "password",
            f"mc/{TOKEN}",
            [
                "xtk:session#Logon",
                "xtk:persist#GetEntityIfMoreRecent",
                "nms:rtEvent#PushEvent",
                "xtk:session#Logoff",
            ],
        ),
    ],
)
def test_the_message_center_sample_pushes_its_event(
    live: LiveApi, acc_sdk: Path, mode: str, credential: str, calls: list[str]
) -> None:
    result = run_sdk(
        acc_sdk, url=live.url, mode=mode, credential=credential, service="nmsRtEvent", events=[SAMPLE]
    )
    assert "error" not in result, result
    assert result["calls"] == calls
    (event_id,) = result["ids"]  # the SDK reads plId as the id, a string
    assert split_event_id(int(event_id))[0] == INSTANCE_ID
    event = stored(live, "rt", event_id)
    assert (event["type"], event["channel"], event["email"]) == ("welcome", "email", "alex@example.com")
    assert event["ctx"] == {"firstName": "Alex"}


def test_sdk_attributes_and_elements_reach_templates(live: LiveApi, acc_sdk: Path) -> None:
    """In the SDK's JSON, ``$name`` is an element and ``name`` an attribute: ``ctx.customer.title`` is
    ``rtEvent.ctx.customer.@title`` in Campaign, ``ctx.customer['@title']`` here."""
    event = {
        "type": "order_confirmation",
        "email": "ann@example.com",
        "externalId": "sdk-order-1",
        "ctx": {"$firstName": "Ann", "customer": {"title": "Ms"}, "order": {"number": "1596"}},
    }
    result = run_sdk(
        acc_sdk, url=live.url, mode="session", credential=f"mc/{TOKEN}", service="nmsRtEvent", events=[event]
    )
    assert "error" not in result, result
    stored_event = stored(live, "rt", result["ids"][0])
    assert stored_event["external_id"] == "sdk-order-1"
    assert stored_event["ctx"] == {
        "firstName": "Ann",
        "customer": {"@title": "Ms"},
        "order": {"@number": "1596"},
    }


def test_batch_events_and_push_events(live: LiveApi, acc_sdk: Path) -> None:
    # The SDK names a nms:batchEvent event after the parameter (<event>): any name is accepted.
    result = run_sdk(
        acc_sdk,
        url=live.url,
        mode="session",
        credential=f"mc/{TOKEN}",
        service="nmsBatchEvent",
        events=[SAMPLE],
    )
    assert "error" not in result, result
    assert result["calls"] == ["xtk:persist#GetEntityIfMoreRecent", "nms:batchEvent#PushEvent"]
    assert stored(live, "batch", result["ids"][0])["ctx"] == {"firstName": "Alex"}

    collection = {"rtEvent": [{**SAMPLE, "ctx": {"$n": str(i)}} for i in range(3)]}
    result = run_sdk(
        acc_sdk,
        url=live.url,
        mode="session",
        credential=f"mc/{TOKEN}",
        service="nmsRtEvent",
        events=collection,
        many=True,
    )
    assert "error" not in result, result
    ((answer,),) = [list(ids.values()) for ids in result["ids"]]  # {"rtEvent": [{"id": ...}, ...]}
    assert [stored(live, "rt", item["id"])["ctx"] for item in answer] == [{"n": "0"}, {"n": "1"}, {"n": "2"}]


def test_faults_reach_the_sdk_as_campaign_exceptions(live: LiveApi, acc_sdk: Path) -> None:
    before = live.stored()
    result = run_sdk(
        acc_sdk, url=live.url, mode="session", credential="mc/wrong", service="nmsRtEvent", events=[SAMPLE]
    )
    error = result["error"]
    assert (error["name"], error["faultCode"], error["detail"]) == (
        "CampaignException",
        "SOAP-ENV:Client",
        "Invalid login or password. Connection denied.",
    )
    result = run_sdk(
        acc_sdk,
        url=live.url,
        mode="session",
        credential=f"mc/{TOKEN}",
        service="nmsRtEvent",
        events=[{**SAMPLE, "email": "not-an-address"}],
    )
    error = result["error"]
    assert error["errorCode"] == "SOP-330011"  # the code the SDK extracts from the fault string
    assert error["faultString"] == "Error while executing the method 'PushEvent' of service 'nms:rtEvent'."
    assert error["detail"] == "event, @email: invalid value 'not-an-address'"
    assert live.stored() == before
