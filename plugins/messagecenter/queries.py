"""Named SQL statements, kept in ``include/sql/queries/*.sql`` and loaded once.

Each statement is headed by ``-- name: verb_object``; ``{events}`` stands for the queue's table and
is filled in with ``psycopg.sql.Identifier``, never with string formatting.
"""

from __future__ import annotations

import functools
import re

from psycopg import sql

from messagecenter.schema import sql_dir
from messagecenter.store import event_table

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@functools.cache
def load(file: str) -> dict[str, str]:
    """Statements of ``include/sql/queries/<file>.sql`` by name."""
    text = (sql_dir() / "queries" / f"{file}.sql").read_text()
    parts = _NAME.split(text)[1:]
    return {name: body.strip().rstrip(";") for name, body in zip(parts[::2], parts[1::2], strict=True)}


def query(file: str, name: str, queue: str | None = None) -> sql.Composed:
    """The statement ``name``, with ``{events}`` bound to ``queue``'s table when given."""
    text = sql.SQL(load(file)[name])  # type: ignore[arg-type]  # trusted files shipped with the code
    return text.format(events=event_table(queue)) if queue else text.format()
