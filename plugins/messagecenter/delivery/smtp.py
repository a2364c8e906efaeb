"""E-mail over SMTP: one authenticated connection per transport, every answer classified.

A delivery chunk keeps up to ``max_connections`` transports open at once (``delivery.pool``), each
sending its messages one after another over its connection. The transport is handed a function that
opens an authenticated ``smtplib`` client:
``messagecenter.airflow.transports`` opens it with Airflow's ``SmtpHook``, so host, port,
credentials, SSL/STARTTLS, timeout and retries come from the ``mc_smtp`` connection like for any
Airflow e-mail. The message is built and sent here: the hook's ``send_email_smtp`` blindly retries
any exception (a message the server already accepted could go out twice) and raises instead of
telling a 4xx from a 5xx.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
from collections.abc import Callable
from datetime import UTC, datetime
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid, parseaddr
from types import TracebackType
from typing import NamedTuple

from messagecenter.core.errors import ConfigError
from messagecenter.core.types import Channel
from messagecenter.delivery.base import Outcome, OutgoingMessage, SendResult, truncate
from messagecenter.delivery.guards import SocketWatchdog
from messagecenter.feedback import unsubscribe, verp

log = logging.getLogger(__name__)


class SmtpClient(NamedTuple):
    """An open, authenticated connection, and the sender its configuration names (if any)."""

    client: smtplib.SMTP
    from_email: str | None


class SmtpOpenError(Exception):
    """The connection could not be opened; ``client`` is whatever was half-built, to be closed."""

    def __init__(self, message: str, client: smtplib.SMTP | None = None) -> None:
        super().__init__(message)
        self.client = client


EVENT_ID_HEADER = "X-MC-Event-Id"


def _reply_text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _outcome_for_code(code: int) -> Outcome:
    """5xx is a permanent refusal; 4xx (and anything odd) is worth another try later."""
    return Outcome.PERMANENT if 500 <= code <= 599 else Outcome.TRANSIENT


def _refused(code: int, reply: bytes | str, what: str) -> SendResult:
    answer = f"{code} {_reply_text(reply)}".strip()
    return SendResult(
        _outcome_for_code(code),
        provider_answer=truncate(answer),
        error=truncate(f"SMTP {what}: {answer}"),
        extra={"smtp_code": code},
    )


_MAX_LINE = 998  # RFC 5321: longer lines must be encoded


def _text_part(body: str, subtype: str) -> MIMEText:
    # ASCII bodies with short lines stay readable (7bit); others go as UTF-8 in base64.
    plain = body.isascii() and max(map(len, body.splitlines()), default=0) <= _MAX_LINE
    return MIMEText(body, subtype, "us-ascii" if plain else "utf-8")


class SmtpTransport:
    """Send e-mail through one SMTP server.

    ``with transport:`` opens one connection (``open_client``); ``send`` reuses it for every
    message of the chunk. If the connection cannot be opened, nothing is raised: every ``send`` answers
    ``TRANSIENT`` with the reason, so the events are retried later with backoff. If the server drops
    the connection mid-chunk (many servers cap messages per connection), the next ``send`` reconnects
    once; a reconnect is allowed again only after a message went through on the new connection, so a
    dead server costs one connection attempt per chunk, not one per message.

    A missing sender address is a configuration error, not a delivery problem: ``__enter__`` raises
    :class:`~messagecenter.core.errors.ConfigError` rather than fail every event of the chunk.

    :param open_client: opens an authenticated client; raises :class:`SmtpOpenError` (or any
        exception) when it cannot.
    :param name: the server's name in logs and errors (its connection id).
    :param from_email: sender (``From`` header and envelope); default: the one ``open_client`` names.
    :param deadline: most seconds one message may take, whatever the server does (a server that
        trickles its answer defeats the per-read timeout); past it the connection is dropped and
        the event retried later.
    :param max_connections: how many of these a delivery chunk may open at once (its concurrency).
    :param max_rate: the provider's limit in messages per second, across all workers (or none).
    :param return_path_domain: with ``feedback_key``: each message's envelope sender is a VERP
        address on this domain carrying its event id and an HMAC, so a bounce names its event and
        nobody can forge one that quarantines someone else.
    :param feedback_key: the HMAC key of return paths and one-click unsubscribe links.
    :param public_url: the intake API's public URL: with ``feedback_key``, a message whose template
        asks for it carries RFC 8058 ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` headers.
    """

    def __init__(
        self,
        open_client: Callable[[], SmtpClient],
        *,
        name: str,
        from_email: str | None = None,
        deadline: float = 60.0,
        max_connections: int = 10,
        max_rate: float | None = None,
        return_path_domain: str | None = None,
        feedback_key: bytes | None = None,
        public_url: str | None = None,
    ) -> None:
        self.open_client = open_client
        self.name = name
        self.deadline = deadline
        self.max_connections = max_connections
        self.max_rate = max_rate
        self._watchdog: SocketWatchdog | None = None
        self._return_path_domain = return_path_domain if feedback_key else None
        self._feedback_key = feedback_key
        self._public_url = public_url if feedback_key else None
        self._from_email_arg = from_email
        self._from_email: str | None = None
        self._envelope_from = ""
        self._msgid_domain: str | None = None
        self._client: smtplib.SMTP | None = None
        self._error: str | None = None  # why there is no usable connection
        self._may_reconnect = False
        self.connections_opened = 0  # for metrics and tests

    # -- connection -----------------------------------------------------------------------------

    def __enter__(self) -> SmtpTransport:
        self._error = None
        self._watchdog = SocketWatchdog()
        self._connect()
        # A chunk that could not even connect does not try again per message: the events are retried.
        self._may_reconnect = self._client is not None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._disconnect(polite=True)
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None

    def _connect(self) -> None:
        """Open and authenticate a connection; on failure remember why instead of raising."""
        try:
            client, configured_sender = self.open_client()
        except Exception as exc:  # SmtpOpenError, OSError, SMTP*: the events are retried later
            cause = exc.__cause__ if isinstance(exc, SmtpOpenError) and exc.__cause__ else exc
            if isinstance(exc, SmtpOpenError):
                self._close_quietly(exc.client)
            self._error = f"cannot open SMTP connection {self.name!r}: {type(cause).__name__}: {cause}"
            log.warning("%s", self._error)
            return
        if self._from_email is None:
            self._set_sender(self._from_email_arg or configured_sender, client)
        self._client, self._error = client, None
        self.connections_opened += 1
        log.debug("SMTP connection %r opened", self.name)

    def _set_sender(self, from_email: str | None, client: smtplib.SMTP) -> None:
        address = parseaddr(from_email or "")[1]
        if "@" not in address:
            self._close_quietly(client)
            raise ConfigError(
                f"no sender address for SMTP connection {self.name!r}: pass from_email or set the "
                f'connection extra "from_email" (got {from_email!r})'
            )
        self._from_email = from_email
        self._envelope_from = address
        self._msgid_domain = address.rpartition("@")[2]

    def _disconnect(self, *, polite: bool = False) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if polite and client.sock is not None:
            # Closing only drops the socket; QUIT is kinder to the server.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()
        self._close_quietly(client)

    @staticmethod
    def _close_quietly(client: smtplib.SMTP | None) -> None:
        if client is not None:
            with contextlib.suppress(OSError):
                client.close()

    def _usable_client(self) -> smtplib.SMTP | None:
        if self._client is not None and self._client.sock is not None:
            return self._client
        if self._client is not None:  # closed by smtplib itself, e.g. after a 421 answer
            self._disconnect()
            self._error = "SMTP server closed the connection"
        if self._may_reconnect:
            self._may_reconnect = False
            log.info("SMTP connection %r lost (%s), reconnecting", self.name, self._error)
            self._connect()
        return self._client

    # -- sending --------------------------------------------------------------------------------

    def build_message(self, message: OutgoingMessage) -> Message:
        """The MIME message for one event: text and HTML alternatives, with our tracing headers.

        Built with the ``compat32`` MIME classes, about three times cheaper than ``EmailMessage``'s
        header registry; so header injection is checked here (the renderer already flattens the
        subject to one line, an address comes from the event as pushed).

        :raises ValueError: a line break in the subject or the address.
        """
        if self._from_email is None:
            raise ConfigError("SmtpTransport.build_message needs an open connection (use `with transport:`)")
        for what, value in (("subject", message.subject), ("address", message.address)):
            if value and ("\r" in value or "\n" in value):
                raise ValueError(f"line break in the {what} (header injection)")
        mail: Message
        if message.text is not None and message.html is not None:
            mail = MIMEMultipart(
                "alternative", _subparts=[_text_part(message.text, "plain"), _text_part(message.html, "html")]
            )
        elif message.html is not None:
            mail = _text_part(message.html, "html")
        else:
            mail = _text_part(message.text or "", "plain")
        subject = message.subject or ""
        mail["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")  # type: ignore[assignment]
        mail["From"] = self._from_email
        mail["To"] = message.address
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = make_msgid(idstring=f"mc{message.event_id}", domain=self._msgid_domain)
        mail[EVENT_ID_HEADER] = str(message.event_id)
        for header, value in _relay_echo_headers(message.event_id):
            mail[header] = value
        if message.list_unsubscribe and self._public_url and self._feedback_key:
            for header, value in unsubscribe.headers(
                self._public_url, Channel.EMAIL, message.address, message.event_id, self._feedback_key
            ).items():
                mail[header] = value
        return mail

    def envelope_from(self, message: OutgoingMessage) -> str:
        """The envelope sender (where bounces go): the message's VERP address, else the sender."""
        if self._return_path_domain and self._feedback_key:
            return verp.return_path(message.event_id, self._return_path_domain, self._feedback_key)
        return self._envelope_from

    def send(self, message: OutgoingMessage) -> SendResult:
        """Send one e-mail; never raises for a delivery problem, the result says what happened."""
        client = self._usable_client()
        if client is None:  # the message never reached the server: not a try (see SendResult.attempted)
            return SendResult(
                Outcome.TRANSIENT, error=truncate(self._error or "no SMTP connection"), attempted=False
            )
        if "@" not in parseaddr(message.address)[1]:
            return SendResult(
                Outcome.PERMANENT, error=truncate(f"not an e-mail address: {message.address!r}")
            )
        try:
            mail = self.build_message(message)
        except (ValueError, TypeError) as exc:  # e.g. a line break in the subject (header injection)
            return SendResult(Outcome.PERMANENT, error=truncate(f"cannot build the e-mail: {exc}"))
        result, retry = self._attempt(client, mail, message)
        if retry:  # a 421 or a dropped connection: once more on a new connection, in this chunk
            self._disconnect()
            self._may_reconnect = True
            log.info(
                "SMTP %r: %s; reconnecting to send event %s again", self.name, result.error, message.event_id
            )
            client = self._usable_client()
            if client is not None:
                result, retry = self._attempt(client, mail, message)
            if retry:
                # The new connection went the same way (421 again, dropped again): it is retired,
                # and the next message gets a fresh one instead of this dead one.
                self._disconnect()
                self._may_reconnect = True
        log.debug("event %s: %s %s", message.event_id, result.outcome.value, result.error)
        return result

    def _attempt(
        self, client: smtplib.SMTP, mail: Message, message: OutgoingMessage
    ) -> tuple[SendResult, bool]:
        """One try over ``client``; the flag says whether a new connection deserves another try
        (the server said 421, or the connection dropped), as opposed to an answer about the message
        or a deadline that passed."""
        message_id = str(mail["Message-ID"])
        watchdog = self._watchdog or SocketWatchdog()
        try:
            with watchdog.guard(client.sock, self.deadline):
                refused = client.send_message(
                    mail, from_addr=self.envelope_from(message), to_addrs=[message.address]
                )
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient (here: the only one) refused
            code, reply = next(iter(exc.recipients.values()), (-1, b"recipient refused"))
            return _refused(code, reply, "recipient refused"), code == 421
        except smtplib.SMTPSenderRefused as exc:
            return _refused(exc.smtp_code, exc.smtp_error, "sender refused"), exc.smtp_code == 421
        except smtplib.SMTPDataError as exc:
            return _refused(exc.smtp_code, exc.smtp_error, "message refused"), exc.smtp_code == 421
        except smtplib.SMTPResponseException as exc:  # e.g. HELO refused
            return _refused(exc.smtp_code, exc.smtp_error, "error"), exc.smtp_code == 421
        except smtplib.SMTPNotSupportedError as exc:  # e.g. a non-ASCII address and no SMTPUTF8
            return SendResult(Outcome.PERMANENT, error=truncate(f"SMTP server cannot take it: {exc}")), False
        except (smtplib.SMTPException, OSError) as exc:  # disconnected, reset, timeout: state unknown
            self._disconnect()
            if watchdog.fired:
                self._error = f"SMTP server did not finish within the deadline of {self.deadline:g} s"
            else:
                self._error = f"SMTP connection lost: {type(exc).__name__}: {exc}"
            return SendResult(Outcome.TRANSIENT, error=truncate(self._error)), not watchdog.fired
        except Exception as exc:  # the message itself cannot be written out (a header, an encoding)
            error = truncate(f"cannot send the e-mail: {type(exc).__name__}: {exc}")
            return SendResult(Outcome.PERMANENT, error=error), False
        self._may_reconnect = True  # this connection worked: a later drop deserves a reconnect
        answer = "250 accepted" + (f", refused: {refused}" if refused else "")
        return SendResult(Outcome.SENT, message_id=message_id, provider_answer=truncate(answer)), False


def _relay_echo_headers(event_id: int) -> tuple[tuple[str, str], ...]:
    """Headers by which the SMTP relays of SendGrid, Mailgun, Postmark and SES echo our event id in
    their webhooks (unique args, user variables, metadata, message tags), so feedback finds its log."""
    return (
        ("X-SMTPAPI", f'{{"unique_args": {{"mc_event_id": "{event_id}"}}}}'),
        ("X-Mailgun-Variables", f'{{"mc_event_id": "{event_id}"}}'),
        ("X-PM-Metadata-mc_event_id", str(event_id)),
        ("X-SES-MESSAGE-TAGS", f"mc_event_id={event_id}"),
    )
