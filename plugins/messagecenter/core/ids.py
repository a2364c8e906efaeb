"""Event id layout: ``(instance_id << 56) | sequence``, globally unique across execution instances.

The high byte is the execution instance id, so the control archive can hold every instance's events
in one table. Ids are stored as signed ``bigint``: for instance ids 128..255 the stored value is
negative (two's complement), and its high byte is still the instance id.
"""

from __future__ import annotations

SEQUENCE_BITS = 56
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
_SIGN = 1 << 63


def make_event_id(instance_id: int, sequence: int) -> int:
    """Compose a signed 64-bit event id from an instance id (1..255) and a sequence value."""
    if not 1 <= instance_id <= 255:
        raise ValueError(f"instance id must be 1..255, got {instance_id}")
    if not 0 < sequence <= MAX_SEQUENCE:
        raise ValueError(f"sequence must be 1..{MAX_SEQUENCE}, got {sequence}")
    unsigned = (instance_id << SEQUENCE_BITS) | sequence
    return unsigned - (1 << 64) if unsigned & _SIGN else unsigned


def split_event_id(event_id: int) -> tuple[int, int]:
    """Return ``(instance_id, sequence)`` of an event id."""
    unsigned = event_id & ((1 << 64) - 1)
    return unsigned >> SEQUENCE_BITS, unsigned & MAX_SEQUENCE
