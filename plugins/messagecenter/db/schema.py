"""Versioned DDL: apply the pending ``include/sql/<component>/NNNN_name.sql`` files, once each.

Like Alembic, every applied version is recorded (``mc.schema_migration``) with a checksum, under an
advisory lock so concurrent deployers queue instead of racing. Running the upgrade twice changes
nothing; a database already at a newer version than this code knows is refused, because running old
code on a newer schema silently corrupts data.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import psycopg

from messagecenter.core.errors import SchemaError
from messagecenter.db.queries import query, sql_dir

log = logging.getLogger(__name__)

Component = Literal["execution", "control"]
COMPONENTS: tuple[Component, ...] = get_args(Component)
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every deployer of this package.
_ADVISORY_LOCK_KEY = 0x4D43_5343  # "MCSC"


@dataclass(frozen=True)
class Migration:
    component: Component
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations(component: Component, root: Path | None = None) -> list[Migration]:
    """The DDL versions shipped with this code for ``component``, in order."""
    folder = (root or sql_dir()) / component
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise SchemaError(f"unexpected file name {path.name} in {folder} (want NNNN_name.sql)")
        found.append(Migration(component, int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(versions) + 1)):
        raise SchemaError(f"{folder}: versions must run 1, 2, 3... without gaps, got {versions}")
    return found


def applied_versions(conn: psycopg.Connection[Any], component: Component) -> dict[int, str]:
    """Version -> checksum of what is recorded in the database (empty if never migrated)."""
    exists = conn.execute(query("migrations_table_exists")).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(query("applied_versions"), {"component": component}).fetchall()
    return dict(rows)


def upgrade(conn: psycopg.Connection[Any], component: Component, root: Path | None = None) -> list[int]:
    """Apply the pending versions of ``component``; return those applied.

    Everything runs in one transaction (PostgreSQL DDL is transactional), so a failing version leaves
    the database exactly as it was; each version is a savepoint inside it.
    """
    if component not in COMPONENTS:
        raise SchemaError(f"unknown schema component {component!r}; choose from {', '.join(COMPONENTS)}")
    migrations = available_migrations(component, root)
    newest = migrations[-1].version if migrations else 0
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute(query("lock_schema"), {"key": _ADVISORY_LOCK_KEY})
        conn.execute(query("bootstrap_schema"))
        done = applied_versions(conn, component)
        if done and max(done) > newest:
            raise SchemaError(
                f"the {component} schema is at version {max(done)}, newer than this code knows "
                f"(version {newest}); upgrade Message Center before running it against this database"
            )
        for migration in migrations:
            recorded = done.get(migration.version)
            if recorded is not None:
                if recorded != migration.checksum:
                    raise SchemaError(
                        f"{component} version {migration.version} ({migration.name}) was applied from "
                        "a different file; DDL files must never change once released"
                    )
                continue
            log.info("Applying %s schema version %s (%s)", component, migration.version, migration.name)
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(
                    query("record_version"),
                    {
                        "component": component,
                        "version": migration.version,
                        "name": migration.name,
                        "checksum": migration.checksum,
                    },
                )
            applied_now.append(migration.version)
    log.info("%s schema is at version %s (%s applied now)", component, newest, len(applied_now) or "none")
    return applied_now


def current_version(conn: psycopg.Connection[Any], component: Component) -> int:
    """The newest applied version of ``component`` (0 when never migrated)."""
    return max(applied_versions(conn, component), default=0)
