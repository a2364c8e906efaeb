"""SMS over SMPP 3.4 (an SMSC's ESME interface): binds shared by a chunk, a window of submits in
flight on each, every answer classified; and the receiver bind that reads delivery receipts.

PDUs are encoded, decoded and the binds opened with ``smpplib``; the session around them (the
window, the reader thread that matches answers to submits, enquire_link, reconnection) is here,
because the library's client is one blocking caller per connection.

**Binds and window.** A chunk opens up to ``binds`` binds to the SMSC (the connection's
``max_connections``) and keeps up to ``window`` ``submit_sm`` unanswered on each. The delivery
pool lends one transport per message in flight, so an :class:`SmppTransport` is a *lane*: its
``max_connections`` is ``binds * window``, and the lanes of one chunk share the chunk's binds
(they meet in a registry keyed by the connection). The binds open when the chunk's first lanes
need them and unbind when its last lane closes.

**Sending binds are transmitters** (``bind_mode`` ``transmitter``): an SMSC hands ``deliver_sm`` only
to receiver and transceiver binds, so every receipt (``registered_delivery`` = 1 asks for one per
message) goes to the long-lived receiver bind of the ``smsReceipts`` DAG, which acknowledges it only
once it is stored. This is Campaign's separate binds. An SMSC that only accepts transceivers may be
given ``bind_mode`` ``transceiver``: a receipt that then reaches a sending bind is answered
``ESME_RX_T_APPN`` (temporary error), so the SMSC delivers it again later, never acknowledged
without being stored.

**Text.** GSM 03.38 when the text fits it, else UCS-2; a long text goes as concatenated parts
(``messagecenter.delivery.gsm``), submitted one after the other on one bind. The delivery log keeps
the first part's message id (the receipts of the other parts then find no log: they are kept a
week in the unmatched feedback and forgotten); ``SendResult.extra["message_ids"]`` lists them all.

**A link lost with a submit unanswered** (the SMSC may or may not have taken the message): the
message is submitted again on a new bind, once, within its deadline, as Campaign does. The message
can then arrive twice; not resending could lose it, and losing an SMS is worse. A submit left
unanswered past the deadline is reported transient (the event is retried later: the same choice).
A refused later part of a long message fails or retries the whole message: a retry sends every
part again, under a new reference.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from messagecenter.core.errors import ConfigError
from messagecenter.core.providers import (
    SMPP_LIMITS,
    SMPP_PORT,
    SMPP_RECEIPT_BIND_MODES,
    SMPP_SEND_BIND_MODES,
    SMPP_WINDOW,
)
from messagecenter.core.types import Channel
from messagecenter.delivery.base import Outcome, OutgoingMessage, SendResult, truncate
from messagecenter.delivery.gsm import TooLong, encode_sms
from messagecenter.feedback.smpp import Receipt, is_receipt, parse_receipt

log = logging.getLogger(__name__)

MAX_PDU = 65_536  # larger command_length: not SMPP, the stream cannot be trusted any more
INTERFACE_VERSION = 0x34

# --- the SMPP 3.4 command_status table, as outcomes ----------------------------------------------

C = smpplib.consts
THROTTLED, QUEUE_FULL = C.SMPP_ESME_RTHROTTLED, C.SMPP_ESME_RMSGQFUL
RETRY_AFTER = {THROTTLED: 1.0, QUEUE_FULL: 10.0}  # seconds before the event is tried again
# A problem of the SMSC or of the session: worth another try later.
TRANSIENT_STATUSES = frozenset(
    {
        C.SMPP_ESME_RINVBNDSTS,
        C.SMPP_ESME_RALYBND,
        C.SMPP_ESME_RSYSERR,
        C.SMPP_ESME_RBINDFAIL,
        C.SMPP_ESME_RINVPASWD,
        C.SMPP_ESME_RINVSYSID,
        C.SMPP_ESME_RMSGQFUL,
        C.SMPP_ESME_RSUBMITFAIL,
        C.SMPP_ESME_RTHROTTLED,
        C.SMPP_ESME_RX_T_APPN,
        C.SMPP_ESME_RDELIVERYFAILURE,
        C.SMPP_ESME_RUNKNOWNERR,
    }
)
# What this message is (its addresses, its parameters): sending it again changes nothing.
PERMANENT_STATUSES = frozenset(
    {
        C.SMPP_ESME_RINVMSGLEN,
        C.SMPP_ESME_RINVCMDLEN,
        C.SMPP_ESME_RINVCMDID,
        C.SMPP_ESME_RINVPRTFLG,
        C.SMPP_ESME_RINVREGDLVFLG,
        C.SMPP_ESME_RINVSRCADR,
        C.SMPP_ESME_RINVDSTADR,
        C.SMPP_ESME_RINVSERTYP,
        C.SMPP_ESME_RINVNUMDESTS,
        C.SMPP_ESME_RINVDESTFLAG,
        C.SMPP_ESME_RINVSUBREP,
        C.SMPP_ESME_RINVESMCLASS,
        C.SMPP_ESME_RCNTSUBDL,
        C.SMPP_ESME_RINVSRCTON,
        C.SMPP_ESME_RINVSRCNPI,
        C.SMPP_ESME_RINVDSTTON,
        C.SMPP_ESME_RINVDSTNPI,
        C.SMPP_ESME_RINVSYSTYP,
        C.SMPP_ESME_RINVREPFLAG,
        C.SMPP_ESME_RINVNUMMSGS,
        C.SMPP_ESME_RINVSCHED,
        C.SMPP_ESME_RINVEXPIRY,
        C.SMPP_ESME_RINVDFTMSGID,
        C.SMPP_ESME_RX_P_APPN,
        C.SMPP_ESME_RX_R_APPN,
        C.SMPP_ESME_RINVOPTPARSTREAM,
        C.SMPP_ESME_ROPTPARNOTALLWD,
        C.SMPP_ESME_RINVPARLEN,
        C.SMPP_ESME_RMISSINGOPTPARAM,
        C.SMPP_ESME_RINVOPTPARAMVAL,
    }
)


def classify_status(status: int) -> Outcome:
    """ROK sent; the statuses of the message itself permanent; the rest, vendor codes included,
    transient (a permanent failure loses the message, a transient one costs a few tries)."""
    if status == C.SMPP_ESME_ROK:
        return Outcome.SENT
    return Outcome.PERMANENT if status in PERMANENT_STATUSES else Outcome.TRANSIENT


def describe_status(status: int) -> str:
    """``0x00000058 ESME_RTHROTTLED (Throttling error (ESME has exceeded allowed message limits))``."""
    name = next(
        (k.removeprefix("SMPP_") for k, v in vars(C).items() if k.startswith("SMPP_ESME_") and v == status),
        "vendor-specific",
    )
    return f"0x{status:08X} {name} ({C.DESCRIPTIONS.get(status, 'unknown status')})"


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmppConfig:
    """An SMSC account, as read from an Airflow connection (``mc_sms``, conn type ``smpp``).

    :param source_addr: the sender (a short code, a number or an alphanumeric name).
    :param source_addr_ton: its type of number; default 5 (alphanumeric) for a name, 1
        (international) for ``+`` and digits, 3 (network specific: a short code) for digits.
    :param source_addr_npi: its numbering plan; default 0 for a name, 1 (E.164) otherwise.
    :param enquire_link_seconds: a bind silent this long is asked ``enquire_link``; one that
        does not answer within as long again is dropped.
    :param timeout: seconds to connect and to bind.
    """

    host: str
    port: int = SMPP_PORT
    system_id: str = ""
    password: str = field(default="", repr=False)
    system_type: str = ""
    source_addr: str = ""
    source_addr_ton: int | None = None
    source_addr_npi: int | None = None
    enquire_link_seconds: float = 30.0
    timeout: float = 10.0

    def source(self) -> tuple[str, int, int]:
        """The sender's address, type of number and numbering plan."""
        addr = self.source_addr.strip()
        digits = addr.lstrip("+")
        if digits.isdigit():
            ton = 1 if addr.startswith("+") or len(digits) > 8 else 3
            npi = 1
        else:
            ton, npi = (5, 0) if addr else (0, 0)
        return (
            digits if digits.isdigit() else addr,
            ton if self.source_addr_ton is None else self.source_addr_ton,
            npi if self.source_addr_npi is None else self.source_addr_npi,
        )


def destination(address: str) -> tuple[str, int, int] | None:
    """A phone number as ``submit_sm`` takes it: digits, TON 1 (international) when it starts with
    ``+``, else 0 (unknown), NPI 1 (E.164); ``None`` when it is not a phone number."""
    kept = "".join(c for c in address.strip() if c not in " -.()/")
    digits = kept.removeprefix("+")
    if not digits.isdigit() or not 3 <= len(digits) <= 20:
        return None
    return digits, (1 if kept.startswith("+") else 0), 1


class SmppUnavailable(Exception):
    """No bind could be had (connection refused, bind refused, none allowed any more)."""


# --- one bind: a connection, its reader thread, its window --------------------------------------


class _Sequence:
    """smpplib's sequence generator, safe for the threads sharing a bind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 1

    @property
    def sequence(self) -> int:
        return self._value

    def next_sequence(self) -> int:
        with self._lock:
            self._value = self._value % 0x7FFFFFFF + 1
            return self._value


class _BadPdu(Exception):
    """A frame that is not a PDU this side can read; the stream is still in step."""

    def __init__(self, command_id: int, sequence: int, reason: str) -> None:
        super().__init__(reason)
        self.command_id, self.sequence = command_id, sequence


class _Client(smpplib.client.Client):
    """smpplib's client, reading frames with limits: a garbage length or a PDU it cannot parse is
    reported, not trusted (smpplib would wait for a gigabyte or raise anything)."""

    _socket: socket.socket | None

    def _sock(self) -> socket.socket:
        if self._socket is None:
            raise smpplib.exceptions.ConnectionError("the connection is closed")
        return self._socket

    def read_pdu(self) -> Any:
        header = self._read(4, idle_ok=True)
        (length,) = struct.unpack(">L", header)
        if not 16 <= length <= MAX_PDU:
            raise smpplib.exceptions.ConnectionError(f"garbage on the link: command_length {length}")
        raw = header + self._read(length - 4, idle_ok=False)
        command_id, _, sequence = struct.unpack(">LLL", raw[4:16])
        try:
            pdu = smpplib.smpp.parse_pdu(raw, client=self, allow_unknown_opt_params=True)
        except Exception as exc:  # smpplib raises what its parsing meets: struct.error, IndexError...
            raise _BadPdu(command_id, sequence, f"{type(exc).__name__}: {exc}") from exc
        if pdu is None:
            raise _BadPdu(command_id, sequence, f"unknown command_id 0x{command_id:08X}")
        if pdu.status == C.SMPP_ESME_ROK and pdu.command in C.STATE_SETTERS:
            self.state = C.STATE_SETTERS[pdu.command]
        return pdu

    def _read(self, size: int, *, idle_ok: bool) -> bytes:
        """Exactly ``size`` bytes; ``socket.timeout`` only when nothing at all came and ``idle_ok``."""
        parts, got, stalls = [], 0, 0
        while got < size:
            try:
                part = self._sock().recv(size - got)
            except TimeoutError:
                if got == 0 and idle_ok:
                    raise
                stalls += 1
                if stalls > 1:
                    raise smpplib.exceptions.ConnectionError("the SMSC stopped inside a PDU") from None
                continue  # inside a frame: the rest is on its way
            except OSError as exc:
                raise smpplib.exceptions.ConnectionError(str(exc)) from exc
            if not part:
                raise smpplib.exceptions.ConnectionError("the SMSC closed the connection")
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def write(self, data: bytes) -> None:
        """Send an encoded PDU whatever smpplib thinks of the session's state (answers too)."""
        try:
            self._sock().sendall(data)
        except (OSError, AttributeError) as exc:  # AttributeError: the socket is already gone
            raise smpplib.exceptions.ConnectionError(str(exc)) from exc

    def set_read_timeout(self, seconds: float) -> None:
        self._sock().settimeout(seconds)

    def close_now(self) -> None:
        """Close at once; a reader blocked in ``recv`` wakes up (``close`` alone would not wake it)."""
        sock, self._socket = self._socket, None
        self.state = C.SMPP_CLIENT_STATE_CLOSED
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class _Pending:
    __slots__ = ("done", "lost", "message_id", "status")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.status: int | None = None
        self.message_id: str | None = None
        self.lost: str | None = None


@dataclass(frozen=True)
class Inbound:
    """A ``deliver_sm`` receipt read on a receiver bind, to acknowledge once it is stored."""

    receipt: Receipt
    bind: _Bind
    sequence: int

    def ack(self, status: int = C.SMPP_ESME_ROK) -> None:
        self.bind.answer("deliver_sm_resp", self.sequence, status)


DeliverHandler = Callable[["_Bind", Any], None]


class _Bind:
    """One bind: its socket, a reader thread that matches each answer to its submit, and a window.

    Writers (the lanes' submits, the reader's own answers) share one lock; only the reader reads.
    When the link is lost every unanswered submit is told so at once.
    """

    def __init__(
        self, config: SmppConfig, mode: str, window: int, name: str, on_deliver: DeliverHandler | None
    ) -> None:
        self.config, self.mode, self.name = config, mode, name
        self.alive = False
        self.error: str | None = None
        self.submitted = 0
        self.smsc_system_id = ""  # what the SMSC calls itself in its bind answer
        self._on_deliver = on_deliver
        self._client: _Client | None = None
        self._write = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._window = threading.Semaphore(max(1, window))
        self._unbound = threading.Event()
        self._closing = False
        self._enquired_at: float | None = None
        self._reader: threading.Thread | None = None

    def open(self) -> None:
        """Connect and bind; :class:`SmppUnavailable` says why not."""
        config = self.config
        client = _Client(
            config.host,
            config.port,
            timeout=config.timeout,
            sequence_generator=_Sequence(),
            logger_name=f"{__name__}.pdu",
            allow_unknown_opt_params=True,
        )
        try:
            client.connect()
            answer = getattr(client, f"bind_{self.mode}")(
                system_id=config.system_id,
                password=config.password,
                system_type=config.system_type,
                interface_version=INTERFACE_VERSION,
            )
        except smpplib.exceptions.PDUError as exc:
            client.close_now()
            status = exc.args[1] if len(exc.args) > 1 else C.SMPP_ESME_RBINDFAIL
            raise SmppUnavailable(f"SMPP {self.name!r}: bind refused: {describe_status(status)}") from exc
        except (smpplib.exceptions.ConnectionError, _BadPdu, OSError) as exc:
            client.close_now()
            where = f"{config.host}:{config.port}"
            raise SmppUnavailable(
                f"SMPP {self.name!r}: cannot bind to {where}: {exc or 'no answer'}"
            ) from exc
        system_id = getattr(answer, "system_id", None) or b""
        self.smsc_system_id = system_id.decode("latin-1") if isinstance(system_id, bytes) else str(system_id)
        client.set_read_timeout(config.enquire_link_seconds)
        self._client, self.alive = client, True
        self._reader = threading.Thread(target=self._read_loop, name="mc-smpp-reader", daemon=True)
        self._reader.start()
        log.debug("SMPP %r: bound as %s", self.name, self.mode)

    # -- writing ------------------------------------------------------------------------------

    def submit(self, fields: dict[str, Any], deadline: float) -> tuple[int, _Pending] | None:
        """Send a ``submit_sm`` once the window has room; ``None`` when the deadline passed first.

        :raises smpplib.exceptions.ConnectionError: the link is lost.
        :raises ValueError: the fields make no ``submit_sm`` (a sender that is not Latin-1...).
        """
        if not self._window.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return None
        pending = _Pending()
        with self._write:
            client = self._client
            if not self.alive or client is None:
                self._window.release()
                raise smpplib.exceptions.ConnectionError(self.error or "the bind is closed")
            try:
                pdu = smpplib.smpp.make_pdu("submit_sm", client=client, **fields)
                data = pdu.generate()
            except Exception as exc:
                self._window.release()
                raise ValueError(f"cannot encode the submit_sm: {type(exc).__name__}: {exc}") from exc
            with self._pending_lock:
                self._pending[pdu.sequence] = pending
            try:
                client.write(data)
            except smpplib.exceptions.ConnectionError as exc:
                self._lost(f"link lost while sending: {exc}")
                raise
        self.submitted += 1
        return pdu.sequence, pending

    def wait(self, sequence: int, pending: _Pending, deadline: float) -> bool:
        """Wait for the answer; ``False`` when none came before the deadline (then none is awaited)."""
        if pending.done.wait(max(0.0, deadline - time.monotonic())):
            return True
        self._resolve(sequence)
        return pending.done.is_set()

    def answer(self, command: str, sequence: int, status: int = C.SMPP_ESME_ROK) -> None:
        """Send a response PDU (``deliver_sm_resp``, ``generic_nack``...); nothing if the link is gone."""
        client = self._client
        if client is None or not self.alive:
            return
        pdu = smpplib.smpp.make_pdu(command, client=client, status=status)
        pdu.sequence = sequence  # smpplib would keep the client's own sequence for a keyword
        self._send(pdu)

    def _send(self, pdu: Any) -> None:
        with self._write:
            client = self._client
            if client is None:
                return
            try:
                client.write(pdu.generate())
            except smpplib.exceptions.ConnectionError as exc:
                self._lost(f"link lost while sending: {exc}")

    def close(self, *, polite: bool = True, timeout: float = 2.0) -> None:
        """Unbind (waiting a little for the answer), then close; unanswered submits are told so."""
        self._closing = True
        client = self._client
        if polite and self.alive and client is not None:
            self._send(smpplib.smpp.make_pdu("unbind", client=client))
            self._unbound.wait(timeout)
        self._lost("the bind was closed", quiet=True)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)

    # -- reading ------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        while self.alive and self._client is not None:
            try:
                pdu = self._client.read_pdu()
            except TimeoutError:
                if self._enquired_at is not None:
                    self._lost(f"no answer to enquire_link in {self.config.enquire_link_seconds:g} s")
                    return
                self._enquired_at = time.monotonic()
                self._send(smpplib.smpp.make_pdu("enquire_link", client=self._client))
                continue
            except _BadPdu as bad:
                log.warning("SMPP %r: unreadable PDU (%s), answered generic_nack", self.name, bad)
                if not bad.command_id & 0x80000000:  # a request: it gets an answer
                    self.answer("generic_nack", bad.sequence, C.SMPP_ESME_RINVCMDID)
                continue
            except (smpplib.exceptions.ConnectionError, OSError, AttributeError) as exc:
                self._lost(f"link lost: {exc}")
                return
            self._enquired_at = None  # anything the SMSC says shows it is there
            try:
                self._dispatch(pdu)
            except Exception:  # a bug in a handler must not leave the submits waiting forever
                log.exception("SMPP %r: error handling %s", self.name, pdu.command)
                self._lost("internal error while reading")
                return

    def _dispatch(self, pdu: Any) -> None:
        command = pdu.command
        if command in ("submit_sm_resp", "generic_nack"):
            self._resolve(pdu.sequence, pdu)
        elif command == "deliver_sm":
            if self._on_deliver is not None:
                self._on_deliver(self, pdu)
            else:  # a receipt reaching a sending transceiver: the SMSC keeps it and tries again
                self.answer("deliver_sm_resp", pdu.sequence, C.SMPP_ESME_RX_T_APPN)
        elif command == "enquire_link":
            self.answer("enquire_link_resp", pdu.sequence)
        elif command == "unbind":
            self.answer("unbind_resp", pdu.sequence)
            self._lost("the SMSC unbound")
        elif command == "unbind_resp":
            self._unbound.set()
            if self._closing:
                self.alive = False
        elif command in ("enquire_link_resp", "deliver_sm_resp", "data_sm_resp"):
            pass
        elif not pdu.is_response():
            self.answer("generic_nack", pdu.sequence, C.SMPP_ESME_RINVCMDID)

    def _resolve(self, sequence: int, pdu: Any = None) -> None:
        with self._pending_lock:
            pending = self._pending.pop(sequence, None)
        if pending is None:
            if pdu is not None:
                log.warning(
                    "SMPP %r: %s (status 0x%X) answers no submit awaited (sequence %s)",
                    self.name,
                    pdu.command,
                    pdu.status,
                    sequence,
                )
            return
        self._window.release()
        if pdu is not None:
            pending.status = int(pdu.status)
            raw_id = getattr(pdu, "message_id", None)
            if isinstance(raw_id, bytes):
                raw_id = raw_id.decode("latin-1")
            pending.message_id = raw_id or None
            pending.done.set()

    def _lost(self, reason: str, *, quiet: bool = False) -> None:
        """The link is gone: close it, and tell every submit still waiting."""
        was_alive, self.alive = self.alive, False
        self._unbound.set()  # nothing more to wait for
        if self.error is None:
            self.error = reason
        if was_alive and not quiet and not self._closing:
            log.warning("SMPP %r: %s", self.name, reason)
        client, self._client = self._client, None
        if client is not None:
            client.close_now()
        with self._pending_lock:
            waiting, self._pending = self._pending, {}
        for pending in waiting.values():
            pending.lost = reason
            self._window.release()
            pending.done.set()


def try_bind(config: SmppConfig, *, name: str, mode: str = SMPP_SEND_BIND_MODES[0]) -> str:
    """Bind to the SMSC as ``mode`` and unbind at once, submitting nothing: whether the account may
    bind (the connection form's "Test" button). Returns the SMSC's ``system_id`` (from its answer).

    :raises SmppUnavailable: no connection, or the bind refused (with the SMSC's status).
    """
    bind = _Bind(config, mode, 1, name, None)  # a receipt reaching a transceiver: kept by the SMSC
    bind.open()
    bind.close()
    return bind.smsc_system_id


# --- the binds a chunk shares -------------------------------------------------------------------


class _Slot:
    """One of a chunk's binds, and whether it may be (re)opened: once at first, then again only
    after a message went through on it, so a dead SMSC costs one attempt per bind and chunk."""

    def __init__(self) -> None:
        self.bind: _Bind | None = None
        self.lock = threading.Lock()
        self.may_connect = True
        self.error: str | None = None


class _BindGroup:
    def __init__(self, config: SmppConfig, name: str, binds: int, window: int, mode: str) -> None:
        self.config, self.name, self.window, self.mode = config, name, window, mode
        self.slots = [_Slot() for _ in range(max(1, binds))]
        self.lanes = 0
        self.refs = 0
        self.opened = 0

    def bind_for(self, index: int) -> _Bind:
        """A live bind: the lane's own, (re)opened if allowed, else any other live one."""
        slot = self.slots[index]
        bind = slot.bind
        if bind is not None and bind.alive:
            return bind
        with slot.lock:
            bind = slot.bind
            if bind is not None and bind.alive:
                return bind
            if slot.may_connect:
                slot.may_connect = False
                bind = _Bind(self.config, self.mode, self.window, self.name, None)
                try:
                    bind.open()
                except SmppUnavailable as exc:
                    slot.error = str(exc)
                    log.warning("%s", exc)
                else:
                    slot.bind, slot.error = bind, None
                    self.opened += 1
                    if self.opened > len(self.slots):
                        log.info("SMPP %r: bind %s opened again", self.name, index)
                    return bind
        for other in self.slots:
            if other.bind is not None and other.bind.alive:
                return other.bind
        raise SmppUnavailable(slot.error or f"SMPP {self.name!r}: the bind was lost ({self._why()})")

    def _why(self) -> str:
        return "; ".join(s.bind.error for s in self.slots if s.bind is not None and s.bind.error) or "closed"

    def went_through(self, bind: _Bind) -> None:
        for slot in self.slots:
            if slot.bind is bind:
                slot.may_connect = True

    def close(self) -> None:
        for slot in self.slots:
            if slot.bind is not None:
                slot.bind.close()


_GROUPS: dict[tuple[str, SmppConfig, int, int, str], _BindGroup] = {}
_GROUPS_LOCK = threading.Lock()


def _join(name: str, config: SmppConfig, binds: int, window: int, mode: str) -> tuple[_BindGroup, int]:
    key = (name, config, binds, window, mode)
    with _GROUPS_LOCK:
        group = _GROUPS.get(key)
        if group is None:
            group = _GROUPS[key] = _BindGroup(config, name, binds, window, mode)
        group.refs += 1
        lane = group.lanes
        group.lanes += 1
    return group, lane % len(group.slots)


def _leave(group: _BindGroup) -> None:
    with _GROUPS_LOCK:
        group.refs -= 1
        last = group.refs == 0
        if last:
            for key, value in list(_GROUPS.items()):
                if value is group:
                    del _GROUPS[key]
    if last:
        group.close()


# --- the transport ------------------------------------------------------------------------------


class SmppTransport:
    """Send SMS through an SMSC; one instance is one lane (one message in flight) of a chunk.

    ``with transport:`` reads the SMSC's configuration and joins the chunk's binds (opened when a
    message needs one); leaving it unbinds them with the chunk's last lane. If the configuration
    cannot be read, or no bind can be had, nothing is raised: ``send`` answers ``TRANSIENT`` with
    the reason and the events are retried later.

    :param read_config: returns the SMSC account; called once per lane and chunk.
    :param name: the provider's name in logs and errors (its connection id).
    :param binds: binds a chunk opens at most (the connection's ``max_connections``).
    :param window: ``submit_sm`` unanswered at once on each bind.
    :param deadline: most seconds for one message, window wait, answer and resend included.
    :param max_rate: the provider's limit in messages per second, across all workers (or none).
    :param bind_mode: ``transmitter`` (receipts go to the receiver bind of ``smsReceipts``) or
        ``transceiver``.
    """

    def __init__(
        self,
        read_config: Callable[[], SmppConfig],
        *,
        name: str,
        binds: int = SMPP_LIMITS.max_connections,
        window: int = SMPP_WINDOW,
        deadline: float = SMPP_LIMITS.deadline,
        max_rate: float | None = None,
        bind_mode: str = SMPP_SEND_BIND_MODES[0],
    ) -> None:
        if bind_mode not in SMPP_SEND_BIND_MODES:
            raise ValueError(f"bind_mode must be transmitter or transceiver, not {bind_mode!r}")
        self.read_config = read_config
        self.name = name
        self.binds = max(1, int(binds))
        self.window = max(1, int(window))
        self.deadline = deadline
        self.max_rate = max_rate
        self.bind_mode = bind_mode
        self.max_connections = self.binds * self.window
        self._group: _BindGroup | None = None
        self._slot = 0
        self._error: str | None = None

    def __enter__(self) -> SmppTransport:
        self._error = None
        try:
            config = self.read_config()
        except ConfigError as exc:
            self._error = str(exc)
            log.warning("SMPP transport %r: %s", self.name, exc)
            return self
        self._group, self._slot = _join(self.name, config, self.binds, self.window, self.bind_mode)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        group, self._group = self._group, None
        if group is not None:
            _leave(group)

    @property
    def binds_opened(self) -> int:
        """Binds the chunk opened so far (reconnections included), for tests and metrics."""
        return self._group.opened if self._group is not None else 0

    def send(self, message: OutgoingMessage) -> SendResult:
        """Submit one SMS (every part of it); never raises for a delivery problem."""
        group = self._group
        if group is None:
            error = self._error or "SmppTransport used outside `with transport:`"
            return SendResult(Outcome.TRANSIENT, error=truncate(error))
        if message.channel != Channel.SMS:
            return SendResult(Outcome.PERMANENT, error=f"channel {message.channel} is not sent over SMPP")
        to = destination(message.address)
        if to is None:
            return SendResult(Outcome.PERMANENT, error=truncate(f"not a phone number: {message.address!r}"))
        try:
            sms = encode_sms(message.text or "", secrets.randbelow(256))
        except TooLong as exc:
            return SendResult(Outcome.PERMANENT, error=str(exc))
        source, source_ton, source_npi = group.config.source()
        fields = {
            "source_addr": source,
            "source_addr_ton": source_ton,
            "source_addr_npi": source_npi,
            "destination_addr": to[0],
            "dest_addr_ton": to[1],
            "dest_addr_npi": to[2],
            "esm_class": sms.esm_class,
            "data_coding": sms.data_coding,
            "registered_delivery": 1,  # a receipt for the final outcome, success or failure
        }
        deadline = time.monotonic() + self.deadline
        resent = False
        while True:
            try:
                bind = group.bind_for(self._slot)
            except SmppUnavailable as exc:
                return SendResult(Outcome.TRANSIENT, error=truncate(str(exc)))
            result = self._submit(bind, fields, sms.parts, deadline, message.event_id)
            if result is not None:
                if result.outcome is Outcome.SENT:
                    group.went_through(bind)
                    result.extra["encoding"] = sms.encoding
                return result
            if resent or time.monotonic() >= deadline:
                error = f"SMPP {self.name!r}: link lost before the SMSC answered ({bind.error})"
                return SendResult(Outcome.TRANSIENT, error=truncate(error))
            resent = True  # see the module docstring: it may arrive twice, it is not lost
            log.warning(
                "Event %s: SMPP link lost before the SMSC answered (%s); submitting it again",
                message.event_id,
                bind.error,
            )

    def _submit(
        self, bind: _Bind, fields: dict[str, Any], parts: list[bytes], deadline: float, event_id: int
    ) -> SendResult | None:
        """Submit the parts in turn; ``None`` when the link was lost before every part was answered."""
        ids: list[str] = []
        for number, part in enumerate(parts, 1):
            try:
                submitted = bind.submit({**fields, "short_message": part}, deadline)
            except smpplib.exceptions.ConnectionError:
                return None
            except ValueError as exc:
                return SendResult(Outcome.PERMANENT, error=truncate(f"SMPP {self.name!r}: {exc}"))
            if submitted is None:
                return self._in_doubt("no room in the window", number, len(parts))
            sequence, pending = submitted
            if not bind.wait(sequence, pending, deadline):
                return self._in_doubt("no submit_sm_resp", number, len(parts))
            if pending.lost is not None:
                return None
            status = pending.status or 0
            if status != C.SMPP_ESME_ROK:
                return self._refused(status, number, len(parts), event_id)
            ids.append(pending.message_id or "")
        answer = f"submit_sm_resp message_id {ids[0]}" + (f" ({len(parts)} parts)" if len(parts) > 1 else "")
        return SendResult(
            Outcome.SENT,
            message_id=ids[0] or None,
            provider_answer=answer,
            extra={"parts": len(parts), "message_ids": ids},
        )

    def _in_doubt(self, what: str, number: int, total: int) -> SendResult:
        part = f" for part {number} of {total}" if total > 1 else ""
        error = f"SMPP {self.name!r}: {what}{part} within the deadline of {self.deadline:g} s"
        return SendResult(Outcome.TRANSIENT, error=error)

    def _refused(self, status: int, number: int, total: int, event_id: int) -> SendResult:
        outcome = classify_status(status)
        answer = describe_status(status)
        part = f" (part {number} of {total})" if total > 1 else ""
        extra: dict[str, Any] = {"command_status": status}
        if status in RETRY_AFTER:
            extra["retry_after"] = RETRY_AFTER[status]
        log.debug("Event %s: submit_sm refused %s -> %s", event_id, answer, outcome.value)
        return SendResult(
            outcome, provider_answer=truncate(answer), error=truncate(f"SMPP {answer}{part}"), extra=extra
        )


# --- the receiver -------------------------------------------------------------------------------


@dataclass
class ReceiverCounts:
    receipts: int = 0
    unreadable: int = 0
    not_receipts: int = 0
    binds: int = 0


class SmppReceiver:
    """The bind that reads delivery receipts for ``smsReceipts``: they are handed out in batches
    and acknowledged (``deliver_sm_resp``) only when the caller says the batch is stored.

    A ``deliver_sm`` that is not a receipt (a mobile's SMS) and a receipt that names no message are
    acknowledged at once and logged: there is nothing to store. A lost link is bound again, at most
    every ``retry_seconds``; receipts read on it and not acknowledged are delivered again by the
    SMSC, and applying a receipt twice changes nothing.

    :param read_config: returns the SMSC account.
    :param mode: ``receiver`` or ``transceiver`` (some SMSCs only accept the latter).
    """

    def __init__(
        self,
        read_config: Callable[[], SmppConfig],
        *,
        name: str,
        mode: str = SMPP_RECEIPT_BIND_MODES[0],
        retry_seconds: float = 5.0,
    ) -> None:
        if mode not in SMPP_RECEIPT_BIND_MODES:
            raise ValueError(f"receiver bind mode must be receiver or transceiver, not {mode!r}")
        self.read_config = read_config
        self.name = name
        self.mode = mode
        self.retry_seconds = retry_seconds
        self.counts = ReceiverCounts()
        self._config: SmppConfig | None = None
        self._bind: _Bind | None = None
        self._inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self._next_try = 0.0
        self.error: str | None = None

    def __enter__(self) -> SmppReceiver:
        self._config = self.read_config()  # a ConfigError fails the task: nothing to read from
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        bind, self._bind = self._bind, None
        if bind is not None:
            bind.close()  # receipts read but not acknowledged are delivered again by the SMSC

    def _on_deliver(self, bind: _Bind, pdu: Any) -> None:
        if not is_receipt(int(pdu.esm_class or 0)):
            self.counts.not_receipts += 1
            log.info("SMPP %r: a message from %s that is not a receipt, ignored", self.name, pdu.source_addr)
            bind.answer("deliver_sm_resp", pdu.sequence)
            return
        receipt = parse_receipt(
            pdu.short_message,
            receipted_message_id=getattr(pdu, "receipted_message_id", None),
            message_state=getattr(pdu, "message_state", None),
        )
        if receipt is None:
            self.counts.unreadable += 1
            log.warning(
                "SMPP %r: unreadable receipt acknowledged and dropped: %r", self.name, pdu.short_message
            )
            bind.answer("deliver_sm_resp", pdu.sequence)
            return
        self.counts.receipts += 1
        self._inbox.put(Inbound(receipt, bind, pdu.sequence))

    def _ensure_bound(self) -> bool:
        if self._bind is not None and self._bind.alive:
            return True
        if self._config is None or time.monotonic() < self._next_try:
            return False
        self._next_try = time.monotonic() + self.retry_seconds
        bind = _Bind(self._config, self.mode, 1, self.name, self._on_deliver)
        try:
            bind.open()
        except SmppUnavailable as exc:
            self.error = str(exc)
            log.warning("%s", exc)
            return False
        self._bind, self.error = bind, None
        self.counts.binds += 1
        return True

    def next_batch(self, max_items: int, wait: float) -> list[Inbound]:
        """Up to ``max_items`` receipts, waiting at most ``wait`` seconds for the first."""
        bound = self._ensure_bound()
        batch: list[Inbound] = []
        try:
            batch.append(self._inbox.get(timeout=wait if bound else min(wait, 0.2)))
        except queue.Empty:
            if not bound:
                time.sleep(max(0.0, wait - 0.2))
            return batch
        while len(batch) < max_items:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return [item for item in batch if item.bind.alive]  # the others come again

    @staticmethod
    def acknowledge(batch: list[Inbound], *, stored: bool = True) -> None:
        """Answer each receipt: ROK once stored; else ``ESME_RX_T_APPN`` (the SMSC tries again)."""
        status = C.SMPP_ESME_ROK if stored else C.SMPP_ESME_RX_T_APPN
        for item in batch:
            item.ack(status)
