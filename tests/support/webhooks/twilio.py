"""Twilio's signed status callbacks."""

from __future__ import annotations

from urllib.parse import parse_qsl

from devstack.sms_rest import twilio_signature

TOKEN = "0123456789abcdef0123456789abcdef"


def sign(url: str, body: bytes, token: str = TOKEN, digest: str = "sha1") -> str:
    """The signature of a form ``body`` posted to ``url``, as Twilio documents it."""
    return twilio_signature(token, url, parse_qsl(body.decode(), keep_blank_values=True), digest)
