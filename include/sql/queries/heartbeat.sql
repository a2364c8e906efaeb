-- Workflow heartbeats of an execution instance (mc.workflow_heartbeat). clock_timestamp(), not
-- now(): a heartbeat written late in a long transaction still says when it was written.

-- name: record_heartbeat
INSERT INTO mc.workflow_heartbeat AS h (workflow, last_run, last_rows, last_seconds, runs, total_rows)
VALUES (%(workflow)s, clock_timestamp(), %(rows)s, %(seconds)s, 1, %(rows)s)
ON CONFLICT (workflow) DO UPDATE SET
    last_run = excluded.last_run,
    last_rows = excluded.last_rows,
    last_seconds = excluded.last_seconds,
    runs = h.runs + 1,
    total_rows = h.total_rows + excluded.last_rows;

-- name: touch_heartbeat
-- A long pass is alive: only the time moves.
INSERT INTO mc.workflow_heartbeat AS h (workflow, last_run)
VALUES (%(workflow)s, clock_timestamp())
ON CONFLICT (workflow) DO UPDATE SET last_run = excluded.last_run;

-- name: read_heartbeats
SELECT workflow, last_run, last_rows, last_seconds, runs, total_rows,
       extract(epoch FROM clock_timestamp() - last_run)::float8 AS age_seconds
FROM mc.workflow_heartbeat
ORDER BY workflow;
