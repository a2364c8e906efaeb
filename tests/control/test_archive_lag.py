"""Archiving lag is now minus the end of the archived period, whatever interval a run archived."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from messagecenter.monitoring.indicators import archive_lags
from tests.support.builders import archive, db_now, push_sms


def test_a_backfill_of_an_old_period_leaves_the_lag_as_it_was(dbs: Any) -> None:
    exec_conn, control = dbs
    push_sms(exec_conn, "rt", 2)
    now = db_now(exec_conn)
    archive(exec_conn, control, now - timedelta(hours=1), now - timedelta(minutes=10))
    lag = archive_lags(control)["paris"]
    assert 600 <= lag < 660
    # Re-archiving a period five days back (a backfill) does not make the archive look five days late.
    archive(exec_conn, control, now - timedelta(days=5, hours=1), now - timedelta(days=5))
    stored = control.execute("SELECT lag_seconds FROM mc.archive_state WHERE instance = 'paris'").fetchone()
    assert 600 <= stored[0] < 660  # type: ignore[index]
    assert 600 <= archive_lags(control)["paris"] < 660
    assert archive_lags(control).keys() == {"paris"}
