"""Qualification: which failure type and reason an error text means, by rules on normalised text.

Campaign's idea: replace the variable parts of an error message (addresses, ids, dates, hosts) so
that all "user unknown" answers of one MTA read the same, then look that text up in a table of
rules that operators edit. The same rules serve synchronous SMTP refusals and bounce mails.

A rule is a regular expression searched in the normalised text; rules are tried by ascending
priority (then in order), the first match decides. When none matches, the status code's class
gives the type (class 2 ignored, else soft) and the reason stays ``NOT_DEFINED``: the caller keeps
the text as "to qualify".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from messagecenter.feedback.types import FailureReason, FailureType, Qualification

log = logging.getLogger(__name__)

MAX_INPUT_CHARS = 20_000  # longer texts are cut before normalising
MAX_TEXT_CHARS = 1_000  # the normalised text, as stored
MAX_TEXT_BYTES = 2_000  # and in UTF-8: it is a btree key (mc.feedback_message), 2,704 bytes at most
VARIABLE = "#xxx#"

_STATUS = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?![\w]|\.\d)")
_ADDRESS = re.compile(r"[^\s<>()\[\]{}\"',;:@]{1,64}@[^\s<>()\[\]{}\"',;:@]{1,255}")  # bounded: linear
_FIRST_REPLY = re.compile(r"(?<!\S)([245]\d\d)[- ]")
# "550-5.1.1 " at the start of each continuation line of a multi-line SMTP reply
_CONTINUATION = re.compile(r"(?<=\s)[245]\d\d[- ](?:[245]\.\d{1,3}\.\d{1,3}\s)?")
_DATE = re.compile(
    r"\b(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?\d{1,2}\s+"
    r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{2,4}"
    r"(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?(?:\s+(?:[+-]\d{4}|gmt|utc|[ecmp][sd]t|cest?|bst)\b)?(?:\s*\([a-z]{2,5}\))?"
)
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
_HOST = re.compile(r"(?<![\w.-])(?:[a-z0-9_-]+\.)+[a-z]{2,6}(?![\w.-])")
_TOKEN = re.compile(r"[^\s<>()\[\]{}\"',;]+")
_KEPT = re.compile(r"#?(?:[245]\.\d{1,3}\.\d{1,3}|[245]\d\d)[.:-]?")  # status and reply codes
_RUNS = re.compile(rf"{VARIABLE}(?:[\s:.,/+-]*{VARIABLE})+")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The text with its variable parts replaced: addresses by ``*``, hosts, ids, numbers and dates
    by ``#xxx#``; lower-cased, on one line, status and reply codes (``550 5.1.1``) kept."""
    text = _SPACE.sub(" ", text[:MAX_INPUT_CHARS].lower()).strip()
    text = _ADDRESS.sub("*", text)
    first = _FIRST_REPLY.search(text)
    if first is not None:  # one reply code, not one per line of a multi-line reply
        text = f"{text[: first.start()]}{first[1]} {_CONTINUATION.sub('', text[first.end() :])}"
    text = _DATE.sub(VARIABLE, text)
    text = _IPV4.sub(VARIABLE, text)
    text = _HOST.sub(VARIABLE, text)
    text = _TOKEN.sub(_token, text)
    text = _RUNS.sub(VARIABLE, text)
    return _cut(_SPACE.sub(" ", text).strip())


def _cut(text: str) -> str:
    """At most MAX_TEXT_CHARS characters and MAX_TEXT_BYTES bytes of UTF-8."""
    text = text[:MAX_TEXT_CHARS]
    if len(text) * 4 > MAX_TEXT_BYTES and len(encoded := text.encode("utf-8", "replace")) > MAX_TEXT_BYTES:
        text = encoded[:MAX_TEXT_BYTES].decode("utf-8", "ignore")
    return text


def _token(match: re.Match[str]) -> str:
    token = match[0]
    if not any(c.isdigit() for c in token) or _KEPT.fullmatch(token):
        return token
    return VARIABLE


def status_code(text: str | None) -> str | None:
    """The first RFC 3463 enhanced status code (``5.1.1``) in ``text``, or ``None``."""
    match = _STATUS.search(text or "")
    return ".".join(match.groups()) if match else None


class RuleRow(NamedTuple):
    """A rule as stored: the columns of the qualification rules table."""

    pattern: str
    type: int
    reason: int
    priority: int


@dataclass(frozen=True, slots=True)
class Rule:
    """``pattern`` (a regular expression, case-insensitive) found in a normalised text means
    ``type`` and ``reason``; lower ``priority`` is tried first.

    :raises ValueError: the pattern is not a valid regular expression.
    """

    pattern: str
    type: FailureType
    reason: FailureReason
    priority: int = 100
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_regex", re.compile(self.pattern, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"invalid rule pattern {self.pattern!r}: {exc}") from None
        object.__setattr__(self, "type", FailureType(self.type))
        object.__setattr__(self, "reason", FailureReason(self.reason))

    def matches(self, normalised: str) -> bool:
        return self._regex.search(normalised) is not None

    def row(self) -> RuleRow:
        return RuleRow(self.pattern, int(self.type), int(self.reason), self.priority)


def rules_from_rows(rows: Iterable[Sequence[Any]]) -> list[Rule]:
    """Rules from stored ``(pattern, type, reason, priority)`` rows; a row an operator broke (a bad
    regular expression, an unknown code) is logged and skipped, not fatal to every bounce."""
    rules = []
    for pattern, type_, reason, priority in rows:
        try:
            rules.append(Rule(str(pattern), FailureType(type_), FailureReason(reason), int(priority)))
        except ValueError as exc:
            log.warning("qualification rule skipped: %s", exc)
    return rules


_H, _S, _I = FailureType.HARD, FailureType.SOFT, FailureType.IGNORED
_R = FailureReason

# (priority, pattern, type, reason). Texts first (what the MTA says beats its status code), codes
# after (RFC 3463: class 4 transient, 5 permanent; subject 1 address, 2 mailbox, 3 mail system,
# 4 network, 5 protocol, 6 content, 7 security or policy).
_SEED: tuple[tuple[int, str, FailureType, FailureReason], ...] = (
    # Push and SMS providers' own words (Campaign's push and SMS qualification): FCM error codes,
    # APNs reasons, SMSC status reports (SR <stat> <err>), SMS APIs' texts.
    (4, r"\bunregistered\b|registration[-_ ]token[-_ ]not[-_ ]registered|requested entity was not found",
        _H, _R.USER_UNKNOWN),
    (4, r"\binvalid_argument\b", _I, _R.NOT_DEFINED),
    (4, r"sender_id_mismatch|senderidmismatch", _S, _R.USER_UNKNOWN),
    (4, r"baddevicetoken|devicetokennotfortopic|invalid registration", _S, _R.REFUSED),
    (4, r"quota_exceeded|third_party_auth_error|toomanyrequests|serviceunavailable|internalservererror",
        _I, _R.REFUSED),
    (6, r"unknown (destination )?(handset|subscriber|number)|landline|not a (valid )?mobile",
        _H, _R.USER_UNKNOWN),
    (6, r"unreachable (destination )?handset|absent subscriber|handset (is )?(switched )?off",
        _I, _R.NOT_CONNECTED),
    (6, r"^sr (undeliv|rejectd|deleted)\b", _S, _R.REFUSED),
    (6, r"^sr expired\b", _S, _R.UNREACHABLE),
    # Not the recipient's fault: never quarantine for these.
    (10, r"out of (the )?office|auto(matic)?[- ]?(reply|response)|autoreply|vacation|on leave|"
         r"abwesenheit|r[ée]ponse automatique|away from (the|my) office", _I, _R.NOT_DEFINED),
    (10, r"\bdelay(ed)?\b|will (continue to |be )?retr(y|ied)|still trying|not yet been delivered",
         _I, _R.UNREACHABLE),
    (12, r"sender address rejected|sender verify failed|domain of sender address|"
         r"relay(ing)? (access )?(denied|not permitted)|authentication required|authrequired",
         _I, _R.REFUSED),
    (12, r"reverse (dns|lookup)|ptr record|\bhelo\b|\behlo\b|tls (is )?required|requires? (starttls|tls)",
         _I, _R.REFUSED),
    (14, r"message (size|length) exceeds|message (is )?too (large|big)|size ?limit|exceeds the maximum size",
         _I, _R.REFUSED),
    (14, r"too many recipients|recipient limit|reciplimit", _I, _R.REFUSED),
    (14, r"virus|malware|infected", _I, _R.REFUSED),
    (16, r"gr[ae]ylist", _I, _R.REFUSED),
    # The address does not exist.
    (20, r"user unknown|unknown user|unknown (local )?(recipient|address|mailbox)", _H, _R.USER_UNKNOWN),
    (20, r"no such (user|mailbox|recipient|address|account|person)|no mailbox here", _H, _R.USER_UNKNOWN),
    (20, r"(user|recipient|mailbox|account|address|addressee) (was )?(not found|does ?n[o']t exist|unknown)",
         _H, _R.USER_UNKNOWN),
    (20, r"email account that you tried to reach does not exist", _H, _R.USER_UNKNOWN),
    (20, r"resolver\.adr\.(ex)?recip(ient)?notfound|recip(ient)?notfound", _H, _R.USER_UNKNOWN),
    (20, r"(does not|doesn't) have an? (#xxx# )?account|not a valid (recipient|mailbox|user)", _H,
         _R.USER_UNKNOWN),
    (22, r"(mailbox|recipient|user|address) has moved", _H, _R.USER_UNKNOWN),
    (22, r"suppression list|suppressed sending", _H, _R.DENYLISTED),
    (22, r"invalid (recipient|mailbox|address)|bad destination (mailbox )?address|unrouteable address",
         _H, _R.USER_UNKNOWN),
    # The account exists but does not take mail.
    (24, r"(account|mailbox) (has been )?(closed|terminated|deleted|removed)|"
         r"no longer (active|exists|available|valid|in use)", _H, _R.ACCOUNT_DISABLED),
    (26, r"(account|mailbox|user|address) (is |has been )?(disabled|suspended|deactivated|inactive|"
         r"locked|frozen|expired)", _S, _R.ACCOUNT_DISABLED),
    # Refused by the receiver's policy: spam filters, blocklists, authentication.
    (30, r"spam|junk|bulk mail|unsolicited", _S, _R.REFUSED),
    (30, r"blocked|black ?list|block ?list|deny ?list|listed (at|by|in|on)|spamhaus|spamcop|barracuda|"
         r"dnsbl|\brbl\b|reputation", _S, _R.REFUSED),
    (32, r"\bdmarc\b|\bspf\b|\bdkim\b|unauthenticated|not authenticated", _S, _R.REFUSED),
    (34, r"rate limit|receiving mail (at|too) .{0,20}rate|too many (messages|emails|mails)|throttl",
         _S, _R.REFUSED),
    (36, r"policy|prohibited|not (permitted|allowed|authori[sz]ed)|access denied|"
         r"rejected for (policy|security) reasons", _S, _R.REFUSED),
    # The mailbox is full.
    (40, r"mailbox (is )?full|full mailbox|mailbox size limit|over ?quota|quota ?exceeded|exceeded "
         r"(the |its |their )?(storage|quota)|insufficient (system )?storage|out of storage|"
         r"storage (allocation|limit)", _S, _R.MAILBOX_FULL),
    # The domain does not take mail.
    (42, r"host or domain name not found|name service error|domain (name )?(not found|does ?n[o']t exist)|"
         r"no (mx|mail exchanger)|null mx|unrouteable (mail )?domain|unknown domain|nxdomain|"
         r"dns (error|failure)", _S, _R.INVALID_DOMAIN),
    # The way to the mailbox is broken, for now.
    (44, r"connection (timed out|refused|reset|lost)|timed out|timeout|network is unreachable|"
         r"no route to host|could not connect|lost connection", _S, _R.UNREACHABLE),
    (46, r"temporar(y|ily)|try (again )?later|service (not |un)available|too many (connections|hops)|"
         r"(delivery time|message) expired|retry time(out)? exceeded|mail (loop|for .{0,30} loops)",
         _S, _R.UNREACHABLE),
    (48, r"mailbox (is )?(unavailable|not available)", _H, _R.USER_UNKNOWN),
    # RFC 3463 status codes, when the text says nothing known.
    (80, r"\b5\.1\.(1|3|6)\b", _H, _R.USER_UNKNOWN),
    (80, r"\b[45]\.1\.(2|10)\b", _S, _R.INVALID_DOMAIN),
    (82, r"\b5\.2\.1\b", _S, _R.ACCOUNT_DISABLED),
    (82, r"\b[45]\.2\.2\b", _S, _R.MAILBOX_FULL),
    (82, r"\b[45]\.(2\.3|3\.4)\b", _I, _R.REFUSED),
    (84, r"\b[45]\.4\.4\b", _S, _R.INVALID_DOMAIN),
    (86, r"\b[45]\.4\.\d{1,3}\b", _S, _R.UNREACHABLE),
    (86, r"\b[45]\.6\.\d{1,3}\b", _I, _R.REFUSED),
    (86, r"\b[45]\.7\.\d{1,3}\b", _S, _R.REFUSED),
    (88, r"\b5\.3\.\d{1,3}\b", _S, _R.UNREACHABLE),
    (90, r"\b4\.\d{1,3}\.\d{1,3}\b", _S, _R.UNREACHABLE),
)  # fmt: skip

SEED_RULES: tuple[Rule, ...] = tuple(Rule(p, t, r, priority) for priority, p, t, r in _SEED)


def rule_rows(rules: Iterable[Rule] = SEED_RULES) -> list[RuleRow]:
    """The rows to seed the rules table with."""
    return [rule.row() for rule in rules]


def _class_type(status: str | None, normalised: str) -> FailureType:
    status = status or status_code(normalised)
    return FailureType.IGNORED if status is not None and status.startswith("2") else FailureType.SOFT


def qualify(text: str, rules: Iterable[Rule] = SEED_RULES, status: str | None = None) -> Qualification:
    """Qualify an error text (a DSN's diagnostic, a bounce paragraph, an SMTP reply).

    ``status`` is the DSN's ``Status`` field when the text does not carry it: it is put in front of
    the normalised text, so rules on codes see it and the stored text keeps it.
    """
    normalised = normalise(text)
    status = status_code(status)
    if status is not None and status not in normalised:
        normalised = _cut(f"{status} {normalised}".strip())
    for rule in sorted(rules, key=lambda rule: rule.priority):
        if rule.matches(normalised):
            return Qualification(rule.type, rule.reason, normalised, rule.pattern)
    return Qualification(_class_type(status, normalised), FailureReason.NOT_DEFINED, normalised)


def qualify_smtp_reply(code: int, text: str | bytes, rules: Iterable[Rule] = SEED_RULES) -> Qualification:
    """Qualify a synchronous SMTP refusal (``code`` and the server's text) with the same rules."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return qualify(f"{code} {text}", rules)


__all__ = [
    "MAX_TEXT_CHARS",
    "SEED_RULES",
    "VARIABLE",
    "Rule",
    "RuleRow",
    "normalise",
    "qualify",
    "qualify_smtp_reply",
    "rule_rows",
    "rules_from_rows",
    "status_code",
]
