"""Building SOAP requests and reading answers in the SOAP tests."""

from __future__ import annotations

from typing import Any

import requests
from lxml import etree

from tests.soap.conftest import TOKEN

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PROLOG = b"<?xml version='1.0'?>\n"


def envelope(method: str, *, header: str = "<soapenv:Header/>", service: str = "nms:rtEvent") -> bytes:
    """A SOAP 1.1 envelope (prefix ``soapenv``, ``urn`` bound to ``urn:<service>``) around ``method``."""
    return (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:urn="urn:{service}">'
        f"{header}<soapenv:Body>{method}</soapenv:Body></soapenv:Envelope>"
    ).encode()


def push_event(
    event: str, *, token: str = f"mc/{TOKEN}", service: str = "nms:rtEvent", method: str = "PushEvent"
) -> bytes:
    """The request of Adobe's SOAP examples: prefixed method, qualified parameters."""
    param = "domEvent" if method == "PushEvent" else "domEventCollection"
    return envelope(
        f"<urn:{method}><urn:sessiontoken>{token}</urn:sessiontoken>"
        f"<urn:{param}>{event}</urn:{param}></urn:{method}>",
        service=service,
    )


def post(
    url: str,
    body: bytes,
    *,
    action: str | None = "nms:rtEvent#PushEvent",
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> requests.Response:
    sent = {"Content-Type": "text/xml; charset=utf-8"}
    if action is not None:
        sent["SOAPAction"] = f'"{action}"'
    sent.update(headers or {})
    return requests.post(f"{url}/nl/jsp/soaprouter.jsp", data=body, headers=sent, cookies=cookies, timeout=30)


def answer(response: requests.Response) -> Any:
    """The first child of the answer's SOAP Body (the ``...Response`` element or the Fault)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.content.startswith(PROLOG), response.text[:100]
    root = etree.fromstring(response.content)
    body = root.find(f"{{{SOAP_ENV}}}Body")
    assert body is not None
    return body[0]


def plid(response: requests.Response, service: str = "nms:rtEvent") -> int:
    """``plId`` of a ``PushEvent`` answer, checked to be in the form real clients parse."""
    element = answer(response)
    assert element.tag == f"{{urn:{service}}}PushEventResponse", response.text
    assert element.prefix is None, "PushEventResponse must be unprefixed, in the default namespace"
    (value,) = element
    assert value.tag == f"{{urn:{service}}}plId"
    assert value.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "xsd:long"
    return int(value.text)


def plids(response: requests.Response, service: str = "nms:rtEvent") -> list[int]:
    """The ids of a ``PushEvents`` answer (``pdomIds`` > ``<name>-collection`` > ``<name id=...>``)."""
    element = answer(response)
    assert element.tag == f"{{urn:{service}}}PushEventsResponse", response.text
    (ids,) = element
    assert ids.tag == f"{{urn:{service}}}pdomIds"
    (collection,) = ids
    name = service.partition(":")[2]
    assert collection.tag == f"{{urn:{service}}}{name}-collection"
    return [int(item.get("id")) for item in collection]


def fault(response: requests.Response) -> tuple[str, str, str | None]:
    """``(faultcode, faultstring, detail)`` of a fault answer."""
    element = answer(response)
    assert element.tag == f"{{{SOAP_ENV}}}Fault", response.text
    assert b"<SOAP-ENV:Fault>" in response.content
    detail = element.find("detail")
    return (
        element.findtext("faultcode"),
        element.findtext("faultstring"),
        (None if detail is None else detail.text),
    )
