"""Fixtures of the control tests."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest


@pytest.fixture
def dbs(make_db: Any) -> Any:
    """An execution instance's database and the control database, both fresh (autocommit)."""
    with (
        psycopg.connect(make_db(), autocommit=True) as exec_conn,
        psycopg.connect(make_db(), autocommit=True) as control,
    ):
        yield exec_conn, control
