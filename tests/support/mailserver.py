"""A private Postfix and Dovecot on free 127.0.0.1 ports: a real MTA that bounces, a real bounce mailbox.

``MailServer`` starts, in a temporary directory of its own, a Postfix instance (``postfix -c DIR``)
whose SMTP service listens on a free port and a Dovecot instance (``dovecot -F -c CONF``) serving one
Maildir over IMAP and POP3 on two more free ports. Nothing listens on another address, nothing uses
the system's configuration, spool or standard ports, and no mail leaves the machine (the default
transport is ``error``). Postfix's routing:

* ``<anyone>@mail.test`` (``local_domain``) is accepted at SMTP time (empty ``local_recipient_maps``)
  and then refused by the ``local`` delivery agent for an unknown user, so Postfix's bounce daemon
  writes a real RFC 3464 delivery status notification to the envelope sender;
* ``<anything>@bounces.test`` (``bounce_domain``) is a virtual mailbox domain whose every address
  lands in one Maildir, the bounce mailbox: a VERP return path ``bounce+<id>-<mac>@bounces.test``
  gets that notification there.

Dovecot serves that Maildir to the user ``login``/``password`` with plaintext authentication (no TLS:
tests only). Both write the Maildir as the ``mail`` system user. Postfix's master must start as
root; CI runs as root and ``.ci/run`` installs the packages. A missing binary or a run as another
user fails the test with a message naming what to install, it does not skip.

Use it as a context manager, or make a fixture with ``mail_server_fixture()``.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import secrets
import select
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import pytest

HOST = "127.0.0.1"
APT_PACKAGES = "postfix dovecot-imapd dovecot-pop3d"
# Never ours, even if the kernel offered one: the system's mail ports.
RESERVED_PORTS = frozenset({25, 110, 143, 465, 587, 993, 995})
MAIL_USER = "mail"  # a system user present on every Debian, owner of the Maildir
DOVECOT_LIBEXEC = Path("/usr/lib/dovecot")
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
_ENV = {**os.environ, "PATH": _SBIN_PATH}

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {root}/log/postfix.log
maillog_file_prefixes = {root}/log
myhostname = mx.{local_domain}
mydomain = {local_domain}
myorigin = $myhostname
mydestination = {local_domain}
# Every local address is accepted at SMTP time; the local agent then bounces the unknown ones.
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
# No mail ever leaves: anything not local or virtual is refused by the error transport.
default_transport = error:this test server delivers nowhere else
relay_transport = error:this test server delivers nowhere else
virtual_mailbox_domains = {bounce_domain}
virtual_mailbox_base = {root}
virtual_mailbox_maps = static:mailbox/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = {uid}
notify_classes =
biff = no
smtputf8_enable = no
delay_warning_time = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""

# chroot off everywhere: the queue is a temporary directory, not a prepared chroot.
MASTER_CF = """\
{host}:{smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

DOVECOT_CONF = """\
instance_name = {instance}
base_dir = {root}/dovecot/run
state_dir = {root}/dovecot/state
log_path = {root}/log/dovecot.log
protocols = imap pop3
listen = {host}
hostname = mx.{local_domain}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# No delay after a wrong password, and no penalty on the next logins from 127.0.0.1.
auth_failure_delay = 0
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{root}/mailbox
mail_fsync = never
mail_max_userip_connections = 50
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/dovecot/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {host}
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


class MailServerError(RuntimeError):
    """The mail server cannot run here, or did not start; the message says what to do."""


def _free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (all held open until chosen, so no two are the same)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
            if port not in RESERVED_PORTS:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _processes() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                # The command name is in parentheses and may hold spaces: read after the last ')'.
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(pid: int) -> set[int]:
    """The pids of every process below ``pid``."""
    parents = _processes()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    remaining = {pid for pid in pids if _alive(pid)}
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = {pid for pid in remaining if _alive(pid)}
    return remaining


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _greets(port: int, greeting: bytes) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.settimeout(1)
            return sock.recv(256).startswith(greeting)
    except OSError:
        return False


# The machine's init may not reap orphans (a container's or a micro-VM's often does not): Postfix's
# master daemonises and its children outlive it by a moment, so they would stay as zombies. Each
# server therefore runs under a small reaper, a child subreaper that adopts them and waits for
# every one; it exits once none is left.
REAPER = """\
import ctypes, os, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
wait, log, command = sys.argv[1] == "wait", open(sys.argv[2], "ab"), sys.argv[3:]
child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
print(child.wait() if wait else child.pid, flush=True)
sys.stdout.close()
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


class _Reaper:
    """One server's command run under the reaper; ``stop`` leaves none of its processes behind."""

    def __init__(self, command: list[str], root: Path, *, foreground: bool = False) -> None:
        """Run ``command``; a ``foreground`` one is the server itself, else it starts a daemon."""
        self.command = command
        self.foreground = foreground
        self._pid: int | None = None
        log = str(root / "log" / "stderr.log")
        self.process = subprocess.Popen(
            [sys.executable, "-c", REAPER, "run" if foreground else "wait", log, *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=_ENV,
        )

    def status(self, timeout: float) -> int:
        """The command's exit status, or the foreground server's pid."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else b""
        self.process.stdout.close()
        if not line.strip():
            raise MailServerError(f"{' '.join(self.command)} gave no status within {timeout} s")
        value = int(line)
        if self.foreground:
            self._pid = value
        return value

    def finished(self) -> bool:
        return self.process.poll() is not None

    def terminate_command(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGTERM)

    def stop(self, ask: Callable[[], object], timeout: float = 10.0) -> set[int]:
        """Ask the server to stop, wait for all its processes, SIGKILL any left; return survivors."""
        tree = descendants(self.process.pid)
        if self.process.poll() is None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                ask()  # if asking fails, waiting times out and everything is killed
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            tree |= descendants(self.process.pid)
            _kill(tree)
            self.process.kill()
            self.process.wait(timeout=5)
        return _wait_gone(tree, timeout=5)


def _check_environment() -> dict[str, str]:
    """The postfix and dovecot binaries; fails loudly (never skips) when something is missing."""
    install = f"install them with: apt-get install -y {APT_PACKAGES} (.ci/run does)"
    found = {name: shutil.which(name, path=_SBIN_PATH) for name in ("postfix", "dovecot")}
    missing = [name for name, path in found.items() if path is None]
    if not (DOVECOT_LIBEXEC / "imap").exists():
        missing.append("dovecot imap (dovecot-imapd)")
    if not (DOVECOT_LIBEXEC / "pop3").exists():
        missing.append("dovecot pop3 (dovecot-pop3d)")
    if missing:
        raise MailServerError(f"the mail server tests need {', '.join(missing)}: {install}")
    if os.geteuid() != 0:
        raise MailServerError("the mail server tests must run as root (Postfix's master starts as root)")
    for user in (MAIL_USER, "postfix", "dovecot", "dovenull"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise MailServerError(f"system user {user!r} is missing: {install}") from None
    return {name: path for name, path in found.items() if path}


class MailServer:
    """A Postfix + Dovecot pair; ``with MailServer() as server:`` starts both and stops both.

    Attributes, once started: ``host``, ``smtp_port``, ``imap_port``, ``pop3_port``, ``login``,
    ``password``, ``local_domain`` (its unknown users bounce), ``bounce_domain`` (every address
    there lands in the bounce mailbox), ``root`` (the temporary directory) and ``maildir``.
    """

    host = HOST

    def __init__(
        self,
        *,
        local_domain: str = "mail.test",
        bounce_domain: str = "bounces.test",
        login: str = "bounces",
        start_timeout: float = 15.0,
    ) -> None:
        self.local_domain = local_domain
        self.bounce_domain = bounce_domain
        self.login = login
        self.password = secrets.token_urlsafe(16)
        self.start_timeout = start_timeout
        self.smtp_port = self.imap_port = self.pop3_port = 0
        self._root: Path | None = None
        self._postfix: _Reaper | None = None
        self._dovecot: _Reaper | None = None
        self._binaries: dict[str, str] = {}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def root(self) -> Path:
        if self._root is None:
            raise MailServerError("the mail server is not started")
        return self._root

    @property
    def maildir(self) -> Path:
        return self.root / "mailbox"

    def start(self) -> None:
        """Start both servers (on fresh ports again if another process took one meanwhile)."""
        self._binaries = _check_environment()
        for attempt in range(3):
            try:
                self._start_once()
                return
            except BaseException as exc:
                self.stop()
                if not (isinstance(exc, MailServerError) and "in use" in str(exc)) or attempt == 2:
                    raise

    def _start_once(self) -> None:
        self.smtp_port, self.imap_port, self.pop3_port = _free_ports(3)
        self._root = root = Path(tempfile.mkdtemp(prefix="mc-mail-"))
        root.chmod(0o755)  # the mail, postfix and login users walk through it
        mail, postfix = pwd.getpwnam(MAIL_USER), pwd.getpwnam("postfix")
        for name, owner, mode in [
            ("postfix", None, 0o755),  # config_directory
            ("queue", None, 0o755),  # queue_directory: Postfix makes its subdirectories
            ("data", postfix, 0o700),  # data_directory
            ("mailbox", mail, 0o700),  # the bounce mailbox: a Maildir
            ("mailbox/cur", mail, 0o700),
            ("mailbox/new", mail, 0o700),
            ("mailbox/tmp", mail, 0o700),
            ("home", mail, 0o700),  # the Dovecot user's home
            ("dovecot", None, 0o755),
            ("log", None, 0o755),
        ]:
            path = root / name
            path.mkdir()
            path.chmod(mode)
            if owner is not None:
                os.chown(path, owner.pw_uid, owner.pw_gid)
        values = {
            "root": root,
            "host": HOST,
            "local_domain": self.local_domain,
            "bounce_domain": self.bounce_domain,
            "uid": mail.pw_uid,
            "gid": mail.pw_gid,
            "smtp_port": self.smtp_port,
            "imap_port": self.imap_port,
            "pop3_port": self.pop3_port,
            "instance": f"mc-test-{root.name}",
        }
        (root / "postfix" / "main.cf").write_text(MAIN_CF.format(**values))
        (root / "postfix" / "master.cf").write_text(MASTER_CF.format(**values))
        # Postfix waits up to 2 s for a main.cf written this very second to settle: date it back.
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(root / "postfix" / name, (past, past))
        (root / "dovecot" / "dovecot.conf").write_text(DOVECOT_CONF.format(**values))
        (root / "dovecot" / "users").write_text(f"{self.login}:{{PLAIN}}{self.password}\n")

        self._postfix = _Reaper([self._binaries["postfix"], "-c", str(root / "postfix"), "start"], root)
        status = self._postfix.status(self.start_timeout)
        if status != 0:
            raise MailServerError(f"postfix start exited with {status}:\n{self.logs()}")
        conf = str(root / "dovecot" / "dovecot.conf")
        self._dovecot = _Reaper([self._binaries["dovecot"], "-F", "-c", conf], root, foreground=True)
        self._dovecot.status(self.start_timeout)

        deadline = time.monotonic() + self.start_timeout
        waiting = {"SMTP": (self.smtp_port, b"220 "), "IMAP": (self.imap_port, b"* OK")}
        waiting["POP3"] = (self.pop3_port, b"+OK")
        while waiting := {name: check for name, check in waiting.items() if not _greets(*check)}:
            if self._dovecot.finished():
                raise MailServerError(f"dovecot exited:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise MailServerError(f"{', '.join(waiting)} did not answer:\n{self.logs()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop both servers, leave none of their processes behind, remove the directory."""
        stray: set[int] = set()
        if self._dovecot is not None:
            stray |= self._dovecot.stop(self._dovecot.terminate_command)
            self._dovecot = None
        if self._postfix is not None and self._root is not None:
            command = [self._binaries["postfix"], "-c", str(self._root / "postfix"), "stop"]
            stray |= self._postfix.stop(
                lambda: subprocess.run(command, capture_output=True, env=_ENV, timeout=30, check=False)
            )
            self._postfix = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
        if stray:
            raise MailServerError(f"mail server processes survived SIGKILL: {sorted(stray)}")

    # -- use ---------------------------------------------------------------------------------------

    def logs(self) -> str:
        """Postfix's and Dovecot's logs so far (for assertion messages)."""
        parts = []
        for name in ("postfix.log", "dovecot.log", "stderr.log"):
            path = self.root / "log" / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def bounce_address(self, tag: str) -> str:
        """A VERP-style envelope sender in the bounce domain: ``bounce+<tag>@<bounce_domain>``."""
        return f"bounce+{tag}@{self.bounce_domain}"

    def send(self, message: EmailMessage | bytes, *, sender: str, recipients: Sequence[str]) -> None:
        """Submit over SMTP, with a neutral EHLO name (the machine's hostname stays out of headers)."""
        with smtplib.SMTP(HOST, self.smtp_port, local_hostname="client.test", timeout=10) as smtp:
            if isinstance(message, EmailMessage):
                smtp.send_message(message, from_addr=sender, to_addrs=list(recipients))
            else:
                smtp.sendmail(sender, list(recipients), message)

    @contextlib.contextmanager
    def imap(self) -> Iterator[imaplib.IMAP4]:
        """A logged-in IMAP client, logged out afterwards."""
        client = imaplib.IMAP4(HOST, self.imap_port, timeout=10)
        try:
            client.login(self.login, self.password)
            yield client
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """The raw messages of a folder (read-only, nothing marked seen); [] if it does not exist."""
        with self.imap() as client:
            status, _ = client.select(f'"{folder}"', readonly=True)
            if status != "OK":
                return []
            _, data = client.uid("SEARCH", "ALL")
            uids = data[0].split() if data and data[0] else []
            if not uids:
                return []
            _, fetched = client.uid("FETCH", b",".join(uids).decode(), "(BODY.PEEK[])")
            return [item[1] for item in fetched if isinstance(item, tuple)]

    def wait_for_messages(self, count: int, timeout: float = 10.0, folder: str = "INBOX") -> list[bytes]:
        """Poll the folder over IMAP until it holds at least ``count`` messages; return them all."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(folder)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{folder} holds {len(found)} message(s), not {count}, after {timeout} s\n{self.logs()}"
                )
            time.sleep(0.1)

    def clear(self) -> None:
        """Empty INBOX and delete every other folder, so that each test starts from nothing."""
        with self.imap() as client:
            _, listing = client.list()
            for line in listing:
                name = line.rsplit(b" ", 1)[-1].strip(b'"').decode() if isinstance(line, bytes) else ""
                if name and name.upper() != "INBOX":
                    client.delete(f'"{name}"')
            _, count = client.select("INBOX")
            if count and count[0] and int(count[0]) > 0:
                client.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                client.expunge()


def mail_server_fixture(
    scope: Literal["session", "package", "module", "class", "function"] = "module",
) -> Callable[..., Any]:
    """A pytest fixture giving a started ``MailServer`` (stopped after the last test of its scope).

    In a test module: ``mail_server = mail_server_fixture()``; call ``clear()`` for an empty mailbox.
    """

    @pytest.fixture(scope=scope)
    def mail_server() -> Iterator[MailServer]:
        with MailServer() as server:
            yield server

    return mail_server
