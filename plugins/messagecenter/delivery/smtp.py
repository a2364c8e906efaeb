"""E-mail over SMTP: one authenticated connection per chunk, every answer classified.

The connection is opened by Airflow's ``SmtpHook`` (so host, port, credentials, SSL/STARTTLS, timeout
and retries come from the ``mc_smtp`` connection like for any Airflow e-mail), but the message is built
and sent here: the hook's ``send_email_smtp`` blindly retries any exception (a message the server
already accepted could go out twice) and raises instead of telling a 4xx from a 5xx.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
from datetime import UTC, datetime
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid, parseaddr
from types import TracebackType
from typing import TYPE_CHECKING

from messagecenter.delivery.base import Outcome, OutgoingMessage, SendResult, truncate
from messagecenter.exceptions import ConfigError

if TYPE_CHECKING:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

log = logging.getLogger(__name__)

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
    """Send e-mail through the SMTP server of an Airflow ``smtp`` connection.

    ``with transport:`` opens one connection (through ``SmtpHook``); ``send`` reuses it for every
    message of the chunk. If the connection cannot be opened, nothing is raised: every ``send`` answers
    ``TRANSIENT`` with the reason, so the events are retried later with backoff. If the server drops
    the connection mid-chunk (many servers cap messages per connection), the next ``send`` reconnects
    once; a reconnect is allowed again only after a message went through on the new connection, so a
    dead server costs one connection attempt per chunk, not one per message.

    A missing sender address is a configuration error, not a delivery problem: ``__enter__`` raises
    :class:`~messagecenter.exceptions.ConfigError` rather than fail every event of the chunk.

    :param smtp_conn_id: Airflow connection (type ``smtp``; extras ``from_email``, ``disable_ssl``,
        ``disable_tls``, ``timeout``, ``retry_limit`` as understood by ``SmtpHook``).
    :param from_email: sender (``From`` header and envelope); default: the connection's ``from_email``
        extra.
    """

    def __init__(self, smtp_conn_id: str = "mc_smtp", *, from_email: str | None = None) -> None:
        self.smtp_conn_id = smtp_conn_id
        self._from_email_arg = from_email
        self._from_email: str | None = None
        self._envelope_from = ""
        self._msgid_domain: str | None = None
        self._hook: SmtpHook | None = None
        self._client: smtplib.SMTP | None = None
        self._error: str | None = None  # why there is no usable connection
        self._may_reconnect = False
        self.connections_opened = 0  # for metrics and tests

    # -- connection -----------------------------------------------------------------------------

    def __enter__(self) -> SmtpTransport:
        self._error = None
        self._connect()
        # A chunk that could not even connect does not try again per message: the events are retried.
        self._may_reconnect = self._client is not None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._disconnect(polite=True)

    def _connect(self) -> None:
        """Open and authenticate a connection; on failure remember why instead of raising."""
        from airflow.providers.smtp.hooks.smtp import SmtpHook  # heavy import, kept out of module scope

        # A fresh hook each time: after a failed get_conn() a hook may keep a half-open client and would
        # hand it back, unauthenticated, on the next call.
        hook = SmtpHook(self.smtp_conn_id)
        try:
            hook.get_conn()
        except Exception as exc:  # AirflowException (unknown connection, retries exhausted), OSError, SMTP*
            # get_conn() does not close a client it built before failing (e.g. at STARTTLS or login).
            self._close_quietly(hook._smtp_client)  # type: ignore[arg-type]
            self._error = f"cannot open SMTP connection {self.smtp_conn_id!r}: {type(exc).__name__}: {exc}"
            log.warning("%s", self._error)
            return
        # SmtpHook has no public accessor for its smtplib client; get_conn() stores it here.
        client = hook._smtp_client
        if not isinstance(client, smtplib.SMTP):  # SMTP_SSL is a subclass; aiosmtplib is the async path
            self._close_quietly(client)  # type: ignore[arg-type]
            raise TypeError(f"SmtpHook returned an unexpected client {type(client).__name__}")
        if self._from_email is None:
            self._set_sender(self._from_email_arg or hook.from_email, client)
        self._hook, self._client, self._error = hook, client, None
        self.connections_opened += 1
        log.debug("SMTP connection %r opened (%s)", self.smtp_conn_id, "SSL" if hook.use_ssl else "plain")

    def _set_sender(self, from_email: str | None, client: smtplib.SMTP) -> None:
        address = parseaddr(from_email or "")[1]
        if "@" not in address:
            self._close_quietly(client)
            raise ConfigError(
                f"no sender address for SMTP connection {self.smtp_conn_id!r}: pass from_email or set the "
                f'connection extra "from_email" (got {from_email!r})'
            )
        self._from_email = from_email
        self._envelope_from = address
        self._msgid_domain = address.rpartition("@")[2]

    def _disconnect(self, *, polite: bool = False) -> None:
        client, self._client, self._hook = self._client, None, None
        if client is None:
            return
        if polite and client.sock is not None:
            # SmtpHook.__exit__ only closes the socket; QUIT is kinder to the server.
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
            log.info("SMTP connection %r lost (%s), reconnecting", self.smtp_conn_id, self._error)
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
        return mail

    def send(self, message: OutgoingMessage) -> SendResult:
        """Send one e-mail; never raises for a delivery problem, the result says what happened."""
        client = self._usable_client()
        if client is None:
            return SendResult(Outcome.TRANSIENT, error=truncate(self._error or "no SMTP connection"))
        if "@" not in parseaddr(message.address)[1]:
            return SendResult(
                Outcome.PERMANENT, error=truncate(f"not an e-mail address: {message.address!r}")
            )
        try:
            mail = self.build_message(message)
        except (ValueError, TypeError) as exc:  # e.g. a line break in the subject (header injection)
            return SendResult(Outcome.PERMANENT, error=truncate(f"cannot build the e-mail: {exc}"))
        message_id = str(mail["Message-ID"])
        try:
            refused = client.send_message(mail, from_addr=self._envelope_from, to_addrs=[message.address])
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient (here: the only one) refused
            code, reply = next(iter(exc.recipients.values()), (-1, b"recipient refused"))
            result = _refused(code, reply, "recipient refused")
        except smtplib.SMTPSenderRefused as exc:
            result = _refused(exc.smtp_code, exc.smtp_error, "sender refused")
        except smtplib.SMTPDataError as exc:
            result = _refused(exc.smtp_code, exc.smtp_error, "message refused")
        except smtplib.SMTPResponseException as exc:  # e.g. HELO refused
            result = _refused(exc.smtp_code, exc.smtp_error, "error")
        except smtplib.SMTPNotSupportedError as exc:  # e.g. a non-ASCII address and no SMTPUTF8
            result = SendResult(Outcome.PERMANENT, error=truncate(f"SMTP server cannot take it: {exc}"))
        except (smtplib.SMTPException, OSError) as exc:  # disconnected, reset, timeout: state unknown
            self._disconnect()
            self._error = f"SMTP connection lost: {type(exc).__name__}: {exc}"
            result = SendResult(Outcome.TRANSIENT, error=truncate(self._error))
        except ValueError as exc:  # malformed message caught by smtplib
            result = SendResult(Outcome.PERMANENT, error=truncate(f"cannot send the e-mail: {exc}"))
        else:
            self._may_reconnect = True  # this connection worked: a later drop deserves a reconnect
            answer = "250 accepted" + (f", refused: {refused}" if refused else "")
            return SendResult(Outcome.SENT, message_id=message_id, provider_answer=truncate(answer))
        log.debug("event %s: %s %s", message.event_id, result.outcome.value, result.error)
        return result
