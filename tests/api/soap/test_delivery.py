"""A SOAP event is delivered like a REST one, its template reading ctx as Campaign templates do:
``<%= rtEvent.ctx.firstName %>`` is ``{{ ctx.firstName }}``, ``<%= rtEvent.ctx.customer.@title %>`` is
``{{ ctx.customer['@title'] }}``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.api import create_app
from messagecenter.core.settings import ProcessingSettings, Settings
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates
from messagecenter.templates.rendering import Renderer
from tests.support.soap import plid, push_event

TOKEN = "delivery-token"
SETTINGS = ProcessingSettings(retry_backoff_seconds=0, max_tries=3, deliver_chunk=50, min_shard_size=10)
TEMPLATES = {
    "templates": [
        {
            "event_type": "create_account",
            "channel": "email",
            "subject": "Welcome {{ ctx.customer['@title'] }} {{ ctx.customer['@lastName'] }}",
            "text": (
                "Hello {{ ctx.firstName }}, account {{ ctx.account['@label'] }} on {{ ctx.website['@name'] }}"
                " ({{ ctx.items.item | join(', ') }})"
                " format {{ ctx['#event']['@emailFormat'] }}"
            ),
        }
    ]
}
EVENT = (
    '<{name} type="create_account" email="esther.hall@example.com" origin="eShopping" wishedChannel="0"'
    ' externalId="{external_id}" language="english" country="EN" emailFormat="2">'
    "<ctx><firstName>Esther</firstName>"
    '<website name="eShopping" url="http://www.eShopping.uk"/><account label="0068"/>'
    '<customer title="Ms" firstName="Esther" lastName="Hall"/>'
    "<items><item>pen</item><item>ink</item></items></ctx></{name}>"
)


@pytest.fixture
def client(db_dsn: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(api_tokens=(TOKEN,)), dsn=db_dsn)) as test_client:
        yield test_client


@pytest.mark.parametrize(("service", "queue"), [("nms:rtEvent", "rt"), ("nms:batchEvent", "batch")])
def test_a_soap_event_is_delivered(
    client: TestClient, conn: psycopg.Connection, smtp_sink: Any, service: str, queue: str
) -> None:
    publish_templates(conn, parse_templates(TEMPLATES))
    name = service.partition(":")[2]
    body = push_event(
        EVENT.format(name=name, external_id=f"acc-{queue}"), token=f"mc/{TOKEN}", service=service
    )
    response = client.post(
        "/nl/jsp/soaprouter.jsp", content=body, headers={"SOAPAction": f"{service}#PushEvent"}
    )
    event_id = plid(response, service)

    counts = execution.process_once(conn, queue, SETTINGS, transport_for=transport_for, renderer=Renderer())
    assert counts.sent == 1
    execution.update_events_status(conn)

    read = client.get(f"/api/v1/events/{queue}/{event_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert read.json()["status_name"] == "Sent"
    (mail,) = [r.mail for r in smtp_sink.recorder.received]
    assert mail["To"] == "esther.hall@example.com"
    assert mail["Subject"] == "Welcome Ms Hall"
    assert mail.get_body(("plain",)).get_content().strip() == (
        "Hello Esther, account 0068 on eShopping (pen, ink) format 2"
    )
