"""A configuration error tells a caller nothing of the configuration: the caller may not be
authenticated (the tokens are configuration too). The detail goes to the server's log."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from messagecenter.api import create_app
from messagecenter.core.settings import get_settings

TOKEN = "config-leak-token"
BAD_VALUE = "zz-not-a-number"
SOAP_PUSH = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns:urn="urn:nms:rtEvent"><soapenv:Header/><soapenv:Body>'
    f"<urn:PushEvent><urn:sessiontoken>mc/{TOKEN}</urn:sessiontoken>"
    '<urn:domEvent><rtEvent type="welcome" email="ann@example.com"/></urn:domEvent>'
    "</urn:PushEvent></soapenv:Body></soapenv:Envelope>"
).encode()


@pytest.fixture
def misconfigured(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The standalone API of a process whose MC_INSTANCE_ID is invalid (settings from the environment)."""
    monkeypatch.setenv("MC_INSTANCE_ID", BAD_VALUE)
    monkeypatch.setenv("MC_API_TOKENS", TOKEN)
    get_settings.cache_clear()
    try:
        with TestClient(create_app()) as client:
            yield client
    finally:
        get_settings.cache_clear()


def assert_no_detail(text: str) -> None:
    assert "MC_INSTANCE_ID" not in text
    assert BAD_VALUE not in text
    assert "255" not in text


def test_no_caller_learns_the_configuration_error_the_log_does(
    misconfigured: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with caplog.at_level(logging.ERROR, logger="messagecenter.api"):
        answers = [
            misconfigured.get("/api/v1/health"),  # no token
            misconfigured.get("/api/v1/health", headers={"Authorization": "Bearer guessed"}),
            misconfigured.get("/api/v1/health", headers=auth),
            misconfigured.post("/api/v1/events/rt", json={"type": "OTP"}),
            misconfigured.get("/api/v1/unsubscribe/some-token"),
            misconfigured.post("/api/v1/feedback/mailgun", json={}),
        ]
        soap = misconfigured.post(
            "/nl/jsp/soaprouter.jsp",
            content=SOAP_PUSH,
            headers={"SOAPAction": "nms:rtEvent#PushEvent", "Content-Type": "text/xml; charset=utf-8"},
        )
    for response in answers:
        assert response.status_code in (401, 503), (response.request.url, response.text)
        assert_no_detail(response.text)
        if response.status_code == 503:
            assert response.json() == {"detail": "service not configured"}
    assert answers[2].status_code == 503  # even with the right token: it cannot be checked
    assert_no_detail(soap.text)
    assert "service not configured" in soap.text
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(f"MC_INSTANCE_ID must be an integer between 1 and 255, got '{BAD_VALUE}'" in m for m in logged)
