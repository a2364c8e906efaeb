"""Reading one inbound mail of the bounce mailbox: a DSN, a complaint, an auto-reply, or other.

``parse`` turns the raw bytes into a :class:`Report` and never raises: the mailbox takes anything
anyone sends, so limits come first (size, MIME boundaries, depth, recipients) and whatever cannot be
read becomes an error in the report. Standard reports are read with the standard library (RFC 3464
DSN, RFC 5965 ARF); other bounces go to ``flufl.bounce``'s detectors, which only give addresses.

The report also lists what may tie it to one of our events, strongest first in :func:`match_event`:
signed return paths (VERP) found in its envelope headers or in the returned original, then the
original's Message-ID and ``X-MC-Event-Id`` header (not authenticated: anyone can quote them).
"""

from __future__ import annotations

import contextlib
import email
import enum
import logging
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import compat32
from typing import NamedTuple

import flufl.bounce

from messagecenter.feedback import verp
from messagecenter.feedback.qualification import status_code

log = logging.getLogger(__name__)

MAX_BYTES = 10_000_000
MAX_RECIPIENTS = 1_000
MAX_DEPTH = 10
MAX_PARTS = 1_000
EVENT_ID_HEADER = "X-MC-Event-Id"  # as the SMTP transport writes it
MAX_TEXT_CHARS = 4_000  # the human-readable part, kept for qualification and display
MAX_FIELD_CHARS = 1_000
MAX_CANDIDATES = 20
_MAX_HEADER_BYTES = 256_000
_MAX_SCAN_BYTES = 1_000_000  # of text parts, looking for the original's headers in a legacy bounce
_MAX_LEGACY_BYTES = 256_000  # what the legacy detectors read: their texts come first, and they are slow

# Where a bounce or a reply names the address it was sent to: our return path.
ENVELOPE_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "Return-Path")
_ORIGINAL_SENDER_HEADERS = ("Return-Path", "Sender", "Errors-To", "From")
_ORIGINAL_TYPES = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")

_BOUNDARY = re.compile(rb"boundary\s*=", re.IGNORECASE)
_DELIMITER = re.compile(rb"^--", re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_STATUS = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})")
_SPACE = re.compile(r"\s+")
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery (subsystem|system)", re.IGNORECASE)
_AUTOREPLY_SUBJECT = re.compile(
    r"out of (the )?office|auto(matic)?[- ]?(reply|response|antwort)|autoreply|vacation|"
    r"abwesenheit|r[ée]ponse automatique|fuera de la oficina|away from (the|my) office",
    re.IGNORECASE,
)
_SCANNED_MESSAGE_ID = re.compile(r"^message-id:\s*(<[^<>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_SCANNED_EVENT_ID = re.compile(rf"^{EVENT_ID_HEADER}:\s*(-?\d{{1,20}})\s*$", re.IGNORECASE | re.MULTILINE)


class Kind(enum.StrEnum):
    DSN = "dsn"  # RFC 3464 delivery status notification
    ARF = "arf"  # RFC 5965 feedback report (spam complaint)
    HEURISTIC = "heuristic"  # a non-standard bounce flufl.bounce recognised
    AUTOREPLY = "autoreply"  # out of office and the like: never a failure
    UNKNOWN = "unknown"


@dataclass(slots=True)
class Recipient:
    """One recipient of a DSN (or of a legacy bounce, with less filled in)."""

    address: str  # the original recipient if the report names it, else the final one
    action: str  # failed, delayed, delivered, relayed, expanded ("" if not said)
    status: str | None = None  # RFC 3463 code, "5.1.1"
    diagnostic: str = ""  # the remote MTA's words ("550 5.1.1 ... user unknown"), or the bounce's
    final_recipient: str | None = None
    original_recipient: str | None = None
    remote_mta: str | None = None

    @property
    def failed(self) -> bool:
        return self.action == "failed"


@dataclass(slots=True)
class Report:
    """What one inbound mail says; ``errors`` lists what could not be read."""

    kind: Kind
    recipients: list[Recipient] = field(default_factory=list)
    truncated: bool = False  # more recipients than the limit: the first ones are kept
    return_paths: list[str] = field(default_factory=list)  # VERP-shaped, lower-cased, not verified
    message_ids: list[str] = field(default_factory=list)  # the original's (or the one replied to)
    event_ids: list[int] = field(default_factory=list)  # the original's X-MC-Event-Id
    reporting_mta: str | None = None
    feedback_type: str | None = None  # ARF: abuse, fraud, virus, other, not-spam
    original_mail_from: str | None = None  # ARF
    original_rcpt_to: list[str] = field(default_factory=list)  # ARF
    sender: str = ""  # the report's From
    subject: str = ""
    text: str = ""  # the first text/plain part, cut to MAX_TEXT_CHARS
    errors: list[str] = field(default_factory=list)


class Match(NamedTuple):
    """The event a report is about, and how it was found: ``verp`` (signed), ``message-id`` or
    ``header`` (both forgeable)."""

    event_id: int
    via: str

    @property
    def authenticated(self) -> bool:
        return self.via == "verp"


def match_event(report: Report, key: bytes, *, prefix: str = verp.PREFIX) -> Match | None:
    """The event ``report`` is about, by the strongest evidence it carries, or ``None``."""
    for address in report.return_paths:
        event_id = verp.event_id_from(address, key, prefix=prefix)
        if event_id is not None:
            return Match(event_id, "verp")
    for value in report.message_ids:
        event_id = verp.event_id_from_message_id(value)
        if event_id is not None:
            return Match(event_id, "message-id")
    return Match(report.event_ids[0], "header") if report.event_ids else None


def parse(
    raw: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_recipients: int = MAX_RECIPIENTS,
    max_depth: int = MAX_DEPTH,
    max_parts: int = MAX_PARTS,
) -> Report:
    """Read one inbound mail; never raises.

    Over ``max_bytes``, or with more than ``max_parts`` delimiter lines or ``2 * max_depth`` MIME
    boundaries (the standard parser checks every line against every open boundary, and builds one
    object per part), only the headers are read. Parts deeper than ``max_depth`` are skipped; a
    DSN keeps its first ``max_recipients`` recipients and says it ``truncated``.
    """
    try:
        raw = raw if isinstance(raw, bytes) else bytes(raw)
        refusal = _refusal(raw, max_bytes, max_depth, max_parts)
        if refusal is not None:
            report = _headers_only(raw)
            report.errors.append(refusal)
            return report
        return _parse(raw, max_recipients, max_depth, max_parts)
    except Exception as exc:  # a parser bug met by hostile input: the mail is kept as unknown
        log.warning("inbound mail not readable: %s: %s", type(exc).__name__, exc)
        return Report(Kind.UNKNOWN, errors=[f"cannot read the mail: {type(exc).__name__}: {exc}"[:500]])


def _refusal(raw: bytes, max_bytes: int, max_depth: int, max_parts: int) -> str | None:
    if len(raw) > max_bytes:
        return f"mail of {len(raw)} bytes is over the limit of {max_bytes}: headers only"
    end = _HEADER_END.search(raw, 0, _MAX_HEADER_BYTES + 4)
    if end is None and len(raw) > _MAX_HEADER_BYTES:
        return f"header section over {_MAX_HEADER_BYTES} bytes: headers only"
    if len(_BOUNDARY.findall(raw)) > 2 * max_depth:
        return f"more than {2 * max_depth} MIME boundaries: headers only"
    if len(_DELIMITER.findall(raw)) > max_parts:
        return f"more than {max_parts} MIME delimiter lines: headers only"
    return None


def _headers_only(raw: bytes) -> Report:
    end = _HEADER_END.search(raw, 0, _MAX_HEADER_BYTES + 4)
    head = raw[: end.end() if end else _MAX_HEADER_BYTES]
    msg = BytesHeaderParser(policy=compat32).parsebytes(head)
    report = Report(Kind.UNKNOWN)
    _read_envelope(report, msg)
    return report


def _parse(raw: bytes, max_recipients: int, max_depth: int, max_parts: int) -> Report:
    msg = email.message_from_bytes(raw, policy=compat32)
    report = Report(Kind.UNKNOWN)
    _read_envelope(report, msg)
    parts, too_deep = _walk(msg, max_depth, max_parts)
    if too_deep:
        report.errors.append(f"MIME parts deeper than {max_depth} levels skipped")
    by_type: dict[str, list[Message]] = {}
    for part in parts:
        by_type.setdefault(part.get_content_type(), []).append(part)
    texts = by_type.get("text/plain", [])
    report.text = _part_text(texts[0])[:MAX_TEXT_CHARS].strip() if texts else ""
    originals = [part for ctype in _ORIGINAL_TYPES for part in by_type.get(ctype, [])]
    for original in originals[:2]:
        _read_original(report, original)
    if "message/feedback-report" in by_type:
        report.kind = Kind.ARF
        _read_arf(report, by_type["message/feedback-report"][0])
    elif "message/delivery-status" in by_type:
        report.kind = Kind.DSN
        _read_dsn(report, by_type["message/delivery-status"][0], max_recipients)
    elif _is_autoreply(msg, report):
        report.kind = Kind.AUTOREPLY
    elif not too_deep:
        _read_legacy(report, msg, raw)
    if not originals:  # a legacy bounce quotes the original in its text
        _scan_texts(report, [part for part in parts if part.get_content_maintype() == "text"])
    return report


def _walk(msg: Message, max_depth: int, max_parts: int) -> tuple[list[Message], bool]:
    """The parts in document order, without descending into reports or returned originals."""
    parts: list[Message] = []
    too_deep = False
    stack = [(msg, 0)]
    while stack and len(parts) < max_parts:
        part, depth = stack.pop()
        parts.append(part)
        children = part.get_payload()
        if not isinstance(children, list) or part.get_content_maintype() != "multipart":
            continue
        if depth >= max_depth:
            too_deep = True
            continue
        stack.extend((child, depth + 1) for child in reversed(children) if isinstance(child, Message))
    return parts, too_deep


def _text(value: object) -> str:
    """A header value as clean text: RFC 2047 decoded, stray 8-bit bytes replaced, one line."""
    text = str(value)[: 4 * MAX_FIELD_CHARS]
    with contextlib.suppress(Exception):  # a broken encoded word: keep the raw text
        text = str(make_header(decode_header(text)))
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _SPACE.sub(" ", text).strip()[:MAX_FIELD_CHARS]


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return _text(value) if value is not None else ""


def _headers(msg: Message, name: str) -> list[str]:
    return [_text(value) for value in (msg.get_all(name) or [])[:MAX_CANDIDATES]]


def _add(values: list[str], found: list[str]) -> None:
    for value in found:
        if value not in values and len(values) < MAX_CANDIDATES:
            values.append(value)


def _read_envelope(report: Report, msg: Message) -> None:
    report.sender = _header(msg, "From")
    report.subject = _header(msg, "Subject")
    for name in ENVELOPE_HEADERS:
        for value in _headers(msg, name):
            _add(report.return_paths, verp.find_return_paths(value))
    for name in ("In-Reply-To", "References"):  # an auto-reply names the message it answers
        for value in _headers(msg, name):
            _add(report.message_ids, re.findall(r"<[^<>\s]{1,250}>", value))


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = str(part.get_payload() or "").encode("utf-8", "surrogateescape")
    payload = payload[:_MAX_SCAN_BYTES]
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:  # an unknown charset
        return payload.decode("utf-8", "replace")


def _header_blocks(part: Message) -> list[Message]:
    """The header blocks of a report part: parsed by the standard parser, or by us if encoded."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = _part_text(part).replace("\r\n", "\n")
    return [HeaderParser(policy=compat32).parsestr(block) for block in re.split(r"\n\s*\n", text)]


def _field(value: str) -> str:
    """A typed DSN field ("smtp; 550 ...", "dns; mx.example.com") without its type."""
    kind, sep, rest = value.partition(";")
    return (rest if sep and re.fullmatch(r"\s*[\w.-]{1,20}\s*", kind) else value).strip()


def _address(value: str) -> str | None:
    """A typed address field ("rfc822; <user@example.com>") as a bare address, or ``None``."""
    return _field(value).strip("<> ") or None


def _read_dsn(report: Report, part: Message, max_recipients: int) -> None:
    blocks = _header_blocks(part)
    if blocks and not (blocks[0].get("Final-Recipient") or blocks[0].get("Action")):
        per_message = blocks.pop(0)  # the per-message fields
        report.reporting_mta = _field(_header(per_message, "Reporting-MTA")) or None
        for _name, value in per_message.items()[:MAX_CANDIDATES]:  # e.g. X-Postfix-Sender: our VERP
            _add(report.return_paths, verp.find_return_paths(_text(value)))
    blocks = [b for b in blocks if b.get("Final-Recipient") or b.get("Original-Recipient")]
    if len(blocks) > max_recipients:
        report.truncated = True
        report.errors.append(f"{len(blocks)} recipients: the first {max_recipients} kept")
    for block in blocks[:max_recipients]:
        final = _address(_header(block, "Final-Recipient"))
        original = _address(_header(block, "Original-Recipient"))
        status = _STATUS.match(_header(block, "Status"))
        report.recipients.append(
            Recipient(
                address=original or final or "",
                action=_header(block, "Action").lower().split(" ")[0],
                status=status[1] if status else None,
                diagnostic=_field(_header(block, "Diagnostic-Code")),
                final_recipient=final,
                original_recipient=original,
                remote_mta=_field(_header(block, "Remote-MTA")) or None,
            )
        )


def _read_arf(report: Report, part: Message) -> None:
    blocks = _header_blocks(part)
    if not blocks:
        report.errors.append("feedback report without fields")
        return
    fields = blocks[0]
    report.feedback_type = _header(fields, "Feedback-Type").lower() or None
    report.original_mail_from = _address(_header(fields, "Original-Mail-From"))
    report.original_rcpt_to = [a for v in _headers(fields, "Original-Rcpt-To") if (a := _address(v))]
    _add(report.return_paths, verp.find_return_paths(report.original_mail_from or ""))


def _read_original(report: Report, part: Message) -> None:
    """The returned original message, or its headers: our Message-ID, event header, return path."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        headers = payload[0]
    else:
        headers = HeaderParser(policy=compat32).parsestr(_part_text(part)[:_MAX_HEADER_BYTES])
    _add(report.message_ids, [value for value in _headers(headers, "Message-ID") if value])
    for value in _headers(headers, EVENT_ID_HEADER):
        _add_event_id(report, value)
    for name in _ORIGINAL_SENDER_HEADERS:
        for value in _headers(headers, name):
            _add(report.return_paths, verp.find_return_paths(value))


def _add_event_id(report: Report, value: str) -> None:
    try:
        event_id = int(value.strip())
    except ValueError:
        return
    if -(1 << 63) <= event_id < (1 << 63) and event_id not in report.event_ids:
        report.event_ids.append(event_id)


def _scan_texts(report: Report, parts: list[Message]) -> None:
    budget = _MAX_SCAN_BYTES
    for part in parts:
        text = _part_text(part)[:budget]
        budget -= len(text)
        _add(report.message_ids, _SCANNED_MESSAGE_ID.findall(text))
        for value in _SCANNED_EVENT_ID.findall(text):
            _add_event_id(report, value)
        _add(report.return_paths, verp.find_return_paths(text))
        if budget <= 0:
            break


def _is_autoreply(msg: Message, report: Report) -> bool:
    """RFC 3834 auto-replies and the usual out-of-office markers, unless a mailer daemon sent it
    (some mark their bounces ``Auto-Submitted: auto-replied`` too)."""
    if _DAEMON.search(report.sender):
        return False
    marked = (
        _header(msg, "Auto-Submitted").lower().startswith("auto-replied")
        or bool(msg.get("X-Autoreply") or msg.get("X-Autorespond"))
        or _header(msg, "Precedence").lower() == "auto_reply"
    )
    return marked or bool(_AUTOREPLY_SUBJECT.search(report.subject))


def _read_legacy(report: Report, msg: Message, raw: bytes) -> None:
    """A bounce in no standard format: ``flufl.bounce`` knows many MTAs' texts (addresses only)."""
    if len(raw) > _MAX_LEGACY_BYTES:
        msg = email.message_from_bytes(raw[:_MAX_LEGACY_BYTES], policy=compat32)
    try:
        temporary, permanent = flufl.bounce.all_failures(msg)
    except Exception as exc:  # a detector met something it did not expect
        report.errors.append(f"bounce detectors failed: {type(exc).__name__}: {exc}"[:500])
        return
    found = [(address, "failed") for address in sorted(permanent)]
    found += [(address, "delayed") for address in sorted(temporary - permanent)]
    for address_bytes, action in found[:MAX_RECIPIENTS]:
        address = address_bytes.decode("ascii", "replace")
        diagnostic = _paragraph_about(report.text, address)
        report.recipients.append(Recipient(address, action, status_code(diagnostic), diagnostic))
    if report.recipients:
        report.kind = Kind.HEURISTIC


def _paragraph_about(text: str, address: str) -> str:
    """The paragraph of ``text`` that names ``address`` (a legacy bounce's reason), or the text."""
    at = text.lower().find(address.lower())
    if at < 0:
        return _SPACE.sub(" ", text).strip()[:MAX_FIELD_CHARS]
    start = max(text.rfind("\n\n", 0, at), 0)
    end = text.find("\n\n", at)
    return _SPACE.sub(" ", text[start : end if end >= 0 else None]).strip()[:MAX_FIELD_CHARS]


__all__ = [
    "ENVELOPE_HEADERS",
    "EVENT_ID_HEADER",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_PARTS",
    "MAX_RECIPIENTS",
    "Kind",
    "Match",
    "Recipient",
    "Report",
    "match_event",
    "parse",
]
