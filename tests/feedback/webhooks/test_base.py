"""What all provider webhooks share: the registry, the request, the fetcher, and robustness on any input."""

from __future__ import annotations

import ast
import base64
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messagecenter.core.errors import ConfigError, TransientError
from messagecenter.feedback import webhooks
from messagecenter.feedback.webhooks import (
    MAX_BODY_BYTES,
    PROVIDERS,
    CachedFetcher,
    FeedbackEvent,
    Headers,
    PayloadError,
    ProviderSecret,
    SignatureError,
    VerifyContext,
    WebhookRequest,
    fetch_url,
)

PACKAGE = Path(webhooks.__file__).parent

# A secret that lets every scheme run to its checks (Vonage: md5hash; SES: one allowed topic).
ANY_SECRET = ProviderSecret(
    login="user",
    password="secret",
    extra={"topic_arns": ["arn:aws:sns:us-west-2:123456789012:MyTopic"]},
)


def test_the_registry_names_the_six_providers() -> None:
    assert sorted(PROVIDERS) == ["mailgun", "postmark", "sendgrid", "ses", "twilio", "vonage"]
    for name, provider in PROVIDERS.items():
        assert provider is getattr(webhooks, name)  # the module itself
        assert callable(provider.verify)
        assert callable(provider.parse)


def test_the_package_knows_nothing_of_airflow_the_database_or_the_web_framework() -> None:
    allowed = (
        "messagecenter.core",
        "messagecenter.feedback.webhooks",
        "messagecenter.feedback.vonage_signing",  # the standard library only; delivery signs with it too
        "cryptography",
        "httpx",
    )
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                is_stdlib = top in sys.stdlib_module_names
                assert is_stdlib or module.startswith(allowed), f"{path.name} imports {module}"


def test_headers_are_case_insensitive_and_requests_decode_their_form() -> None:
    req = WebhookRequest(
        "post",
        "https://mc.example.com/hook?a=1&a=2&b=",
        Headers([("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("X-Thing", "v")]),
        b"To=%2B15558675310&Body=a+b&Body=c&Empty=",
    )
    assert (req.method, req.headers["x-thing"], req.headers.get("X-THING"), req.content_type) == (
        "POST",
        "v",
        "v",
        "application/x-www-form-urlencoded",
    )
    assert req.form_items() == [("To", "+15558675310"), ("Body", "a b"), ("Body", "c"), ("Empty", "")]
    assert req.query_items() == [("a", "1"), ("a", "2"), ("b", "")]
    assert WebhookRequest("POST", "https://x/", {}, b"To=1", form=(("From", "2"),)).form_items() == [
        ("From", "2")
    ]
    assert (
        WebhookRequest("POST", "https://x/", {"Content-Type": "application/json"}, b"To=1").form_items() == []
    )
    with pytest.raises(PayloadError, match="UTF-8"):
        WebhookRequest(
            "POST", "https://x/", {"content-type": "application/x-www-form-urlencoded"}, b"\xff"
        ).form_items()
    assert repr(WebhookRequest("POST", "https://x/", {"Authorization": "Basic c2VjcmV0"}).headers) == (
        "Headers(['authorization'])"
    )


def test_a_secret_never_shows_its_password_and_checks_its_settings() -> None:
    secret = ProviderSecret(login="acme", password="hunter2", extra={"max_age_seconds": "60"})
    assert "hunter2" not in repr(secret)
    assert secret.max_age("x") == 60.0
    assert ProviderSecret().max_age("x") == 900.0
    for bad in (0, -5, "soon", True, [60]):
        with pytest.raises(ConfigError, match="max_age_seconds"):
            ProviderSecret(extra={"max_age_seconds": bad}).max_age("x")
    assert ProviderSecret(extra={"allow_unsigned": "true"}).flag("allow_unsigned")
    assert not ProviderSecret(extra={"allow_unsigned": "no"}).flag("allow_unsigned")


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_huge_body_is_refused_unread(name: str) -> None:
    huge = b"[" + b" " * MAX_BODY_BYTES + b"]"
    req = WebhookRequest("POST", "https://x/", {"Content-Type": "application/json"}, huge)
    with pytest.raises(PayloadError, match="limit"):
        PROVIDERS[name].parse(req)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
# Bodies that look like each provider's, with any values in their fields.
FIELDS = [
    *("Type", "Message", "MessageId", "TopicArn"),  # SES
    *("event", "email", "sg_event_id", "event-data", "signature"),  # SendGrid, Mailgun
    *("RecordType", "ID", "MessageID", "Metadata", "SuppressSending"),  # Postmark
    *("MessageSid", "MessageStatus", "messageId", "status", "err-code", "client-ref"),  # Twilio, Vonage
]
shaped = st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, json_values))
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    shaped.map(lambda v: json.dumps(v).encode()),
    st.lists(shaped, max_size=3).map(lambda v: json.dumps(v).encode()),
    shaped.map(lambda v: json.dumps({"event-data": v}).encode()),
    shaped.map(
        lambda v: json.dumps({"Type": "Notification", "MessageId": "m", "Message": json.dumps(v)}).encode()
    ),
)
content_types = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""])


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(PROVIDERS)),
    body=bodies,
    content_type=content_types,
    method=st.sampled_from(["POST", "GET"]),
)
def test_any_body_gives_events_or_a_payload_error(
    name: str, body: bytes, content_type: str, method: str
) -> None:
    req = WebhookRequest(method, "https://mc.example.com/hook?x=1", {"Content-Type": content_type}, body)
    try:
        events = PROVIDERS[name].parse(req)
    except PayloadError:
        return
    assert all(isinstance(event, FeedbackEvent) and event.provider == name for event in events)


def _no_fetch(url: str) -> bytes:
    raise AssertionError(f"nothing unverified may be fetched, yet {url} was")


signature_headers = st.dictionaries(
    st.sampled_from(
        [
            "X-Twilio-Signature",
            "X-Twilio-Email-Event-Webhook-Signature",
            "X-Twilio-Email-Event-Webhook-Timestamp",
            "Authorization",
        ]
    ),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(PROVIDERS)),
    body=bodies,
    content_type=content_types,
    headers=signature_headers,
)
def test_any_request_is_refused_without_a_crash(
    name: str, body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    req = WebhookRequest(
        "POST", "https://mc.example.com/hook", {"Content-Type": content_type, **headers}, body
    )
    secret = ANY_SECRET
    if name == "sendgrid":
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        secret = ProviderSecret(password=base64.b64encode(der).decode())
    with pytest.raises((SignatureError, PayloadError)):
        PROVIDERS[name].verify(req, secret, VerifyContext(fetch_certificate=_no_fetch))


class _Server(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/cert.pem")
            self.end_headers()
            return
        body = b"x" * 100_000 if self.path == "/big" else b"-----BEGIN CERTIFICATE-----\n"
        self.send_response(200 if self.path != "/missing" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Server.hits = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_default_fetcher_follows_no_redirect_and_caps_the_size(server: str) -> None:
    assert fetch_url(f"{server}/cert.pem") == b"-----BEGIN CERTIFICATE-----\n"
    for path, message in (("/redirect", "HTTP 302"), ("/missing", "HTTP 404"), ("/big", "more than")):
        with pytest.raises(TransientError, match=message):
            fetch_url(f"{server}{path}")
    assert _Server.hits == ["/cert.pem", "/redirect", "/missing", "/big"]  # the redirect was not followed
    with pytest.raises(TransientError, match="failed"):
        fetch_url("http://127.0.0.1:9/nothing-listens-here")


def test_certificates_are_fetched_once_per_url(server: str) -> None:
    fetch = CachedFetcher()
    for _ in range(3):
        assert fetch(f"{server}/cert.pem") == b"-----BEGIN CERTIFICATE-----\n"
    with pytest.raises(TransientError):
        fetch(f"{server}/missing")
    with pytest.raises(TransientError):  # failures are not cached: the next request tries again
        fetch(f"{server}/missing")
    assert _Server.hits == ["/cert.pem", "/missing", "/missing"]
