"""Reading a bounce mailbox over IMAP or POP3 in bounded batches, without ever losing a message.

The workflow asks for the next batch (``fetch``), handles each message, then tells the mailbox what
became of it: ``done`` (handled: moved to ``MC-Processed`` or deleted) or ``set_aside`` (kept for a
person: moved to ``MC-Unmatched``). A message leaves the inbox only through one of those two calls,
so a task that fails half-way leaves its batch where it was and the next run reads it again (the
caller's handling must be idempotent). A message over the size limit is never downloaded: it is
returned with ``too_large`` set and no body, for the caller to set aside.

IMAP moves with ``UID MOVE`` when the server offers it, else ``UID COPY`` then ``\\Deleted`` and an
expunge (a failure between the two leaves a duplicate, never a loss). POP3 has no folders: ``done``
deletes (``DELE``, committed by ``QUIT`` at the end of the batch) and ``set_aside`` leaves the message
on the server, where every later run reads it again.

Standard library only (``imaplib``, ``poplib``); every socket has a timeout.
"""

from __future__ import annotations

import logging
import poplib
import re
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from imaplib import IMAP4, IMAP4_SSL
from types import TracebackType
from typing import BinaryIO, Literal, Protocol, Self

from messagecenter.core.settings import FeedbackSettings

log = logging.getLogger(__name__)

PROCESSED_FOLDER = "MC-Processed"
UNMATCHED_FOLDER = "MC-Unmatched"
SOCKET_TIMEOUT_SECONDS = 60.0
DEFAULT_PORTS = {("imap", False): 143, ("imap", True): 993, ("pop3", False): 110, ("pop3", True): 995}

_FETCH_UID = re.compile(rb"\bUID (\d+)")
_FETCH_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_FETCH_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_UID_CHUNK = 500  # UIDs per command line, well under servers' line limits


class MailboxError(Exception):
    """The server refused a command or the connection failed.

    Nothing is lost: each message of the failed call is still in place or already filed away.
    """


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message of the batch: its raw bytes, or ``None`` when it is over the size limit."""

    uid: str  # IMAP: the message's UID in the folder; POP3: its UIDL
    raw: bytes | None
    size: int
    too_large: bool


class Mailbox(Protocol):
    """A bounce mailbox read batch by batch; messages leave it only through ``done``/``set_aside``."""

    def fetch(self, limit: int) -> list[InboundMessage]:
        """Return up to ``limit`` messages not yet returned by this object, oldest first."""
        ...

    def done(self, uids: Sequence[str]) -> None:
        """The caller handled these messages: file them away (or delete them)."""
        ...

    def set_aside(self, uids: Sequence[str]) -> None:
        """The caller could not use these messages: keep them out of the way, for a person."""
        ...

    def close(self) -> None:
        """Log out; messages neither done nor set aside stay where they were."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class MailboxSettings:
    """Where the bounce mailbox is and how to read it (built from the ``mc_bounce_mailbox`` connection).

    :param protocol: ``imap`` or ``pop3``.
    :param port: ``None`` for the protocol's usual port (143/993, 110/995).
    :param ssl: connect over TLS (IMAPS, POP3S).
    :param folder: the IMAP folder bounces arrive in (POP3 has only one).
    :param delete_done: IMAP: delete handled messages instead of moving them to ``processed_folder``.
    :param max_size: messages larger than this many bytes are reported, not downloaded.
    :param timeout: seconds for connecting and for every read and write on the socket.
    """

    protocol: Literal["imap", "pop3"]
    host: str
    login: str
    password: str
    port: int | None = None
    ssl: bool = False
    folder: str = "INBOX"
    processed_folder: str = PROCESSED_FOLDER
    unmatched_folder: str = UNMATCHED_FOLDER
    delete_done: bool = False
    max_size: int = FeedbackSettings.bounce_max_bytes
    timeout: float = SOCKET_TIMEOUT_SECONDS

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[(self.protocol, self.ssl)]


def open_mailbox(settings: MailboxSettings, *, ssl_context: ssl.SSLContext | None = None) -> Mailbox:
    """Connect and log in, as the settings say.

    :raises MailboxError: the server cannot be reached or refuses the login.
    """
    if settings.protocol == "imap":
        return ImapMailbox(settings, ssl_context=ssl_context)
    if settings.protocol == "pop3":
        return Pop3Mailbox(settings, ssl_context=ssl_context)
    raise ValueError(f"unknown mailbox protocol {settings.protocol!r} (imap or pop3)")


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _text(data: Sequence[object]) -> str:
    """The text of an IMAP answer's lines (for messages and error checks)."""
    return b" ".join(item for item in data if isinstance(item, bytes)).decode("utf-8", "replace")


def _quote(folder: str) -> str:
    """An IMAP quoted string (imaplib sends arguments as they are)."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapMailbox:
    """A folder of an IMAP mailbox, read by UID with ``BODY.PEEK[]`` (so nothing is marked seen).

    :param use_move: use ``UID MOVE`` when the server announces it; ``False`` always copies and
        expunges (for servers that announce MOVE but mishandle it).
    """

    def __init__(
        self,
        settings: MailboxSettings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        use_move: bool = True,
    ) -> None:
        self.settings = settings
        self._handed_out: set[str] = set()
        self._queue: list[str] = []  # UIDs of the last search not handed out yet, oldest first
        self._large: set[str] = set()  # those over the size limit
        self._ready_folders: set[str] = set()
        host, port = settings.host, settings.effective_port
        try:
            if settings.ssl:
                context = ssl_context or ssl.create_default_context()
                self._imap: IMAP4 = IMAP4_SSL(host, port, ssl_context=context, timeout=settings.timeout)
            else:
                self._imap = IMAP4(host, port, timeout=settings.timeout)
        except (OSError, IMAP4.error) as exc:
            raise MailboxError(f"cannot connect to IMAP server {host}:{port}: {exc}") from exc
        try:
            self._imap.login(settings.login, settings.password)
            # Servers announce MOVE and UIDPLUS once logged in (imaplib keeps the greeting's list).
            announced = self._check(self._imap.capability(), "read capabilities")
            self._check(self._imap.select(_quote(settings.folder)), "open folder " + settings.folder)
        except (OSError, IMAP4.error, MailboxError) as exc:
            self._logout()
            raise MailboxError(f"IMAP server {host}:{port}: {exc}") from exc
        capabilities = set(self._imap.capabilities) | set(_text(announced).upper().split())
        self._can_move = use_move and "MOVE" in capabilities
        self._uid_expunge = "UIDPLUS" in capabilities

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @staticmethod
    def _check(answer: tuple[str, Sequence[object]], what: str) -> Sequence[object]:
        status, data = answer
        if status != "OK":
            raise MailboxError(f"{what}: {status} {_text(data)}")
        return data

    def _command(self, what: str, command: str, *args: str) -> Sequence[object]:
        try:
            return self._check(self._imap.uid(command, *args), what)
        except (OSError, IMAP4.error) as exc:
            raise MailboxError(f"{what}: {exc}") from exc

    def fetch(self, limit: int) -> list[InboundMessage]:
        """The next ``limit`` messages of the folder by UID; oversized ones without their body.

        One ``UID FETCH`` per batch reads the small messages whole and their sizes; the folder is
        searched (at most once a call) only when the UIDs found by the last search run short, so
        a batch costs the server no pass over the folder. Meanwhile a message can only be added
        (it comes after), or flagged deleted or expunged (it is skipped, as a search would).
        """
        batch: list[InboundMessage] = []
        searched = False
        while not batch:  # an empty batch means an empty folder: not one whose UIDs all went
            if len(self._queue) < limit and not searched:
                self._search()
                searched = True
            uids, self._queue = self._queue[:limit], self._queue[limit:]
            if not uids:
                break
            batch = self._batch(uids)
        log.info(
            "Read %s message(s) from %s (%s over the size limit)",
            len(batch),
            self.settings.folder,
            sum(m.too_large for m in batch),
        )
        return batch

    def _batch(self, uids: Sequence[str]) -> list[InboundMessage]:
        """The messages of these UIDs still there and not flagged deleted; oversized ones without
        their body (never downloaded)."""
        small = [uid for uid in uids if uid not in self._large]
        large = [uid for uid in uids if uid in self._large]
        found = self._read(small, "(UID RFC822.SIZE FLAGS BODY.PEEK[])") if small else {}
        if large:
            found.update(self._read(large, "(UID RFC822.SIZE FLAGS)"))
        batch = []
        for uid in uids:
            if uid not in found:
                continue  # expunged since the search: nothing to hand out
            size, flags, raw = found[uid]
            too_large = size > self.settings.max_size
            if b"\\DELETED" in flags.upper() or (raw is None and not too_large):
                continue  # flagged for deletion since the search, or its body did not come: as if gone
            batch.append(InboundMessage(uid, None if too_large else raw, size, too_large))
            self._handed_out.add(uid)
        return batch

    def _search(self) -> None:
        """The folder's UIDs not handed out yet, oldest first, and which of them are too large
        to download (searched after them: one added in between is left for the next search)."""
        data = self._command("search the folder", "SEARCH", "UNDELETED")
        found = sorted(int(uid) for uid in _text(data).split())
        self._queue = [str(uid) for uid in found if str(uid) not in self._handed_out]
        if self._queue:
            larger = f"UNDELETED LARGER {self.settings.max_size}"
            self._large = set(_text(self._command("search large messages", "SEARCH", larger)).split())

    def _read(self, uids: Sequence[str], items: str) -> dict[str, tuple[int, bytes, bytes | None]]:
        """UID -> (RFC822.SIZE, FLAGS, raw message or ``None``) for one ``UID FETCH``."""
        data = self._command("download messages", "FETCH", ",".join(uids), items)
        found: dict[str, tuple[int, bytes, bytes | None]] = {}
        index = 0
        while index < len(data):
            item, index = data[index], index + 1
            if isinstance(item, tuple) and len(item) == 2:
                # A literal, then the rest of its line: the other items may come after it too.
                meta, raw = item[0], item[1]
                if index < len(data) and isinstance(data[index], bytes):
                    meta, index = meta + b" " + data[index], index + 1
            elif isinstance(item, bytes):
                meta, raw = item, None
            else:
                continue
            uid_match, size_match = _FETCH_UID.search(meta), _FETCH_SIZE.search(meta)
            if uid_match is None or size_match is None:
                continue  # an unsolicited update
            flags = _FETCH_FLAGS.search(meta)
            found[uid_match[1].decode()] = (int(size_match[1]), flags[1] if flags else b"", raw)
        return found

    def _ensure_folder(self, folder: str) -> None:
        if folder in self._ready_folders:
            return
        try:
            status, data = self._imap.list('""', _quote(folder))
            if status != "OK" or not [item for item in data if item]:
                status, data = self._imap.create(_quote(folder))
                if status != "OK" and "ALREADYEXISTS" not in _text(data):  # created meanwhile
                    self._check((status, data), "create folder " + folder)
        except (OSError, IMAP4.error) as exc:
            raise MailboxError(f"create folder {folder}: {exc}") from exc
        self._ready_folders.add(folder)

    def _expunge(self, uid_set: str) -> None:
        self._command("flag as deleted", "STORE", uid_set, "+FLAGS.SILENT", r"(\Deleted)")
        if self._uid_expunge:
            self._command("expunge", "EXPUNGE", uid_set)
        else:
            try:
                self._check(self._imap.expunge(), "expunge")
            except (OSError, IMAP4.error) as exc:
                raise MailboxError(f"expunge: {exc}") from exc

    def _move(self, uids: Sequence[str], folder: str) -> None:
        self._ensure_folder(folder)
        for chunk in _chunks(list(uids), _UID_CHUNK):
            uid_set = ",".join(chunk)
            if self._can_move:
                self._command("move to " + folder, "MOVE", uid_set, _quote(folder))
            else:
                self._command("copy to " + folder, "COPY", uid_set, _quote(folder))
                self._expunge(uid_set)
        log.info("Moved %s message(s) to %s", len(uids), folder)

    def done(self, uids: Sequence[str]) -> None:
        if not uids:
            return
        if self.settings.delete_done:
            for chunk in _chunks(list(uids), _UID_CHUNK):
                self._expunge(",".join(chunk))
            log.info("Deleted %s handled message(s)", len(uids))
        else:
            self._move(uids, self.settings.processed_folder)

    def set_aside(self, uids: Sequence[str]) -> None:
        if uids:
            self._move(uids, self.settings.unmatched_folder)

    def _logout(self) -> None:
        try:
            self._imap.logout()  # LOGOUT, not CLOSE: CLOSE would expunge
        except (OSError, IMAP4.error):
            log.debug("IMAP logout failed", exc_info=True)

    def close(self) -> None:
        self._logout()


class _LongLines:
    """poplib refuses lines over 2048 bytes; a message within the size limit may have longer ones."""

    file: BinaryIO
    max_line = 2048

    def _getline(self) -> tuple[bytes, int]:
        line = self.file.readline(self.max_line + 1)
        if len(line) > self.max_line:
            raise poplib.error_proto("line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == b"\r\n":
            return line[:-2], octets
        if line[:1] == b"\r":
            return line[1:-1], octets
        return line[:-1], octets


class _Pop3(_LongLines, poplib.POP3):
    pass


class _Pop3Ssl(_LongLines, poplib.POP3_SSL):
    pass


class Pop3Mailbox:
    """A POP3 maildrop: ``UIDL`` names messages, ``LIST`` gives their sizes before any ``RETR``.

    ``done`` deletes and commits at once (``DELE`` then ``QUIT``; the next call logs in again), so a
    later failure cannot undo it and a failure before it deletes nothing. ``set_aside`` cannot move
    anything: the message stays on the server and every later run reads it again.
    """

    def __init__(self, settings: MailboxSettings, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self._ssl_context = ssl_context
        self._handed_out: set[str] = set()
        self._numbers: dict[str, int] = {}  # UIDL -> message number, valid for the open session only
        self._pop: poplib.POP3 | None = None
        self._connect()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _where(self) -> str:
        return f"POP3 server {self.settings.host}:{self.settings.effective_port}"

    def _connect(self) -> poplib.POP3:
        if self._pop is not None:
            return self._pop
        settings = self.settings
        host, port = settings.host, settings.effective_port
        pop: _Pop3 | _Pop3Ssl
        try:
            if settings.ssl:
                context = self._ssl_context or ssl.create_default_context()
                pop = _Pop3Ssl(host, port, timeout=settings.timeout, context=context)
            else:
                pop = _Pop3(host, port, timeout=settings.timeout)
        except (OSError, poplib.error_proto) as exc:
            raise MailboxError(f"cannot connect to {self._where()}: {exc}") from exc
        pop.max_line = max(pop.max_line, settings.max_size + 2)
        try:
            pop.user(settings.login)
            pop.pass_(settings.password)
        except (OSError, poplib.error_proto) as exc:
            pop.close()
            raise MailboxError(f"{self._where()}: {exc}") from exc
        self._pop = pop
        self._numbers = {}
        return pop

    def _listing(self, pop: poplib.POP3) -> list[tuple[int, str, int]]:
        """(number, UIDL, size) of every message, in the maildrop's order (oldest first)."""
        _, uid_lines, _ = pop.uidl()
        _, size_lines, _ = pop.list()
        sizes = {int(n): int(size) for n, size in (line.split()[:2] for line in size_lines)}
        listing = []
        for line in uid_lines:
            number, uidl = line.split()[:2]
            if int(number) in sizes:
                listing.append((int(number), uidl.decode("ascii", "replace"), sizes[int(number)]))
        self._numbers = {uidl: number for number, uidl, _ in listing}
        return listing

    def fetch(self, limit: int) -> list[InboundMessage]:
        """The next ``limit`` messages; oversized ones are listed, not retrieved."""
        try:
            pop = self._connect()
            batch: list[InboundMessage] = []
            for number, uidl, size in self._listing(pop):
                if len(batch) >= limit:
                    break
                if uidl in self._handed_out:
                    continue
                if size > self.settings.max_size:
                    batch.append(InboundMessage(uidl, None, size, True))
                else:
                    _, lines, _ = pop.retr(number)
                    batch.append(InboundMessage(uidl, b"\r\n".join(lines) + b"\r\n", size, False))
                self._handed_out.add(uidl)
        except (OSError, poplib.error_proto) as exc:
            self._drop()
            raise MailboxError(f"{self._where()}: {exc}") from exc
        log.info(
            "Read %s message(s) over POP3 (%s over the size limit)",
            len(batch),
            sum(m.too_large for m in batch),
        )
        return batch

    def done(self, uids: Sequence[str]) -> None:
        """Delete the handled messages and commit (``QUIT``); an unknown UIDL is already gone."""
        if not uids:
            return
        try:
            pop = self._connect()
            if not self._numbers or any(uid not in self._numbers for uid in uids):
                self._listing(pop)
            for uid in uids:
                if uid in self._numbers:
                    pop.dele(self._numbers[uid])
            pop.quit()  # the deletions take effect here, and only here
        except (OSError, poplib.error_proto) as exc:
            self._drop()
            raise MailboxError(f"delete on {self._where()}: {exc}") from exc
        self._pop = None
        self._numbers = {}
        log.info("Deleted %s handled message(s)", len(uids))

    def set_aside(self, uids: Sequence[str]) -> None:
        """POP3 has no folders: the messages stay on the server (and are read again next run)."""
        if uids:
            log.warning("%s message(s) set aside stay on the POP3 server", len(uids))

    def _drop(self) -> None:
        """Close without QUIT, so that no pending deletion is committed."""
        if self._pop is not None:
            self._pop.close()
        self._pop = None
        self._numbers = {}

    def close(self) -> None:
        if self._pop is None:
            return
        try:
            self._pop.quit()  # nothing is pending: done() commits its own deletions
        except (OSError, poplib.error_proto):
            log.debug("POP3 quit failed", exc_info=True)
            self._pop.close()
        self._pop = None
