"""A quarantine change seen on one execution instance reaches the others through control."""

from __future__ import annotations

import psycopg

from messagecenter.core.types import Channel
from messagecenter.feedback.quarantine import AddressStatus, get_state, set_status, sync_instance


def test_a_hard_bounce_on_one_instance_reaches_the_others_and_so_does_a_release(make_db) -> None:
    control_dsn, paris_dsn, tokyo_dsn = make_db(), make_db(), make_db()
    with (
        psycopg.connect(control_dsn, autocommit=True) as control,
        psycopg.connect(paris_dsn, autocommit=True) as paris,
        psycopg.connect(tokyo_dsn, autocommit=True) as tokyo,
    ):
        set_status(paris, Channel.EMAIL, "gone@example.com", AddressStatus.QUARANTINE, reason="user unknown")
        set_status(tokyo, Channel.SMS, "+33600000001", AddressStatus.DENYLISTED, reason="STOP")
        # publishTemplates' sync_quarantine, one instance after the other, twice (two runs).
        for _ in range(2):
            sync_instance(control, paris, "paris")
            sync_instance(control, tokyo, "tokyo")
        for conn in (paris, tokyo):
            assert get_state(conn, Channel.EMAIL, "gone@example.com").status == AddressStatus.QUARANTINE
            assert get_state(conn, Channel.SMS, "+33600000001").status == AddressStatus.DENYLISTED
        # An operator releases the address on tokyo: the release travels the same way.
        set_status(tokyo, Channel.EMAIL, "gone@example.com", AddressStatus.VALID)
        for _ in range(2):
            sync_instance(control, tokyo, "tokyo")
            sync_instance(control, paris, "paris")
        assert get_state(paris, Channel.EMAIL, "gone@example.com").status == AddressStatus.VALID
        # Control keeps one row per address, the newest change of each.
        master = control.execute(
            "SELECT channel, address, status FROM mc.quarantine_master ORDER BY channel"
        ).fetchall()
        assert master == [(0, "gone@example.com", 0), (1, "+33600000001", 3)]
