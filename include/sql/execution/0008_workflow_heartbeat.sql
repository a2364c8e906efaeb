-- Execution database, version 8: when each execution workflow last ran and what it did, written
-- by the workflows themselves (the real-time drain also while it runs, so a long drain is seen
-- alive). Read by `python -m messagecenter doctor`, the Message Center page and publishTemplates
-- (templates are deployed only on an instance whose technical workflows are started).
CREATE TABLE mc.workflow_heartbeat (
    workflow      text        PRIMARY KEY,          -- the DAG id: rtEventsProcessing, ...
    last_run      timestamptz NOT NULL,             -- last pass finished, or last seen alive
    last_rows     bigint      NOT NULL DEFAULT 0,   -- rows the last finished pass handled
    last_seconds  float8      NOT NULL DEFAULT 0,   -- how long it took
    runs          bigint      NOT NULL DEFAULT 0,   -- finished passes
    total_rows    bigint      NOT NULL DEFAULT 0
);
