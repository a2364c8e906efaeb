"""Local stand-ins for the push providers, for the tests and the benchmarks.

* :class:`OAuthServer`: Google's OAuth2 token endpoint for service accounts (JWT bearer grant):
  checks the assertion's RS256 signature with the account's public key and its claims, and issues
  access tokens of a chosen lifetime, which it may also end early (a token revoked mid-run).
* :class:`FakeFcm`: FCM HTTP v1 ``messages:send`` over HTTP/1.1: checks the bearer token with the
  OAuth server, the path and the message against FCM v1's documented format, and answers success
  (``{"name": ...}``) or a documented error (``UNREGISTERED``, ``INVALID_ARGUMENT``...).
* :class:`FakeApns`: APNs over HTTP/2 with TLS (``h2``, a self-signed certificate): checks the
  provider token's ES256 signature, header and claims, every ``apns-*`` header and the payload,
  answers 200 with ``apns-id`` or a documented error (410 with a ``timestamp``...), and may end a
  connection with GOAWAY in the middle of a burst.

Each answers after a chosen latency (a provider's round trip) without holding the others, records
what it accepted, and plays scripted answers per device token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import itertools
import json
import re
import ssl
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from devstack.sinks import HttpServer

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The audience of every service-account assertion is Google's token endpoint, wherever it is posted.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"

# --- keys and certificates ------------------------------------------------------------------------


def service_account(token_uri: str, project_id: str = "mc-test") -> tuple[dict[str, Any], Any]:
    """A service account's JSON key (as Google's console gives it) and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": f"mc-sender@{project_id}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    return info, key.public_key()


def apns_key() -> tuple[str, Any]:
    """An APNs signing key (``.p8``: EC P-256, PKCS#8 PEM) and its public key."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, key.public_key()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, its own CA (what a client trusts), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))  # a demo may run for days
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "push-cert.pem", directory / "push-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class Answer:
    """A scripted answer: an HTTP status and the provider's error code (FCM ``errorCode``, APNs
    ``reason``), an optional ``Retry-After``, and for APNs's 410 the ``timestamp`` (ms)."""

    status: int
    code: str
    retry_after: str | None = None
    timestamp: int | None = None


class _Script:
    """Answers to play per device token, in order; a token without any is accepted."""

    def __init__(self) -> None:
        self._answers: dict[str, deque[Answer]] = {}
        self._always: dict[str, Answer] = {}
        self._lock = threading.Lock()

    def once(self, token: str, *answers: Answer) -> None:
        with self._lock:
            self._answers.setdefault(token, deque()).extend(answers)

    def always(self, token: str, answer: Answer) -> None:
        with self._lock:
            self._always[token] = answer

    def next(self, token: str) -> Answer | None:
        with self._lock:
            queued = self._answers.get(token)
            if queued:
                return queued.popleft()
            return self._always.get(token)


# --- the OAuth2 token endpoint --------------------------------------------------------------------


class _OAuthHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OAuthServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        form = urllib.parse.parse_qs(raw)
        problem = self.server.check(self.path, self.headers.get("Content-Type", ""), form)
        if problem:
            self._answer(400, {"error": "invalid_grant", "error_description": problem})
            return
        token, lifetime = self.server.issue()
        self._answer(200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class OAuthServer(HttpServer):
    """Google's token endpoint for one service account (``POST /token``).

    :param lifetime: the ``expires_in`` of each token issued (what the client is told).
    :param server_lifetime: how long FCM accepts a token really (less than ``lifetime``: a token
        that ends mid-run, as a revoked one or a clock skew would); default ``lifetime``.
    """

    def __init__(self, *, lifetime: int = 3600, server_lifetime: float | None = None) -> None:
        super().__init__(_OAuthHandler, poll_interval=0.05)
        self.lifetime = lifetime
        self.server_lifetime = lifetime if server_lifetime is None else server_lifetime
        self.account, self._public_key = service_account(self.token_uri)
        self.issued: dict[str, float] = {}  # token -> when FCM stops accepting it (monotonic)
        self.problems: list[str] = []
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def token_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def check(self, path: str, content_type: str, form: dict[str, list[str]]) -> str | None:
        """What is wrong with a token request, per Google's OAuth2 for service accounts."""
        problem = self._problem(path, content_type, form)
        if problem:
            self.problems.append(problem)
        return problem

    def _problem(self, path: str, content_type: str, form: dict[str, list[str]]) -> str | None:
        if path != "/token":
            return f"unknown path {path}"
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return f"content type {content_type!r}"
        if form.get("grant_type") != [JWT_BEARER]:
            return f"grant_type {form.get('grant_type')}"
        (assertion,) = form.get("assertion", [""])
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self._public_key,
                algorithms=["RS256"],
                audience=GOOGLE_TOKEN_AUDIENCE,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.PyJWTError as exc:
            return f"assertion: {type(exc).__name__}: {exc}"
        if header.get("kid") != self.account["private_key_id"]:
            return f"kid {header.get('kid')!r}"
        if claims["iss"] != self.account["client_email"]:
            return f"iss {claims['iss']!r}"
        if FCM_SCOPE not in str(claims["scope"]).split():
            return f"scope {claims['scope']!r}"
        if not 0 < claims["exp"] - claims["iat"] <= 3600:
            return "an assertion lives an hour at most"
        return None

    def issue(self) -> tuple[str, int]:
        with self._lock:
            token = f"ya29.test-{next(self._numbers)}-{uuid.uuid4().hex}"
            self.issued[token] = time.monotonic() + self.server_lifetime
        return token, self.lifetime

    def accepts(self, token: str) -> bool:
        """Whether FCM takes this access token now."""
        with self._lock:
            until = self.issued.get(token)
        return until is not None and time.monotonic() < until


# --- FCM HTTP v1 ----------------------------------------------------------------------------------

# google.firebase.fcm.v1.FcmError codes: HTTP status and canonical status of each.
FCM_ERRORS = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for the device."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
}
_MESSAGE_KEYS = {"name", "data", "notification", "android", "webpush", "apns", "fcm_options", "token"}
_NOTIFICATION_KEYS = {"title", "body", "image"}
_ANDROID_KEYS = {
    "collapse_key",
    "priority",
    "ttl",
    "restricted_package_name",
    "data",
    "notification",
    "fcm_options",
    "direct_boot_ok",
}
_ANDROID_NOTIFICATION = {"title": str, "body": str, "sound": str, "tag": str, "notification_count": int}
_RESERVED_DATA = re.compile(r"^(from|notification|message_type|google\..*|gcm\..*)$")


def fcm_problem(document: Any) -> str | None:
    """What FCM v1 would refuse (INVALID_ARGUMENT) in a ``messages:send`` body, or ``None``."""
    if not isinstance(document, dict) or set(document) != {"message"}:
        return 'the body must be {"message": {...}}'
    message = document["message"]
    if not isinstance(message, dict):
        return "message must be an object"
    unknown = set(message) - _MESSAGE_KEYS
    if unknown:
        return f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at 'message'"
    if not isinstance(message.get("token"), str) or not message["token"]:
        return "message.token is required"
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or set(notification) - _NOTIFICATION_KEYS:
        return f"message.notification: {notification!r}"
    if any(not isinstance(v, str) for v in notification.values()):
        return "message.notification values must be strings"
    data = message.get("data", {})
    if not isinstance(data, dict) or any(not isinstance(v, str) for v in data.values()):
        return "message.data values must be strings"
    if any(_RESERVED_DATA.match(k) for k in data):
        return "message.data has a reserved key"
    android = message.get("android", {})
    if not isinstance(android, dict) or set(android) - _ANDROID_KEYS:
        return f"message.android: {android!r}"
    if "collapse_key" in android and not isinstance(android["collapse_key"], str):
        return "message.android.collapse_key must be a string"
    shown = android.get("notification", {})
    for key, value in shown.items():
        kind = _ANDROID_NOTIFICATION.get(key)
        if kind is None or not isinstance(value, kind) or isinstance(value, bool):
            return f"message.android.notification.{key}: {value!r}"
    apns = message.get("apns", {})
    if not isinstance(apns, dict) or set(apns) - {"headers", "payload", "fcm_options", "live_activity_token"}:
        return f"message.apns: {apns!r}"
    if any(not isinstance(v, str) for v in apns.get("headers", {}).values()):
        return "message.apns.headers values must be strings"
    if "payload" in apns and not isinstance(apns["payload"].get("aps"), dict):
        return "message.apns.payload.aps must be an object"
    return None


@dataclass
class FcmReceived:
    token: str
    message: dict[str, Any]
    access_token: str
    at: float = field(default_factory=time.monotonic)


class _FcmHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept-alive connections, as FCM's
    server: FakeFcm

    def do_POST(self) -> None:
        fake = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if fake.latency:
            time.sleep(fake.latency)
        fake.count_request(self.client_address)
        if self.path != f"/v1/projects/{fake.project_id}/messages:send":
            self._answer(404, b"<html><body>Not Found</body></html>", "text/html")
            return
        bearer = self.headers.get("Authorization", "")
        access_token = bearer.removeprefix("Bearer ")
        if not bearer.startswith("Bearer ") or not fake.oauth.accepts(access_token):
            fake.refused_tokens.append(access_token)
            self._error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", None)
            return
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self._error(400, "INVALID_ARGUMENT", "content type must be application/json", None)
            return
        try:
            document = json.loads(raw)
        except ValueError:
            self._error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", None)
            return
        problem = fcm_problem(document)
        if problem:
            fake.problems.append(problem)
            self._error(400, "INVALID_ARGUMENT", problem, "INVALID_ARGUMENT")
            return
        message = document["message"]
        scripted = fake.script.next(message["token"])
        if scripted is not None:
            status, canonical, text = FCM_ERRORS[scripted.code]
            self._error(status, canonical, text, scripted.code, scripted.retry_after)
            return
        fake.add(FcmReceived(message["token"], message, access_token))
        number = fake.next_number()
        self._answer(200, json.dumps({"name": f"projects/{fake.project_id}/messages/0:{number}"}).encode())

    def _error(
        self, status: int, canonical: str, text: str, code: str | None, retry_after: str | None = None
    ) -> None:
        error: dict[str, Any] = {"code": status, "message": text, "status": canonical}
        if code:
            error["details"] = [
                {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
            ]
        self._answer(status, json.dumps({"error": error}).encode(), retry_after=retry_after)

    def _answer(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json; charset=UTF-8",
        retry_after: str | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeFcm(HttpServer):
    """FCM HTTP v1 for project ``project_id``, trusting the tokens of ``oauth``.

    :param latency: seconds before each answer (each connection has its own thread).
    """

    request_queue_size = 256  # every connection of every worker at once

    def __init__(self, oauth: OAuthServer, *, project_id: str = "mc-test", latency: float = 0.0) -> None:
        super().__init__(_FcmHandler, poll_interval=0.05)
        self.oauth = oauth
        self.project_id = project_id
        self.latency = latency
        self.script = _Script()
        self.received: list[FcmReceived] = []
        self.refused_tokens: list[str] = []
        self.problems: list[str] = []
        self.requests = 0
        self.clients: set[tuple[str, int]] = set()
        self.on_received: Callable[[str, dict[str, Any]], None] | None = None  # token, message accepted
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self, **extra: Any) -> dict[str, Any]:  # type: ignore[override]
        """The ``fcm`` Airflow connection (JSON form) to this server and its OAuth server."""
        fields = {"project_id": self.project_id, "base_url": self.base_url, **extra}
        return {"conn_type": "fcm", "password": json.dumps(self.oauth.account), "extra": fields}

    def add(self, received: FcmReceived) -> None:
        with self._lock:
            self.received.append(received)
        if self.on_received is not None:
            self.on_received(received.token, received.message)

    def count_request(self, client: tuple[str, int]) -> None:
        with self._lock:
            self.requests += 1
            self.clients.add(client)

    def next_number(self) -> int:
        with self._lock:
            return next(self._numbers)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing its kept-alive connection at the end: expected


# --- APNs over HTTP/2 -----------------------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class ApnsReceived:
    token: str
    headers: dict[str, str]
    payload: dict[str, Any]
    jwt: str
    connection: int
    stream_id: int
    at: float = field(default_factory=time.monotonic)


class FakeApns:
    """APNs for one team, key and topic, over HTTP/2 with TLS on ``127.0.0.1`` (context manager).

    :param directory: where its certificate is written (``ca_file`` is what a client trusts).
    :param latency: seconds before each answer (streams are answered concurrently).
    :param goaway_after: end each connection with GOAWAY when a request arrives after this many
        answered: the GOAWAY names the last stream answered, so the new request (never processed)
        is for the client to send on a new connection.
    :param lose_answer_after: the same, but the GOAWAY names the new request as processed and the
        connection closes before its answer: the client cannot know, and sends it again (the same
        ``apns-id``).
    :param token_max_age: seconds a provider token is accepted after its ``iat`` (Apple: an hour);
        older: 403 ``ExpiredProviderToken``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        team_id: str = "TEAM123456",
        key_id: str = "KEY1234567",
        topic: str = "com.example.app",
        latency: float = 0.0,
        goaway_after: int | None = None,
        lose_answer_after: int | None = None,
        token_max_age: float = 3600.0,
    ) -> None:
        self.team_id, self.key_id, self.topic = team_id, key_id, topic
        self.private_key, self._public_key = apns_key()
        self.ca_file, key_file = self_signed_certificate(directory)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(self.ca_file, key_file)
        self._ssl.set_alpn_protocols(["h2"])
        self.latency = latency
        self.goaway_after = goaway_after
        self.lose_answer_after = lose_answer_after
        self.token_max_age = token_max_age
        self.script = _Script()
        self.received: list[ApnsReceived] = []
        self.answered_ids: list[str] = []  # apns-id of every 200 sent
        self.problems: list[str] = []
        self.jwts: set[str] = set()  # every distinct provider token seen
        self.connections = 0
        self.goaways = 0
        self.requests = 0
        self.open_connections: set[_ApnsProtocol] = set()
        self.on_received: Callable[[str, dict[str, Any]], None] | None = None  # token, payload accepted
        self._verified: dict[str, float] = {}  # provider token -> its iat (signature checked once)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    def __enter__(self) -> FakeApns:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(lambda: _ApnsProtocol(self), "127.0.0.1", 0, ssl=self._ssl, backlog=512),
            self._loop,
        )
        self._server = future.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for protocol in list(self.open_connections):
                protocol.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def connection(self, **extra: Any) -> dict[str, Any]:
        """The ``apns`` Airflow connection (JSON form) to this server."""
        fields = {
            "team_id": self.team_id,
            "key_id": self.key_id,
            "topic": self.topic,
            "base_url": self.base_url,
            "ca_file": str(self.ca_file),
            **extra,
        }
        return {"conn_type": "apns", "password": self.private_key, "extra": fields}

    def answer(
        self, headers: dict[str, str], body: bytes, connection: int, stream_id: int
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """The status, JSON body and headers of the answer to one request."""
        with self._lock:
            self.requests += 1
        token = headers.get(":path", "").removeprefix("/3/device/")
        reason = self._provider_token_problem(headers.get("authorization", ""))
        if reason:
            return 403, {"reason": reason}, {}
        problem = self._request_problem(headers, body)
        if problem is not None:
            status, reason, detail = problem
            self.problems.append(f"{reason}: {detail}")
            return status, {"reason": reason}, {}
        scripted = self.script.next(token)
        if scripted is not None:
            answer: dict[str, Any] = {"reason": scripted.code}
            if scripted.timestamp is not None:
                answer["timestamp"] = scripted.timestamp
            extra = {"retry-after": scripted.retry_after} if scripted.retry_after else {}
            return scripted.status, answer, extra
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        payload = json.loads(body)
        with self._lock:
            self.received.append(
                ApnsReceived(token, headers, payload, headers["authorization"][7:], connection, stream_id)
            )
            self.answered_ids.append(apns_id)
        if self.on_received is not None:
            self.on_received(token, payload)
        return 200, None, {"apns-id": apns_id}

    def _provider_token_problem(self, authorization: str) -> str | None:
        if not authorization.startswith("bearer "):
            return "MissingProviderToken"
        token = authorization[7:]
        with self._lock:
            iat = self._verified.get(token)
        if iat is None:
            try:
                header = jwt.get_unverified_header(token)
                claims = jwt.decode(
                    token, self._public_key, algorithms=["ES256"], options={"require": ["iss", "iat"]}
                )
            except jwt.PyJWTError as exc:
                self.problems.append(f"InvalidProviderToken: {type(exc).__name__}: {exc}")
                return "InvalidProviderToken"
            if (
                header.get("alg") != "ES256"
                or header.get("kid") != self.key_id
                or claims["iss"] != self.team_id
            ):
                self.problems.append(f"InvalidProviderToken: {header} {claims}")
                return "InvalidProviderToken"
            iat = float(claims["iat"])
            with self._lock:
                self._verified[token] = iat
                self.jwts.add(token)
        if time.time() - iat > self.token_max_age:
            return "ExpiredProviderToken"
        return None

    def _request_problem(self, headers: dict[str, str], body: bytes) -> tuple[int, str, str] | None:
        if headers.get(":method") != "POST":
            return 405, "MethodNotAllowed", headers.get(":method", "")
        if headers.get(":scheme") != "https" or not headers.get(":path", "").startswith("/3/device/"):
            return 404, "BadPath", headers.get(":path", "")
        token = headers[":path"].removeprefix("/3/device/")
        if not token:
            return 400, "MissingDeviceToken", ""
        if headers.get("apns-topic") != self.topic:
            return (
                400,
                "BadTopic" if headers.get("apns-topic") else "MissingTopic",
                headers.get("apns-topic", ""),
            )
        push_type = headers.get("apns-push-type")
        if push_type not in ("alert", "background"):
            return 400, "InvalidPushType", str(push_type)
        priority = headers.get("apns-priority", "10")
        if priority not in ("5", "10") or (push_type == "background" and priority != "5"):
            return 400, "BadPriority", priority
        if not headers.get("apns-expiration", "0").isdigit():
            return 400, "BadExpirationDate", headers.get("apns-expiration", "")
        if "apns-id" in headers and not _UUID.match(headers["apns-id"]):
            return 400, "BadMessageId", headers["apns-id"]
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return 400, "BadCollapseId", headers["apns-collapse-id"]
        if len(body) > 4096:
            return 413, "PayloadTooLarge", str(len(body))
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, "PayloadEmpty" if not body else "BadPayload", body[:100].decode(errors="replace")
        aps = payload.get("aps") if isinstance(payload, dict) else None
        if not isinstance(aps, dict) or not aps:
            return 400, "PayloadEmpty", "no aps dictionary"
        if push_type == "alert" and not isinstance(aps.get("alert"), dict | str):
            return 400, "BadPayload", "an alert push without an alert"
        if push_type == "background" and aps.get("content-available") != 1:
            return 400, "BadPayload", "a background push without content-available"
        if "badge" in aps and (not isinstance(aps["badge"], int) or isinstance(aps["badge"], bool)):
            return 400, "BadPayload", "badge must be a number"
        return None

    def goaway_now(self, answered: int) -> str | None:
        """``"goaway"``, ``"lose answer"`` or ``None``: what to do with a request that arrives
        after ``answered`` answers on its connection."""
        if self.goaway_after is not None and answered >= self.goaway_after:
            return "goaway"
        if self.lose_answer_after is not None and answered >= self.lose_answer_after:
            return "lose answer"
        return None

    def new_connection(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections


class _ApnsProtocol(asyncio.Protocol):
    """One HTTP/2 connection of :class:`FakeApns`."""

    def __init__(self, fake: FakeApns) -> None:
        import h2.config
        import h2.connection

        self.fake = fake
        self.number = fake.new_connection()
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.answered = 0
        self.last_answered = 0
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.fake.open_connections.add(self)
        self.h2.initiate_connection()
        self.h2.update_settings({0x3: 1000})  # SETTINGS_MAX_CONCURRENT_STREAMS, as APNs's
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.fake.open_connections.discard(self)

    def data_received(self, data: bytes) -> None:
        import h2.events
        import h2.exceptions

        if self.closing:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            self._close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.requests[event.stream_id] = (dict(_text(event.headers)), bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self.requests[event.stream_id][1].extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._stream_ended(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._close()
        self._flush()

    def _stream_ended(self, stream_id: int) -> None:
        ending = self.fake.goaway_now(self.answered)
        if ending:
            # A request after the connection's quota. GOAWAY names the last stream answered, so
            # this one was never processed; or it names this one, whose answer is then lost.
            self.fake.goaways += 1
            self.h2.close_connection(
                last_stream_id=stream_id if ending == "lose answer" else self.last_answered
            )
            self._flush()
            self._close()
            return
        headers, body = self.requests.pop(stream_id)
        asyncio.get_running_loop().create_task(self._respond(stream_id, headers, bytes(body)))

    async def _respond(self, stream_id: int, headers: dict[str, str], body: bytes) -> None:
        if self.fake.latency:
            await asyncio.sleep(self.fake.latency)
        if self.closing:
            return
        status, answer, extra = self.fake.answer(headers, body, self.number, stream_id)
        data = json.dumps(answer).encode() if answer is not None else b""
        response = [(":status", str(status)), *extra.items()]
        if data:
            response += [("content-type", "application/json"), ("content-length", str(len(data)))]
        self.h2.send_headers(stream_id, response, end_stream=not data)
        if data:
            self.h2.send_data(stream_id, data, end_stream=True)
        self.answered += 1
        self.last_answered = max(self.last_answered, stream_id)
        self._flush()

    def _flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


def _text(headers: Iterable[tuple[Any, Any]]) -> Iterable[tuple[str, str]]:
    for name, value in headers:
        yield (
            (name.decode() if isinstance(name, bytes) else name),
            (value.decode() if isinstance(value, bytes) else value),
        )
