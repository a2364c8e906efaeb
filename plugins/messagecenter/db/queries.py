"""Every SQL statement of the package, by name: ``include/sql/queries/*.sql``, loaded once.

Each statement is headed by ``-- name: verb_object`` (unique across the files) and takes
``%(named)s`` parameters. Table names come from here only: ``{events}`` is a queue's table and
``{templates}`` a template table, bound with ``psycopg.sql.Identifier``; a statement that wraps
another (``COPY ({select}) TO STDOUT``) gets it as a composed fragment. Nothing is formatted in as
a string.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, LiteralString, cast

import psycopg
from psycopg import sql

from messagecenter.core.types import QUEUES

SCHEMA = "mc"
TemplateTable = Literal["execution", "control"]
# Where templates live: what routes on an execution instance, and the versioned master on control.
TEMPLATE_TABLES: dict[TemplateTable, str] = {"execution": "published_template", "control": "template"}
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """Folder of the DDL versions and named statements: ``MC_SQL_DIR``, else the copy an installed
    package carries (``messagecenter/sql``, put there by the build), else ``include/sql`` next to the
    ``plugins`` folder (a checkout, an editable install, a deployment's mounted folders)."""
    configured = os.environ.get("MC_SQL_DIR")
    if configured:
        return Path(configured)
    package = Path(__file__).resolve().parents[1]
    packaged = package / "sql"
    return packaged if packaged.is_dir() else package.parents[1] / "include" / "sql"


@functools.cache
def statements() -> dict[str, LiteralString]:
    """Every named statement of ``include/sql/queries/*.sql``; a name used twice is an error."""
    found: dict[str, LiteralString] = {}
    for path in sorted((sql_dir() / "queries").glob("*.sql")):
        parts = _NAME.split(path.read_text())[1:]
        for name, body in zip(parts[::2], parts[1::2], strict=True):
            if name in found:
                raise ValueError(f"SQL statement {name!r} is defined twice ({path.name})")
            # Trusted files shipped with the code, the same for every caller.
            found[name] = cast(LiteralString, body.strip().rstrip(";"))
    return found


def event_table(queue: str) -> sql.Composed:
    """``mc.rt_event`` or ``mc.batch_event``; any other queue name is refused."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; choose from {', '.join(QUEUES)}")
    return sql.SQL("{}").format(sql.Identifier(SCHEMA, f"{queue}_event"))


def template_table(which: TemplateTable) -> sql.Composed:
    """``mc.published_template`` (execution) or ``mc.template`` (control's master)."""
    if which not in TEMPLATE_TABLES:
        raise ValueError(f"unknown template table {which!r}; choose from {', '.join(TEMPLATE_TABLES)}")
    return sql.SQL("{}").format(sql.Identifier(SCHEMA, TEMPLATE_TABLES[which]))


def query(
    name: str,
    queue: str | None = None,
    *,
    templates: TemplateTable | None = None,
    **fragments: sql.Composable,
) -> sql.Composed:
    """The statement ``name``, with ``{events}`` bound to ``queue``'s table, ``{templates}`` to a
    template table, and any other placeholder to the fragment of that name."""
    try:
        text = statements()[name]
    except KeyError:
        raise KeyError(f"no SQL statement named {name!r} in {sql_dir() / 'queries'}") from None
    if queue is not None:
        fragments["events"] = event_table(queue)
    if templates is not None:
        fragments["templates"] = template_table(templates)
    return sql.SQL(text).format(**fragments)


def fetch_value(
    conn: psycopg.Connection[Any], statement: sql.Composed, params: Mapping[str, Any] | None = None
) -> Any:
    """The first column of the one row ``statement`` returns (``None`` when it returns no row)."""
    row = conn.execute(statement, params).fetchone()
    return None if row is None else row[0]
