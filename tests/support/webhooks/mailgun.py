"""Mailgun's signed webhook bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"


def body(
    event_data: dict[str, Any], key: str = KEY, timestamp: int | None = None, token: str | None = None
) -> bytes:
    """A webhook body as Mailgun posts it: the event and its signature."""
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event_data}
    ).encode()
