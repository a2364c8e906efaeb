"""Twilio's signed status callbacks."""

from __future__ import annotations

import base64
import hmac
from urllib.parse import unquote_plus

TOKEN = "0123456789abcdef0123456789abcdef"


def sign(url: str, body: bytes, token: str = TOKEN, digest: str = "sha1") -> str:
    """The signature written out from Twilio's documentation: URL, then sorted name+value pairs."""
    pairs = sorted(kv.split("=", 1) for kv in body.decode().split("&")) if body else []
    data = url + "".join(unquote_plus(k) + unquote_plus(v) for k, v in pairs)
    return base64.b64encode(hmac.new(token.encode(), data.encode(), digest).digest()).decode()
