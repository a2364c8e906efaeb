"""A real PostgreSQL restart mid-chunk re-sends at most the messages in flight and one flush interval.

A throwaway server (pgserver's bundled PostgreSQL) is stopped with ``pg_ctl -m fast`` and started
again while a delivery chunk is sending to an SMTP server that answers in 50 ms: the chunk's
transaction dies with its row locks, and whatever it had not committed is claimed again. The logs
that the chunk committed as it went (every ``MC_LOG_FLUSH_SECONDS``) keep their events from being
sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import ProcessingSettings
from messagecenter.db import schema
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates
from tests.support.sinks import Recorder, SmtpSink, free_port

EVENTS = 400
CONNECTIONS = 10
LATENCY = 0.05
FLUSH = 0.2
SETTINGS = ProcessingSettings(
    retry_backoff_seconds=0, deliver_chunk=EVENTS, parallelism=1, log_flush_seconds=FLUSH
)
TEMPLATE = {"templates": [{"event_type": "RESET", "channel": "email", "subject": "Reset", "text": "Hi"}]}


@dataclass
class SlowRecorder(Recorder):
    """An SMTP server that takes ``LATENCY`` to accept each message, as a real relay does."""

    times: list[float] = field(default_factory=list)  # when each message was accepted

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(LATENCY)
        self.times.append(time.monotonic())
        return await super().handle_DATA(server, session, envelope)


class ThrowawayServer:
    """A PostgreSQL of its own (pgserver's bundled binaries) on a free port, to stop and start at will.

    As root it runs as the ``pgserver`` system user, as pgserver itself does (PostgreSQL refuses root).
    """

    def __init__(self) -> None:
        with warnings.catch_warnings():  # platformdirs, imported by pgserver: no XDG_RUNTIME_DIR here
            warnings.simplefilter("ignore")
            from pgserver._commands import initdb, pg_ctl
            from pgserver.utils import ensure_user_exists
        self._pg_ctl = pg_ctl

        self.root = Path(tempfile.mkdtemp(prefix="mc-restart-"))
        self.root.chmod(0o777)
        self.pgdata = self.root / "data"
        self.pgdata.mkdir()
        self.user = "pgserver" if os.geteuid() == 0 else None
        if self.user is not None:
            entry = ensure_user_exists(self.user)
            assert entry is not None
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)
        self.port = free_port()
        initdb(["--auth=trust", "-U", "postgres", "--encoding=utf8"], pgdata=self.pgdata, user=self.user)
        self.pg_ctl(
            "-w", "-o", f"-p {self.port} -h 127.0.0.1 -k {self.root}", "-l", str(self.root / "log"), "start"
        )
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def pg_ctl(self, *args: str) -> None:
        self._pg_ctl(list(args), pgdata=self.pgdata, user=self.user, timeout=60)

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session ended, the server back with the same options."""
        self.pg_ctl("-w", "-m", "fast", "-l", str(self.root / "log"), "restart")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.pg_ctl("-w", "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def throwaway_server() -> Iterator[ThrowawayServer]:
    server = ThrowawayServer()
    yield server
    server.close()


def run_batch(dsn: str) -> None:
    """batchEventsProcessing: split (new events and due retries), link every shard, deliver."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        shards = execution.split_queue(conn, "batch", SETTINGS)
        for shard in shards:
            execution.link_templates(conn, shard)
        for shard in shards:
            execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)


def test_a_restart_mid_chunk_resends_at_most_the_messages_in_flight_and_one_flush(
    throwaway_server: ThrowawayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = throwaway_server.dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        for component in schema.COMPONENTS:
            schema.upgrade(conn, component)
        publish_templates(conn, parse_templates(TEMPLATE))
        events = [event_from_dict({"type": "RESET", "email": f"user{n}@example.com"}) for n in range(EVENTS)]
        store.insert_events(conn, "batch", events, instance_id=1)
    recorder = SlowRecorder()
    with SmtpSink(recorder) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", sink.connection(max_connections=CONNECTIONS))
        failure: list[BaseException] = []

        def worker() -> None:
            try:
                run_batch(dsn)
            except BaseException as exc:  # the database went away under the chunk
                failure.append(exc)

        thread = threading.Thread(target=worker)
        thread.start()
        marks: dict[int, float] = {}
        while len(recorder.received) < EVENTS // 2:
            assert thread.is_alive(), (failure, len(recorder.received))
            marks.setdefault(len(recorder.received) // 50, time.monotonic())
            time.sleep(0.005)
        rate = 100 / (time.monotonic() - marks[2])  # messages per second, the last 100 before the restart
        restarting = time.monotonic()
        throwaway_server.restart()
        thread.join(timeout=60)
        assert failure, "the chunk should have lost its database"
        sent_before_restart = len(recorder.received)
        run_batch(dsn)  # the next run claims what the dead chunk had not logged
    copies = Counter(recorder.event_ids())
    duplicates = sum(n - 1 for n in copies.values())
    assert len(copies) == EVENTS  # nothing lost
    # Re-sent: at most what was in flight plus one flush interval's messages -- where it was the
    # whole chunk's sent messages before the logs were committed as they went.
    # Measured: the messages that went out from one flush interval before the restart until the
    # worker saw its database go (those in flight included).
    last_interval = sum(1 for t in recorder.times[:sent_before_restart] if t >= restarting - FLUSH)
    assert duplicates <= last_interval, (duplicates, last_interval, sent_before_restart)
    assert duplicates <= CONNECTIONS + 2 * rate * FLUSH, (duplicates, rate, sent_before_restart)
    assert duplicates < sent_before_restart / 2
    with psycopg.connect(dsn, autocommit=True) as conn:
        execution.update_events_status(conn)
        assert conn.execute("SELECT status, count(*) FROM mc.batch_event GROUP BY 1").fetchall() == [
            (2, EVENTS)
        ]
