"""The domain's words: queues, channels and event statuses.

Channel and status values are Campaign's codes, as stored in the database: the SQL files use the
same integers, each with a comment naming its status.
"""

from __future__ import annotations

import enum
from typing import Literal, get_args

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
    "Queue",
    "Status",
]
