"""Twilio and Vonage SMS over their REST APIs, against local servers that check the documented format.

The servers (``devstack.sms_rest``) check the path, the credentials, the content type and every
form field of each request, and answer as the providers document, after a latency. Through the
``mc_sms`` connection as operators set it (extra ``provider``), then through the delivery pipeline
against a real PostgreSQL: one bad number fails that event alone, a 429 is retried after its
``Retry-After``, and the status callback each message asks for is one the feedback webhooks verify
and match to the event.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import psycopg
import pytest
from devstack.sms_rest import (
    ACCOUNT_SID,
    API_KEY,
    API_SECRET,
    AUTH_TOKEN,
    FakeTwilio,
    FakeVonage,
    running,
    twilio_error,
    vonage_error,
    vonage_signature,
)
from fastapi.testclient import TestClient

from messagecenter.airflow.transports import http_api_from_airflow, http_transport, transport_for
from messagecenter.api import create_app
from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import FeedbackSettings, Settings, get_settings
from messagecenter.core.types import Status
from messagecenter.delivery import HttpTransport, Outcome, OutgoingMessage
from messagecenter.delivery.sms_rest import GSM_7, SmsAccount, TwilioApi, VonageApi
from messagecenter.feedback.webhooks import ProviderSecret, WebhookRequest, twilio, vonage
from tests.support.builders import SETTINGS, publish, push, run_batch
from tests.support.sinks import Reply

CONN_ID = "mc_sms_rest_test"
ENV = f"AIRFLOW_CONN_{CONN_ID.upper()}"
PUBLIC_URL = "https://mc.example.com/messagecenter"
LATENCY = 0.05
SENT, FAILED = Status.SENT, Status.FAILED


@pytest.fixture
def public_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MC_PUBLIC_URL", PUBLIC_URL)
    get_settings.cache_clear()
    yield PUBLIC_URL
    get_settings.cache_clear()


@pytest.fixture
def fake_twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    with running(FakeTwilio(LATENCY)) as server:
        monkeypatch.setenv(ENV, server.connection())
        yield server
        assert server.violations == []


@pytest.fixture
def fake_vonage(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVonage]:
    with running(FakeVonage(LATENCY)) as server:
        monkeypatch.setenv(ENV, server.connection())
        yield server
        assert server.violations == []


def sms(event_id: int = 7, address: str = "+33612345678", text: str = "Your code: 1234") -> OutgoingMessage:
    return OutgoingMessage(event_id=event_id, channel=1, address=address, text=text)


def send(*messages: OutgoingMessage) -> list[Any]:
    with http_transport(CONN_ID) as transport:
        return [transport.send(m) for m in messages]


# --- Twilio ---------------------------------------------------------------------------------------


def test_twilio_request_is_the_documented_form_with_a_status_callback(fake_twilio, public_url) -> None:
    (result,) = send(sms(event_id=7, address="+33 6 12-34-56.78"))

    assert result.outcome is Outcome.SENT, result.error
    [request] = fake_twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "To": "+33612345678",
        "From": "+15005550006",
        "Body": "Your code: 1234",
        "StatusCallback": f"{PUBLIC_URL}/api/v1/feedback/twilio?mc_event_id=7",
    }
    assert result.message_id == request.answer["sid"]
    assert result.message_id.startswith("SM")
    assert len(result.message_id) == 34
    assert result.extra["http_status"] == 201
    assert json.loads(result.provider_answer)["status"] == "queued"


def test_twilio_messaging_service_and_no_public_url(monkeypatch, fake_twilio) -> None:
    monkeypatch.setenv(
        ENV, fake_twilio.connection(**{"from": None, "messaging_service_sid": "MG" + "a" * 32})
    )
    (result,) = send(sms())

    assert result.outcome is Outcome.SENT, result.error
    assert fake_twilio.requests[0].form == {
        "To": "+33612345678",
        "MessagingServiceSid": "MG" + "a" * 32,
        "Body": "Your code: 1234",
    }  # no MC_PUBLIC_URL: no StatusCallback


def twilio_rfc9457(status: int, code: int, title: str) -> Reply:
    body = {"type": f"https://www.twilio.com/docs/errors/{code}", "title": title, "status": status}
    return Reply(status, json.dumps({**body, "code": code, "detail": title}))


@pytest.mark.parametrize(
    ("reply", "outcome", "error"),
    [
        (
            twilio_error(400, 21211, "The 'To' number +3361 is not a valid phone number."),
            "permanent",
            "21211",
        ),
        (twilio_error(400, 21614, "'To' number is not a valid mobile number"), "permanent", "21614"),
        (twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"), "permanent", "21610"),
        (twilio_error(400, 21408, "Permission to send an SMS has not been enabled"), "permanent", "21408"),
        (
            twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit"),
            "permanent",
            "21617",
        ),
        (twilio_rfc9457(400, 21211, "Invalid 'To' Phone Number"), "permanent", "21211"),
        (Reply(400, "<html>Bad Request</html>"), "permanent", "HTTP 400"),
        (twilio_error(401, 20003, "Authenticate"), "transient", "account or its settings"),
        (twilio_error(404, 20404, "The requested resource was not found"), "transient", "20404"),
        (
            twilio_error(400, 21606, "The 'From' phone number provided is not a valid message-capable"),
            "transient",
            "account or its settings",
        ),
        (
            twilio_error(400, 21611, "This 'From' number has exceeded the maximum number of queued messages"),
            "transient",
            "21611",
        ),
        (Reply(403, ""), "transient", "account or its settings"),
        (twilio_error(500, 20500, "Internal Server Error"), "transient", "HTTP 500"),
        (twilio_error(503, 20503, "Service Unavailable"), "transient", "HTTP 503"),
    ],
    ids=lambda v: v.body[:40] if isinstance(v, Reply) else None,
)
def test_twilios_documented_errors(fake_twilio, reply, outcome, error) -> None:
    fake_twilio.replies.append(reply)
    (result,) = send(sms())

    assert result.outcome is Outcome(outcome)
    assert error in result.error
    assert result.message_id is None
    assert result.provider_answer == (reply.body or None)
    assert AUTH_TOKEN not in result.error


def test_twilios_refused_credentials_open_the_breaker_a_refused_sender_does_not(fake_twilio) -> None:
    fake_twilio.replies.append(twilio_error(401, 20003, "Authenticate"))
    fake_twilio.replies.append(twilio_error(400, 21606, "The 'From' phone number is not message-capable"))
    (credentials, sender) = send(sms(event_id=1), sms(event_id=2))

    assert credentials.outcome is sender.outcome is Outcome.TRANSIENT
    assert credentials.extra["account_refused"] is True
    assert "account_refused" not in sender.extra  # 'From' may only be refused for some destinations


def test_twilio_429_is_retried_after_its_retry_after(fake_twilio) -> None:
    fake_twilio.replies.append(
        Reply(429, twilio_error(429, 20429, "Too Many Requests").body, headers=(("Retry-After", "7"),))
    )
    (throttled, sent) = send(sms(event_id=1), sms(event_id=2))

    assert throttled.outcome is Outcome.TRANSIENT
    assert throttled.extra["retry_after"] == 7.0
    assert "20429" in throttled.error
    assert sent.outcome is Outcome.SENT


def test_twilios_status_callback_is_verified_and_matched_to_the_event(fake_twilio, public_url) -> None:
    (result,) = send(sms(event_id=4242))
    callback = fake_twilio.requests[0].form["StatusCallback"]

    # What Twilio posts to that URL when the carrier gives up: signed with the account's auth token.
    params = [
        ("AccountSid", ACCOUNT_SID),
        ("ErrorCode", "30005"),
        ("From", "+15005550006"),
        ("MessageSid", result.message_id),
        ("MessageStatus", "undelivered"),
        ("SmsSid", result.message_id),
        ("SmsStatus", "undelivered"),
        ("To", "+33612345678"),
    ]
    signature = twilio.compute_signature(AUTH_TOKEN, callback, params)
    request = WebhookRequest(
        "POST",
        callback,
        {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        urlencode(params).encode(),
    )
    twilio.verify(request, ProviderSecret(password=AUTH_TOKEN))
    [event] = twilio.parse(request)

    assert event.event_id == 4242
    assert event.provider_message_id == result.message_id
    assert event.kind == "failed"
    assert event.severity == "permanent"


# --- Vonage ---------------------------------------------------------------------------------------


def test_vonage_request_is_the_documented_form(fake_vonage, public_url) -> None:
    (result,) = send(sms(event_id=9, address="+44 7700 900000", text="Hello [€5] ^_^"))

    assert result.outcome is Outcome.SENT, result.error
    [request] = fake_vonage.requests
    assert request.path == "/sms/json"
    assert "authorization" not in request.headers
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "from": "AcmeInc",
        "to": "447700900000",
        "text": "Hello [€5] ^_^",  # GSM 7-bit (extension table included): no type
        "client-ref": "mc_event_id=9",
        "callback": f"{PUBLIC_URL}/api/v1/feedback/vonage",  # no query string: Vonage signs params
    }
    assert result.message_id == request.answer["messages"][0]["message-id"]
    assert result.extra["http_status"] == 200


@pytest.mark.parametrize("text", ["Привет", "Code 🙂", "Ça coûte 5 €"])
def test_vonage_unicode_type_when_the_text_is_not_gsm(fake_vonage, text) -> None:
    (result,) = send(sms(text=text))

    assert result.outcome is Outcome.SENT, result.error
    assert fake_vonage.requests[0].form["type"] == "unicode"


def test_gsm_alphabet_is_the_default_one_and_its_extension() -> None:
    assert len(GSM_7) == 127 + 10  # 128 minus escape, plus the extension table's ten


def test_a_long_vonage_text_keeps_the_first_parts_id(fake_vonage) -> None:
    (result,) = send(sms(text="x" * 400))

    assert result.outcome is Outcome.SENT, result.error
    answer = fake_vonage.requests[0].answer
    assert answer["message-count"] == "3"
    assert result.message_id == answer["messages"][0]["message-id"]


def test_a_long_vonage_text_refused_after_its_first_part_is_failed(fake_vonage) -> None:
    parts = [
        {"to": "447700900000", "message-id": "0A00000012345671", "status": "0"},
        {"status": "12", "error-text": "Message too long"},
    ]
    fake_vonage.replies.append(Reply(200, json.dumps({"message-count": "2", "messages": parts})))
    (result,) = send(sms(text="x" * 300))

    assert result.outcome is Outcome.PERMANENT
    assert result.message_id == "0A00000012345671"
    assert result.error == "1 of 2 parts accepted, then Vonage status 12 Message Too Long: Message too long"


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (vonage_error("1", "Throughput Rate Exceeded - please wait [ 1 ] and retry"), "transient"),
        (vonage_error("2", "Missing to param"), "permanent"),
        (vonage_error("3", "Invalid to param"), "permanent"),
        (vonage_error("4", "Bad Credentials"), "transient"),
        (vonage_error("5", "Internal Error"), "transient"),
        (vonage_error("6", "Unroutable message - rejected"), "permanent"),
        (vonage_error("7", "Number barred."), "permanent"),
        (vonage_error("8", "Account suspended"), "transient"),
        (vonage_error("9", "Quota Exceeded - rejected"), "transient"),
        (vonage_error("10", "Too many existing binds"), "transient"),
        (vonage_error("11", "Account not enabled for HTTP"), "transient"),
        (vonage_error("12", "Message too long"), "permanent"),
        (vonage_error("14", "Invalid Signature"), "transient"),
        (vonage_error("15", "Illegal Sender Address - rejected"), "transient"),
        (vonage_error("23", "Invalid Callback Url"), "transient"),
        (vonage_error("29", "Non White-listed Destination - rejected"), "permanent"),
        (vonage_error("32", "Signature And API Secret Disallowed"), "transient"),
        (vonage_error("33", "Number de-activated"), "permanent"),
        (vonage_error("99", "Something new"), "transient"),
        (Reply(401, '{"type": "https://developer.nexmo.com/api-errors#unauthorized"}'), "transient"),
        (Reply(500, "Internal Server Error"), "transient"),
        (Reply(200, "<html>maintenance</html>"), "transient"),
    ],
    ids=lambda v: v.body[:48] if isinstance(v, Reply) else None,
)
def test_vonages_documented_statuses(fake_vonage, reply, outcome) -> None:
    fake_vonage.replies.append(reply)
    (result,) = send(sms())

    assert result.outcome is Outcome(outcome)
    assert result.message_id is None
    code = None
    if reply.status == 200 and "messages" in reply.body:
        code = json.loads(reply.body)["messages"][0]["status"]
        assert result.error.startswith(f"Vonage status {code} ")
    # What every message would get (credentials, signature, account, credit) opens the breaker at
    # once; a sender or callback some messages may be refused for, or an outage, does not.
    every_message = code in {"4", "8", "9", "11", "14", "32"} or reply.status == 401
    assert result.extra.get("account_refused", False) is every_message
    assert API_SECRET not in result.error


def test_vonage_callback_too_long_is_left_out(monkeypatch, fake_vonage, caplog) -> None:
    monkeypatch.setenv("MC_PUBLIC_URL", "https://mc.example.com/" + "x" * 80)
    get_settings.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            (result,) = send(sms())
    finally:
        get_settings.cache_clear()

    assert result.outcome is Outcome.SENT
    assert "callback" not in fake_vonage.requests[0].form
    assert "no callback asked for" in caplog.text


SIGNATURE_SECRET = "vonage-signature-secret"


@contextmanager
def signed_vonage(
    monkeypatch: pytest.MonkeyPatch, method: str = "md5hash", **extra: Any
) -> Iterator[FakeVonage]:
    """A Vonage account that enforces signed requests, and the connection to it: its signature
    secret and method in the extras, and its API secret as the password all the same."""
    server = FakeVonage(LATENCY, signature_secret=SIGNATURE_SECRET, signature_method=method, signed_only=True)
    with running(server):
        conn_extra = {"signature_secret": SIGNATURE_SECRET, "signature_method": method, **extra}
        monkeypatch.setenv(ENV, server.connection(**conn_extra))
        yield server
        assert server.violations == []


@pytest.mark.parametrize("method", ["md5hash", "md5", "sha1", "sha256", "sha512"])
def test_vonage_signed_request_carries_sig_and_timestamp_never_the_api_secret(
    monkeypatch, public_url, method
) -> None:
    with signed_vonage(monkeypatch, method) as server:
        before = time.time()
        (result,) = send(sms(event_id=9, address="+44 7700 900000", text="a&b=c"))

    assert result.outcome is Outcome.SENT, result.error
    [request] = server.requests
    form = dict(request.form)
    assert "api_secret" not in form
    assert API_SECRET not in urlencode(form)
    sig, timestamp = form.pop("sig"), form["timestamp"]
    assert before - 1 <= int(timestamp) <= time.time()  # UNIX seconds
    assert form == {
        "api_key": API_KEY,
        "from": "AcmeInc",
        "to": "447700900000",
        "text": "a&b=c",  # sent as is, signed as "a_b_c"
        "client-ref": "mc_event_id=9",
        "callback": f"{PUBLIC_URL}/api/v1/feedback/vonage",
        "timestamp": timestamp,
    }
    assert sig == vonage_signature(form, SIGNATURE_SECRET, method).lower()
    assert result.message_id == request.answer["messages"][0]["message-id"]


@pytest.mark.parametrize(
    "case", ["wrong secret", "other method", "stale clock", "unsigned", "no signature secret at Vonage"]
)
def test_vonage_refuses_a_bad_signature_and_the_breaker_opens(monkeypatch, case) -> None:
    """Vonage's status 14 for a signature it cannot verify: not this message's fault (retried, never
    failed alone) and every message would get it (the provider's breaker opens at once)."""
    extra: dict[str, Any] = {
        "wrong secret": {"signature_secret": "not-the-signature-secret"},
        "other method": {"signature_method": "sha256"},
        "unsigned": {"signature_secret": None, "signature_method": None},
    }.get(case, {})
    with signed_vonage(monkeypatch, **extra) as server:
        if case == "no signature secret at Vonage":
            server.signature_secret = None
        if case == "stale clock":  # a worker whose clock is ten minutes late
            account = SmsAccount(
                server.base_url, API_KEY, API_SECRET, sender="AcmeInc", signature_secret=SIGNATURE_SECRET
            )
            late = HttpTransport(lambda: VonageApi(account, clock=lambda: time.time() - 600), name="late")
            with late:
                result = late.send(sms())
        else:
            (result,) = send(sms())

    assert len(server.requests) == 1
    assert result.outcome is Outcome.TRANSIENT
    assert result.error.startswith("Vonage status 14 Invalid Signature")
    assert "check the connection" in result.error
    assert result.extra["account_refused"] is True
    assert SIGNATURE_SECRET not in result.error
    assert API_SECRET not in result.error


def test_the_fake_vonage_refuses_a_signature_with_the_api_secret(monkeypatch) -> None:
    with signed_vonage(monkeypatch) as server:
        form = {"api_key": API_KEY, "from": "AcmeInc", "to": "447700900000", "text": "hi"}
        form["timestamp"] = str(int(time.time()))
        form["sig"] = vonage_signature(form, SIGNATURE_SECRET, "md5hash")
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        with httpx.Client(base_url=server.base_url, headers=headers) as client:
            signed = client.post("/sms/json", content=urlencode(form)).json()
            both = client.post("/sms/json", content=urlencode({**form, "api_secret": API_SECRET})).json()

    assert signed["messages"][0]["status"] == "0"  # the documented steps, done by hand: accepted
    assert both["messages"][0]["status"] == "32"


def test_vonage_signing_settings_are_checked(monkeypatch) -> None:
    use(monkeypatch, login="k", extra={"provider": "vonage", "from": "A", "signature_secret": "s"})
    assert http_api_from_airflow(CONN_ID).request(sms()).content  # signing: no API secret needed
    for extra, error in [
        ({"signature_secret": "s", "signature_method": "sha3"}, "must be one of md5hash, md5, sha1"),
        ({"signature_method": "sha256"}, "'signature_method' needs 'signature_secret'"),
    ]:
        use(monkeypatch, login="k", password="p", extra={"provider": "vonage", "from": "A", **extra})
        with pytest.raises(ConfigError, match=re.escape(error)):
            http_api_from_airflow(CONN_ID)
    account = SmsAccount(
        "https://rest.nexmo.com", "k", "api-secret", sender="A", signature_secret="sig-secret"
    )
    assert "api-secret" not in repr(VonageApi(account))
    assert "sig-secret" not in repr(VonageApi(account))


def test_vonages_receipt_is_matched_to_the_event_by_client_ref(fake_vonage, public_url) -> None:
    (result,) = send(sms(event_id=5151))
    form = fake_vonage.requests[0].form
    receipt = {
        "msisdn": form["to"],
        "to": form["from"],
        "network-code": "20810",
        "messageId": result.message_id,
        "price": "0.03330000",
        "status": "failed",
        "scts": "2001011400",
        "err-code": "9",
        "client-ref": form["client-ref"],
        "message-timestamp": "2020-01-01 14:00:00",
        "timestamp": str(int(time.time())),
    }
    receipt["sig"] = vonage.compute_signature("signature-secret", receipt)
    request = WebhookRequest("GET", f"{form['callback']}?{urlencode(receipt)}")
    vonage.verify(request, ProviderSecret(password="signature-secret"))
    [event] = vonage.parse(request)

    assert event.event_id == 5151
    assert event.provider_message_id == result.message_id
    assert event.severity == "permanent"  # err-code 9: Illegal Number


# --- The connection -------------------------------------------------------------------------------


def use(monkeypatch: pytest.MonkeyPatch, **conn: Any) -> None:
    monkeypatch.setenv(ENV, json.dumps({"conn_type": "http", **conn}))


def test_the_connection_chooses_the_provider_and_its_base_url(monkeypatch) -> None:
    use(monkeypatch, login="ACx", password="t", extra={"provider": "twilio", "from": "+1500"})
    api = http_api_from_airflow(CONN_ID)
    assert isinstance(api, TwilioApi)
    assert api.url == "https://api.twilio.com/2010-04-01/Accounts/ACx/Messages.json"

    use(monkeypatch, login="k", password="s", extra={"provider": "Vonage", "from": "Acme"})
    api = http_api_from_airflow(CONN_ID)
    assert isinstance(api, VonageApi)
    assert api.url == "https://rest.nexmo.com/sms/json"

    use(monkeypatch, host="sms.test", schema="https", port=8443, login="k", password="s",
        extra={"provider": "vonage", "from": "Acme"})  # fmt: skip
    assert http_api_from_airflow(CONN_ID).url == "https://sms.test:8443/sms/json"

    use(monkeypatch, host="ignored.test", login="k", password="s",
        extra={"provider": "vonage", "from": "Acme", "base_url": "http://127.0.0.1:9/"})  # fmt: skip
    assert http_api_from_airflow(CONN_ID).url == "http://127.0.0.1:9/sms/json"

    use(monkeypatch, host="127.0.0.1", extra={"endpoint": "/sms"})  # no provider: the generic JSON API
    assert type(http_api_from_airflow(CONN_ID)).__name__ == "HttpEndpoint"


def test_sms_goes_through_the_provider_of_mc_sms(monkeypatch, fake_twilio) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", fake_twilio.connection(max_connections=4, max_rate=50))
    transport = transport_for(1)
    assert isinstance(transport, HttpTransport)
    assert (transport.name, transport.max_connections, transport.max_rate) == ("mc_sms", 4, 50)
    with transport:
        assert transport.send(sms()).outcome is Outcome.SENT


def test_the_doctor_probes_the_providers_api(monkeypatch, fake_twilio) -> None:
    from messagecenter.airflow.readers import delivery_findings

    monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", fake_twilio.connection())  # no host: base_url
    [sms_finding] = [f for f in delivery_findings() if f.what == "mc_sms (sms)"]

    assert sms_finding.level == "ok"
    assert f"{fake_twilio.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json" in sms_finding.message


@pytest.mark.parametrize(
    ("conn", "error"),
    [
        ({"login": "ACx", "password": "t", "extra": {"provider": "sinch"}}, "must be one of twilio, vonage"),
        ({"password": "t", "extra": {"provider": "twilio", "from": "+1"}}, "login (Account SID) is empty"),
        ({"login": "ACx", "extra": {"provider": "twilio", "from": "+1"}}, "password (auth token) is empty"),
        ({"login": "ACx", "password": "t", "extra": {"provider": "twilio"}}, "'messaging_service_sid'"),
        ({"login": "k", "password": "s", "extra": {"provider": "vonage"}}, "set the extra 'from'"),
        (
            {
                "login": "k",
                "password": "s",
                "extra": {"provider": "vonage", "from": "A", "base_url": "ftp://x"},
            },
            "must start with http:// or https://",
        ),
    ],
)
def test_an_incomplete_connection_retries_every_message_with_the_reason(monkeypatch, conn, error) -> None:
    use(monkeypatch, **conn)
    with http_transport(CONN_ID) as transport:
        result = transport.send(sms())

    assert result.outcome is Outcome.TRANSIENT
    assert CONN_ID in result.error
    assert error in result.error


def test_secrets_stay_out_of_reprs() -> None:
    account = SmsAccount("https://api.twilio.com", "ACx", "s3cret-token", sender="+1500")
    assert "s3cret-token" not in repr(account) + repr(TwilioApi(account)) + repr(VonageApi(account))


def test_push_is_not_sent_through_an_sms_provider(fake_twilio) -> None:
    with http_transport(CONN_ID) as transport:
        result = transport.send(OutgoingMessage(event_id=1, channel=42, address="tok", text="hi"))

    assert result.outcome is Outcome.PERMANENT
    assert "not SMS" in result.error
    assert fake_twilio.requests == []


# --- Through the delivery pipeline (real PostgreSQL) -----------------------------------------------


def otp(number: str, code: int) -> dict[str, Any]:
    return {"type": "OTP", "channel": "sms", "mobile_phone": number, "ctx": {"code": code}}


def logs(conn: psycopg.Connection) -> dict[int, tuple[Any, ...]]:
    rows = conn.execute("SELECT event_id, status, error, message_id FROM mc.delivery_log").fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def test_pipeline_one_bad_number_fails_alone_and_a_429_waits(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, public_url: str
) -> None:
    with running(FakeTwilio(LATENCY)) as server:
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", server.connection(max_connections=4))
        server.refuse["+33600000009"] = Reply(
            429, twilio_error(429, 20429, "Too Many Requests").body, headers=(("Retry-After", "120"),)
        )
        publish(conn)
        numbers = ["+33600000001", "+33600000002", "+3360", "+33600000004", "+33600000009", "+33600000006"]
        ids = push(conn, "batch", *(otp(n, i) for i, n in enumerate(numbers)))
        started = time.monotonic()
        run_batch(conn, SETTINGS)
        elapsed = time.monotonic() - started
        assert server.violations == []

    bad, throttled = ids[2], ids[4]
    statuses = dict(conn.execute("SELECT id, status FROM mc.batch_event").fetchall())
    assert statuses == {i: SENT for i in ids if i not in (bad, throttled)} | {bad: FAILED, throttled: 1}
    sent = {r.form["To"]: r.answer.get("sid") for r in server.requests}
    found = logs(conn)
    for event_id, number in zip(ids, numbers, strict=True):
        if event_id not in (bad, throttled):
            assert found[event_id] == (SENT, None, sent[number])  # the sid: what the callbacks carry
    assert found[bad][0] == FAILED
    assert "21211" in found[bad][1]
    assert throttled not in found  # not final: retried later, not before the Retry-After
    wait = conn.execute(
        "SELECT extract(epoch FROM next_try - now()), errors FROM mc.batch_event WHERE id = %s",
        (throttled,),
    ).fetchone()
    assert 100 < wait[0] <= 120
    assert wait[1] == 1
    assert elapsed < 6 * LATENCY + 2  # four connections at once, not one after another
    callbacks = {r.form["StatusCallback"] for r in server.requests}
    assert callbacks == {f"{PUBLIC_URL}/api/v1/feedback/twilio?mc_event_id={i}" for i in ids}


def feedback_api(db_dsn: str, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The API with its feedback webhooks, their ``mc_feedback_<provider>`` connections holding the
    secrets the providers sign with, behind ``MC_PUBLIC_URL``."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_MC_FEEDBACK_TWILIO", json.dumps({"conn_type": "generic", "password": AUTH_TOKEN})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_MC_FEEDBACK_VONAGE", json.dumps({"conn_type": "generic", "password": SIGNATURE_SECRET})
    )
    settings = Settings(api_tokens=("t",), instance_id=1, feedback=FeedbackSettings(public_url=PUBLIC_URL))
    return TestClient(create_app(settings, dsn=db_dsn))


def test_pipeline_then_twilios_callback_through_the_api_fails_the_sent_event(
    conn: psycopg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch, public_url: str
) -> None:
    with running(FakeTwilio(LATENCY)) as server:
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", server.connection())
        publish(conn)
        (event_id,) = push(conn, "batch", otp("+33600000001", 1))
        run_batch(conn, SETTINGS)
    [request] = server.requests
    sid = request.answer["sid"]
    assert logs(conn)[event_id] == (SENT, None, sid)

    # What Twilio posts to the StatusCallback URL of that message, signed with the auth token; the
    # API sees it without MC_PUBLIC_URL's path prefix (a proxy strips it).
    callback = request.form["StatusCallback"]
    params = [("MessageSid", sid), ("MessageStatus", "undelivered"), ("ErrorCode", "30005")]
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio.compute_signature(AUTH_TOKEN, callback, params),
    }
    path = callback.removeprefix(PUBLIC_URL)
    with feedback_api(db_dsn, monkeypatch) as api:
        answer = api.post(path, content=urlencode(params), headers=headers)
        forged = api.post(
            path.replace(str(event_id), str(event_id + 1)), content=urlencode(params), headers=headers
        )

    assert answer.status_code == 200, answer.text
    assert (answer.json()["applied"], answer.json()["failed"], answer.json()["unmatched"]) == (1, 1, 0)
    assert forged.status_code == 401  # the event id is signed with the URL
    assert logs(conn)[event_id][0] == FAILED  # Sent -> Failed
    run_batch(conn, SETTINGS)  # updateEventsStatus copies it onto the event
    assert conn.execute("SELECT status FROM mc.batch_event WHERE id = %s", (event_id,)).fetchone() == (
        FAILED,
    )


def test_pipeline_then_vonages_receipt_through_the_api_finds_the_event_by_client_ref(
    conn: psycopg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch, public_url: str
) -> None:
    with running(FakeVonage(LATENCY)) as server:
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", server.connection())
        publish(conn)
        (event_id,) = push(conn, "batch", otp("+447700900001", 1))
        run_batch(conn, SETTINGS)
    [request] = server.requests
    assert request.form["callback"] == f"{PUBLIC_URL}/api/v1/feedback/vonage"

    # The receipt of a part whose message-id is not the one kept: the client-ref still finds the event.
    receipt = {
        "msisdn": request.form["to"],
        "to": request.form["from"],
        "network-code": "23410",
        "messageId": "0B00000099999999",
        "price": "0.03330000",
        "status": "failed",
        "scts": "2001011400",
        "err-code": "3",
        "client-ref": request.form["client-ref"],
        "message-timestamp": "2020-01-01 14:00:00",
        "timestamp": str(int(time.time())),
    }
    receipt["sig"] = vonage.compute_signature(SIGNATURE_SECRET, receipt)
    with feedback_api(db_dsn, monkeypatch) as api:
        answer = api.post("/api/v1/feedback/vonage", json=receipt)

    assert answer.status_code == 200, answer.text
    assert (answer.json()["applied"], answer.json()["unmatched"]) == (1, 0)
    assert logs(conn)[event_id][0] == FAILED


def test_pipeline_through_vonage(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, public_url: str
) -> None:
    with running(FakeVonage(LATENCY)) as server:
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", server.connection(max_connections=3))
        publish(conn)
        ids = push(conn, "batch", otp("+447700900001", 1), otp("+440", 2), otp("+447700900003", 3))
        run_batch(conn, SETTINGS)
        assert server.violations == []

    found = logs(conn)
    ids_by_ref = {r.form["client-ref"]: r.answer for r in server.requests}
    assert found[ids[1]][0] == FAILED
    assert "Vonage status 3 Invalid Parameters" in found[ids[1]][1]
    for event_id in (ids[0], ids[2]):
        answer = ids_by_ref[f"mc_event_id={event_id}"]
        assert found[event_id] == (SENT, None, answer["messages"][0]["message-id"])


def test_pipeline_a_wrong_signature_secret_stops_the_provider_then_the_fix_sends_the_rest(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account enforces signed requests and the connection has the wrong signature secret: the
    first refusal opens the breaker, so the other events are not tried (their tries are kept) and
    wait; the event that was tried fails after its tries with the account's error, never alone for
    its number. Once the connection is fixed, the others are sent, signed."""
    settings = replace(SETTINGS, max_tries=1, breaker_cooldown_seconds=1)
    server = FakeVonage(signature_secret=SIGNATURE_SECRET, signed_only=True)
    with running(server):
        wrong = {"signature_secret": "an-old-signature-secret", "max_connections": 1}
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", server.connection(**wrong))
        publish(conn)
        ids = push(conn, "batch", *(otp(f"+4477009000{n:02}", n) for n in range(6)))
        run_batch(conn, settings)

        assert len(server.requests) == 1  # not one per event, nor the breaker's threshold
        rows = conn.execute("SELECT id, status, errors FROM mc.batch_event ORDER BY id").fetchall()
        [tried] = [event_id for event_id, _, errors in rows if errors or event_id in logs(conn)]
        status, error, _ = logs(conn)[tried]
        assert status == FAILED
        assert error.startswith("max tries (1) reached: Vonage status 14 Invalid Signature")
        assert "check the connection" in error
        waiting = [(status, errors) for event_id, status, errors in rows if event_id != tried]
        assert waiting == [(1, 0)] * 5  # Pending delivery, no try spent

        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", server.connection(signature_secret=SIGNATURE_SECRET))
        time.sleep(1.1)  # the breaker half opens, the events are due again
        run_batch(conn, settings)
        assert server.violations == []

    found = logs(conn)
    assert {found[i][0] for i in ids if i != tried} == {SENT}
    signed = server.requests[1:]
    assert len(signed) == 5
    assert all("sig" in r.form and "api_secret" not in r.form for r in server.requests)


def test_query_string_of_the_callback_is_what_the_webhook_reads() -> None:
    api = TwilioApi(SmsAccount("https://api.twilio.com", "ACx", "t", sender="+1", public_url=PUBLIC_URL))
    request = api.request(sms(event_id=2**62))
    form = dict(parse_qsl(request.content.decode()))
    assert dict(parse_qsl(urlsplit(form["StatusCallback"]).query)) == {"mc_event_id": str(2**62)}
