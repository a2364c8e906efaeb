"""Vonage's signed delivery receipts."""

from __future__ import annotations

import hashlib
import hmac
import time

from tests.support.webhooks.samples import fixture_json


def receipt(**changes: str) -> dict[str, str]:
    """Vonage's sample receipt, its placeholder sig dropped, with a fresh timestamp."""
    params = fixture_json("vonage/delivery-receipt.json")
    del params["sig"]
    params["timestamp"] = str(int(time.time()))
    return params | changes


def documented_signature(params: dict[str, str], secret: str, method: str) -> str:
    """The steps of Vonage's "Manually generate a signature", one by one (not the code under test)."""
    text = ""
    for name in sorted(params):
        text += "&" + name + "=" + params[name].replace("&", "_").replace("=", "_")
    if method == "md5hash":
        return hashlib.md5((text + secret).encode()).hexdigest()
    return hmac.new(secret.encode(), text.encode(), method).hexdigest().upper()  # HMACs come upper case
