"""SMS text encoding: the GSM 03.38 default alphabet or UCS-2, and how a text splits into segments.

A text every character of which is in the GSM 03.38 default alphabet (its extension table included,
each of those characters costing two septets: the escape and the character) is sent in it, one
septet per octet as SMPP carries it (``data_coding`` 0); any other text goes as UCS-2 (UTF-16
big-endian, ``data_coding`` 8). One message holds 160 septets or 70 UCS-2 code units; a longer
text is split into parts that each start with a 6-octet user data header (concatenation, 8-bit
reference), leaving 153 septets or 67 code units per part. A split never cuts an escape sequence or
a surrogate pair, so a part may hold one fewer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = {"\x0c": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E}
GSM_EXTENSION |= {"|": 0x40, "€": 0x65}
ESCAPE = 0x1B
_BASIC_CODE = {char: code for code, char in enumerate(GSM_BASIC) if code != ESCAPE}

DATA_CODING_GSM = 0x00  # SMSC default alphabet: GSM 03.38 for the SMSCs this is written for
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40  # the short message starts with a user data header
GSM, UCS2 = "GSM 03.38", "UCS-2"
SINGLE = {GSM: 160, UCS2: 70}  # septets or UTF-16 code units in one message
PART = {GSM: 153, UCS2: 67}  # ... in one part of a concatenated message
MAX_PARTS = 255  # the 8-bit part counters of the concatenation header


class TooLong(ValueError):
    """The text needs more than 255 parts."""


class Segments(NamedTuple):
    """How a text goes out: its encoding, its number of segments and what one segment holds."""

    encoding: str
    segments: int
    chars_per_segment: int

    def describe(self) -> str:
        """``GSM 03.38, 2 segments (153 chars each)``: what a template shows its author."""
        if self.segments <= 1:
            return f"{self.encoding}, {self.segments} segment ({self.chars_per_segment} chars)"
        return f"{self.encoding}, {self.segments} segments ({self.chars_per_segment} chars each)"


@dataclass(frozen=True)
class EncodedSms:
    """A text ready for ``submit_sm``: one short message per part, UDH included when split."""

    data_coding: int
    esm_class: int
    parts: list[bytes]
    encoding: str


def is_gsm(text: str) -> bool:
    """Whether every character has a GSM 03.38 code (basic or extension table)."""
    return all(c in _BASIC_CODE or c in GSM_EXTENSION for c in text)


def _units(text: str, encoding: str) -> list[bytes]:
    """The text as indivisible units: a GSM character (1 or 2 septets) or a UTF-16 character (1 or 2
    code units), each already encoded."""
    if encoding == GSM:
        return [
            bytes((_BASIC_CODE[c],)) if c in _BASIC_CODE else bytes((ESCAPE, GSM_EXTENSION[c])) for c in text
        ]
    return [c.encode("utf-16-be") for c in text]


def _size(unit: bytes, encoding: str) -> int:
    return len(unit) if encoding == GSM else len(unit) // 2


def _split(units: list[bytes], encoding: str) -> list[bytes]:
    """Whole messages' worth of units: one if it fits, else parts of at most ``PART`` each."""
    total = sum(_size(u, encoding) for u in units)
    if total <= SINGLE[encoding]:
        return [b"".join(units)]
    parts: list[bytes] = []
    current: list[bytes] = []
    used = 0
    for unit in units:
        size = _size(unit, encoding)
        if used + size > PART[encoding]:
            parts.append(b"".join(current))
            current, used = [], 0
        current.append(unit)
        used += size
    parts.append(b"".join(current))
    return parts


def _encoding(text: str) -> str:
    return GSM if is_gsm(text) else UCS2


def sms_segments(text: str) -> Segments:
    """The encoding of ``text``, its number of segments and the characters one segment holds."""
    encoding = _encoding(text)
    if not text:
        return Segments(encoding, 0, SINGLE[encoding])
    count = len(_split(_units(text, encoding), encoding))
    return Segments(encoding, count, SINGLE[encoding] if count == 1 else PART[encoding])


_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def static_text(template_text: str) -> str:
    """A template's text without its Jinja expressions and tags: what every message of it holds."""
    return _JINJA.sub("", template_text)


def encode_sms(text: str, reference: int) -> EncodedSms:
    """``text`` encoded and, when too long for one message, split with concatenation headers.

    :param reference: the concatenated message's reference (0-255), the same in each of its parts.
    :raises TooLong: more than 255 parts.
    """
    encoding = _encoding(text)
    chunks = _split(_units(text, encoding), encoding)
    coding = DATA_CODING_GSM if encoding == GSM else DATA_CODING_UCS2
    if len(chunks) == 1:
        return EncodedSms(coding, 0, chunks, encoding)
    if len(chunks) > MAX_PARTS:
        raise TooLong(f"the text needs {len(chunks)} parts, more than {MAX_PARTS}")
    ref = reference & 0xFF
    parts = [bytes((0x05, 0x00, 0x03, ref, len(chunks), n)) + c for n, c in enumerate(chunks, 1)]
    return EncodedSms(coding, ESM_CLASS_UDHI, parts, encoding)


def decode_sms(data: bytes, data_coding: int) -> str:
    """The inverse of the encoding above for one part without header (tests, logs)."""
    if data_coding == DATA_CODING_UCS2:
        return data.decode("utf-16-be", "replace")
    reverse_ext = {v: k for k, v in GSM_EXTENSION.items()}
    out, escaped = [], False
    for octet in data:
        if escaped:
            out.append(reverse_ext.get(octet, "?"))
            escaped = False
        elif octet == ESCAPE:
            escaped = True
        else:
            out.append(GSM_BASIC[octet] if octet < len(GSM_BASIC) else "?")
    return "".join(out)
