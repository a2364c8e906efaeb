-- Statements of the versioned DDL runner (db.schema). The DDL versions themselves are the files
-- of include/sql/execution and include/sql/control.

-- name: lock_schema
-- Concurrent deployers queue here instead of racing (the key only has to be the same for all).
SELECT pg_advisory_xact_lock(%(key)s);

-- name: bootstrap_schema
CREATE SCHEMA IF NOT EXISTS mc;
CREATE TABLE IF NOT EXISTS mc.schema_migration (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
);

-- name: migrations_table_exists
SELECT to_regclass('mc.schema_migration') IS NOT NULL;

-- name: applied_versions
SELECT version, checksum FROM mc.schema_migration WHERE component = %(component)s;

-- name: record_version
INSERT INTO mc.schema_migration (component, version, name, checksum)
VALUES (%(component)s, %(version)s, %(name)s, %(checksum)s);
