-- Statements of control's quarantine sync (publishTemplates): every instance's changes merged into
-- mc.quarantine_master, and the master's changes written back to every instance.

-- name: get_quarantine_sync
SELECT pulled_until, pushed_until FROM mc.quarantine_sync WHERE instance = %(instance)s FOR UPDATE;

-- name: set_quarantine_sync
INSERT INTO mc.quarantine_sync (instance, pulled_until, pushed_until)
VALUES (%(instance)s, %(pulled_until)s, %(pushed_until)s)
ON CONFLICT (instance) DO UPDATE
SET pulled_until = excluded.pulled_until, pushed_until = excluded.pushed_until;

-- name: merge_quarantine_master
-- An instance's changed rows; the newest change of an address wins.
INSERT INTO mc.quarantine_master AS m
    (channel, address, status, errors, failure_reason, reason, last_error, source, updated, instance)
SELECT v.*, %(instance)s
FROM unnest(%(channel)s::smallint[], %(address)s::text[], %(status)s::smallint[],
            %(errors)s::integer[], %(failure_reason)s::smallint[], %(reason)s::text[],
            %(last_error)s::timestamptz[], %(source)s::text[], %(updated)s::timestamptz[])
     AS v(channel, address, status, errors, failure_reason, reason, last_error, source, updated)
ON CONFLICT (channel, address) DO UPDATE
SET status = excluded.status, errors = excluded.errors, failure_reason = excluded.failure_reason,
    reason = excluded.reason, last_error = excluded.last_error, source = excluded.source,
    updated = excluded.updated, instance = excluded.instance
WHERE excluded.updated > m.updated;

-- name: changed_quarantine_master
-- The master's rows changed since `since` (NULL: all of them), to write back to an instance.
SELECT channel, address, status, errors, failure_reason, reason, last_error, source, updated
FROM mc.quarantine_master
WHERE %(since)s::timestamptz IS NULL OR updated >= %(since)s;
