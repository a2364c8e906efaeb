"""What an empty field of a provider connection stands for: the defaults the transports use and the
"Add connection" forms state (``messagecenter.airflow.connection_types``), each declared once.

Constants only, importing nothing heavy: Airflow reads the forms in every process (its provider
listing runs while ``airflow`` is imported), so they cannot come from the delivery modules, which
import their protocol clients.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """A provider connection's delivery limits when its extras leave them out.

    :param deadline: most seconds for one message, whatever the provider does.
    :param max_connections: messages in flight per delivery chunk (SMPP: binds per chunk).
    """

    deadline: float
    max_connections: int


SMTP_LIMITS = Limits(deadline=60.0, max_connections=10)
# The generic JSON provider, Twilio, Vonage, FCM and APNs: one request per message.
HTTP_LIMITS = Limits(deadline=30.0, max_connections=32)
SMPP_LIMITS = Limits(deadline=30.0, max_connections=1)

# Bounds the transports check and the forms declare.
MAX_DEADLINE_SECONDS = 3600
MAX_CONNECTIONS = 1000
MAX_RATE = 1_000_000

TWILIO_BASE_URL = "https://api.twilio.com"
VONAGE_BASE_URL = "https://rest.nexmo.com"

SMPP_PORT = 2775
# SMPP 3.4 §5.2: C-Octet Strings of at most 16, 9 and 13 octets with their NUL (an SMSC refuses longer).
SMPP_MAX_SYSTEM_ID, SMPP_MAX_PASSWORD, SMPP_MAX_SYSTEM_TYPE = 15, 8, 12
SMPP_WINDOW = 10  # submit_sm unanswered at once on each bind
# The first of each is the default.
SMPP_SEND_BIND_MODES = ("transmitter", "transceiver")
SMPP_RECEIPT_BIND_MODES = ("receiver", "transceiver")

FCM_BASE_URL = "https://fcm.googleapis.com"

APNS_BASE_URLS = {"production": "https://api.push.apple.com", "sandbox": "https://api.sandbox.push.apple.com"}
APNS_ENVIRONMENT = "production"
APNS_TIME_TO_LIVE = 86_400  # seconds APNs keeps a message for a device that is offline
APNS_MAX_TIME_TO_LIVE = 30 * 86_400
