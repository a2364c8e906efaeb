"""The demo's bounce mailbox: a small POP3 server (RFC 1939) serving a directory of ``<n>.eml`` files.

A real bounce mailbox needs an MTA and a POP3/IMAP server (Postfix, Dovecot) that want root; this
one is pure Python, in a thread of the demo process, and speaks what ``poplib`` and the
``bounceProcessing`` reader use: ``USER``/``PASS``, ``STAT``, ``LIST``, ``UIDL``, ``RETR``, ``DELE``,
``RSET``, ``NOOP``, ``QUIT`` and ``CAPA``. The mail sink (``devstack.sinks``) writes the delivery
status notifications of ``dsnbounce-*`` recipients into the directory.

As RFC 1939 says: a session sees the maildrop as it was at login (mails arriving meanwhile wait for
the next one), ``DELE`` only marks, and the marked files are removed at ``QUIT``; a session that
ends otherwise deletes nothing. One session at a time holds the maildrop. A mail's ``UIDL`` is its
file's number and a digest of its content: stable across sessions, never reused for another mail.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import socketserver
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)

LOGIN = "bounces"
MAX_COMMAND_BYTES = 512  # RFC 2449: a command line is at most 255 octets; be lenient


@dataclass
class _Mail:
    path: Path
    uidl: str
    data: bytes  # CRLF lines, as sent (before dot-stuffing)
    deleted: bool = False


def _read(path: Path) -> bytes:
    """The file with CRLF line ends and a final CRLF, as a POP3 server hands a message out."""
    lines = re.split(rb"\r?\n", path.read_bytes())
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def _number(path: Path) -> int:
    return int(path.stem) if path.stem.isdigit() else 0


def _item(command: str, number: int, mail: _Mail) -> str:
    """One line of ``LIST`` (number and size) or ``UIDL`` (number and unique id)."""
    return f"{number} {len(mail.data) if command == 'LIST' else mail.uidl}"


class _Session(socketserver.StreamRequestHandler):
    server: Pop3Server
    timeout = 600  # RFC 1939's autologout: ten minutes of silence

    def setup(self) -> None:
        super().setup()
        self.user: str | None = None
        self.mails: list[_Mail] | None = None  # set once logged in (the TRANSACTION state)

    def reply(self, line: str, lines: list[bytes] | None = None) -> None:
        out = [line.encode() + b"\r\n"]
        if lines is not None:
            out += [(b"." + item if item.startswith(b".") else item) + b"\r\n" for item in lines]
            out.append(b".\r\n")
        self.wfile.write(b"".join(out))

    def handle(self) -> None:
        self.reply("+OK Message Center demo bounce mailbox ready")
        try:
            while True:
                line = self.rfile.readline(MAX_COMMAND_BYTES + 1)
                if not line:
                    return
                if len(line) > MAX_COMMAND_BYTES:
                    self.reply("-ERR line too long")
                    return
                command, _, argument = line.decode("ascii", "replace").strip().partition(" ")
                if not self.dispatch(command.upper(), argument.strip()):
                    return
        except OSError:
            log.debug("POP3 session ended by the client", exc_info=True)
        finally:
            if self.mails is not None:
                self.server.maildrop_lock.release()

    def dispatch(self, command: str, argument: str) -> bool:
        """Answer one command; ``False`` ends the session."""
        if command == "QUIT":
            self.quit()
            return False
        if command == "CAPA":
            self.reply("+OK capability list follows", [b"USER", b"UIDL", b"IMPLEMENTATION mc-demo"])
        elif self.mails is None:
            self.authorization(command, argument)
        elif command in ("STAT", "LIST", "UIDL", "RETR", "DELE", "RSET", "NOOP"):
            self.transaction(command, argument)
        else:
            self.reply(f"-ERR unknown command {command[:20]}")
        return True

    def authorization(self, command: str, argument: str) -> None:
        if command == "USER":
            self.user = argument
            self.reply("+OK send PASS")
        elif command == "PASS" and self.user is not None:
            server = self.server
            ok = hmac.compare_digest(self.user.encode(), server.login.encode()) and hmac.compare_digest(
                argument.encode(), server.password.encode()
            )
            self.user = None
            if not ok:
                self.reply("-ERR [AUTH] invalid login or password")
            elif not server.maildrop_lock.acquire(timeout=server.lock_timeout):
                self.reply("-ERR [IN-USE] the maildrop is locked by another session")
            else:
                self.mails = server.snapshot()
                self.reply(f"+OK maildrop has {len(self.mails)} message(s)")
        else:
            self.reply("-ERR USER then PASS first")

    def _mail(self, argument: str) -> _Mail | None:
        assert self.mails is not None
        if argument.isdigit() and 1 <= int(argument) <= len(self.mails):
            mail = self.mails[int(argument) - 1]
            if not mail.deleted:
                return mail
        self.reply(f"-ERR no such message {argument[:20]}")
        return None

    def transaction(self, command: str, argument: str) -> None:
        assert self.mails is not None
        live = [(n, m) for n, m in enumerate(self.mails, 1) if not m.deleted]
        if command == "STAT":
            self.reply(f"+OK {len(live)} {sum(len(m.data) for _, m in live)}")
        elif command in ("LIST", "UIDL"):
            if argument:
                mail = self._mail(argument)
                if mail is not None:
                    self.reply(f"+OK {_item(command, int(argument), mail)}")
            else:
                self.reply(f"+OK {len(live)} message(s)", [_item(command, n, m).encode() for n, m in live])
        elif command == "RETR":
            mail = self._mail(argument)
            if mail is not None:
                self.reply(f"+OK {len(mail.data)} octets", mail.data.split(b"\r\n")[:-1])
        elif command == "DELE":
            mail = self._mail(argument)
            if mail is not None:
                mail.deleted = True
                self.reply(f"+OK message {argument} deleted")
        elif command == "RSET":
            for mail in self.mails:
                mail.deleted = False
            self.reply(f"+OK maildrop has {len(self.mails)} message(s)")
        else:  # NOOP
            self.reply("+OK")

    def quit(self) -> None:
        """The UPDATE state: remove the mails marked deleted, then say goodbye."""
        removed = 0
        for mail in self.mails or []:
            if mail.deleted:
                mail.path.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.info("bounce mailbox: %d message(s) deleted", removed)
        self.reply("+OK bye")


class Pop3Server(socketserver.ThreadingTCPServer):
    """A POP3 server on ``127.0.0.1:port`` for one user, serving the ``*.eml`` files of ``directory``
    (oldest first), in threads of this process. Use as a context manager; ``connection()`` is the
    ``mc_bounce_mailbox`` connection that reads it.

    :param directory: the maildrop (created if missing).
    :param password: the password of user ``login``.
    :param port: listening port (0: a free one).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, directory: Path, password: str, port: int = 0, *, login: str = LOGIN) -> None:
        super().__init__(("127.0.0.1", port), _Session)
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.login = login
        self.password = password
        self.maildrop_lock = threading.Lock()
        # How long a login waits for the previous session to let go (it may still be closing).
        self.lock_timeout = 5.0
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def snapshot(self) -> list[_Mail]:
        """The maildrop now: complete ``<n>.eml`` files (not ``.part`` ones), oldest first."""
        paths = sorted(self.directory.glob("*.eml"), key=lambda p: (_number(p), p.name))
        mails = []
        for path in paths:
            try:
                data = _read(path)
            except FileNotFoundError:  # removed meanwhile
                continue
            mails.append(_Mail(path, f"{path.stem}-{hashlib.sha256(data).hexdigest()[:16]}", data))
        return mails

    def connection(self) -> dict[str, Any]:
        """The ``mc_bounce_mailbox`` connection (JSON form) that reads this mailbox."""
        return {
            "conn_type": "pop3",
            "host": "127.0.0.1",
            "port": self.port,
            "login": self.login,
            "password": self.password,
            "extra": {"timeout": 30},
        }
