"""In the Airflow API server, the plugin serves Campaign's SOAP interface where Campaign clients call
it: ``/nl/jsp/soaprouter.jsp`` at the server's root (a second plugin app, mounted at ``/nl``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from messagecenter.core.ids import split_event_id
from messagecenter.core.settings import get_settings
from tests.support.builders import airflow_uri
from tests.support.soap import fault, plid, push_event

pytestmark = pytest.mark.airflow


@pytest.fixture
def airflow_client(monkeypatch: pytest.MonkeyPatch, db_dsn: str, airflow_db: Path) -> Iterator[TestClient]:
    for name, value in {
        "MC_API_TOKENS": "plugin-token",
        "AIRFLOW_CONN_MC_EXECUTION": airflow_uri(db_dsn),
        "MC_INSTANCE_ID": "9",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    from airflow.api_fastapi.app import create_app, purge_cached_app

    purge_cached_app()
    with TestClient(create_app(apps="core")) as client:
        yield client
    purge_cached_app()
    get_settings.cache_clear()


def test_soap_answers_at_the_root_of_the_airflow_api_server(airflow_client: TestClient) -> None:
    event = '<rtEvent type="welcome" email="ann@example.com"><ctx><firstName>Ann</firstName></ctx></rtEvent>'
    headers = {"SOAPAction": "nms:rtEvent#PushEvent", "Content-Type": "text/xml; charset=utf-8"}
    pushed = airflow_client.post(
        "/nl/jsp/soaprouter.jsp", content=push_event(event, token="mc/plugin-token"), headers=headers
    )
    event_id = plid(pushed)
    assert split_event_id(event_id)[0] == 9
    # The intake API and the SOAP app share one state: the event reads back through REST.
    read = airflow_client.get(
        f"/messagecenter/api/v1/events/rt/{event_id}", headers={"Authorization": "Bearer plugin-token"}
    )
    assert read.json()["ctx"] == {"firstName": "Ann"}
    refused = airflow_client.post(
        "/nl/jsp/soaprouter.jsp", content=push_event(event, token="mc/wrong"), headers=headers
    )
    assert fault(refused)[2] == "Invalid login or password. Connection denied."

    wsdl = airflow_client.get("/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent")
    assert '<soap:address location="http://testserver/nl/jsp/soaprouter.jsp"/>' in wsdl.text
    # Served once, at the root: not under the intake API's prefix.
    assert airflow_client.post("/messagecenter/nl/jsp/soaprouter.jsp", content=b"").status_code == 404
