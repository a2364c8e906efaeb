"""Vonage's signed delivery receipts."""

from __future__ import annotations

import time

from tests.support.webhooks.samples import fixture_json


def receipt(**changes: str) -> dict[str, str]:
    """Vonage's sample receipt, its placeholder sig dropped, with a fresh timestamp."""
    params = fixture_json("vonage/delivery-receipt.json")
    del params["sig"]
    params["timestamp"] = str(int(time.time()))
    return params | changes
