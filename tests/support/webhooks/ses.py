"""Amazon SNS notifications carrying SES events, signed as SNS signs them, and their certificates."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID

from tests.support.webhooks.samples import fixture_json

TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"
CERT_URL = (
    "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
)


def certificate(key: Any) -> bytes:
    """A self-signed certificate for ``key``, PEM: what SNS publishes at SigningCertURL."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class Certificates:
    """An injected certificate fetcher: serves PEMs by URL and records what was asked for."""

    def __init__(self, pems: dict[str, bytes]) -> None:
        self.pems = pems
        self.asked: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.asked.append(url)
        return self.pems[url]


def canonical(message: dict[str, Any]) -> bytes:
    """The string SNS signs, written out from AWS's documentation (not from the code under test)."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{name}\n{message[name]}\n" for name in names if name in message).encode()


def signed(message: dict[str, Any], key: Any, version: str = "1", cert_url: str = CERT_URL) -> dict[str, Any]:
    message = {**message, "SignatureVersion": version, "SigningCertURL": cert_url}
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    message["Signature"] = base64.b64encode(key.sign(canonical(message), padding.PKCS1v15(), digest)).decode()
    return message


def notification(ses_event: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """AWS's sample SNS notification carrying an SES event."""
    envelope = fixture_json("ses/sns-notification.json")
    envelope.update(Message=json.dumps(ses_event), **fields)
    return envelope
