"""SMS over Twilio's and Vonage's REST APIs: each provider's request and answer, on :class:`HttpTransport`.

:class:`TwilioApi` and :class:`VonageApi` implement :class:`~messagecenter.delivery.http.HttpApi`: the
transport keeps the pooled client, the deadline, the network errors and ``Retry-After``; these only
say what one message's form is and what the provider's answer means. Both are built from an
:class:`SmsAccount` (``messagecenter.airflow.transports`` reads it from the ``mc_sms`` connection
when its extra ``provider`` is ``twilio`` or ``vonage``).

Outcomes follow one rule for both. A refusal that is the message's own (an invalid or barred
number, a text too long) is ``PERMANENT``: that event fails alone. Throttling and the provider's
own errors are ``TRANSIENT``. So is a refusal of the *account* (credentials, sender, credit,
callback URL): failing every event for a setting an operator can fix would lose them all, whereas
transient failures open the provider's circuit breaker and the events wait for the fix (they fail
anyway after their tries). A refusal that every message would get whatever its number (bad
credentials or signature, an account suspended or out of credit) also says ``account_refused``:
the breaker opens at once, so a wrong secret costs a try to the messages in flight, not one to
each event of the chunk.

Delivery receipts come back through the feedback webhooks (``POST /api/v1/feedback/twilio`` and
``/vonage``, under the public URL ``MC_PUBLIC_URL``), matched to the event by its id: Twilio's
``StatusCallback`` URL carries ``mc_event_id`` as a query parameter; Vonage signs the receipt's
parameters, so its ``callback`` URL stays bare and the id travels in ``client-ref``
(``mc_event_id=<id>``), which Vonage echoes on the receipt of every part. Without a public URL no
callback is asked for (the account's default webhook, if any, receives the receipts). The message id
kept in the delivery log is Twilio's ``sid`` / Vonage's ``message-id``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from messagecenter.core.errors import ConfigError
from messagecenter.core.providers import TWILIO_BASE_URL, VONAGE_BASE_URL
from messagecenter.core.types import Channel
from messagecenter.delivery.base import Outcome, OutgoingMessage, SendResult
from messagecenter.delivery.http import HttpRequest, classify_status, http_error
from messagecenter.feedback.vonage_signing import DEFAULT_METHOD, METHODS, sign

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
FEEDBACK_ROUTE = "/api/v1/feedback/"  # + provider: the verified webhook of each provider
VONAGE_MAX_CALLBACK_CHARS = 100  # Vonage's SDK caps it there; too long is status 23 (invalid callback)

# GSM 03.38 default alphabet (escape excluded) and its extension table: a text made of these goes
# out as 7-bit "text"; any other character needs Vonage's "unicode" type (UCS-2).
GSM_7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    "\f^{}\\[~]|€"
)

# Twilio error codes (Twilio's error dictionary) that are not about the message. Any other 4xx
# answer is the message's own problem (21211 invalid 'To', 21614 not a mobile number, 21610
# unsubscribed recipient, 21408 region not enabled, 21617 body too long...): PERMANENT.
TWILIO_THROTTLED = frozenset({14107, 20429, 21611})  # rate limits, the sender's queue full
TWILIO_ACCOUNT_ERRORS = frozenset(
    {
        20003,  # authentication failed
        20005,  # account not active
        20404,  # no such resource: the AccountSid
        21212,  # invalid 'From' number
        21603,  # 'From' is required
        21606,  # 'From' cannot send messages (to this destination)
        21659,  # 'From' is not a Twilio number
        21660,  # 'From' does not belong to the account
        21701,  # the Messaging Service does not exist
        21703,  # the Messaging Service has no sender
        21704,  # the Messaging Service's sender pool is empty
        21705,  # invalid Messaging Service
    }
)
# Of those, the ones every message gets whatever its number: the breaker opens at once.
TWILIO_CREDENTIAL_ERRORS = frozenset({20003, 20005, 20404})
# HTTP statuses that refuse the account, not the message (when the answer names no code): each
# one refuses every message.
ACCOUNT_STATUSES = frozenset({401, 403, 404})

# Vonage SMS API send statuses ("Troubleshooting SMS", SMS API error codes).
VONAGE_STATUSES = {
    "0": "Success",
    "1": "Throttled",
    "2": "Missing Parameters",
    "3": "Invalid Parameters",
    "4": "Invalid Credentials",
    "5": "Internal Error",
    "6": "Invalid Message",
    "7": "Number Barred",
    "8": "Partner Account Barred",
    "9": "Partner Quota Violation",
    "10": "Too Many Existing Binds",
    "11": "Account Not Enabled For HTTP",
    "12": "Message Too Long",
    "14": "Invalid Signature",
    "15": "Invalid Sender Address",
    "22": "Invalid Network Code",
    "23": "Invalid Callback Url",
    "29": "Non-Whitelisted Destination",
    "32": "Signature And API Secret Disallowed",
    "33": "Number De-activated",
}
# The message's own problem: PERMANENT. The account's problems, then every other non-zero status
# (1 throttled, 5 internal error, 10 too many binds, unknown ones): TRANSIENT.
VONAGE_PERMANENT = frozenset({"2", "3", "6", "7", "12", "22", "29", "33"})
VONAGE_ACCOUNT_ERRORS = frozenset({"4", "8", "9", "11", "14", "15", "23", "32"})
# Of those, the ones every message gets (not 15, a sender some destinations refuse, nor 23): the
# credentials or the signature, an account suspended, out of credit, or not enabled for HTTP.
VONAGE_CREDENTIAL_ERRORS = frozenset({"4", "8", "9", "11", "14", "32"})
ACCOUNT_REFUSED = " (the account or its settings, not this message: check the connection)"


@dataclass(frozen=True)
class SmsAccount:
    """A REST SMS provider account, as read from the connection.

    :param base_url: scheme, host and port of the API (a local server in tests).
    :param login: Twilio's Account SID, Vonage's API key.
    :param secret: Twilio's auth token, Vonage's API secret.
    :param sender: the ``From``: a number (E.164) or an alphanumeric sender id.
    :param messaging_service_sid: Twilio's Messaging Service (instead of, or with, ``sender``).
    :param public_url: the API's public base URL (``MC_PUBLIC_URL``), where status callbacks are
        sent; empty: none asked for.
    :param signature_secret: Vonage: sign each request with this secret (``sig``) instead of
        sending the API secret.
    :param signature_method: Vonage: the account's signing algorithm, one of
        :data:`~messagecenter.feedback.vonage_signing.METHODS`.
    """

    base_url: str
    login: str
    secret: str
    sender: str | None = None
    messaging_service_sid: str | None = None
    public_url: str | None = None
    signature_secret: str | None = None
    signature_method: str = DEFAULT_METHOD

    def __repr__(self) -> str:  # never show the secrets, even in a traceback
        return (
            f"SmsAccount(base_url={self.base_url!r}, login={self.login!r}, sender={self.sender!r}, "
            f"messaging_service_sid={self.messaging_service_sid!r}, public_url={self.public_url!r}, "
            f"signed={bool(self.signature_secret)}, signature_method={self.signature_method!r})"
        )

    def callback_url(self, provider: str) -> str | None:
        """The provider's feedback webhook under the public URL, or None without one."""
        if not self.public_url:
            return None
        return f"{self.public_url.rstrip('/')}{FEEDBACK_ROUTE}{provider}"

    def require(self, provider: str, *, login: str, secret: str) -> None:
        """:class:`ConfigError` unless the credentials are set."""
        if not self.login:
            raise ConfigError(f"{provider}: the connection's login ({login}) is empty")
        if not self.secret:
            raise ConfigError(f"{provider}: the connection's password ({secret}) is empty")


class _RestSmsApi:
    """What both providers share: the account, the URL, the callback, no secret in the repr."""

    NAME = ""

    def __init__(self, account: SmsAccount, path: str) -> None:
        self.account = account
        self.url = account.base_url.rstrip("/") + path
        self.headers: dict[str, str] = {}
        self.auth: tuple[str, str] | None = None
        self.callback = account.callback_url(self.NAME)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.account!r})"


_SEPARATORS = str.maketrans("", "", " ().-")


def _number(address: str) -> str:
    """The phone number without the separators the intake lets through (``+33 6 12-34``)."""
    return address.translate(_SEPARATORS)


def _sms_text(message: OutgoingMessage) -> str:
    if message.channel != Channel.SMS:
        raise ValueError(f"channel {message.channel} is not SMS")
    return message.text or ""


def _form(url: str, fields: Mapping[str, str]) -> HttpRequest:
    return HttpRequest(url, urlencode(fields).encode(), FORM)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or an empty one."""
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _code(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class TwilioApi(_RestSmsApi):
    """Twilio Programmable Messaging: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``.

    HTTP basic auth with the Account SID and auth token; a form with ``To`` (the address without
    separators: E.164 if the caller gave it so), ``From`` and/or
    ``MessagingServiceSid``, ``Body`` and ``StatusCallback``. ``201`` with the Message resource
    (its ``sid`` is the message id); an error answers Twilio's JSON ``{code, message, more_info,
    status}`` (or RFC 9457's ``{type, title, status, code, detail}``), decided by its code (see
    :data:`TWILIO_THROTTLED`, :data:`TWILIO_ACCOUNT_ERRORS`) and its HTTP status: 429 and 5xx are
    transient, with ``Retry-After``.
    """

    NAME = "twilio"

    def __init__(self, account: SmsAccount) -> None:
        account.require(self.NAME, login="Account SID", secret="auth token")
        if not (account.sender or account.messaging_service_sid):
            raise ConfigError(f"{self.NAME}: set the extra 'from' or 'messaging_service_sid'")
        super().__init__(account, f"/2010-04-01/Accounts/{quote(account.login, safe='')}/Messages.json")
        self.auth = (account.login, account.secret)

    def request(self, message: OutgoingMessage) -> HttpRequest:
        fields = {"To": _number(message.address)}
        if self.account.sender:
            fields["From"] = self.account.sender
        if self.account.messaging_service_sid:
            fields["MessagingServiceSid"] = self.account.messaging_service_sid
        fields["Body"] = _sms_text(message)
        if self.callback:
            fields["StatusCallback"] = f"{self.callback}?{urlencode({'mc_event_id': message.event_id})}"
        return _form(self.url, fields)

    def answer(self, response: httpx.Response) -> SendResult:
        document = _json_object(response)
        status = response.status_code
        if 200 <= status <= 299:
            sid = document.get("sid")
            return SendResult(Outcome.SENT, message_id=str(sid) if sid else None)
        code = _code(document.get("code"))
        text = document.get("message") or document.get("detail") or document.get("title")
        error = http_error(response)
        if code is not None:
            error += f": Twilio error {code}" + (f" {text}" if text else "")
        if status == 429 or code in TWILIO_THROTTLED:
            return SendResult(Outcome.TRANSIENT, error=error)
        if code in TWILIO_ACCOUNT_ERRORS or (code is None and status in ACCOUNT_STATUSES):
            every_message = code in TWILIO_CREDENTIAL_ERRORS or code is None
            return _account_refused(error, every_message=every_message)
        return SendResult(classify_status(status), error=error)


class VonageApi(_RestSmsApi):
    """Vonage SMS API: ``POST /sms/json``.

    A form with ``api_key``, ``api_secret``, ``from``, ``to`` (E.164 without its ``+``), ``text``,
    ``type=unicode`` when the text is not all GSM 7-bit, ``client-ref`` (``mc_event_id=<id>``) and
    ``callback`` (the receipts' URL; left out, with a warning, if longer than Vonage takes).
    With a signature secret (an account where Vonage enforces signed requests), ``api_secret`` is
    never sent (Vonage refuses both, status 32): the form carries ``timestamp`` (UNIX seconds) and
    ``sig``, the signature of every other field (:mod:`messagecenter.feedback.vonage_signing`). The
    answer is ``200`` with ``{"message-count", "messages": [{"status", "message-id", ...}]}``, one
    message per part of a long text; ``status`` ``"0"`` is accepted, others follow
    :data:`VONAGE_PERMANENT`. A long text is Sent when every part is accepted, and the first part's
    ``message-id`` is the message id (each part's receipt names its own id, and every one carries
    the ``client-ref``). If some parts are accepted and others refused, the recipient may get part
    of the text: that is Failed (``PERMANENT``: sending again would repeat the parts that went out),
    with the first accepted id.
    """

    NAME = "vonage"

    def __init__(self, account: SmsAccount, *, clock: Callable[[], float] = time.time) -> None:
        if account.signature_secret:
            if not account.login:
                raise ConfigError(f"{self.NAME}: the connection's login (API key) is empty")
            if account.signature_method not in METHODS:
                raise ConfigError(
                    f"{self.NAME}: extra 'signature_method' must be one of {', '.join(METHODS)}, "
                    f"not {account.signature_method!r}"
                )
        else:
            account.require(self.NAME, login="API key", secret="API secret")
        self.clock = clock
        if not account.sender:
            raise ConfigError(f"{self.NAME}: set the extra 'from' (a number or an alphanumeric sender id)")
        super().__init__(account, "/sms/json")  # no auth header: the credentials are form fields
        if self.callback and len(self.callback) > VONAGE_MAX_CALLBACK_CHARS:
            log.warning(
                "Vonage takes callback URLs of at most %s characters, %r has %s: no callback asked "
                "for (the account's default webhook receives the receipts)",
                VONAGE_MAX_CALLBACK_CHARS,
                self.callback,
                len(self.callback),
            )
            self.callback = None

    def request(self, message: OutgoingMessage) -> HttpRequest:
        text = _sms_text(message)
        account = self.account
        fields = {
            "api_key": account.login,
            **({} if account.signature_secret else {"api_secret": account.secret}),
            "from": account.sender or "",
            "to": _number(message.address).removeprefix("+"),
            "text": text,
        }
        if not set(text) <= GSM_7:
            fields["type"] = "unicode"
        fields["client-ref"] = f"mc_event_id={message.event_id}"
        if self.callback:
            fields["callback"] = self.callback
        if account.signature_secret:
            fields = sign(
                fields, account.signature_secret, account.signature_method, timestamp=int(self.clock())
            )
        return _form(self.url, fields)

    def answer(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        if not 200 <= status <= 299:
            if status in ACCOUNT_STATUSES:
                return _account_refused(http_error(response), every_message=True)
            return SendResult(classify_status(status), error=http_error(response))
        parts = _json_object(response).get("messages")
        if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
            # Not Vonage's answer (a proxy's page?): whether it went out is unknown; try again.
            return SendResult(Outcome.TRANSIENT, error=f"HTTP {status}: not an SMS API answer")
        accepted = [p for p in parts if str(p.get("status")) == "0"]
        first_id = next((str(p["message-id"]) for p in accepted if p.get("message-id")), None)
        refused = [p for p in parts if str(p.get("status")) != "0"]
        if not refused:
            return SendResult(Outcome.SENT, message_id=first_id)
        part = refused[0]
        code = str(part.get("status"))
        error = f"Vonage status {code} {VONAGE_STATUSES.get(code, 'unknown')}"
        if part.get("error-text"):
            error += f": {part['error-text']}"
        if accepted:
            error = f"{len(accepted)} of {len(parts)} parts accepted, then {error}"
            return SendResult(Outcome.PERMANENT, message_id=first_id, error=error)
        if code in VONAGE_PERMANENT:
            return SendResult(Outcome.PERMANENT, error=error)
        if code in VONAGE_ACCOUNT_ERRORS:
            return _account_refused(error, every_message=code in VONAGE_CREDENTIAL_ERRORS)
        return SendResult(Outcome.TRANSIENT, error=error)


def _account_refused(error: str, *, every_message: bool) -> SendResult:
    """A refusal of the account: retried; ``every_message``: the provider's breaker opens at once."""
    return SendResult(
        Outcome.TRANSIENT,
        error=error + ACCOUNT_REFUSED,
        extra={"account_refused": True} if every_message else {},
    )


SMS_APIS: dict[str, type[TwilioApi] | type[VonageApi]] = {"twilio": TwilioApi, "vonage": VonageApi}
DEFAULT_BASE_URLS = {"twilio": TWILIO_BASE_URL, "vonage": VONAGE_BASE_URL}

__all__ = ["DEFAULT_BASE_URLS", "GSM_7", "SMS_APIS", "SmsAccount", "TwilioApi", "VonageApi"]
