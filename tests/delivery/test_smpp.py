"""SMS over SMPP through the delivery pipeline, against an SMSC we did not write (smpp34's server,
devstack/smsc.py): what the SMSC receives, the receipts and what they do to the logs, faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from devstack.smsc import REDELIVER_SECONDS, Decision, Smsc, Submit, receipt_text, running_smsc

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import ProcessingSettings, get_settings
from messagecenter.delivery.gsm import (
    DATA_CODING_GSM,
    DATA_CODING_UCS2,
    ESM_CLASS_UDHI,
    decode_sms,
    encode_sms,
    sms_segments,
    static_text,
)
from messagecenter.delivery.smpp import SmppReceiver, SmppTransport, classify_status
from messagecenter.execution.receipts import drain_receipts
from messagecenter.feedback.apply import rematch_unmatched
from messagecenter.feedback.rules import qualifier
from messagecenter.feedback.smpp import parse_receipt, receipt_feedback
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates

SETTINGS = ProcessingSettings(retry_backoff_seconds=0, max_tries=3, deliver_chunk=100, min_shard_size=1000)
TEMPLATES = {"templates": [{"event_type": "OTP", "channel": "sms", "text": "{{ ctx.text }}"}]}
SENT, FAILED = 2, 4
THROTTLED, QUEUE_FULL = 0x58, 0x14


@contextmanager
def smsc_connection(
    monkeypatch: pytest.MonkeyPatch, decide: Callable[[Submit], Decision] | None = None, **options: Any
) -> Iterator[Smsc]:
    extra = options.pop("extra", '{"source_addr": "MCenter", "window": 5, "max_connections": 2}')
    with running_smsc(decide, **options) as smsc:
        uri = f"smpp://esme:secret@127.0.0.1:{smsc.port}?__extra__={extra}"
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", uri)
        yield smsc


def send(conn: psycopg.Connection[Any], texts: dict[str, str]) -> dict[str, int]:
    """Push one SMS event per phone number and run the batch workflow once; phone -> event id."""
    publish_templates(conn, parse_templates(TEMPLATES))
    events = [
        event_from_dict({"type": "OTP", "channel": "sms", "mobile_phone": p, "ctx": {"text": t}})
        for p, t in texts.items()
    ]
    ids = store.insert_events(conn, "batch", events, instance_id=1).ids
    deliver(conn)
    return dict(zip(texts, ids, strict=True))


def deliver(conn: psycopg.Connection[Any]) -> None:
    for shard in execution.split_queue(conn, "batch", SETTINGS):
        execution.link_templates(conn, shard)
        execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)
    execution.update_events_status(conn)


def log_of(conn: psycopg.Connection[Any], event_id: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT l.status, l.message_id, l.delivery, l.error, e.status, l.feedback_text, l.tries "
        "FROM mc.batch_event e LEFT JOIN mc.delivery_log l ON l.event_id = e.id WHERE e.id = %s",
        (event_id,),
    ).fetchone()
    assert row is not None
    keys = ("status", "message_id", "delivery", "error", "event_status", "feedback_text", "tries")
    return dict(zip(keys, row, strict=True))


def read_receipts(conn: psycopg.Connection[Any], smsc: Smsc, seconds: float = 1.5) -> Any:
    """What smsReceipts's task does, for a short lifetime."""
    from messagecenter.airflow.transports import smpp_receiver

    dsn = conn.info.dsn
    return drain_receipts(
        smpp_receiver(),
        lambda: psycopg.connect(dsn, autocommit=True),
        get_settings().feedback,
        lifetime_seconds=seconds,
    )


# --- text, receipts: units ----------------------------------------------------------------------


def test_segments_and_encoding() -> None:
    assert sms_segments("a" * 160).describe() == "GSM 03.38, 1 segment (160 chars)"
    assert sms_segments("a" * 161).describe() == "GSM 03.38, 2 segments (153 chars each)"
    assert sms_segments("€" * 80).segments == 1  # the extension table: two septets each
    assert sms_segments("€" * 81).segments == 2
    assert sms_segments("Привет" * 12).describe() == "UCS-2, 2 segments (67 chars each)"
    assert static_text("Code {{ ctx.code }}{% if x %}!{% endif %}") == "Code !"
    long = encode_sms("a" * 152 + "€" * 5, reference=9)  # an escape never split across parts
    assert [p[:6] for p in long.parts] == [b"\x05\x00\x03\x09\x02\x01", b"\x05\x00\x03\x09\x02\x02"]
    assert len(long.parts[0]) == 6 + 152
    assert "".join(decode_sms(p[6:], long.data_coding) for p in long.parts) == "a" * 152 + "€" * 5
    emoji = encode_sms("😀" * 40, reference=1)  # surrogate pairs: 80 code units, 2 parts
    assert emoji.data_coding == DATA_CODING_UCS2
    assert all(len(p[6:]) % 4 == 0 for p in emoji.parts)


def test_receipt_parsing_ignores_what_the_sms_text_says() -> None:
    text = "id:0042 sub:001 dlvrd:000 submit date:2501011200 done date:2501011201 stat:UNDELIV err:012 "
    forged = text + "text:id:999 stat:DELIVRD"
    receipt = parse_receipt(forged.encode())
    assert receipt is not None
    assert (receipt.message_id, receipt.stat, receipt.err) == ("0042", "UNDELIV", "012")
    with_tlvs = parse_receipt(b"garbled", receipted_message_id=b"ab12\0", message_state=2)
    assert with_tlvs is not None
    assert (with_tlvs.message_id, with_tlvs.stat) == ("ab12", "DELIVRD")
    assert parse_receipt(b"\x00\xff garbage") is None
    feedback = receipt_feedback(receipt)
    assert feedback is not None
    assert feedback.kind == "failed"
    assert feedback.event_key == "0042:UNDELIV"
    assert feedback.text is not None
    assert feedback.text.startswith("SR UNDELIV 012|MESSAGE=id:0042")
    assert "999" not in feedback.text
    enroute = parse_receipt(receipt_text("7", "ENROUTE").encode())
    assert enroute is not None
    assert receipt_feedback(enroute) is None


def test_status_table() -> None:
    assert classify_status(0).value == "sent"
    assert classify_status(THROTTLED).value == "transient"
    assert classify_status(QUEUE_FULL).value == "transient"
    assert classify_status(0x0B).value == "permanent"  # ESME_RINVDSTADR
    assert classify_status(0x0401).value == "transient"  # vendor-specific: tried again


# --- the pipeline against the SMSC --------------------------------------------------------------


def test_gsm_ucs2_and_long_texts_as_the_smsc_receives_them(conn, monkeypatch) -> None:
    long = "Votre code: " + "x" * 300
    with smsc_connection(monkeypatch) as smsc:
        ids = send(
            conn, {"+33600000001": "Hello {world} €5", "+33600000002": "Привет, мир", "+33600000003": long}
        )
    by_dest: dict[str, list[Submit]] = {}
    for s in smsc.submits:
        by_dest.setdefault(s.destination_addr, []).append(s)
    (gsm,) = by_dest["33600000001"]
    assert (gsm.data_coding, gsm.esm_class, gsm.registered_delivery) == (DATA_CODING_GSM, 0, 1)
    assert decode_sms(gsm.short_message, gsm.data_coding) == "Hello {world} €5"
    assert (gsm.source_addr, gsm.source_addr_ton, gsm.source_addr_npi) == ("MCenter", 5, 0)
    assert (gsm.dest_addr_ton, gsm.dest_addr_npi) == (1, 1)
    (ucs2,) = by_dest["33600000002"]
    assert ucs2.data_coding == DATA_CODING_UCS2
    assert ucs2.short_message.decode("utf-16-be") == "Привет, мир"
    parts = by_dest["33600000003"]
    assert len(parts) == 3
    assert {p.esm_class for p in parts} == {ESM_CLASS_UDHI}
    assert [p.short_message[5] for p in parts] == [1, 2, 3]
    assert len({p.short_message[3] for p in parts}) == 1  # one reference
    assert "".join(decode_sms(p.short_message[6:], 0) for p in parts) == long
    for phone, event_id in ids.items():
        log = log_of(conn, event_id)
        assert log["status"] == SENT
        first = next(s for s in smsc.submits if s.destination_addr == phone.lstrip("+"))
        assert log["message_id"] == first.message_id  # the first part's id


def test_receipts_set_the_delivery_log(conn, monkeypatch) -> None:
    def decide(submit: Submit) -> Decision:
        return Decision(receipt="UNDELIV" if submit.destination_addr.endswith("2") else "DELIVRD", err="012")

    with smsc_connection(monkeypatch, decide) as smsc:
        ids = send(conn, {"+33600000001": "ok", "+33600000002": "lost"})
        assert smsc.receipts_acked == []  # nothing acknowledged before stored
        counts = read_receipts(conn, smsc)
        smsc.wait_for(lambda: len(smsc.receipts_acked) == 2)
    assert counts.received == 2
    assert counts.applied == 2
    execution.update_events_status(conn)
    delivered, failed = log_of(conn, ids["+33600000001"]), log_of(conn, ids["+33600000002"])
    assert (delivered["status"], delivered["delivery"], delivered["event_status"]) == (SENT, 1, SENT)
    assert (failed["status"], failed["delivery"], failed["event_status"]) == (FAILED, 2, FAILED)
    assert failed["feedback_text"].startswith("SR UNDELIV 012|MESSAGE=id:")


def test_unknown_and_early_receipts_are_kept_then_matched(conn, monkeypatch) -> None:
    with smsc_connection(monkeypatch, lambda s: Decision(receipt="DELIVRD", receipt_first=True)) as smsc:
        smsc.send_receipt("777000777", "UNDELIV")  # nobody sent it
        reader_done: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: reader_done.setdefault("c", read_receipts(conn, smsc, 4)))
        reader.start()  # the receipt comes before the submit answer is stored: kept unmatched
        time.sleep(0.5)
        ids = send(conn, {"+33600000009": "early"})
        reader.join()
        smsc.wait_for(lambda: len(smsc.receipts_acked) == 2)
    counts = reader_done["c"]
    assert (counts.received, counts.unmatched, counts.rematched) == (2, 2, 1)
    # The reader matched the early one again once its delivery log was stored, within the second.
    assert log_of(conn, ids["+33600000009"])["delivery"] == 1
    left = conn.execute("SELECT message_id, kind FROM mc.feedback_unmatched").fetchall()
    assert left == [("777000777", "failed")]  # kept for updateEventsStatus, which matches what is left
    applied = rematch_unmatched(conn, qualify=qualifier(conn), rules=get_settings().feedback).applied
    assert applied == 0
    assert conn.execute("SELECT count(*) FROM mc.feedback_unmatched").fetchone() == (1,)


def test_no_receipt_stays_sent(conn, monkeypatch) -> None:
    with smsc_connection(monkeypatch, lambda s: Decision(receipt=None)) as smsc:
        ids = send(conn, {"+33600000001": "silence"})
        counts = read_receipts(conn, smsc, 1)
    assert counts.received == 0
    log = log_of(conn, ids["+33600000001"])
    assert (log["status"], log["delivery"], log["event_status"]) == (SENT, None, SENT)


def test_throttled_is_retried_later_not_failed(conn, monkeypatch) -> None:
    refused: list[str] = []

    def decide(submit: Submit) -> Decision:
        if submit.destination_addr not in refused:
            refused.append(submit.destination_addr)
            return Decision(status=THROTTLED)
        return Decision()

    with smsc_connection(monkeypatch, decide) as smsc:
        ids = send(conn, {"+33600000001": "a", "+33600000002": "b"})
        for event_id in ids.values():
            assert log_of(conn, event_id)["status"] is None  # no final log: a retry is due
        due = conn.execute(
            "SELECT next_try > now() FROM mc.batch_event WHERE id = %s", (ids["+33600000001"],)
        )
        assert due.fetchone() == (True,)  # not before retry_after (1 s)
        time.sleep(1.1)
        deliver(conn)
    assert {log_of(conn, i)["status"] for i in ids.values()} == {SENT}
    assert smsc.by_destination() == {"33600000001": 2, "33600000002": 2}


ONE_AT_A_TIME = '{"source_addr": "MCenter", "window": 1, "max_connections": 1}'


def test_a_dropped_bind_mid_burst_loses_nothing_and_doubles_nothing(conn, monkeypatch) -> None:
    """Cut before the SMSC got the submit: it is sent again on a new bind, once."""
    phones = {f"+3360000{n:04d}": f"m{n}" for n in range(20)}
    with smsc_connection(monkeypatch, drop_at=8, extra=ONE_AT_A_TIME) as smsc:
        ids = send(conn, phones)
        assert smsc.dropped.is_set()
    assert smsc.by_destination() == {p.lstrip("+"): 1 for p in phones}
    assert {log_of(conn, i)["status"] for i in ids.values()} == {SENT}


def test_a_drop_with_a_full_window_resends_only_what_was_in_doubt(conn, monkeypatch) -> None:
    """With submits in flight, those the SMSC got but never answered may arrive twice (the choice:
    sent again rather than lost); nothing is lost, nothing answered is sent again."""
    phones = {f"+3362000{n:04d}": f"m{n}" for n in range(60)}
    with smsc_connection(monkeypatch, drop_at=15) as smsc:
        ids = send(conn, phones)
    counts = smsc.by_destination()
    assert set(counts) == {p.lstrip("+") for p in phones}
    doubled = {d for d, n in counts.items() if n > 1}
    assert max(counts.values()) == 2
    assert len(doubled) <= 5  # at most the window of the bind that was cut
    assert {log_of(conn, i)["status"] for i in ids.values()} == {SENT}


def test_a_submit_in_doubt_is_sent_again(conn, monkeypatch, caplog) -> None:
    """The link dies after the submit left and before its answer came: it is submitted again on a
    new bind (the choice: it may arrive twice, it is not lost)."""
    phones = {f"+3361000{n:04d}": f"m{n}" for n in range(10)}
    with smsc_connection(monkeypatch, drop_at=4, forward_dropped=True, extra=ONE_AT_A_TIME) as smsc:
        ids = send(conn, phones)
        assert smsc.dropped.is_set()
    resent = [r for r in caplog.records if "submitting it again" in r.getMessage()]
    assert len(resent) == 1
    assert set(smsc.by_destination()) == {p.lstrip("+") for p in phones}  # nothing lost
    assert {log_of(conn, i)["status"] for i in ids.values()} == {SENT}


def test_garbage_from_the_smsc(conn, monkeypatch) -> None:
    garbage = b"\xff\xff\xff\xffHELLO this is not SMPP"
    with smsc_connection(monkeypatch, lambda s: Decision(receipt=None), garbage=garbage) as smsc:
        ids = send(conn, {"+33600000001": "a", "+33600000002": "b"})
        smsc.send_receipt("1", "DELIVRD", text=b"\x00\x01garbage", tlvs=False)
        counts = read_receipts(conn, smsc, 1)
    assert counts.received == 0  # the unreadable receipt is acknowledged and dropped
    assert len(smsc.receipts_acked) == 1
    # the garbage came right after the first bind answer: that bind was dropped, what it had in
    # flight sent again on another
    assert {log_of(conn, i)["status"] for i in ids.values()} == {SENT}
    assert set(smsc.by_destination()) == {"33600000001", "33600000002"}
    assert max(smsc.by_destination().values()) <= 2


def test_receipts_not_stored_are_delivered_again(conn, monkeypatch) -> None:
    """A batch whose transaction fails is refused (temporary error): the SMSC sends it again."""
    with smsc_connection(monkeypatch) as smsc:
        send(conn, {"+33600000001": "a"})
        from messagecenter.airflow.transports import smpp_receiver

        def broken() -> Any:
            raise psycopg.OperationalError("database down")

        class Failing:
            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def execute(self, *args: Any, **kwargs: Any) -> Any:
                broken()

            def transaction(self) -> Any:
                broken()

        with pytest.raises(psycopg.OperationalError):
            drain_receipts(smpp_receiver(), Failing, get_settings().feedback, lifetime_seconds=3)
        smsc.wait_for(lambda: smsc.receipts_refused != [])
        assert smsc.receipts_acked == []
        # Long enough for the SMSC's redelivery when its first try went to the session just closed.
        read_receipts(conn, smsc, 2 * REDELIVER_SECONDS + 1.5)
        smsc.wait_for(lambda: len(smsc.receipts_acked) == 1)


def test_a_stop_ends_the_drain_promptly(conn, monkeypatch) -> None:
    with smsc_connection(monkeypatch) as smsc:
        from messagecenter.airflow.transports import smpp_receiver

        stop = threading.Event()
        dsn = conn.info.dsn
        started = time.monotonic()
        threading.Timer(0.5, stop.set).start()
        drain_receipts(
            smpp_receiver(),
            lambda: psycopg.connect(dsn, autocommit=True),
            get_settings().feedback,
            lifetime_seconds=60,
            stop=stop,
        )
        assert time.monotonic() - started < 3
        smsc.wait_for(lambda: not any(e.can_receive for e in smsc.sessions.values()))  # unbound


def test_transport_choice_and_limits(monkeypatch) -> None:
    from messagecenter.airflow.transports import smpp_receiver

    with running_smsc() as smsc:
        extra = '{"window": 7, "max_connections": 3, "max_rate": 50}'
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", f"smpp://esme:pw@127.0.0.1:{smsc.port}?__extra__={extra}")
        transport = transport_for(1)
        assert isinstance(transport, SmppTransport)
        assert (transport.binds, transport.window, transport.max_connections) == (3, 7, 21)
        assert transport.max_rate == 50
        assert isinstance(smpp_receiver(), SmppReceiver)
    monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", "http://127.0.0.1:1/sms")
    assert not isinstance(transport_for(1), SmppTransport)
