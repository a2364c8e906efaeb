"""Local stand-ins for Twilio's and Vonage's SMS REST APIs that check every request they receive.

Each is a ``ThreadingHTTPServer`` on a free loopback port (kept-alive connections, one thread per
connection) that answers as the provider documents, optionally after a latency:

* :class:`FakeTwilio` (``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``): HTTP basic auth
  with the Account SID and auth token (else 401, error 20003), a form-encoded body whose fields are
  the documented ones, each once; ``To`` in E.164 (else 400, error 21211), ``Body`` (21602), ``From``
  or ``MessagingServiceSid`` (21603); success is 201 with a Message resource whose ``sid`` is new.
* :class:`FakeVonage` (``POST /sms/json``): ``api_key`` / ``api_secret`` in the form (else status 4),
  or, signed (``signature_secret``), ``api_key``, ``timestamp`` and ``sig`` checked with the steps
  of Vonage's "Signing Messages" (:func:`vonage_signature`, not the code under test): a wrong or
  missing ``sig``, or a ``timestamp`` more than ``max_skew`` seconds from now, is status 14
  (Invalid Signature), ``sig`` with ``api_secret`` status 32, and
  an account that enforces signing (``signed_only``) answers 14 to an unsigned request too;
  ``from``, ``to`` (7 to 15 digits, no ``+``: else status 3), ``text``; ``type`` ``unicode`` exactly
  when the text is not GSM 7-bit; ``client-ref`` and ``callback`` within Vonage's lengths; success
  is 200 with one message per part (153 GSM characters, 67 UCS-2 ones per part of a long text).

Whatever breaks the documented format is also noted in ``violations`` (a test asserts there are
none). ``replies`` holds answers to give instead of the success, in order (the request is checked
and recorded all the same); ``refuse`` maps a recipient to the answer it always gets.

With ``callback_delay`` set (the demo), each accepted message whose request asked for status
callbacks gets them as the provider sends them, from a background thread, that many seconds after
the answer: Twilio posts ``sent`` then ``delivered`` to the ``StatusCallback`` URL, form-encoded,
signed with ``X-Twilio-Signature`` under the auth token; Vonage posts one delivery receipt per part
to the ``callback`` URL (POST, form-encoded), signed with ``timestamp``, ``nonce`` and ``sig`` when
the account has a signature secret. A number starting ``+999`` is reported undelivered (Twilio
``undelivered``, error 30003; Vonage ``failed``, err-code 1), as the demo's SMSC does. A callback
that gets no answer or a 5xx is posted again, up to ``CALLBACK_TRIES`` times. The signatures are
written here from the providers' documentation (:func:`twilio_signature`, :func:`vonage_signature`),
not taken from the code the fakes test. This module is the development stack's: the tests, the
benchmarks and the demo (:mod:`devstack.simulators`) use it.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from devstack.sinks import Reply
from messagecenter.airflow.connection_types import HTTP_CONN_TYPE

log = logging.getLogger(__name__)

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
UNDELIVERABLE_PREFIX = "+999"  # numbers reported undelivered (the demo's SMSC does the same)
CALLBACK_GAP = 0.2  # seconds between the callbacks of one message (Twilio's sent, then delivered)
CALLBACK_TRIES = 3  # a callback unanswered or answered 5xx is posted again, a second later each time
TWILIO_API_VERSION = "2010-04-01"
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


@dataclass
class Callback:
    """A status callback a fake posted: where, its parameters and headers, and how it ended."""

    url: str
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # the last answer's HTTP status; None: none came
    error: str | None = None  # why the last try got no answer
    tries: int = 0


def twilio_signature(token: str, url: str, params: Iterable[tuple[str, str]], digest: str = "sha1") -> str:
    """Twilio's "Validating signatures from Twilio", step by step (not the code under test): the
    full URL, then each POST parameter's name and value, sorted by name, with no delimiter; the
    HMAC-SHA1 (or the SHA-256 a Webhook Rule names) of it under the auth token, in base64."""
    data = url
    for name, value in sorted(params):
        data += name + value
    return base64.b64encode(hmac.new(token.encode(), data.encode(), digest).digest()).decode()


def vonage_signature(params: dict[str, str], secret: str, method: str) -> str:
    """The steps of Vonage's "Manually generate a signature", one by one (not the code under test)."""
    text = ""
    for name in sorted(params):
        text += "&" + name + "=" + params[name].replace("&", "_").replace("=", "_")
    if method == "md5hash":
        return hashlib.md5((text + secret).encode()).hexdigest()
    return hmac.new(secret.encode(), text.encode(), method).hexdigest().upper()  # HMACs come upper case


class _Later:
    """One daemon thread that runs jobs when they are due, in that order (a fake's callbacks)."""

    def __init__(self, name: str) -> None:
        self._jobs: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def after(self, delay: float, job: Callable[[], None]) -> None:
        with self._changed:
            heapq.heappush(self._jobs, (time.monotonic() + delay, next(self._order), job))
            self._changed.notify()

    def close(self) -> None:
        """Stop; the jobs not yet due are dropped."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closed and (not self._jobs or self._jobs[0][0] > time.monotonic()):
                    self._changed.wait(self._jobs[0][0] - time.monotonic() if self._jobs else None)
                if self._closed:
                    return
                job = heapq.heappop(self._jobs)[2]
            try:
                job()
            except Exception:
                log.exception("a fake provider's callback failed")


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

    def __init__(self, latency: float = 0.0, *, callback_delay: float | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.latency = latency
        self.requests: list[Received] = []
        self.violations: list[str] = []
        self.replies: deque[Reply] = deque()
        self.refuse: dict[str, Reply] = {}
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        # Called with each request the fake accepted (the demo writes sms.log), after the answer.
        self.on_accepted: Callable[[Received], None] | None = None
        self.callbacks: list[Callback] = []  # the status callbacks posted, once ended
        self.callback_delay = callback_delay
        self._later: _Later | None = None
        self._client: httpx.Client | None = None
        if callback_delay is not None:
            self._later = _Later(f"{type(self).__name__} callbacks")
            self._client = httpx.Client(timeout=10)

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

    def status_callbacks(self, request: Received) -> list[tuple[str, dict[str, str]]]:
        """The callbacks (URL, parameters before signing) an accepted request asked for, in order."""
        raise NotImplementedError

    def signed(self, url: str, params: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """A callback's parameters and headers as posted, signed as the provider signs them."""
        raise NotImplementedError

    def accepted(self, request: Received) -> None:
        """After the success answer: tell ``on_accepted``, schedule the callbacks asked for."""
        if self.on_accepted is not None:
            self.on_accepted(request)
        if self._later is None or self.callback_delay is None:
            return
        for number, (url, params) in enumerate(self.status_callbacks(request)):
            callback = Callback(url, params)
            self._later.after(self.callback_delay + number * CALLBACK_GAP, partial(self._post, callback))

    def _post(self, callback: Callback) -> None:
        """Post one callback; again a second later (up to ``CALLBACK_TRIES``) if unanswered or 5xx."""
        assert self._client is not None
        assert self._later is not None
        params, headers = self.signed(callback.url, callback.params)
        callback.headers, callback.tries = headers, callback.tries + 1
        try:
            answer = self._client.post(
                callback.url, content=urlencode(params), headers={"Content-Type": FORM, **headers}
            )
        except httpx.HTTPError as exc:
            callback.status, callback.error = None, f"{type(exc).__name__}: {exc}"
        else:
            callback.status, callback.error = answer.status_code, None
        if (callback.status is None or callback.status >= 500) and callback.tries < CALLBACK_TRIES:
            self._later.after(callback.tries * 1.0, partial(self._post, callback))
            return
        callback.params = params
        if callback.status is None or not 200 <= callback.status < 300:
            log.warning(
                "%s: the callback to %s ended %s",
                type(self).__name__,
                callback.url,
                callback.error or callback.status,
            )
        with self.lock:
            self.callbacks.append(callback)

    def wait_for_callbacks(self, count: int, timeout: float = 15.0) -> list[Callback]:
        """The callbacks posted, once there are ``count`` of them."""
        end = time.monotonic() + timeout
        while len(self.callbacks) < count:
            if time.monotonic() > end:
                raise AssertionError(
                    f"{len(self.callbacks)} callback(s) posted, not {count}: {self.callbacks}"
                )
            time.sleep(0.05)
        with self.lock:
            return list(self.callbacks)

    def server_close(self) -> None:
        super().server_close()
        if self._later is not None:
            self._later.close()
        if self._client is not None:
            self._client.close()


class FakeTwilio(FakeProvider):
    def __init__(
        self,
        latency: float = 0.0,
        *,
        account_sid: str = ACCOUNT_SID,
        token: str = AUTH_TOKEN,
        callback_delay: float | None = None,
    ) -> None:
        super().__init__(latency, callback_delay=callback_delay)
        self.account_sid = account_sid
        self.token = token

    def connection(self, **extra: Any) -> str:
        extras = {"provider": "twilio", "base_url": self.base_url, "from": "+15005550006", **extra}
        return json.dumps(
            {"conn_type": HTTP_CONN_TYPE, "login": self.account_sid, "password": self.token, "extra": extras}
        )

    def status_callbacks(self, request: Received) -> list[tuple[str, dict[str, str]]]:
        """``sent``, then ``delivered`` (``undelivered``, error 30003, for an undeliverable number)."""
        url, sid = request.form.get("StatusCallback"), request.answer["sid"]
        if not url:
            return []
        to = request.form["To"]
        common = {
            "AccountSid": self.account_sid,
            "ApiVersion": TWILIO_API_VERSION,
            "MessageSid": sid,
            "SmsSid": sid,
            "To": to,
        }
        for name in ("From", "MessagingServiceSid"):
            if request.form.get(name):
                common[name] = request.form[name]
        if to.startswith(UNDELIVERABLE_PREFIX):
            final = {"MessageStatus": "undelivered", "SmsStatus": "undelivered", "ErrorCode": "30003"}
        else:
            final = {"MessageStatus": "delivered", "SmsStatus": "delivered"}
        return [(url, {**common, "MessageStatus": "sent", "SmsStatus": "sent"}), (url, {**common, **final})]

    def signed(self, url: str, params: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        headers = {
            "X-Twilio-Signature": twilio_signature(self.token, url, params.items()),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "User-Agent": "TwilioProxy/1.1",
        }
        return params, headers

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
        callback_delay: float | None = None,
    ) -> None:
        super().__init__(latency, callback_delay=callback_delay)
        self.api_key = api_key
        self.api_secret = api_secret
        self.signature_secret = signature_secret
        self.signature_method = signature_method
        self.signed_only = signed_only
        self.max_skew = max_skew

    def connection(self, **extra: Any) -> str:
        extras = {"provider": "vonage", "base_url": self.base_url, "from": "AcmeInc", **extra}
        return json.dumps(
            {"conn_type": HTTP_CONN_TYPE, "login": self.api_key, "password": self.api_secret, "extra": extras}
        )

    def status_callbacks(self, request: Received) -> list[tuple[str, dict[str, str]]]:
        """A delivery receipt per part: ``delivered`` (``failed``, err-code 1, for an undeliverable
        number), with the DLR fields of Vonage's "Delivery Receipts" guide."""
        url, form = request.form.get("callback"), request.form
        if not url:
            return []
        dead = form["to"].startswith(UNDELIVERABLE_PREFIX.lstrip("+"))
        now = datetime.now(UTC)
        receipts = []
        for message in request.answer["messages"]:
            receipt = {
                "msisdn": form["to"],
                "to": form["from"],
                "network-code": message["network"],
                "messageId": message["message-id"],
                "price": message["message-price"],
                "status": "failed" if dead else "delivered",
                "scts": now.strftime("%y%m%d%H%M"),
                "err-code": "1" if dead else "0",
                "api-key": self.api_key,
                "message-timestamp": now.strftime("%Y-%m-%d %H:%M:%S +0000"),
            }
            if "client-ref" in form:
                receipt["client-ref"] = form["client-ref"]
            receipts.append((url, receipt))
        return receipts

    def signed(self, url: str, params: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """Signed (``timestamp``, ``nonce``, ``sig``) when the account has a signature secret."""
        if self.signature_secret is None:
            return params, {}
        signed = {**params, "timestamp": str(int(time.time())), "nonce": str(uuid.uuid4())}
        signed["sig"] = vonage_signature(signed, self.signature_secret, self.signature_method)
        return signed, {}

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
        if (kind == "unicode") == (set(text) <= GSM_7):
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
        expected = vonage_signature(params, self.signature_secret, self.signature_method)
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
        reply.write(self)
        self.wfile.flush()
        if queued is None and answer and 200 <= reply.status < 300:
            server.accepted(received)

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
