"""Reading one inbound mail of the bounce mailbox: a DSN, a complaint, an auto-reply, or other.

``parse`` turns the raw bytes into a :class:`Report` and never raises: the mailbox takes anything
anyone sends, so limits come first (size, MIME boundaries, depth, recipients) and whatever cannot be
read becomes an error in the report. Standard reports are read with the standard library (RFC 3464
DSN, RFC 5965 ARF); other bounces go to ``flufl.bounce``'s detectors, which only give addresses.
The usual shape of a report (a multipart/report of plain parts, as Postfix and most MTAs write it)
is split by a quicker reader that builds what the standard parser would, as far as the report is
read, and leaves anything else to the standard parser; only the header fields read are decoded.

The report also lists what may tie it to one of our events, strongest first in :func:`match_event`:
signed return paths (VERP) found in its envelope headers or in the returned original, then the
original's Message-ID and ``X-MC-Event-Id`` header (not authenticated: anyone can quote them).
"""

from __future__ import annotations

import contextlib
import email
import enum
import itertools
import logging
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import compat32
from typing import Any, NamedTuple

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
_REPORT_TYPES = frozenset({"message/delivery-status", "message/feedback-report"})
# The same names lower-cased, as ``_Fields`` looks them up.
_ENVELOPE_NAMES = tuple(name.lower() for name in ENVELOPE_HEADERS)
_ORIGINAL_SENDER_NAMES = tuple(name.lower() for name in _ORIGINAL_SENDER_HEADERS)
_EVENT_ID_NAME = EVENT_ID_HEADER.lower()

_BOUNDARY = re.compile(rb"boundary\s*=", re.IGNORECASE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# A header field as the standard parser reads it (its name, then the value with its continuation
# lines), and the start of a line it takes for a header line (``email.feedparser.headerRE``).
_FIELD = re.compile(r"([\041-\071\073-\176]+):([^\n]*\n(?:[ \t][^\n]*\n)*)")
_HEADER_LINE = re.compile(r"From |[\041-\071\073-\176]*:|[\t ]")
_DELIMITER_TAIL = re.compile(r"(--)?[ \t]*(?:\r?\n|\Z)")  # after "--boundary" on a delimiter line
_STATUS = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})")
_SPACE = re.compile(r"\s+")
_MESSAGE_IDS = re.compile(r"<[^<>\s]{1,250}>")
_FIELD_TYPE = re.compile(r"\s*[\w.-]{1,20}\s*")
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
    if len(raw) > _MAX_HEADER_BYTES and _HEADER_END.search(raw, 0, _MAX_HEADER_BYTES + 4) is None:
        return f"header section over {_MAX_HEADER_BYTES} bytes: headers only"
    # Each match holds the word, so counting the word first spares the regex on ordinary mail.
    if raw.lower().count(b"boundary") > 2 * max_depth and len(_BOUNDARY.findall(raw)) > 2 * max_depth:
        return f"more than {2 * max_depth} MIME boundaries: headers only"
    if raw.count(b"\n--") + raw.startswith(b"--") > max_parts:  # lines that start with "--"
        return f"more than {max_parts} MIME delimiter lines: headers only"
    return None


def _headers_only(raw: bytes) -> Report:
    end = _HEADER_END.search(raw, 0, _MAX_HEADER_BYTES + 4)
    head = raw[: end.end() if end else _MAX_HEADER_BYTES]
    msg = BytesHeaderParser(policy=compat32).parsebytes(head)
    report = Report(Kind.UNKNOWN)
    _read_envelope(report, _Fields(msg))
    return report


def _parse(raw: bytes, max_recipients: int, max_depth: int, max_parts: int) -> Report:
    fast = _report_tree(raw, max_depth, max_parts)
    if fast is not None:
        parts, too_deep = fast, False
        msg = parts[0][0]
    else:
        msg = email.message_from_bytes(raw, policy=compat32)
        parts, too_deep = _walk(msg, max_depth, max_parts)
    fields = _Fields(msg)
    report = Report(Kind.UNKNOWN)
    _read_envelope(report, fields)
    if too_deep:
        report.errors.append(f"MIME parts deeper than {max_depth} levels skipped")
    by_type: dict[str, list[Message]] = {}
    for part, ctype in parts:
        by_type.setdefault(ctype, []).append(part)
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
    elif _is_autoreply(fields, report):
        report.kind = Kind.AUTOREPLY
    elif not too_deep:
        _read_legacy(report, msg, raw)
    if not originals:  # a legacy bounce quotes the original in its text
        _scan_texts(report, [part for part, ctype in parts if ctype.split("/")[0] == "text"])
    return report


def _report_tree(raw: bytes, max_depth: int, max_parts: int) -> list[tuple[Message, str]] | None:
    """What :func:`_walk` returns for the tree the standard parser builds, as far as reading a
    report needs it, for the shape most reports have; ``None`` for any other mail, which the
    standard parser then reads.

    The standard parser handles every line in Python (and checks each against every open
    boundary): most of the time a report takes. Here delimiter lines are found by string search
    and header fields by one regular expression each, on the same lines and with the same
    results. The shape: a multipart/report whose parts are not multipart, one of them a delivery
    status or a feedback report (so nothing else is read from the tree), every header block
    plain fields ended by a blank line, delimiters closed, no line ended by a lone CR, and the
    whole tree within ``max_depth`` and ``max_parts``. The originals (message/* parts) keep their
    headers only: nothing reads their bodies.
    """
    if max_depth < 1:
        return None
    text = raw.decode("ascii", "surrogateescape")  # as BytesParser does
    if text.count("\r") != text.count("\r\n"):
        return None
    head = _header_block(text, 0, len(text))
    if head is None:
        return None
    msg, body_at = head
    boundary = msg.get_boundary() if msg.get_content_type() == "multipart/report" else None
    if not boundary:
        return None
    delimiters = _delimiter_lines(text, body_at, "--" + boundary)
    if len(delimiters) < 2 or delimiters[0][2] or not delimiters[-1][2] or len(delimiters) > max_parts:
        return None
    tree = [(msg, "multipart/report")]
    for (_, start, _), (stop, _, _) in itertools.pairwise(delimiters):
        part = _leaf_part(text, start, stop)
        if part is None:
            return None
        tree.append(part)
    if not _REPORT_TYPES.intersection(ctype for _, ctype in tree):
        return None
    msg.set_payload([part for part, _ in tree[1:]])
    return tree


def _read_fields(msg: Message, text: str, start: int, stop: int) -> int | None:
    """Add the header fields at ``text[start:stop]`` to ``msg`` as the standard parser does, up to
    the first line that is no field; where that line starts, or ``None`` if the standard parser
    would treat it specially (a "From " line, a nameless or a leading continuation line)."""
    at = start
    while at < stop:
        field = _FIELD.match(text, at, stop)
        if field is None:
            return None if _HEADER_LINE.match(text, at, stop) else at
        msg.set_raw(field[1], field[2].lstrip(" \t").rstrip("\r\n"))
        at = field.end()
    return at


def _blank_line_end(text: str, at: int, stop: int) -> int | None:
    """Where the blank line at ``at`` ends, or ``None`` if there is none there."""
    if text.startswith("\n", at) and at < stop:
        return at + 1
    if text.startswith("\r\n", at) and at + 1 < stop:
        return at + 2
    return None


def _header_block(text: str, start: int, stop: int) -> tuple[Message, int] | None:
    """The header block at ``text[start:stop]`` and where its body starts; ``None`` unless the
    block is plain fields ended by a blank line."""
    msg = Message(policy=compat32)
    end = _read_fields(msg, text, start, stop)
    body_at = _blank_line_end(text, end, stop) if end is not None else None
    return (msg, body_at) if body_at is not None else None


def _delimiter_lines(text: str, start: int, separator: str) -> list[tuple[int, int, bool]]:
    """(start, end, closing) of each delimiter line from ``start`` (a line start) up to the first
    closing one: the lines the standard parser takes for delimiters."""
    found: list[tuple[int, int, bool]] = []
    at = text.find("\n" + separator, start - 1)
    while at >= 0:
        line = at + 1
        tail = _DELIMITER_TAIL.match(text, line + len(separator))
        if tail is not None:
            found.append((line, tail.end(), tail[1] is not None))
            if tail[1] is not None:
                break
        at = text.find("\n" + separator, line)
    return found


def _leaf_part(text: str, start: int, stop: int) -> tuple[Message, str] | None:
    """The part at ``text[start:stop]`` as the standard parser builds it (an original's headers
    only), and its content type; ``None`` for an empty or multipart part, or a header block not
    plain."""
    head = _header_block(text, start, stop) if start < stop else None
    if head is None:
        return None
    part, body_at = head
    ctype = part.get_content_type()
    maintype = ctype.split("/")[0]
    if maintype == "multipart":
        return None
    if ctype == "message/delivery-status":
        blocks = _status_blocks(text, body_at, stop)
        if blocks is None:
            return None
        part.set_payload(blocks)
    elif maintype == "message":
        original = Message(policy=compat32)
        if _read_fields(original, text, body_at, stop) is None:
            return None
        part.set_payload([original])
    else:  # the line break before a delimiter belongs to the delimiter (RFC 2046)
        body = text[body_at:stop]
        part.set_payload(body[:-2] if body.endswith("\r\n") else body[:-1] if body.endswith("\n") else body)
    return part, ctype


def _status_blocks(text: str, at: int, stop: int) -> list[Message | str] | None:
    """The field blocks of a delivery status as the standard parser splits them: one per blank
    line (two blank lines in a row make an empty block), headers only; ``None`` if a line is
    neither a field nor blank."""
    blocks: list[Message | str] = []
    while True:
        block = Message(policy=compat32)
        end = _read_fields(block, text, at, stop)
        if end is None:
            return None
        blocks.append(block)
        if end >= stop:
            return blocks
        blank_end = _blank_line_end(text, end, stop)
        if blank_end is None:
            return None
        if blank_end >= stop:
            return blocks
        at = blank_end


def _walk(msg: Message, max_depth: int, max_parts: int) -> tuple[list[tuple[Message, str]], bool]:
    """The parts in document order with their content types (read once: each read parses the
    header again), without descending into reports or returned originals."""
    parts: list[tuple[Message, str]] = []
    too_deep = False
    stack = [(msg, 0)]
    while stack and len(parts) < max_parts:
        part, depth = stack.pop()
        ctype = part.get_content_type()
        parts.append((part, ctype))
        children = part.get_payload() if ctype.split("/")[0] == "multipart" else None
        if not isinstance(children, list):
            continue
        if depth >= max_depth:
            too_deep = True
            continue
        stack.extend((child, depth + 1) for child in reversed(children) if isinstance(child, Message))
    return parts, too_deep


class _Fields:
    """One header block's values by lower-cased name, gathered in one pass (``Message.get`` and
    ``get_all`` scan every header on each call). Values are read as ``Message.get`` returns them;
    the compat32 policy changes only those with 8-bit bytes, so plain ASCII ones are kept as they are.
    """

    __slots__ = ("_by_name", "_headers")

    def __init__(self, msg: Message) -> None:
        self._headers = list(msg.raw_items())
        self._by_name: dict[str, list[tuple[str, Any]]] = {}
        for name, value in self._headers:
            self._by_name.setdefault(name.lower(), []).append((name, value))

    @staticmethod
    def _fetch(name: str, value: Any) -> Any:
        if isinstance(value, str) and value.isascii():
            return value
        return compat32.header_fetch_parse(name, value)

    def items(self) -> list[tuple[str, Any]]:
        """Every header, in order, as ``Message.items`` gives them."""
        return [(name, self._fetch(name, value)) for name, value in self._headers]

    def raw(self, name: str) -> Any:
        """The first value of ``name`` (lower-case), or ``None``."""
        values = self._by_name.get(name)
        return self._fetch(*values[0]) if values else None

    def text(self, name: str) -> str:
        """The first value of ``name`` (lower-case) as clean text, or ``""``."""
        values = self._by_name.get(name)
        return _text(self._fetch(*values[0])) if values else ""

    def texts(self, name: str) -> list[str]:
        """Every value of ``name`` (lower-case, up to ``MAX_CANDIDATES``) as clean text."""
        return [_text(self._fetch(*pair)) for pair in self._by_name.get(name, ())[:MAX_CANDIDATES]]


def _text(value: object) -> str:
    """A header value as clean text: RFC 2047 decoded, stray 8-bit bytes replaced, one line."""
    if isinstance(value, str) and value.isascii() and "=?" not in value:
        # Nothing to decode (no encoded word, no 8-bit byte): what the general path returns too.
        return _SPACE.sub(" ", value[: 4 * MAX_FIELD_CHARS]).strip()[:MAX_FIELD_CHARS]
    text = str(value)[: 4 * MAX_FIELD_CHARS]
    with contextlib.suppress(Exception):  # a broken encoded word: keep the raw text
        text = str(make_header(decode_header(text)))
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _SPACE.sub(" ", text).strip()[:MAX_FIELD_CHARS]


def _return_paths(text: str) -> list[str]:
    """``verp.find_return_paths``, skipping texts without the ``+`` every return path has."""
    return verp.find_return_paths(text) if "+" in text else []


def _add(values: list[str], found: list[str]) -> None:
    for value in found:
        if value not in values and len(values) < MAX_CANDIDATES:
            values.append(value)


def _read_envelope(report: Report, fields: _Fields) -> None:
    report.sender = fields.text("from")
    report.subject = fields.text("subject")
    for name in _ENVELOPE_NAMES:
        for value in fields.texts(name):
            _add(report.return_paths, _return_paths(value))
    for name in ("in-reply-to", "references"):  # an auto-reply names the message it answers
        for value in fields.texts(name):
            _add(report.message_ids, _MESSAGE_IDS.findall(value))


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
    return (rest if sep and _FIELD_TYPE.fullmatch(kind) else value).strip()


def _address(value: str) -> str | None:
    """A typed address field ("rfc822; <user@example.com>") as a bare address, or ``None``."""
    return _field(value).strip("<> ") or None


def _read_dsn(report: Report, part: Message, max_recipients: int) -> None:
    blocks = [_Fields(block) for block in _header_blocks(part)]
    if blocks and not (blocks[0].raw("final-recipient") or blocks[0].raw("action")):
        per_message = blocks.pop(0)  # the per-message fields
        report.reporting_mta = _field(per_message.text("reporting-mta")) or None
        for _name, value in per_message.items()[:MAX_CANDIDATES]:  # e.g. X-Postfix-Sender: our VERP
            _add(report.return_paths, _return_paths(_text(value)))
    blocks = [b for b in blocks if b.raw("final-recipient") or b.raw("original-recipient")]
    if len(blocks) > max_recipients:
        report.truncated = True
        report.errors.append(f"{len(blocks)} recipients: the first {max_recipients} kept")
    for block in blocks[:max_recipients]:
        final = _address(block.text("final-recipient"))
        original = _address(block.text("original-recipient"))
        status = _STATUS.match(block.text("status"))
        report.recipients.append(
            Recipient(
                address=original or final or "",
                action=block.text("action").lower().split(" ")[0],
                status=status[1] if status else None,
                diagnostic=_field(block.text("diagnostic-code")),
                final_recipient=final,
                original_recipient=original,
                remote_mta=_field(block.text("remote-mta")) or None,
            )
        )


def _read_arf(report: Report, part: Message) -> None:
    blocks = _header_blocks(part)
    if not blocks:
        report.errors.append("feedback report without fields")
        return
    fields = _Fields(blocks[0])
    report.feedback_type = fields.text("feedback-type").lower() or None
    report.original_mail_from = _address(fields.text("original-mail-from"))
    report.original_rcpt_to = [a for v in fields.texts("original-rcpt-to") if (a := _address(v))]
    _add(report.return_paths, _return_paths(report.original_mail_from or ""))


def _read_original(report: Report, part: Message) -> None:
    """The returned original message, or its headers: our Message-ID, event header, return path."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        headers = payload[0]
    else:
        headers = HeaderParser(policy=compat32).parsestr(_part_text(part)[:_MAX_HEADER_BYTES])
    fields = _Fields(headers)
    _add(report.message_ids, [value for value in fields.texts("message-id") if value])
    for value in fields.texts(_EVENT_ID_NAME):
        _add_event_id(report, value)
    for name in _ORIGINAL_SENDER_NAMES:
        for value in fields.texts(name):
            _add(report.return_paths, _return_paths(value))


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


def _is_autoreply(fields: _Fields, report: Report) -> bool:
    """RFC 3834 auto-replies and the usual out-of-office markers, unless a mailer daemon sent it
    (some mark their bounces ``Auto-Submitted: auto-replied`` too)."""
    if _DAEMON.search(report.sender):
        return False
    marked = (
        fields.text("auto-submitted").lower().startswith("auto-replied")
        or bool(fields.raw("x-autoreply") or fields.raw("x-autorespond"))
        or fields.text("precedence").lower() == "auto_reply"
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
