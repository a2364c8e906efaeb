"""The README's tour, run as written: ``make demo-check`` runs its commands in order against the
headless demo and fails if one of them fails, so the tour cannot drift from what works.

The commands are the lines of the ``bash`` code blocks between the README's ``tour`` snippet
markers (the part the documentation site includes too); a line ending in ``\\`` goes on on the next
one. They run in one ``bash`` process, one after the other, so ``source .demo/env`` and shell
variables carry over as in the reader's shell; the check rewrites ``.demo/`` to its own folder.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from devstack.stack import REPO

README = REPO / "README.md"
TOUR_START = "<!-- --8<-- [start:tour] -->"
TOUR_END = "<!-- --8<-- [end:tour] -->"
_BLOCK = re.compile(r"^(?P<indent>[ \t]*)```bash\n(?P<body>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)


def tour_commands(readme: Path = README) -> list[str]:
    """The tour's shell commands, in the README's order (blank and comment-only lines left out)."""
    text = readme.read_text()
    section = text[text.index(TOUR_START) : text.index(TOUR_END)]
    commands: list[str] = []
    for block in _BLOCK.finditer(section):
        pending: list[str] = []
        for line in textwrap.dedent(block["body"]).splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending.append(line)
            if not line.endswith("\\"):
                commands.append("\n".join(pending))
                pending = []
        if pending:
            commands.append("\n".join(pending))
    return commands


@dataclass(frozen=True)
class Result:
    command: str
    code: int | None  # None: still running after its timeout (then stopped)
    output: str
    seconds: float


class Shell:
    """One ``bash`` process running commands one at a time, its state (``source``, variables, the
    current directory) kept between them, as in a terminal. Each command reads ``/dev/null``, so
    none can swallow the commands that follow it.

    Use as a context manager: leaving it ends the shell and everything it started.
    """

    def __init__(self, cwd: Path, env: Mapping[str, str]) -> None:
        self._marker = f"__tour_done_{secrets.token_hex(6)}__"
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: close() ends what a command left running
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        self._send("set -o pipefail")

    def __enter__(self) -> Shell:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def _send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def run(self, command: str, timeout: float = 600) -> Result:
        """Run ``command``; its exit code and output (stdout and stderr, interleaved)."""
        started = time.monotonic()
        self._send(f"{{\n{command}\n}} </dev/null\nprintf '%s %d\\n' {self._marker} $?")
        output: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=max(started + timeout - time.monotonic(), 0.01))
            except queue.Empty:
                self.close()
                return Result(command, None, "".join(output), time.monotonic() - started)
            if line is None:  # the shell exited (the command ran `exit`)
                return Result(command, self.process.wait(), "".join(output), time.monotonic() - started)
            before, marker, code = line.partition(self._marker)
            output.append(before)
            if marker:
                return Result(command, int(code), "".join(output), time.monotonic() - started)

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def in_folder(command: str, demo_dir: Path) -> str:
    """``command`` with ``.demo/`` pointing at ``demo_dir`` (the check's own folder)."""
    return re.sub(r"(?<![\w./-])\.demo/", f"{demo_dir}/", command)
