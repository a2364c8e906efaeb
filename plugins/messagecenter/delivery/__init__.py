"""Delivery transports: e-mail over SMTP, SMS and push over HTTP, push over FCM (``fcm``) and APNs
(``apns``), and a null transport.

Nothing here reads a connection: a transport is given how to open its provider, and
``messagecenter.airflow.transports`` builds them from the ``mc_smtp``, ``mc_sms``, ``mc_push``,
``mc_push_android`` and ``mc_push_ios`` Airflow connections.
"""

from __future__ import annotations

from messagecenter.delivery.base import (
    MAX_ANSWER_CHARS,
    NullTransport,
    Outcome,
    OutgoingMessage,
    SendResult,
    Transport,
    TransportFactory,
    truncate,
)
from messagecenter.delivery.http import PUSH_PLATFORMS, HttpEndpoint, HttpTransport
from messagecenter.delivery.smtp import SmtpClient, SmtpOpenError, SmtpTransport

__all__ = [
    "MAX_ANSWER_CHARS",
    "PUSH_PLATFORMS",
    "HttpEndpoint",
    "HttpTransport",
    "NullTransport",
    "Outcome",
    "OutgoingMessage",
    "SendResult",
    "SmtpClient",
    "SmtpOpenError",
    "SmtpTransport",
    "Transport",
    "TransportFactory",
    "truncate",
]
