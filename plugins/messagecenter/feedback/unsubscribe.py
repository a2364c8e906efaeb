"""One-click unsubscribe (RFC 8058): the signed link an e-mail carries, and reading it back.

An e-mail template with ``list_unsubscribe: true`` gets two headers::

    List-Unsubscribe: <https://mc.example.com/messagecenter/api/v1/unsubscribe/<token>>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click

The mailbox provider POSTs ``List-Unsubscribe=One-Click`` to that URL and the address is denylisted
for that channel. Nobody can unsubscribe someone else: the token carries the channel, the address
and the event id with an HMAC-SHA256 of them under the feedback secret, checked in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from messagecenter.core.types import Channel

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
ROUTE = "/api/v1/unsubscribe/"
_MAC_BYTES = 16
MAX_TOKEN_CHARS = 1_024


@dataclass(frozen=True)
class Unsubscription:
    """Who asked to receive nothing more on a channel, and from which message."""

    channel: Channel
    address: str
    event_id: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: bytes, key: bytes) -> bytes:
    return hmac.new(key, b"unsubscribe\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(channel: Channel, address: str, event_id: int, key: bytes) -> str:
    """The signed token of one message's unsubscribe link."""
    payload = f"{int(channel)}:{event_id}:{address}".encode()
    return f"{_b64(payload)}.{_b64(_mac(payload, key))}"


def read_token(token: str, key: bytes) -> Unsubscription | None:
    """What a token says, or ``None`` when it is malformed or its signature is wrong."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    try:
        payload, given = _unb64(body), _unb64(mac)
        channel_code, event_id, address = payload.decode().split(":", 2)
        if not hmac.compare_digest(given, _mac(payload, key)):
            return None
        return Unsubscription(Channel(int(channel_code)), address, int(event_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def headers(public_url: str, channel: Channel, address: str, event_id: int, key: bytes) -> dict[str, str]:
    """The RFC 8058 headers of one message (the API's public URL is ``MC_PUBLIC_URL``)."""
    url = f"{public_url.rstrip('/')}{ROUTE}{make_token(channel, address, event_id, key)}"
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK_BODY}
