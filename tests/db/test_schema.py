from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from messagecenter.core.errors import SchemaError
from messagecenter.db import schema


def _tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'mc'").fetchall()
    return {r[0] for r in rows}


def test_upgrade_creates_the_execution_tables_and_records_versions(empty_db_dsn: str) -> None:
    with psycopg.connect(empty_db_dsn) as conn:
        applied = schema.upgrade(conn, "execution")
        shipped = schema.available_migrations("execution")
        assert applied == [m.version for m in shipped]
        assert {"rt_event", "batch_event", "schema_migration"} <= _tables(conn)
        assert schema.current_version(conn, "execution") == shipped[-1].version


def test_upgrade_twice_changes_nothing(empty_db_dsn: str) -> None:
    with psycopg.connect(empty_db_dsn) as conn:
        schema.upgrade(conn, "execution")
        before = conn.execute("SELECT component, version, applied_at FROM mc.schema_migration").fetchall()
        assert schema.upgrade(conn, "execution") == []
        after = conn.execute("SELECT component, version, applied_at FROM mc.schema_migration").fetchall()
    assert before == after


def test_upgrade_refuses_a_newer_schema(empty_db_dsn: str) -> None:
    with psycopg.connect(empty_db_dsn) as conn:
        schema.upgrade(conn, "execution")
        conn.execute(
            "INSERT INTO mc.schema_migration (component, version, name, checksum) "
            "VALUES ('execution', 999, 'from_the_future', 'x')"
        )
        conn.commit()
        with pytest.raises(SchemaError, match="version 999, newer than this code knows"):
            schema.upgrade(conn, "execution")


def test_upgrade_refuses_an_edited_released_file(empty_db_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "execution").mkdir()
    ddl = tmp_path / "execution" / "0001_t.sql"
    ddl.write_text("CREATE TABLE mc.t (a int);")
    with psycopg.connect(empty_db_dsn) as conn:
        schema.upgrade(conn, "execution", root=tmp_path)
        ddl.write_text("CREATE TABLE mc.t (a int, b int);")
        with pytest.raises(SchemaError, match="must never change once released"):
            schema.upgrade(conn, "execution", root=tmp_path)


def test_failed_version_leaves_the_database_unchanged(empty_db_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "execution").mkdir()
    (tmp_path / "execution" / "0001_ok.sql").write_text("CREATE TABLE mc.ok (a int);")
    (tmp_path / "execution" / "0002_broken.sql").write_text("CREATE TABLE mc.broken (a no_such_type);")
    with psycopg.connect(empty_db_dsn) as conn:
        with pytest.raises(psycopg.errors.UndefinedObject):
            schema.upgrade(conn, "execution", root=tmp_path)
        conn.rollback()
        assert schema.current_version(conn, "execution") == 0
        assert "ok" not in _tables(conn)


def test_versions_must_not_have_gaps(tmp_path: Path) -> None:
    (tmp_path / "execution").mkdir()
    (tmp_path / "execution" / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "execution" / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(SchemaError, match="without gaps"):
        schema.available_migrations("execution", root=tmp_path)
