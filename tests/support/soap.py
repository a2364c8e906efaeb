"""The SOAP tests' clients and server: building SOAP requests and reading answers, the real standalone
API (uvicorn, real HTTP) they call, and Adobe's JavaScript SDK run by node."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests
from lxml import etree

from tests.support.builders import REPO, airflow_uri

TOKEN = "soap-token"
OTHER_TOKEN = "soap-token-2"
INSTANCE_ID = 3
MAX_EVENTS = 50  # MC_SOAP_MAX_EVENTS of the server
MAX_BODY = 256 * 1024  # MC_SOAP_MAX_BODY_BYTES of the server
SDK_VERSION = "1.2.0"
SDK_DIR = Path(f"/tmp/mc-acc-js-sdk-{SDK_VERSION}")  # a cache shared by runs, outside the repository

SERVER = """
import socket
import sys

import uvicorn

fd = int(sys.argv[1])
# The inherited socket as what it is (uvicorn's own fd= takes any socket for a Unix one: no TCP_NODELAY).
sockets = [socket.socket(fileno=fd)]
uvicorn.Server(uvicorn.Config("messagecenter.api:app", log_level="warning", ws="none")).run(sockets=sockets)
"""


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


@dataclass(frozen=True)
class LiveApi:
    url: str
    dsn: str

    def stored(self) -> int:
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM mc.rt_event) + (SELECT count(*) FROM mc.batch_event)"
            ).fetchone()
        assert row is not None
        return int(row[0])


def start_server(dsn: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``uvicorn messagecenter.api:app`` configured by ``env`` (as in production), on a free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(sock.fileno())],
            pass_fds=[sock.fileno()],
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
                "AIRFLOW_CONN_MC_EXECUTION": airflow_uri(dsn),
                **env,
            },
        )
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, "the API did not start"
        assert time.monotonic() < deadline, "the API did not start in time"
        try:
            if requests.get(f"{url}/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent", timeout=5).ok:
                return server, url
        except requests.ConnectionError:
            time.sleep(0.1)


def run_sdk(sdk_dir: Path, **request: Any) -> dict[str, Any]:
    """Run ``acc_sdk_client.js`` with ``request`` (see that file) and return what it printed."""
    done = subprocess.run(
        ["node", str(Path(__file__).with_name("acc_sdk_client.js")), json.dumps(request)],
        env={**os.environ, "ACC_SDK_DIR": str(sdk_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
