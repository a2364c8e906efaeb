"""Local stand-ins for Twilio's and Vonage's SMS REST APIs that check every request they receive.

Each is a ``ThreadingHTTPServer`` on a free loopback port (kept-alive connections, one thread per
connection) that answers as the provider documents, optionally after a latency:

* :class:`FakeTwilio` (``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``): HTTP basic auth
  with the Account SID and auth token (else 401, error 20003), a form-encoded body whose fields are
  the documented ones, each once; ``To`` in E.164 (else 400, error 21211), ``Body`` (21602), ``From``
  or ``MessagingServiceSid`` (21603); success is 201 with a Message resource whose ``sid`` is new.
* :class:`FakeVonage` (``POST /sms/json``): ``api_key`` / ``api_secret`` in the form (else status 4),
  or, signed (``signature_secret``), ``api_key``, ``timestamp`` and ``sig`` checked with the steps
  of Vonage's "Signing Messages" (:func:`tests.support.webhooks.vonage.documented_signature`, not
  the code under test): a wrong or missing ``sig``, or a ``timestamp`` more than ``max_skew``
  seconds from now, is status 14 (Invalid Signature), ``sig`` with ``api_secret`` status 32, and
  an account that enforces signing (``signed_only``) answers 14 to an unsigned request too;
  ``from``, ``to`` (7 to 15 digits, no ``+``: else status 3), ``text``; ``type`` ``unicode`` exactly
  when the text is not GSM 7-bit; ``client-ref`` and ``callback`` within Vonage's lengths; success
  is 200 with one message per part (153 GSM characters, 67 UCS-2 ones per part of a long text).

Whatever breaks the documented format is also noted in ``violations`` (a test asserts there are
none). ``replies`` holds answers to give instead of the success, in order (the request is checked
and recorded all the same); ``refuse`` maps a recipient to the answer it always gets.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.sinks import Reply
from tests.support.webhooks.vonage import documented_signature

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-auth-token-0123456789abcd"
API_KEY = "abcd1234"
API_SECRET = "Vonage0123456789"
FORM = "application/x-www-form-urlencoded"
TWILIO_FIELDS = {"To", "From", "MessagingServiceSid", "Body", "StatusCallback"}
VONAGE_FIELDS = {
    "api_key", "api_secret", "timestamp", "sig", "from", "to", "text", "type", "client-ref", "callback",
}  # fmt: skip
# Vonage documents the signed timestamp as a defence against replays, not its window: 5 minutes here.
VONAGE_MAX_SKEW = 300
GSM_7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    "\f^{}\\[~]|€"
)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    client: tuple[str, int]  # one client port per TCP connection
    at: float = field(default_factory=time.monotonic)
    answer: dict[str, Any] = field(default_factory=dict)  # the JSON answered, when it was ours


def twilio_error(status: int, code: int, message: str) -> Reply:
    """Twilio's documented error answer."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Reply(status, json.dumps(body))


def vonage_error(status: str, text: str) -> Reply:
    """Vonage's answer refusing a one-part message (HTTP 200, a non-zero status)."""
    return Reply(
        200, json.dumps({"message-count": "1", "messages": [{"status": status, "error-text": text}]})
    )


class FakeProvider(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # every connection of every worker at once (benchmark)

    def __init__(self, latency: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.latency = latency
        self.requests: list[Received] = []
        self.violations: list[str] = []
        self.replies: deque[Reply] = deque()
        self.refuse: dict[str, Reply] = {}
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self, **extra: Any) -> str:
        """The ``mc_sms`` connection (JSON) to this provider; ``extra`` adds to or replaces its extras."""
        raise NotImplementedError

    def next_id(self) -> int:
        with self.lock:
            return next(self._ids)

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)

    def handle(self, request: Received) -> tuple[Reply, dict[str, Any]]:
        """Check the request; the answer and, when it is a success built here, its JSON."""
        raise NotImplementedError

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up or closed its kept-alive connection: expected


class FakeTwilio(FakeProvider):
    def __init__(
        self, latency: float = 0.0, *, account_sid: str = ACCOUNT_SID, token: str = AUTH_TOKEN
    ) -> None:
        super().__init__(latency)
        self.account_sid = account_sid
        self.token = token

    def connection(self, **extra: Any) -> str:
        extras = {"provider": "twilio", "base_url": self.base_url, "from": "+15005550006", **extra}
        return json.dumps(
            {"conn_type": "http", "login": self.account_sid, "password": self.token, "extra": extras}
        )

    def handle(self, request: Received) -> tuple[Reply, dict[str, Any]]:
        expected_path = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        if request.path != expected_path:
            self.violation(f"path {request.path!r}, not {expected_path!r}")
            return twilio_error(404, 20404, "The requested resource was not found"), {}
        credentials = base64.b64encode(f"{self.account_sid}:{self.token}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {credentials}":
            self.violation(f"Authorization {request.headers.get('authorization')!r}")
            return twilio_error(401, 20003, "Authenticate"), {}
        form = request.form
        if set(form) - TWILIO_FIELDS:
            self.violation(f"unknown fields {sorted(set(form) - TWILIO_FIELDS)}")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required"), {}
        if not form.get("Body"):
            return twilio_error(400, 21602, "Message body is required."), {}
        callback = form.get("StatusCallback")
        if callback is not None and not re.fullmatch(r"https?://[^\s/]+/\S*", callback):
            self.violation(f"StatusCallback {callback!r} is not an absolute URL")
        to = form.get("To", "")
        if to in self.refuse:
            return self.refuse[to], {}
        if not re.fullmatch(r"\+[1-9][0-9]{6,14}", to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number."), {}
        sid = f"SM{self.next_id():032x}"
        resource = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form["Body"],
            "date_created": "Thu, 30 Jul 2015 20:12:31 +0000",
            "date_sent": None,
            "date_updated": "Thu, 30 Jul 2015 20:12:31 +0000",
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if form.get("MessagingServiceSid") else "queued",
            "subresource_uris": {"media": f"{expected_path[:-5]}/{sid}/Media.json"},
            "to": to,
            "uri": f"{expected_path[:-5]}/{sid}.json",
        }
        return Reply(201, json.dumps(resource)), resource


class FakeVonage(FakeProvider):
    def __init__(
        self,
        latency: float = 0.0,
        *,
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        signature_secret: str | None = None,
        signature_method: str = "md5hash",
        signed_only: bool = False,
        max_skew: float = VONAGE_MAX_SKEW,
    ) -> None:
        super().__init__(latency)
        self.api_key = api_key
        self.api_secret = api_secret
        self.signature_secret = signature_secret
        self.signature_method = signature_method
        self.signed_only = signed_only
        self.max_skew = max_skew

    def connection(self, **extra: Any) -> str:
        extras = {"provider": "vonage", "base_url": self.base_url, "from": "AcmeInc", **extra}
        return json.dumps(
            {"conn_type": "http", "login": self.api_key, "password": self.api_secret, "extra": extras}
        )

    def handle(self, request: Received) -> tuple[Reply, dict[str, Any]]:
        if request.path != "/sms/json":
            self.violation(f"path {request.path!r}")
            return Reply(404, "not found"), {}
        if "authorization" in request.headers:
            self.violation("an Authorization header: the SMS API's credentials are form fields")
        form = request.form
        if set(form) - VONAGE_FIELDS:
            self.violation(f"unknown fields {sorted(set(form) - VONAGE_FIELDS)}")
        refused = self.authenticate(form)
        if refused is not None:
            return refused, {}
        for name in ("from", "to", "text"):
            if not form.get(name):
                return vonage_error("2", f"Missing {name} param"), {}
        text, kind = form["text"], form.get("type", "text")
        if kind not in ("text", "unicode"):
            self.violation(f"type {kind!r}")
        if (kind == "unicode") == set(text) <= GSM_7:
            self.violation(f"type {kind!r} for the text {text!r}")
        if len(form.get("client-ref", "")) > 40:
            self.violation(f"client-ref {form['client-ref']!r} is longer than 40 characters")
        callback = form.get("callback")
        if callback is not None and (len(callback) > 100 or "?" in callback):
            self.violation(f"callback {callback!r}: over 100 characters, or a query string")
        to = form["to"]
        if to in self.refuse:
            return self.refuse[to], {}
        if not re.fullmatch(r"[1-9][0-9]{6,14}", to):
            return vonage_error("3", "Invalid to param"), {}
        single, per_part = (160, 153) if kind == "text" else (70, 67)
        count = 1 if len(text) <= single else -(-len(text) // per_part)
        messages = []
        for _ in range(count):
            message = {
                "to": to,
                "message-id": f"{self.next_id():016X}",
                "status": "0",
                "remaining-balance": "15.53590000",
                "message-price": "0.03330000",
                "network": "20810",
            }
            if "client-ref" in form:
                message["client-ref"] = form["client-ref"]
            messages.append(message)
        answer = {"message-count": str(count), "messages": messages}
        return Reply(200, json.dumps(answer)), answer

    def authenticate(self, form: dict[str, str]) -> Reply | None:
        """The refusal of a request whose credentials or signature are not the account's, else None."""
        if "sig" not in form:
            if self.signed_only:
                return vonage_error("14", "Invalid Signature")
            if form.get("api_key") != self.api_key or form.get("api_secret") != self.api_secret:
                return vonage_error("4", "Bad Credentials")
            return None
        if "api_secret" in form:
            return vonage_error("32", "Signature And API Secret Disallowed")
        if form.get("api_key") != self.api_key:
            return vonage_error("4", "Bad Credentials")
        try:
            skew = abs(time.time() - int(form.get("timestamp", "")))
        except ValueError:
            return vonage_error("14", "Invalid Signature")
        if self.signature_secret is None or skew > self.max_skew:
            return vonage_error("14", "Invalid Signature")
        params = {name: value for name, value in form.items() if name != "sig"}
        expected = documented_signature(params, self.signature_secret, self.signature_method)
        if form["sig"].lower() != expected.lower():
            return vonage_error("14", "Invalid Signature")
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the providers
    server: FakeProvider

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {name.lower(): value for name, value in self.headers.items()}
        server = self.server
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type != FORM:
            server.violation(f"Content-Type {headers.get('content-type')!r}")
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
        form = dict(pairs)
        if len(form) != len(pairs):
            server.violation(f"a field repeated in {sorted(n for n, _ in pairs)}")
        if "json" not in headers.get("accept", ""):
            server.violation(f"Accept {headers.get('accept')!r}")
        received = Received(urlsplit(self.path).path, headers, form, self.client_address)
        reply, answer = server.handle(received)
        with server.lock:
            queued = server.replies.popleft() if server.replies else None
        if queued is not None:
            reply, answer = queued, {}
        received.answer = answer
        with server.lock:
            server.requests.append(received)
        delay = reply.delay or server.latency
        if delay:
            time.sleep(delay)
        data = reply.body.encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def running(server: FakeProvider) -> Iterator[Any]:
    """Serve ``server`` on a thread for the block."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
