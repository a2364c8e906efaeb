"""The quick reader of ordinary reports must read exactly what the standard parser reads.

``bounces.parse`` reads the usual shape of a report (a multipart/report of plain parts) without the
standard parser's line-by-line machinery, and leaves everything else to it. Each report here is
parsed both ways and must give the same ``Report``: the fixtures, hand-made edge cases around
delimiters and header blocks, and seeded random line edits of real reports.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from messagecenter.feedback import bounces

FIXTURES = Path(__file__).parent / "fixtures"
POSTFIX = (FIXTURES / "postfix_dsn_real.eml").read_bytes()
BOUNDARY = b"1B06D218F31.1796633000/mx.mail.test"


def standard(raw: bytes, monkeypatch: pytest.MonkeyPatch, **limits: int) -> bounces.Report:
    """What ``parse`` says when the standard parser reads every mail."""
    with monkeypatch.context() as patch:
        patch.setattr(bounces, "_report_tree", lambda *args: None)
        return bounces.parse(raw, **limits)


def quick_path_taken(raw: bytes) -> bool:
    return bounces._report_tree(raw, bounces.MAX_DEPTH, bounces.MAX_PARTS) is not None


@pytest.mark.parametrize(
    "name", ["postfix_dsn_real.eml", "postfix_user_unknown.eml", "arf_complaint.eml", "arf_rfc5965.eml"]
)
def test_ordinary_reports_take_the_quick_path_and_read_the_same(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = (FIXTURES / name).read_bytes()
    assert quick_path_taken(raw)
    report = bounces.parse(raw)
    assert report.kind in (bounces.Kind.DSN, bounces.Kind.ARF)
    assert report == standard(raw, monkeypatch)


@pytest.mark.parametrize("name", ["exchange_recip_not_found.eml", "gmail_no_such_user.eml"])
def test_nested_multiparts_are_left_to_the_standard_parser(name: str) -> None:
    assert not quick_path_taken((FIXTURES / name).read_bytes())


def _edit(old: bytes, new: bytes, count: int = 1) -> bytes:
    assert old in POSTFIX, old
    return POSTFIX.replace(old, new, count)


DELIMITER = b"--" + BOUNDARY
NOTE = b"Content-Description: Notification\r\n"
TEXT = b"Content-Type: text/plain; charset=us-ascii\r\n"
STATUS = b"Content-Type: message/delivery-status\r\n"
SECOND = DELIMITER + b"\r\nContent-Description: Delivery"  # the delimiter before the status part
EVENT = b"X-MC-Event-Id: 123\r\n"
EDGES = {
    "line feeds only": POSTFIX.replace(b"\r\n", b"\n"),
    "a lone carriage return": _edit(b"The mail system\r\n", b"The mail\rsystem\r\n"),
    "blank lines between status blocks": _edit(b"\r\n\r\nFinal-", b"\r\n\r\n\r\n\r\nFinal-"),
    "status part opening with a blank line": _edit(b"\r\n\r\nReporting-", b"\r\n\r\n\r\nReporting-"),
    "status part without trailing blank line": _edit(b'"unknown-user"\r\n\r\n--', b'"unknown-user"\r\n--'),
    "status line that is no field": _edit(b"Action: failed\r\n", b"Action: failed\r\nnot a field\r\n"),
    "folded status field": _edit(b"Status: 5.1.1\r\n", b"Status:\r\n 5.1.1\r\n"),
    "delimiter with trailing blanks": _edit(SECOND, SECOND.replace(b"\r\n", b" \t\r\n")),
    "delimiter with trailing text": _edit(SECOND, SECOND.replace(b"\r\n", b"x\r\n")),
    "doubled delimiter": _edit(SECOND, DELIMITER + b"\r\n" + SECOND),
    "no closing delimiter": _edit(DELIMITER + b"--", b""),
    "closing delimiter first": _edit(b"This is a MIME-encapsulated message.", DELIMITER + b"--"),
    "epilogue": POSTFIX + b"\r\nepilogue\r\n" + DELIMITER + b"\r\n" + TEXT + b"\r\nx\r\n",
    "preamble line like a delimiter": _edit(b"This is a MIME-encapsulated message.", DELIMITER + b"-x"),
    "part without header": _edit(NOTE + TEXT, b""),
    "part header without blank line": _edit(TEXT + b"\r\n", TEXT),
    "part header not a field": _edit(NOTE, NOTE.replace(b"-", b" ")),
    "part header starting with From": _edit(NOTE, b"From someone\r\n"),
    "part header folded first": _edit(NOTE, b" folded\r\n" + NOTE),
    "empty text part": _edit(TEXT + b"\r\n", TEXT + b"\r\n\r\n" + DELIMITER + b"\r\n" + TEXT + b"\r\n"),
    "nested multipart": _edit(TEXT, b'Content-Type: multipart/alternative; boundary="in"\r\n'),
    "original opening with a blank line": _edit(b"message/rfc822\r\n\r\n", b"message/rfc822\r\n\r\n\r\n"),
    "original headers cut by a line": _edit(EVENT, b"not a header\r\n" + EVENT),
    "original with a From line": _edit(EVENT, b"From x\r\n" + EVENT),
    "original quoting the delimiter": _edit(
        b"Your order has shipped.",
        DELIMITER + b"\r\n" + STATUS + b"\r\nFinal-Recipient: rfc822; x@y.example\r\nAction: failed",
    ),
    "original as headers": _edit(b"Content-Type: message/rfc822", b"Content-Type: text/rfc822-headers"),
    "base64 status part": _edit(STATUS, STATUS + b"Content-Transfer-Encoding: base64\r\n"),
    "eight-bit headers": _edit(b"Subject: ", "Subject: =?utf-8?q?caf=C3=A9?= \u00e9t\u00e9 ".encode()),
    "eight-bit text with an RFC 2231 charset": _edit(b"charset=us-ascii", b"charset*=utf-8''x").replace(
        b"The mail system\r\n", "The mail system \u00e9\r\n".encode()
    ),
    "unix from line": b"From MAILER-DAEMON Mon Dec  7 08:43:20 2026\r\n" + POSTFIX,
    "header section not ended": POSTFIX.split(b"\r\n\r\n", 1)[0],
    "multipart/mixed": _edit(b"multipart/report", b"multipart/mixed"),
    "multipart/digest": _edit(b"multipart/report", b"multipart/digest"),
    "no boundary": _edit(b'boundary="1B06D218F31.1796633000/mx.mail.test"', b""),
    "quoted boundary with spaces": POSTFIX.replace(BOUNDARY, b"a b=c"),
    "feedback report": _edit(b"message/delivery-status", b"message/feedback-report"),
}


@pytest.mark.parametrize("raw", EDGES.values(), ids=EDGES.keys())
def test_edge_cases_read_the_same_either_way(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert bounces.parse(raw) == standard(raw, monkeypatch)
    for limits in ({"max_depth": 0}, {"max_depth": 1}, {"max_parts": 3}, {"max_parts": 4}):
        assert bounces.parse(raw, **limits) == standard(raw, monkeypatch, **limits), limits


def test_the_quick_path_reads_most_of_the_edge_cases_it_accepts() -> None:
    """The edge cases above are not all left to the standard parser: the comparison means something."""
    taken = {name for name, raw in EDGES.items() if quick_path_taken(raw)}
    assert {"line feeds only", "blank lines between status blocks", "folded status field"} <= taken
    assert {"a lone carriage return", "no closing delimiter", "nested multipart"}.isdisjoint(taken)


POOL = [
    b"", b"", b" ", b"\t", b"From someone", b":novalue", b"X-A: b", b" continued", b"abc\rdef", b"\xff\xfe",
    b"Content-Type: text/plain", b"Content-Type: message/rfc822", b"Content-Type: message/delivery-status",
    b"Content-Type: text/rfc822-headers", b"Content-Type: multipart/mixed; boundary=x",
    b"Final-Recipient: rfc822; z@y.example", b"Action: failed", b"Status: 5.0.0",
    b"Message-ID: <1.2.mc9@x.example>", b"X-MC-Event-Id: 42",
    b"Return-Path: <bounce+1-aaaaaaaaaaaa@x.example>",
]  # fmt: skip


def _mutations(raw: bytes, seed: int, count: int) -> list[bytes]:
    """``count`` copies of ``raw`` with a few lines inserted, removed, repeated or extended."""
    rng = random.Random(seed)
    found = re.search(rb'boundary="?([^";\r\n]+)', raw)
    boundary = found[1] if found else b"x"
    pool = [
        *POOL,
        b"--" + boundary,
        b"--" + boundary + b"--",
        b"--" + boundary + b" ",
        b"--" + boundary + b"x",
    ]
    mutated = []
    for _ in range(count):
        lines = raw.split(b"\n")
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(lines))
            choice = rng.random()
            if choice < 0.45:
                lines.insert(at, rng.choice(pool) + b"\r")
            elif choice < 0.7:
                del lines[at]
            elif choice < 0.85:
                lines.insert(at, lines[rng.randrange(len(lines))])
            else:
                lines[at] = rng.choice([b" ", b"\t", b"--", b"x"]) + lines[at]
        mutated.append(b"\n".join(lines))
    return mutated


@pytest.mark.parametrize("name", ["postfix_dsn_real.eml", "postfix_user_unknown.eml", "arf_complaint.eml"])
def test_random_line_edits_read_the_same_either_way(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mutated = _mutations((FIXTURES / name).read_bytes(), seed=len(name), count=150)
    assert sum(map(quick_path_taken, mutated)) > 30  # many edits keep the ordinary shape
    for raw in mutated:
        assert bounces.parse(raw) == standard(raw, monkeypatch), raw
