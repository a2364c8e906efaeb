"""Signed return paths (VERP): each e-mail's envelope sender names its event.

A bounce goes to the envelope sender, so ``bounce+<event id>-<mac>@<return path domain>`` tells which
event failed even when the bounce's body is useless. The MAC (HMAC-SHA256 of the id and the domain,
truncated to 60 bits) stops anyone from forging bounces that would quarantine arbitrary addresses:
an address with a wrong MAC, an altered id or another domain gives ``None``. Decoding ignores case,
since some MTAs lower-case what they return.

The Message-ID (``<...mc<event id>@domain>``, as the SMTP transport builds it) is a weaker fallback:
anyone who saw the message can quote it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from email.utils import make_msgid

PREFIX = "bounce"
MIN_KEY_BYTES = 16
_MAC_CHARS = 12  # base32: 60 bits
_ID_MASK = (1 << 64) - 1  # event ids are signed 64-bit: the address carries the unsigned form
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ADDRESS = re.compile(
    rf"(?P<prefix>[a-z0-9._-]{{1,30}})\+(?P<id>[0-9a-z]{{1,13}})-(?P<mac>[a-z2-7]{{{_MAC_CHARS}}})"
    rf"@(?P<domain>{_LABEL}(?:\.{_LABEL}){{0,20}})"
)
_FULL_ADDRESS = re.compile(rf"<?\s*{_ADDRESS.pattern}\s*>?")
_MESSAGE_ID = re.compile(r"<?[^<>@\s]*\.mc(-?[0-9]{1,20})@[^<>@\s]+>?")


def _base36(value: int) -> str:
    digits = []
    while True:
        value, digit = divmod(value, 36)
        digits.append(_DIGITS[digit])
        if not value:
            return "".join(reversed(digits))


def _mac(event_id: int, domain: str, key: bytes) -> str:
    digest = hmac.new(key, f"{event_id}@{domain}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:_MAC_CHARS].lower()


def _check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the VERP key must have at least {MIN_KEY_BYTES} bytes")


def return_path(event_id: int, domain: str, key: bytes, *, prefix: str = PREFIX) -> str:
    """The envelope sender for one event's e-mail (at most 64 characters before the ``@``).

    :raises ValueError: a key shorter than ``MIN_KEY_BYTES``, an id outside 64 bits, or a prefix or
        domain that would not decode back.
    """
    _check_key(key)
    if not -(1 << 63) <= event_id < (1 << 63):
        raise ValueError(f"event id {event_id} is not a signed 64-bit integer")
    domain = domain.strip().lower()
    address = f"{prefix.lower()}+{_base36(event_id & _ID_MASK)}-{_mac(event_id, domain, key)}@{domain}"
    if not _ADDRESS.fullmatch(address):
        raise ValueError(f"cannot build a return path with prefix {prefix!r} and domain {domain!r}")
    return address


def event_id_from(address: str, key: bytes, *, prefix: str = PREFIX) -> int | None:
    """The event id a return path carries, or ``None`` for anything not signed by ``key``.

    ``address`` may be wrapped in angle brackets and in any case.
    """
    _check_key(key)
    match = _FULL_ADDRESS.fullmatch(address.strip().lower()[:400])
    if match is None or match["prefix"] != prefix.lower():
        return None
    unsigned = int(match["id"], 36)
    if unsigned > _ID_MASK or _base36(unsigned) != match["id"]:  # out of range, or leading zeros
        return None
    event_id = unsigned - (1 << 64) if unsigned >> 63 else unsigned
    if not hmac.compare_digest(_mac(event_id, match["domain"], key), match["mac"]):
        return None
    return event_id


def find_return_paths(text: str, *, limit: int = 20) -> list[str]:
    """Every substring of ``text`` shaped like a return path (lower-cased, not verified), in order."""
    found: list[str] = []
    for match in _ADDRESS.finditer(text.lower()):
        if match[0] not in found:
            found.append(match[0])
            if len(found) >= limit:
                break
    return found


def message_id(event_id: int, domain: str) -> str:
    """A Message-ID as the SMTP transport builds it: ``<time.pid.random.mc<event id>@domain>``."""
    return make_msgid(idstring=f"mc{event_id}", domain=domain)


def event_id_from_message_id(value: str) -> int | None:
    """The event id in one of our Message-IDs, or ``None``. Not authenticated: see the module doc."""
    match = _MESSAGE_ID.fullmatch(value.strip()[:400])
    if match is None:
        return None
    event_id = int(match[1])
    return event_id if -(1 << 63) <= event_id < (1 << 63) else None


__all__ = [
    "MIN_KEY_BYTES",
    "PREFIX",
    "event_id_from",
    "event_id_from_message_id",
    "find_return_paths",
    "message_id",
    "return_path",
]
