"""Delivery transports: e-mail over SMTP, SMS and push over HTTP, and a null transport.

Importing this package is cheap (no Airflow import): connections are read when a transport is opened.
"""

from __future__ import annotations

from messagecenter import config
from messagecenter.delivery.base import (
    MAX_ANSWER_CHARS,
    NullTransport,
    Outcome,
    OutgoingMessage,
    SendResult,
    Transport,
    truncate,
)
from messagecenter.delivery.http import PUSH_PLATFORMS, SMS_CHANNEL, HttpTransport
from messagecenter.delivery.smtp import SmtpTransport

EMAIL_CHANNEL = 0
PUSH_CHANNELS = tuple(PUSH_PLATFORMS)  # 41 iOS, 42 Android

__all__ = [
    "EMAIL_CHANNEL",
    "MAX_ANSWER_CHARS",
    "PUSH_CHANNELS",
    "SMS_CHANNEL",
    "HttpTransport",
    "NullTransport",
    "Outcome",
    "OutgoingMessage",
    "SendResult",
    "SmtpTransport",
    "Transport",
    "transport_for",
    "truncate",
]


def transport_for(channel: int) -> Transport:
    """The transport of a Campaign channel code (email 0, sms 1, ios 41, android 42), not yet opened."""
    if channel == EMAIL_CHANNEL:
        return SmtpTransport(config.SMTP_CONN_ID)
    if channel == SMS_CHANNEL:
        return HttpTransport(config.SMS_CONN_ID)
    if channel in PUSH_CHANNELS:
        return HttpTransport(config.PUSH_CONN_ID)
    raise ValueError(f"no transport for channel {channel} (known: email 0, sms 1, ios 41, android 42)")
