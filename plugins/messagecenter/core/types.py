"""The domain's words: queues, channels, event statuses, and the claimed-event row.

Channel and status values are Campaign's codes, as stored in the database: the SQL files use the
same integers, each with a comment naming its status.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

Queue = Literal["rt", "batch"]
QUEUES: tuple[Queue, ...] = get_args(Queue)

ChannelName = Literal["email", "sms", "ios", "android"]


class Channel(enum.IntEnum):
    """Delivery channels, with Campaign's codes."""

    EMAIL = 0
    SMS = 1
    IOS = 41
    ANDROID = 42

    @property
    def label(self) -> ChannelName:
        """The name the API and template files use (``email``, ``sms``, ``ios``, ``android``)."""
        return _CHANNEL_LABELS[self]

    @property
    def is_push(self) -> bool:
        return self in (Channel.IOS, Channel.ANDROID)

    @classmethod
    def parse(cls, value: int | str) -> Channel:
        """The channel of a name (``"sms"``) or a code (``1``); anything else is a ``ValueError``."""
        try:
            return cls[value.upper()] if isinstance(value, str) else cls(value)
        except (KeyError, ValueError):
            names = ", ".join(c.label for c in cls)
            raise ValueError(f"unknown channel {value!r}; choose from {names}") from None


_CHANNEL_LABELS: dict[Channel, ChannelName] = {
    Channel.EMAIL: "email",
    Channel.SMS: "sms",
    Channel.IOS: "ios",
    Channel.ANDROID: "android",
}


class Status(enum.IntEnum):
    """An event's status, with Campaign's codes; each line says how an event reaches it."""

    PENDING = 0  # intake stored it; no template linked yet
    PENDING_DELIVERY = 1  # link_templates found its template (0 -> 1); delivery is due
    SENT = 2  # updateEventsStatus copied a Sent delivery log (1 -> 2)
    IGNORED = 3  # copied from a log: no address, quarantined address or empty message (1 -> 3)
    FAILED = 4  # copied from a log: refused by the provider, render error, max tries (1 -> 4)
    NOT_TAKEN_INTO_ACCOUNT = 5  # link_templates found no published template (0 -> 5); never retried
    EXPIRED = 6  # expire_events: not delivered within its queue's validity (0 / 1 -> 6)

    @property
    def label(self) -> str:
        """The status name the API shows (Campaign's English labels)."""
        return STATUS_LABELS[self]

    @property
    def is_final(self) -> bool:
        return self >= Status.SENT


STATUS_LABELS: dict[Status, str] = {
    Status.PENDING: "Pending",
    Status.PENDING_DELIVERY: "Pending delivery",
    Status.SENT: "Sent",
    Status.IGNORED: "Ignored by the delivery",
    Status.FAILED: "Delivery failed",
    Status.NOT_TAKEN_INTO_ACCOUNT: "Event not taken into account",
    Status.EXPIRED: "Event expired",
}


class Unloadable:
    """A value of one event that could not be loaded (e.g. a ctx too deep or with a number Python
    cannot hold): it fails that event alone, with ``reason`` in its delivery log."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unloadable({self.reason!r})"


@dataclass(slots=True)
class ClaimedEvent:
    """One event claimed by a delivery chunk: a row of ``claim_for_delivery``, column for column."""

    id: int
    event_type: str
    channel: int
    email: str | None
    mobile_phone: str | None
    push_token: str | None
    external_id: str | None
    language: str | None
    country: str | None
    origin: str | None
    ctx: Any  # the JSON object as loaded, or Unloadable (see load_problem)
    created: datetime
    scheduled: datetime | None
    scheduled_out_of_range: bool
    template_id: int
    template_version: int
    errors: int
    next_try: datetime

    def load_problem(self) -> str | None:
        """Why this event's data cannot be delivered as stored, or ``None``."""
        if isinstance(self.ctx, Unloadable):
            return f"cannot load ctx: {self.ctx.reason}"
        if self.ctx is not None and not isinstance(self.ctx, dict):
            return f"ctx is a JSON {type(self.ctx).__name__}, not an object"
        if self.scheduled_out_of_range:
            return "scheduled is out of the supported range (years 1 to 9999)"
        return None

    @property
    def address(self) -> str | None:
        """Where to send, normalised: a lower-cased e-mail address, a phone number or a push token."""
        if self.channel == Channel.EMAIL:
            value = (self.email or "").strip()
            return value.lower() if "@" in value else None
        raw = self.mobile_phone if self.channel == Channel.SMS else self.push_token
        return (raw or "").strip() or None

    def template_fields(self) -> dict[str, Any]:
        """``event`` as a template sees it: the pushed fields, ``type`` for the event type."""
        return {
            "id": self.id,
            "type": self.event_type,
            "channel": self.channel,
            "email": self.email,
            "mobile_phone": self.mobile_phone,
            "push_token": self.push_token,
            "external_id": self.external_id,
            "language": self.language,
            "country": self.country,
            "origin": self.origin,
            "created": self.created,
            "scheduled": self.scheduled,
        }


ADDRESS_NAMES: dict[int, str] = {
    Channel.EMAIL: "e-mail address",
    Channel.SMS: "mobile phone number",
    Channel.IOS: "push token",
    Channel.ANDROID: "push token",
}

__all__ = [
    "ADDRESS_NAMES",
    "QUEUES",
    "STATUS_LABELS",
    "Channel",
    "ChannelName",
    "ClaimedEvent",
    "Queue",
    "Status",
    "Unloadable",
]
