"""What every transport shares: the message to send, the result, and the transport protocol.

A transport is opened once per chunk of events (``with transport:``) and sends many messages over
the same connection. ``send`` never raises for a delivery problem: it classifies it, because the
caller decides per event between Sent, a retry with backoff (transient) and Failed (permanent).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

MAX_ANSWER_CHARS = 1000


class Outcome(enum.Enum):
    SENT = "sent"
    TRANSIENT = "transient"  # try again later: SMTP 4xx, connection refused, timeouts, HTTP 5xx / 429
    PERMANENT = "permanent"  # never retried: SMTP 5xx, HTTP 4xx


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered message for one event.

    :param event_id: the event's id (sent along: SMTP header ``X-MC-Event-Id``, JSON ``event_id``).
    :param channel: Campaign channel code: email 0, sms 1, ios 41, android 42.
    :param address: e-mail address, phone number or push token.
    :param subject: e-mail subject or push title.
    :param html: e-mail HTML part.
    :param text: e-mail text part, SMS text or push body.
    :param data: push data.
    :param list_unsubscribe: the template asks for RFC 8058 one-click unsubscribe headers (e-mail).
    :param badge: push: the app icon's badge count.
    :param sound: push: the sound played.
    :param collapse_id: push: a newer message with the same id replaces an older one not yet shown.
    :param thread_id: iOS push: notifications of one thread are grouped.
    """

    event_id: int
    channel: int
    address: str
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    data: dict[str, Any] | None = None
    list_unsubscribe: bool = False
    badge: int | None = None
    sound: str | None = None
    collapse_id: str | None = None
    thread_id: str | None = None


@dataclass(frozen=True)
class SendResult:
    """What a send did. ``attempted`` is false when the message never reached the provider (no
    connection could be had): that is not a try of the event, and says nothing of the provider's
    health to its circuit breaker. ``extra`` may say ``retry_after`` (seconds, HTTP 429 / 503);
    ``account_refused`` True when the provider refused the account in a way every message would be
    (credentials, signature, credit): the provider's breaker then opens at once; and for an address
    the provider says is dead (a push token unregistered) ``dead_address`` True with its
    ``failure_reason`` (a feedback reason code) and ``source`` (the provider's kind): the chunk's
    results then put the address in quarantine at once."""

    outcome: Outcome
    message_id: str | None = None
    provider_answer: str | None = None  # truncated to MAX_ANSWER_CHARS
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    attempted: bool = True


class Transport(Protocol):
    """A provider's transport, and the limits a delivery chunk reads from it before opening it.

    ``name`` is the provider's name (its connection id): it keys the provider's circuit breaker and
    rate limit, and names it in logs and errors. ``max_connections`` is how many of these a chunk
    may open at once, so how many messages it keeps in flight (less than 1 counts as 1).
    ``max_rate`` is the provider's limit in messages per second across every worker; ``None`` or
    ``0`` for none.
    """

    name: str
    max_connections: int
    max_rate: float | None

    def __enter__(self) -> Transport: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def send(self, message: OutgoingMessage) -> SendResult: ...


TransportFactory = Callable[[int], Transport]  # channel code -> a transport, not yet opened


class NullTransport:
    """Accepts everything and sends nothing: benchmarks and dry runs.

    Its limits are class attributes, so that a subclass may set other ones.
    """

    name: str = "null"
    max_connections: int = 1
    max_rate: float | None = None

    def __enter__(self) -> NullTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def send(self, message: OutgoingMessage) -> SendResult:
        return SendResult(
            Outcome.SENT, message_id=f"null-{message.event_id}", provider_answer="null transport"
        )


def truncate(text: str | None, limit: int = MAX_ANSWER_CHARS) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"
