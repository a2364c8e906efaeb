"""The feedback API on a real PostgreSQL: provider webhooks, one-click unsubscribe, quarantine, event reads.

Each provider's documented sample is signed the way its own tests sign it (tests/feedback/webhooks),
with keys generated here and held by the ``mc_feedback_<provider>`` connections of the environment.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from devstack.sms_rest import vonage_signature
from fastapi.testclient import TestClient

from messagecenter.api import create_app
from messagecenter.api.deps import WebhookTools
from messagecenter.core.settings import FeedbackSettings, Settings
from messagecenter.core.types import Channel
from messagecenter.feedback.unsubscribe import make_token
from tests.support.webhooks.mailgun import body as mailgun_body
from tests.support.webhooks.postmark import basic
from tests.support.webhooks.samples import fixture_bytes, fixture_json
from tests.support.webhooks.sendgrid import public_key_as_sendgrid_shows_it
from tests.support.webhooks.ses import CERT_URL, TOPIC, Certificates, certificate, notification
from tests.support.webhooks.ses import signed as sns_signed
from tests.support.webhooks.twilio import sign as twilio_sign
from tests.support.webhooks.vonage import receipt

TOKEN = "feedback-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "an unsubscribe and VERP secret of 32+ characters"
MAX_BODY = 16 * 1024
EVENT_ID = 1001
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
POSTMARK_LOGIN, POSTMARK_PASSWORD = "postmark", "s3cret:with colon"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
VONAGE_SECRET = "6C9FE10ba8b84a8dB94A3e8C1b0fE6e2"
FORM = "application/x-www-form-urlencoded"
JSON = {"Content-Type": "application/json"}
SNS = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}
PROVIDERS = ("ses", "sendgrid", "mailgun", "postmark", "twilio", "vonage")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class Gets:
    """The injected GET of SNS subscription confirmations: records the URLs instead of calling AWS."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return b"<ConfirmSubscriptionResponse/>"


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch, ec_key: ec.EllipticCurvePrivateKey) -> None:
    """The six ``mc_feedback_<provider>`` connections, as an operator would add them."""
    conns: dict[str, dict[str, Any]] = {
        "ses": {"extra": {"topic_arns": [TOPIC]}},
        "sendgrid": {"extra": {"public_key": public_key_as_sendgrid_shows_it(ec_key)}},
        "mailgun": {"password": MAILGUN_KEY},
        "postmark": {"login": POSTMARK_LOGIN, "password": POSTMARK_PASSWORD},
        "twilio": {"password": TWILIO_TOKEN},
        "vonage": {"password": VONAGE_SECRET},
    }
    for name, conn in conns.items():
        monkeypatch.setenv(
            f"AIRFLOW_CONN_MC_FEEDBACK_{name.upper()}", json.dumps({"conn_type": "generic", **conn})
        )


def make_client(db_dsn: str, rsa_key: rsa.RSAPrivateKey, gets: Gets, **feedback: Any) -> TestClient:
    settings = Settings(
        api_tokens=(TOKEN,),
        instance_id=5,
        feedback=FeedbackSettings(**{"secret": SECRET, "max_webhook_bytes": MAX_BODY, **feedback}),
    )
    app = create_app(settings, dsn=db_dsn)
    app.state.mc.webhooks = WebhookTools(
        fetch_certificate=Certificates({CERT_URL: certificate(rsa_key)}), http_get=gets
    )
    return TestClient(app)


@pytest.fixture
def gets() -> Gets:
    return Gets()


@pytest.fixture
def client(db_dsn: str, connections: None, rsa_key: rsa.RSAPrivateKey, gets: Gets) -> Iterator[TestClient]:
    """The API without a default bearer token: webhooks and unsubscribe links carry none."""
    with make_client(db_dsn, rsa_key, gets) as test_client:
        yield test_client


def seed(conn: psycopg.Connection, channel: Channel, address: str, message_id: str | None) -> None:
    """An event Sent, with its delivery log holding the provider's message id, as the workflows leave it."""
    column = "email" if channel == Channel.EMAIL else "mobile_phone"
    conn.execute(
        f"INSERT INTO mc.batch_event (id, event_type, channel, {column}, status, created, last_modified) "
        "VALUES (%s, 'ORDER', %s, %s, 2, now(), now())",
        (EVENT_ID, int(channel), address),
    )
    conn.execute(
        "INSERT INTO mc.delivery_log (event_id, queue, status, channel, address, message_id) "
        "VALUES (%s, 'batch', 2, %s, %s, %s)",
        (EVENT_ID, int(channel), address, message_id),
    )


def snapshot(conn: psycopg.Connection) -> tuple[Any, ...]:
    """Everything feedback may change."""
    return (
        conn.execute(
            "SELECT id, status, delivery, failure_type, failure_reason, feedback_text, feedback_key, "
            "feedback_at, complained_at, last_modified FROM mc.delivery_log ORDER BY id"
        ).fetchall(),
        conn.execute("SELECT * FROM mc.quarantine ORDER BY channel, address").fetchall(),
        conn.execute("SELECT feedback_key, occurrences FROM mc.feedback_message ORDER BY 1").fetchall(),
        conn.execute("SELECT count(*) FROM mc.feedback_unmatched").fetchone(),
    )


def log_outcome(conn: psycopg.Connection) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT status, delivery, failure_type IS NOT NULL, feedback_at IS NOT NULL FROM mc.delivery_log "
        "WHERE event_id = %s",
        (EVENT_ID,),
    ).fetchone()
    assert row is not None
    return tuple(row)


@dataclass
class Call:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def post(self, client: TestClient) -> Any:
        return client.post(self.path, content=self.body, headers=self.headers)


@dataclass
class Sample:
    """A provider's signed request about the seeded message, and two that must be refused."""

    channel: Channel
    address: str
    message_id: str
    signed: Call
    tampered: Call
    unsigned: Call
    replay_status: int = 200  # Mailgun's tokens are single-use: its replay is refused outright


def ses_sample(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Sample:
    message = sns_signed(notification(fixture_json("ses/bounce.json")), rsa_key)
    tampered = {**message, "Message": message["Message"].replace("Permanent", "Transient")}
    unsigned = {k: v for k, v in message.items() if k != "Signature"}
    path = "/api/v1/feedback/ses"
    return Sample(
        Channel.EMAIL,
        "jane@example.com",
        "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        Call(path, json.dumps(message).encode(), SNS),
        Call(path, json.dumps(tampered).encode(), SNS),
        Call(path, json.dumps(unsigned).encode(), SNS),
    )


def sendgrid_signature(key: ec.EllipticCurvePrivateKey, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def sendgrid_sample(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Sample:
    [bounce] = [e for e in fixture_json("sendgrid/events.json") if e["event"] == "bounce"]
    bounce.update(email="ann@example.com", sg_event_id="sg-ev-1", sg_message_id="sgMSG1.filterdrecv-p3-1")
    body = json.dumps([bounce]).encode()
    headers = {**JSON, **sendgrid_signature(ec_key, body)}
    path = "/api/v1/feedback/sendgrid"
    return Sample(
        Channel.EMAIL,
        "ann@example.com",
        "sgMSG1",
        Call(path, body, headers),
        Call(path, body.replace(b"5.0.0", b"4.0.0"), headers),
        Call(path, body, JSON),
    )


def mailgun_sample(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Sample:
    body = mailgun_body(fixture_json("mailgun/failed-permanent.json"), key=MAILGUN_KEY)
    document = json.loads(body)
    tampered = json.loads(body)
    tampered["signature"]["signature"] = "0" * 64
    unsigned = {"event-data": document["event-data"]}
    path = "/api/v1/feedback/mailgun"
    return Sample(
        Channel.EMAIL,
        "badrecipient@sample.mailgun.com",
        "20260212174255.58bbb7ce85a423e5@mailgun.com",
        Call(path, body, JSON),
        Call(path, json.dumps(tampered).encode(), JSON),
        Call(path, json.dumps(unsigned).encode(), JSON),
        replay_status=401,
    )


def postmark_sample(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Sample:
    body = fixture_bytes("postmark/bounce.json")
    path = "/api/v1/feedback/postmark"
    return Sample(
        Channel.EMAIL,
        "john@example.com",
        "883953f4-6105-42a2-a16a-77a8eac79483",
        Call(path, body, {**JSON, "Authorization": basic(POSTMARK_LOGIN, POSTMARK_PASSWORD)}),
        Call(path, body, {**JSON, "Authorization": basic(POSTMARK_LOGIN, "wrong")}),
        Call(path, body, JSON),
    )


def twilio_sample(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Sample:
    body = fixture_bytes("twilio/undelivered.form")
    path = f"/api/v1/feedback/twilio?mc_event_id={EVENT_ID}"
    # Behind a TLS proxy: Twilio signed the public https URL, not the one the app sees.
    proxied = {"Content-Type": FORM, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "mc.example.com"}
    signature = twilio_sign(f"https://mc.example.com{path}", body, TWILIO_TOKEN)
    return Sample(
        Channel.SMS,
        "+15558675310",
        "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        Call(path, body, {**proxied, "X-Twilio-Signature": signature}),
        Call(
            path,
            body.replace(b"ErrorCode=30003", b"ErrorCode=30005"),
            {**proxied, "X-Twilio-Signature": signature},
        ),
        Call(path, body, proxied),
    )


def vonage_sample(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Sample:
    params = receipt(status="failed", **{"err-code": "3"})
    signed = {**params, "sig": vonage_signature(params, VONAGE_SECRET, "md5hash")}
    path = "/api/v1/feedback/vonage"
    return Sample(
        Channel.SMS,
        "447700900000",
        "0A0000001234567B",
        Call(path, json.dumps(signed).encode(), JSON),
        Call(path, json.dumps({**signed, "err-code": "2"}).encode(), JSON),
        Call(path, json.dumps(params).encode(), JSON),
    )


SAMPLES: dict[str, Callable[[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey], Sample]] = {
    "ses": ses_sample,
    "sendgrid": sendgrid_sample,
    "mailgun": mailgun_sample,
    "postmark": postmark_sample,
    "twilio": twilio_sample,
    "vonage": vonage_sample,
}


@pytest.fixture
def sample(
    request: pytest.FixtureRequest, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> Sample:
    return SAMPLES[request.param](rsa_key, ec_key)


@pytest.mark.parametrize("sample", PROVIDERS, indirect=True)
def test_a_signed_sample_fails_its_delivery_and_forgeries_or_replays_change_nothing(
    client: TestClient, conn: psycopg.Connection, sample: Sample
) -> None:
    seed(conn, sample.channel, sample.address, sample.message_id)
    untouched = snapshot(conn)
    for forged in (sample.tampered, sample.unsigned):
        refused = forged.post(client)
        assert refused.status_code in (401, 403), refused.text
        assert "not verified" in refused.json()["detail"]
        if sample.signed.path.endswith("/postmark"):
            assert refused.headers["WWW-Authenticate"] == 'Basic realm="mc_feedback_postmark"'
        assert snapshot(conn) == untouched

    answer = sample.signed.post(client)

    assert answer.status_code == 200, answer.text
    counts = answer.json()
    assert (counts["events"], counts["received"], counts["applied"], counts["failed"]) == (1, 1, 1, 1)
    assert log_outcome(conn) == (4, 2, True, True)  # Sent -> Failed after the send, qualified, dated
    applied = snapshot(conn)
    assert applied != untouched

    replay = sample.signed.post(client)
    assert replay.status_code == sample.replay_status, replay.text
    if replay.status_code == 200:
        assert (replay.json()["duplicates"], replay.json()["applied"]) == (1, 0)
    assert snapshot(conn) == applied


def test_a_bounce_shows_on_the_event_and_quarantines_the_address(
    client: TestClient,
    conn: psycopg.Connection,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    sample = ses_sample(rsa_key, ec_key)
    seed(conn, sample.channel, sample.address, sample.message_id)
    before = client.get(f"/api/v1/events/batch/{EVENT_ID}", headers=AUTH).json()
    assert (before["status_name"], before["delivery"], before["failure_type"], before["feedback_at"]) == (
        "Sent",
        None,
        None,
        None,
    )

    assert sample.signed.post(client).json()["quarantined"] == 1

    event = client.get(f"/api/v1/events/batch/{EVENT_ID}", headers=AUTH).json()
    assert (event["delivery"], event["failure_type"], event["failure_reason"]) == (
        "failed",
        "Hard",
        "User unknown",
    )
    assert event["feedback_at"] is not None
    assert event["type"] == "ORDER"  # the event's own fields are still there
    state = client.get("/api/v1/quarantine", params={"address": "Jane@Example.com"}, headers=AUTH).json()
    assert (state["status"], state["failure_reason"], state["errors"]) == ("quarantine", "User unknown", 1)


def test_a_sendgrid_batch_applies_each_event_once(
    client: TestClient, conn: psycopg.Connection, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    seed(conn, Channel.EMAIL, "ann@example.com", "sgMSG1")
    events = [
        {"event": "delivered", "email": "ann@example.com", "sg_event_id": "e1", "sg_message_id": "sgMSG1.f"},
        {"event": "open", "email": "ann@example.com", "sg_event_id": "e2", "sg_message_id": "sgMSG1.f"},
        {"event": "spamreport", "email": "ann@example.com", "sg_event_id": "e3", "sg_message_id": "sgMSG1.f"},
        {"event": "bounce", "email": "x@example.com", "sg_event_id": "e4", "sg_message_id": "other.f"},
    ]
    body = json.dumps(events).encode()
    answer = client.post(
        "/api/v1/feedback/sendgrid", content=body, headers={**JSON, **sendgrid_signature(ec_key, body)}
    ).json()
    # The open says nothing; the complaint wins over the delivery on the log; the unknown message is kept.
    assert {k: answer[k] for k in ("events", "applied", "unmatched", "denylisted")} == {
        "events": 3,
        "applied": 1,
        "unmatched": 1,
        "denylisted": 1,
    }
    state = client.get("/api/v1/quarantine", params={"address": "ann@example.com"}, headers=AUTH).json()
    assert state["status"] == "denylisted"
    assert conn.execute("SELECT provider, message_id FROM mc.feedback_unmatched").fetchall() == [
        ("sendgrid", "other")
    ]


@pytest.mark.parametrize(
    ("provider", "body", "headers", "says"),
    [
        ("ses", b"not json", SNS, "not JSON"),
        ("ses", b"[1, 2]", SNS, "not a JSON object"),
        ("mailgun", b"\xff\xfe", JSON, "not JSON"),
        (
            "postmark",
            b"{nope",
            {**JSON, "Authorization": basic(POSTMARK_LOGIN, POSTMARK_PASSWORD)},
            "not JSON",
        ),
        ("postmark", b"[]", {**JSON, "Authorization": basic(POSTMARK_LOGIN, POSTMARK_PASSWORD)}, "object"),
        ("vonage", b'{"messageId": {"a": 1}}', JSON, "not a string"),
    ],
)
def test_a_garbage_body_is_a_400_that_says_why(
    client: TestClient,
    conn: psycopg.Connection,
    provider: str,
    body: bytes,
    headers: dict[str, str],
    says: str,
) -> None:
    before = snapshot(conn)
    answer = client.post(f"/api/v1/feedback/{provider}", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["detail"]
    assert snapshot(conn) == before


def test_a_signed_body_that_is_not_events_is_a_400(
    client: TestClient, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    for body in (b'{"not": "a list"}', b'[{"event": "bounce", "sg_event_id": ["x"]}]', b"\x00\xff"):
        answer = client.post(
            "/api/v1/feedback/sendgrid", content=body, headers={**JSON, **sendgrid_signature(ec_key, body)}
        )
        assert answer.status_code == 400, answer.text
        assert isinstance(answer.json()["detail"], str)


def test_nul_characters_surrogates_and_long_texts_in_a_signed_payload_are_stored(
    client: TestClient, conn: psycopg.Connection, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    seed(conn, Channel.EMAIL, "ann@example.com", "sgMSG1")
    event = {
        "event": "bounce",
        "sg_event_id": "e\u00001",
        "sg_message_id": "sgMSG1.f",
        "reason": "550 unknown\u0000 recipient \ud800 " + "\U0001f600" * 1000,
    }
    body = json.dumps([event]).encode()
    answer = client.post(
        "/api/v1/feedback/sendgrid", content=body, headers={**JSON, **sendgrid_signature(ec_key, body)}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] == 1
    row = conn.execute(
        "SELECT feedback_text FROM mc.delivery_log WHERE event_id = %s", (EVENT_ID,)
    ).fetchone()
    assert row is not None
    assert row[0].startswith("550 unknown recipient ? \U0001f600")  # NUL dropped, the lone surrogate replaced
    [(key,)] = conn.execute("SELECT feedback_key FROM mc.feedback_message").fetchall()
    assert len(key.encode()) <= 2_000  # a btree key: a long text is cut to fit


def test_an_oversized_body_is_413_and_an_unknown_provider_404(client: TestClient) -> None:
    too_big = client.post("/api/v1/feedback/ses", content=b"x" * (MAX_BODY + 1), headers=SNS)
    assert too_big.status_code == 413
    for name in ("sparkpost", "SES", "ses.json"):
        unknown = client.post(f"/api/v1/feedback/{name}", content=b"{}", headers=JSON)
        assert unknown.status_code == 404, name
    assert client.get("/api/v1/feedback/ses").status_code == 405


def test_a_missing_connection_is_a_503_that_reveals_nothing(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MC_FEEDBACK_POSTMARK")
    answer = postmark_sample(rsa_key, ec_key).signed.post(client)
    assert answer.status_code == 503  # the provider retries once an operator has added it
    assert (
        answer.json()["detail"] == "the postmark webhook is not configured (connection mc_feedback_postmark)"
    )
    monkeypatch.setenv("AIRFLOW_CONN_MC_FEEDBACK_SES", json.dumps({"conn_type": "generic"}))  # no topic_arns
    assert ses_sample(rsa_key, ec_key).signed.post(client).status_code == 503


def test_an_ses_subscription_is_confirmed_once_verified(
    client: TestClient, gets: Gets, rsa_key: rsa.RSAPrivateKey
) -> None:
    sample = fixture_json("ses/sns-subscription-confirmation.json")
    headers = {**SNS, "x-amz-sns-message-type": "SubscriptionConfirmation"}

    refused = client.post("/api/v1/feedback/ses", content=json.dumps(sample).encode(), headers=headers)
    assert refused.status_code == 401  # AWS's placeholder signature
    assert gets.urls == []

    message = sns_signed(sample, rsa_key)
    # The type is read from the signed body, whatever the header says.
    answer = client.post("/api/v1/feedback/ses", content=json.dumps(message).encode(), headers=SNS)
    assert answer.status_code == 200, answer.text
    assert answer.json()["confirmed_topic"] == TOPIC
    assert gets.urls == [message["SubscribeURL"]]


def test_twilio_signed_under_the_public_url_is_verified(
    db_dsn: str, conn: psycopg.Connection, connections: None, rsa_key: rsa.RSAPrivateKey, gets: Gets
) -> None:
    """A proxy that strips a path prefix: the URL Twilio signed is MC_PUBLIC_URL's."""
    seed(conn, Channel.SMS, "+15558675310", "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX")
    body = fixture_bytes("twilio/undelivered.form")
    path = f"/api/v1/feedback/twilio?mc_event_id={EVENT_ID}"
    signature = twilio_sign(f"https://public.example.com/messagecenter{path}", body, TWILIO_TOKEN)
    headers = {"Content-Type": FORM, "X-Twilio-Signature": signature}
    with make_client(db_dsn, rsa_key, gets, public_url="https://public.example.com/messagecenter/") as public:
        answer = public.post(path, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] == 1


# --- one-click unsubscribe -------------------------------------------------------------------------


def unsubscribe_path(address: str = "Ann@Example.com", key: str = SECRET, event_id: int = EVENT_ID) -> str:
    return f"/api/v1/unsubscribe/{make_token(Channel.EMAIL, address, event_id, key.encode())}"


ONE_CLICK = {"content": b"List-Unsubscribe=One-Click", "headers": {"Content-Type": FORM}}


def test_a_one_click_post_denylists_and_shows_on_the_log(
    client: TestClient, conn: psycopg.Connection
) -> None:
    seed(conn, Channel.EMAIL, "ann@example.com", None)

    answer = client.post(unsubscribe_path(), **ONE_CLICK)  # no bearer token: the signed link is enough

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"channel": "email", "address": "Ann@Example.com", "status": "denylisted"}
    state = client.get("/api/v1/quarantine", params={"address": "ann@example.com"}, headers=AUTH).json()
    assert (state["status"], state["source"], state["reason"]) == (
        "denylisted",
        "unsubscribe",
        "one-click unsubscribe",
    )
    row = conn.execute(
        "SELECT complained_at IS NOT NULL, feedback_at IS NOT NULL, status FROM mc.delivery_log"
    ).fetchone()
    assert row == (True, True, 2)  # recorded on the log; the message itself was sent
    again = client.post(unsubscribe_path(), **ONE_CLICK)
    assert again.status_code == 200


def test_the_page_shows_a_button_that_posts_the_one_click_form(
    client: TestClient, conn: psycopg.Connection
) -> None:
    seed(conn, Channel.EMAIL, "ann@example.com", None)
    page = client.get(unsubscribe_path())
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<form method="post">' in html
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in html
    assert "A***@Example.com" in html
    assert "Ann@Example.com" not in html
    assert (
        client.get("/api/v1/quarantine", params={"address": "ann@example.com"}, headers=AUTH).json()["status"]
        == "valid"
    )  # opening the page unsubscribes nobody

    done = client.post(
        unsubscribe_path(),
        content=ONE_CLICK["content"],
        headers={"Content-Type": FORM, "Accept": "text/html"},
    )
    assert done.status_code == 200
    assert "no more" in done.text
    assert (
        client.get("/api/v1/quarantine", params={"address": "ann@example.com"}, headers=AUTH).json()["status"]
        == "denylisted"
    )


def test_a_multipart_one_click_body_is_accepted(client: TestClient) -> None:
    answer = client.post(unsubscribe_path(), files={"List-Unsubscribe": (None, "One-Click")})
    assert answer.status_code == 200, answer.text


def test_a_forged_token_is_404_and_denylists_nobody(client: TestClient, conn: psycopg.Connection) -> None:
    good = unsubscribe_path()
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    for path in (
        flipped,
        unsubscribe_path(key="another secret of more than 32 characters"),
        "/api/v1/unsubscribe/not-a-token",
        "/api/v1/unsubscribe/" + "a." * 2000,
    ):
        assert client.get(path).status_code == 404, path
        answer = client.post(path, **ONE_CLICK)
        assert answer.status_code == 404, path
        assert answer.json() == {"detail": "no such unsubscribe link"}
    assert conn.execute("SELECT count(*) FROM mc.quarantine").fetchone() == (0,)


def test_a_post_without_the_one_click_body_is_refused(client: TestClient, conn: psycopg.Connection) -> None:
    for content in (b"", b"List-Unsubscribe=Other", b"x" * 100):
        answer = client.post(unsubscribe_path(), content=content, headers={"Content-Type": FORM})
        assert answer.status_code == 400
    assert conn.execute("SELECT count(*) FROM mc.quarantine").fetchone() == (0,)


def test_without_a_feedback_secret_unsubscribe_is_503(
    db_dsn: str, connections: None, rsa_key: rsa.RSAPrivateKey, gets: Gets
) -> None:
    with make_client(db_dsn, rsa_key, gets, secret="") as unconfigured:
        assert unconfigured.get(unsubscribe_path()).status_code == 503
        assert unconfigured.post(unsubscribe_path(), **ONE_CLICK).status_code == 503


# --- quarantine --------------------------------------------------------------------------------------


def test_the_quarantine_needs_the_bearer_token(client: TestClient) -> None:
    params = {"channel": "email", "address": "a@example.com"}
    assert client.get("/api/v1/quarantine", params=params).status_code == 401
    assert client.get("/api/v1/quarantine").status_code == 401
    assert client.post("/api/v1/quarantine", json={"address": "a@example.com"}).status_code == 401
    assert client.delete("/api/v1/quarantine", params=params).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/api/v1/quarantine", params=params, headers=wrong).status_code == 401


def test_operators_add_list_and_release(client: TestClient) -> None:
    read = {"channel": "email", "address": "Bob@Example.com"}
    valid = client.get("/api/v1/quarantine", params=read, headers=AUTH).json()
    assert {k: valid[k] for k in ("channel", "address", "status", "errors", "reason")} == {
        "channel": "email",
        "address": "bob@example.com",
        "status": "valid",
        "errors": 0,
        "reason": None,
    }

    added = client.post(
        "/api/v1/quarantine",
        json={"address": "Bob@Example.com", "status": "denylisted", "reason": "asked by phone"},
        headers=AUTH,
    )
    assert added.status_code == 200, added.text
    assert (added.json()["status"], added.json()["reason"], added.json()["source"]) == (
        "denylisted",
        "asked by phone",
        "api",
    )
    sms = client.post("/api/v1/quarantine", json={"channel": "sms", "address": "+33600000000"}, headers=AUTH)
    assert sms.json()["status"] == "quarantine"
    assert client.get("/api/v1/quarantine", params=read, headers=AUTH).json()["status"] == "denylisted"

    listed = client.get("/api/v1/quarantine", headers=AUTH).json()["items"]
    assert {(i["channel"], i["address"], i["status"]) for i in listed} == {
        ("email", "bob@example.com", "denylisted"),
        ("sms", "+33600000000", "quarantine"),
    }
    only = client.get("/api/v1/quarantine", params={"status": "quarantine"}, headers=AUTH).json()["items"]
    assert [i["address"] for i in only] == ["+33600000000"]
    email = client.get("/api/v1/quarantine", params={"channel": "email", "limit": 1}, headers=AUTH).json()
    assert [i["address"] for i in email["items"]] == ["bob@example.com"]

    released = client.delete("/api/v1/quarantine", params=read, headers=AUTH)
    assert released.status_code == 200
    assert released.json()["status"] == "valid"
    assert [i["address"] for i in client.get("/api/v1/quarantine", headers=AUTH).json()["items"]] == [
        "+33600000000"
    ]


@pytest.mark.parametrize(
    ("method", "kwargs", "loc"),
    [
        ("GET", {"params": {"channel": "fax", "address": "a@example.com"}}, ["query", "channel"]),
        ("GET", {"params": {"status": "gone"}}, ["query", "status"]),
        ("GET", {"params": {"limit": 0}}, ["query", "limit"]),
        ("GET", {"params": {"address": "   "}}, ["query", "address"]),
        ("POST", {"json": {"address": "a@example.com", "status": "valid"}}, ["body", "status"]),
        ("POST", {"json": {"address": "a@example.com", "channel": "fax"}}, ["body", "channel"]),
        ("POST", {"json": {"address": " "}}, ["body", "address"]),
        ("POST", {"json": {"address": "a\u0000b@example.com"}}, ["body", "address"]),
        ("DELETE", {"params": {"channel": "email"}}, ["query", "address"]),
    ],
)
def test_bad_quarantine_input_is_422_naming_the_field(
    client: TestClient, method: str, kwargs: dict[str, Any], loc: list[str]
) -> None:
    answer = client.request(method, "/api/v1/quarantine", headers=AUTH, **kwargs)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][:2] == loc


def test_the_openapi_document_lists_the_feedback_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/feedback/{provider}"]) == {"post"}
    assert set(paths["/api/v1/unsubscribe/{token}"]) == {"get", "post"}
    assert set(paths["/api/v1/quarantine"]) == {"get", "post", "delete"}
    # Providers and unsubscribe links carry their own proof; the quarantine takes the bearer token.
    assert "security" not in paths["/api/v1/feedback/{provider}"]["post"]
    assert "security" not in paths["/api/v1/unsubscribe/{token}"]["post"]
    assert all("security" in operation for operation in paths["/api/v1/quarantine"].values())
    event = paths["/api/v1/events/{queue}/{event_id}"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]
    assert event["schema"]["$ref"].endswith("/EventPublic")
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"delivery", "failure_type", "failure_reason", "feedback_at"} <= set(
        schemas["EventPublic"]["properties"]
    )
