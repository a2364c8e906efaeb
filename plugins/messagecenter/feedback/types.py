"""Failure types and reasons, with Campaign's codes, and what qualifying an error text gives.

Types say what the error does to the address: *hard* quarantines it at once, *soft* counts towards
the quarantine threshold, *ignored* never quarantines. Reasons are the values of Campaign's failure
reason list, so that rows read the same in both products.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FailureType(enum.IntEnum):
    """Campaign's failure types (its delivery indicators count soft as 1 and hard as 2)."""

    SOFT = 1  # temporary or not classified: counts towards the quarantine threshold
    HARD = 2  # the address is invalid: quarantined at once, never retried
    IGNORED = 3  # known temporary (out of office) or technical: no quarantine

    @property
    def label(self) -> str:
        return self.name.capitalize()


class FailureReason(enum.IntEnum):
    """Campaign's failure reasons, with their codes."""

    NOT_DEFINED = 0  # not qualified yet
    USER_UNKNOWN = 1
    INVALID_DOMAIN = 2
    UNREACHABLE = 3
    ACCOUNT_DISABLED = 4
    MAILBOX_FULL = 5
    NOT_CONNECTED = 6
    ADDRESS_NOT_SPECIFIED = 7
    DENYLISTED = 8
    QUARANTINED = 9
    DOUBLE = 10
    EXCLUDED_BY_SQL_RULE = 11
    EXCLUDED_AFTER_ARBITRATION = 12
    BAD_QUALITY_ADDRESS = 14
    UNQUALIFIED_ADDRESS = 15
    NOT_ELIGIBLE_FOR_OFFERS = 16
    TARGET_LIMITED_IN_SIZE = 17
    REFUSED = 20
    ERROR_IGNORED = 25
    CONTROL_ADDRESS = 127

    @property
    def label(self) -> str:
        """Campaign's English label."""
        return REASON_LABELS[self]


REASON_LABELS: dict[FailureReason, str] = {
    FailureReason.NOT_DEFINED: "Not defined",
    FailureReason.USER_UNKNOWN: "User unknown",
    FailureReason.INVALID_DOMAIN: "Invalid domain",
    FailureReason.UNREACHABLE: "Unreachable",
    FailureReason.ACCOUNT_DISABLED: "Account disabled",
    FailureReason.MAILBOX_FULL: "Mailbox full",
    FailureReason.NOT_CONNECTED: "Not connected",
    FailureReason.ADDRESS_NOT_SPECIFIED: "Address not specified",
    FailureReason.DENYLISTED: "Denylisted address",
    FailureReason.QUARANTINED: "Address in quarantine",
    FailureReason.DOUBLE: "Double",
    FailureReason.EXCLUDED_BY_SQL_RULE: "Excluded by an SQL rule",
    FailureReason.EXCLUDED_AFTER_ARBITRATION: "Excluded after arbitration",
    FailureReason.BAD_QUALITY_ADDRESS: "Bad-quality address",
    FailureReason.UNQUALIFIED_ADDRESS: "Unqualified address",
    FailureReason.NOT_ELIGIBLE_FOR_OFFERS: "Not eligible for offers",
    FailureReason.TARGET_LIMITED_IN_SIZE: "Target limited in size",
    FailureReason.REFUSED: "Refused",
    FailureReason.ERROR_IGNORED: "Error ignored",
    FailureReason.CONTROL_ADDRESS: "Control address",
}


@dataclass(frozen=True, slots=True)
class Qualification:
    """What an error text means: its type and reason, and the normalised text it was looked up as
    (the key under which similar messages share one qualification row).

    ``pattern`` is the rule that decided, or ``None`` when none did: then only the status code's
    class gave the type, the reason is ``NOT_DEFINED`` and the text waits to be qualified.
    """

    type: FailureType
    reason: FailureReason
    text: str
    pattern: str | None = None

    @property
    def qualified(self) -> bool:
        return self.pattern is not None


__all__ = ["REASON_LABELS", "FailureReason", "FailureType", "Qualification"]
