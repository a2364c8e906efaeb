"""An SMSC for the demo, the SMPP tests and the benchmark: the ``smpp34`` package's server (a Rust SMPP 3.4
server with a Python API, not ours), driven by a small adapter of ours that decides each answer,
notes every ``submit_sm`` it received and sends SMPP 3.4 appendix B delivery receipts (with the
``receipted_message_id`` and ``message_state`` TLVs), store-and-forward: a receipt is sent to a bind
that can receive and sent again until a ``deliver_sm_resp`` accepts it.

A link of ours stands between the clients and the server: it reads the clients' ``deliver_sm_resp``
(smpp34 1.5.0's server does not match them to its ``deliver_sm``), so a receipt counts as delivered
only once acknowledged and is delivered again when refused or left unanswered, and it injects
what a server API cannot: a TCP link cut at a chosen ``submit_sm``, garbage written to a client,
and binds checked against accounts (smpp34's server binds any ``system_id`` and password).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import smpp34

from devstack.sinks import free_port

REDELIVER_SECONDS = 1.0  # a receipt handed to a session but not seen on its link is sent again after this
STATES = {"DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8}


@dataclass(frozen=True)
class Submit:
    """One ``submit_sm`` as the SMSC received it."""

    session_id: str
    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    message_id: str | None
    status: int


@dataclass
class Decision:
    """What the SMSC does with a submit: ``status`` 0 accepts it; ``receipt`` is the stat of the
    receipt to send (``None``: none); ``receipt_first`` sends it before the ``submit_sm_resp``."""

    status: int = 0
    receipt: str | None = "DELIVRD"
    err: str = "000"
    receipt_first: bool = False


@dataclass
class Smsc:
    """The running SMSC: its port, what it received, what it still has to deliver."""

    port: int  # where ESMEs connect: the link in front of the server
    server_port: int
    decide: Callable[[Submit], Decision]
    answer_delay: float = 0.0
    # Faults the link injects: cut it at the drop_at-th submit_sm (forwarded or not), write garbage.
    drop_at: int | None = None
    forward_dropped: bool = False
    garbage: bytes = b""
    # system_id -> password of the accounts that may bind; None: any (smpp34's server checks none).
    accounts: dict[str, str] | None = None
    binds_refused: list[str] = field(default_factory=list)  # system_id of each bind refused
    link_submits: int = 0
    dropped: threading.Event = field(default_factory=threading.Event)
    receipts_refused: list[str] = field(default_factory=list)
    forwarded: list[str] = field(default_factory=list)  # destination of each submit_sm that reached it
    submits: list[Submit] = field(default_factory=list)
    receipts_acked: list[str] = field(default_factory=list)
    sessions: dict[str, Any] = field(default_factory=dict)
    pending_receipts: int = 0
    _next_id: int = 1_000_000_000
    _loop: asyncio.AbstractEventLoop | None = None
    _queue: asyncio.Queue[tuple[str, bytes, list[Any], str, str]] | None = None
    # Receipts handed to a session but not yet seen on a link, by id: when was it, and the receipt.
    # A session that had just died swallows its deliver_sm; the SMSC then sends it again.
    _dispatched: dict[str, tuple[float, tuple[str, bytes, list[Any], str, str]]] = field(default_factory=dict)

    def new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def by_destination(self) -> dict[str, int]:
        """How many ``submit_sm`` reached the server per destination (answered or not)."""
        counts: dict[str, int] = {}
        for destination in self.forwarded:
            counts[destination] = counts.get(destination, 0) + 1
        return counts

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise AssertionError("the SMSC did not get there in time")
            time.sleep(0.02)

    def requeue(self, item: tuple[str, bytes, list[Any], str, str]) -> None:
        """Deliver a receipt again (its deliver_sm was refused, or its link closed unanswered)."""
        assert self._loop is not None
        assert self._queue is not None
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def send_receipt(
        self, message_id: str, stat: str, *, err: str = "000", text: bytes | None = None, tlvs: bool = True
    ) -> None:
        """Queue a receipt (any id, any text: for unknown ids and garbage)."""
        assert self._loop is not None
        assert self._queue is not None
        body = text if text is not None else receipt_text(message_id, stat, err).encode()
        extra = _receipt_tlvs(message_id, stat) if tlvs else []
        self.pending_receipts += 1
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (message_id, body, extra, "", ""))


def receipt_text(message_id: str, stat: str, err: str = "000", text: str = "hello") -> str:
    now = datetime.now(UTC).strftime("%y%m%d%H%M")
    delivered = "001" if stat == "DELIVRD" else "000"
    return (
        f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{now} done date:{now} "
        f"stat:{stat} err:{err} text:{text[:20]}"
    )


def _receipt_tlvs(message_id: str, stat: str) -> list[Any]:
    return [
        smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),
        smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, bytes([STATES.get(stat, 7)])),
    ]


async def _quietly(coro: Any) -> None:
    with contextlib.suppress(Exception):
        await coro


async def _serve(smsc: Smsc, ready: threading.Event, stop: asyncio.Event) -> None:
    server = smpp34.Server(host="127.0.0.1", port=smsc.server_port, system_id="SIMSC")
    await server.start()
    smsc._loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, bytes, list[Any], str, str]] = asyncio.Queue()
    smsc._queue = queue
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def deliver(item: tuple[str, bytes, list[Any], str, str]) -> None:
        _, body, tlvs, source, dest = item
        while not stop.is_set():
            receivers = [e for e in smsc.sessions.values() if e.can_receive]
            if receivers:
                # smpp34 1.5.0 does not match the ESME's deliver_sm_resp to its deliver_sm (it
                # answers it generic_nack): the link in front of it reads the answers instead.
                smsc._dispatched[item[0]] = (time.monotonic(), item)
                spawn(
                    _quietly(
                        receivers[0].deliver_sm(
                            dest or "MC", body, source_addr=source or "0", esm_class=0x04, tlvs=tlvs
                        )
                    )
                )
                return
            await asyncio.sleep(0.1)

    async def dispatch() -> None:
        while True:
            spawn(deliver(await queue.get()))

    async def redeliver_lost() -> None:
        """Send again a receipt no link forwarded within REDELIVER_SECONDS (its session was gone)."""
        while True:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            for message_id, (at, item) in list(smsc._dispatched.items()):
                if now - at > REDELIVER_SECONDS and smsc._dispatched.pop(message_id, None) is not None:
                    queue.put_nowait(item)

    async def answer(ev: Any) -> None:
        submit = Submit(
            ev.session_id,
            ev.source_addr,
            ev.source_addr_ton,
            ev.source_addr_npi,
            ev.destination_addr,
            ev.dest_addr_ton,
            ev.dest_addr_npi,
            ev.esm_class,
            ev.data_coding,
            ev.registered_delivery,
            bytes(ev.short_message),
            None,
            0,
        )
        decision = smsc.decide(submit)
        message_id = smsc.new_id() if decision.status == 0 else None
        submit = dataclasses.replace(submit, message_id=message_id, status=decision.status)
        smsc.submits.append(submit)
        receipt = None
        if message_id and decision.receipt and ev.registered_delivery & 0x01:
            body = receipt_text(message_id, decision.receipt, decision.err).encode()
            receipt = (
                message_id,
                body,
                _receipt_tlvs(message_id, decision.receipt),
                ev.destination_addr,
                ev.source_addr,
            )
            smsc.pending_receipts += 1
        if receipt is not None and decision.receipt_first:
            queue.put_nowait(receipt)
            await asyncio.sleep(0.3)
        if smsc.answer_delay:
            await asyncio.sleep(smsc.answer_delay)
        if message_id:
            ev.accept(message_id=message_id)
        else:
            ev.reject(decision.status)
        if receipt is not None and not decision.receipt_first:
            queue.put_nowait(receipt)

    spawn(dispatch())
    spawn(redeliver_lost())
    ready.set()
    next_event = asyncio.ensure_future(server.next())
    stopped = asyncio.ensure_future(stop.wait())
    while True:
        done, _ = await asyncio.wait({next_event, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stopped in done:
            break
        ev = next_event.result()
        next_event = asyncio.ensure_future(server.next())
        if isinstance(ev, smpp34.Esme):
            smsc.sessions[ev.session_id] = ev
        elif isinstance(ev, smpp34.Unbound):
            smsc.sessions.pop(ev.session_id, None)
        elif isinstance(ev, smpp34.SubmitSmEvent):
            spawn(answer(ev))
    next_event.cancel()
    for task in list(tasks):
        task.cancel()
    await server.stop()


@contextlib.contextmanager
def running_smsc(
    decide: Callable[[Submit], Decision] | None = None,
    *,
    answer_delay: float = 0.0,
    port: int = 0,
    **faults: Any,
) -> Iterator[Smsc]:
    """Start the SMSC and the link in front of it, on threads of their own: ESMEs connect to
    ``port`` (0: a free one), the server listens on a free port behind it."""
    smsc = Smsc(
        port or free_port(), free_port(), decide or (lambda submit: Decision()), answer_delay, **faults
    )
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            holder["stop"] = stop = asyncio.Event()
            holder["loop"] = asyncio.get_running_loop()
            await _serve(smsc, ready, stop)

        asyncio.run(main())

    thread = threading.Thread(target=run, name="smsc", daemon=True)
    thread.start()
    assert ready.wait(10), "the SMSC did not start"
    _wait_listening(smsc.server_port)
    with _Link(smsc):
        try:
            yield smsc
        finally:
            holder["loop"].call_soon_threadsafe(holder["stop"].set)
            thread.join(10)


@contextlib.contextmanager
def smsc_in_process(*, answer_delay: float = 0.0, receipt: str | None = "DELIVRD") -> Iterator[int]:
    """The SMSC in a process of its own, as a remote SMSC is to its clients (a benchmark's client
    then shares its interpreter with nothing else); yields the port ESMEs bind to. Every submit is
    accepted, with a receipt of stat ``receipt`` (``None``: no receipt)."""
    context = multiprocessing.get_context("spawn")  # not fork: this process may hold threads
    parent, child = context.Pipe()
    process = context.Process(target=_serve_in_process, args=(child, answer_delay, receipt), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the SMSC process did not start")
        yield int(parent.recv())
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


def _serve_in_process(pipe: Any, answer_delay: float, receipt: str | None) -> None:
    with running_smsc(lambda submit: Decision(receipt=receipt), answer_delay=answer_delay) as smsc:
        pipe.send(smsc.port)
        with contextlib.suppress(EOFError):
            pipe.recv()


def _wait_listening(port: int) -> None:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


# --- the link in front of the server ------------------------------------------------------------

SUBMIT_SM, DELIVER_SM, DELIVER_SM_RESP = 0x00000004, 0x00000005, 0x80000005
BINDS = (0x00000001, 0x00000002, 0x00000009)  # receiver, transmitter, transceiver
BIND_RESPS = tuple(command | 0x80000000 for command in BINDS)
ESME_RINVPASWD, ESME_RINVSYSID = 0x0000000E, 0x0000000F


def _credentials(bind: bytes) -> tuple[str, str]:
    """A bind PDU's ``system_id`` and ``password`` (its first two C-octet strings)."""
    system_id, password, *_ = [*bind[16:].split(b"\0", 2), b"", b""]
    return system_id.decode("latin-1"), password.decode("latin-1")


def _frame(sock: socket.socket) -> bytes | None:
    header = b""
    while len(header) < 4:
        part = sock.recv(4 - len(header))
        if not part:
            return None
        header += part
    (length,) = struct.unpack(">L", header)
    body = b""
    while len(body) < length - 4:
        part = sock.recv(length - 4 - len(body))
        if not part:
            return None
        body += part
    return header + body


class _Link:
    """A TCP proxy between the ESMEs and the server: it reads the ESMEs' ``deliver_sm_resp`` (acks
    a receipt, or has it delivered again when refused or left unanswered on a closed link), and
    injects the faults the Smsc asks for."""

    def __init__(self, smsc: Smsc) -> None:
        self.smsc = smsc
        self._listener = socket.create_server(("127.0.0.1", smsc.port))
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="smsc-link", daemon=True)

    def __enter__(self) -> _Link:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):  # wakes the accept() under way: nothing is accepted after
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.smsc.server_port))
            except OSError:  # the server is stopping
                client.close()
                continue
            outstanding: dict[int, tuple[str, bytes, list[Any], str, str]] = {}
            args = (client, server, outstanding)
            threading.Thread(target=self._upstream, args=args, daemon=True).start()
            threading.Thread(target=self._downstream, args=args, daemon=True).start()

    def _cut(self, client: socket.socket, server: socket.socket) -> None:
        self.smsc.dropped.set()
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _upstream(self, client: socket.socket, server: socket.socket, outstanding: dict[int, Any]) -> None:
        smsc = self.smsc
        with contextlib.suppress(OSError):
            while (frame := _frame(client)) is not None:
                command_id, status, sequence = struct.unpack(">LLL", frame[4:16])
                if command_id == DELIVER_SM_RESP:
                    with self._lock:
                        item = outstanding.pop(sequence, None)
                    if item is not None and status == 0:
                        smsc.receipts_acked.append(item[0])
                        smsc.pending_receipts -= 1
                    elif item is not None:
                        smsc.receipts_refused.append(item[0])
                        smsc.requeue(item)
                    continue
                if command_id in BINDS and smsc.accounts is not None:
                    system_id, password = _credentials(frame)
                    if smsc.accounts.get(system_id) != password:  # an error bind_*_resp has no body
                        status = ESME_RINVPASWD if system_id in smsc.accounts else ESME_RINVSYSID
                        smsc.binds_refused.append(system_id)
                        client.sendall(struct.pack(">LLLL", 16, command_id | 0x80000000, status, sequence))
                        continue
                if command_id == SUBMIT_SM:
                    with self._lock:
                        smsc.link_submits += 1
                        cut = smsc.link_submits == smsc.drop_at and not smsc.dropped.is_set()
                    if not cut or smsc.forward_dropped:
                        smsc.forwarded.append(smpp34.decode(frame).destination_addr)
                    if cut:
                        if smsc.forward_dropped:
                            server.sendall(frame)
                            time.sleep(0.3)  # the server has it, and answers into the void
                        self._cut(client, server)
                        break
                server.sendall(frame)
        self._closed(client, server, outstanding)

    def _downstream(self, client: socket.socket, server: socket.socket, outstanding: dict[int, Any]) -> None:
        with contextlib.suppress(OSError):
            while (frame := _frame(server)) is not None:
                command_id, _, sequence = struct.unpack(">LLL", frame[4:16])
                if command_id == DELIVER_SM:
                    pdu = smpp34.decode(frame)
                    receipted = next(
                        (
                            t.value.rstrip(b"\0").decode()
                            for t in pdu.tlvs
                            if t.tag == smpp34.TLV_RECEIPTED_MESSAGE_ID
                        ),
                        "?",
                    )
                    item = (
                        receipted,
                        bytes(pdu.short_message),
                        list(pdu.tlvs),
                        pdu.source_addr,
                        pdu.destination_addr,
                    )
                    with self._lock:
                        outstanding[sequence] = item
                    self.smsc._dispatched.pop(receipted, None)
                client.sendall(frame)
                if command_id in BIND_RESPS and self.smsc.garbage:
                    garbage, self.smsc.garbage = self.smsc.garbage, b""
                    client.sendall(garbage)
        self._closed(client, server, outstanding)

    def _closed(self, client: socket.socket, server: socket.socket, outstanding: dict[int, Any]) -> None:
        """Either side went away: close both; receipts not answered are delivered again."""
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            items = list(outstanding.values())
            outstanding.clear()
        for item in items:
            self.smsc.requeue(item)
