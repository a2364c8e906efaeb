-- Statements of the archiving (control) and cleanup (execution) workflows. `{events}` is the
-- queue's table (mc.rt_event or mc.batch_event); values are %(named)s parameters.

-- name: open_writers
-- Transactions of this database that started before the interval's end and are still open: a row
-- they write is stamped before `end` (last_modified = now() = transaction start) but not visible yet.
SELECT count(*), string_agg(pid::text, ', ')
FROM pg_stat_activity
WHERE datname = current_database()
  AND pid <> pg_backend_pid()
  AND xact_start < %(end)s;

-- name: lock_state
-- The instance's archived period, locked so two runs of one instance (scheduled and backfill)
-- queue instead of interleaving.
SELECT archived_until FROM mc.archive_state WHERE instance = %(instance)s FOR UPDATE;

-- name: create_event_stage
CREATE TEMP TABLE event_stage ON COMMIT DROP AS
SELECT id, instance_id, queue, event_type, channel, email, mobile_phone, push_token, external_id,
       language, country, origin, ctx, created, scheduled, status, template_id, template_version,
       errors, processed, last_modified
FROM mc.event_histo WITH NO DATA;

-- name: create_log_stage
CREATE TEMP TABLE log_stage ON COMMIT DROP AS
SELECT instance_id, id, event_id, queue, status, channel, address, template_id, template_version,
       message_id, provider_answer, error, tries, created, delivery, failure_type, failure_reason,
       feedback_text, feedback_at, last_modified
FROM mc.delivery_log_histo WITH NO DATA;

-- name: select_events
-- One queue's events last modified in [low, end) (low NULL: since the beginning), in the stage's
-- column order and types (binary COPY).
SELECT id, %(instance_id)s::smallint, %(queue)s::text, event_type, channel, email, mobile_phone,
       push_token, external_id, language, country, origin, ctx, created, scheduled, status,
       template_id, template_version, errors, processed, last_modified
FROM {events}
WHERE last_modified < %(end)s AND (%(low)s::timestamptz IS NULL OR last_modified >= %(low)s)

-- name: select_logs
-- Delivery logs written or changed (delivery feedback) in [low, end).
SELECT %(instance_id)s::smallint, id, event_id, queue, status, channel, address, template_id,
       template_version, message_id, provider_answer, error, tries, created, delivery,
       failure_type, failure_reason, feedback_text, feedback_at, last_modified
FROM mc.delivery_log
WHERE last_modified < %(end)s AND (%(low)s::timestamptz IS NULL OR last_modified >= %(low)s)

-- name: upsert_events
-- New events, or a newer state of archived ones; a rerun finds nothing to change (rowcount 0).
INSERT INTO mc.event_histo AS h (
    id, instance_id, queue, event_type, channel, email, mobile_phone, push_token, external_id,
    language, country, origin, ctx, created, scheduled, status, template_id, template_version,
    errors, processed, last_modified)
SELECT * FROM event_stage
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, template_id = excluded.template_id,
    template_version = excluded.template_version, errors = excluded.errors,
    processed = excluded.processed, last_modified = excluded.last_modified, archived_at = now()
WHERE excluded.last_modified > h.last_modified
   OR (excluded.last_modified = h.last_modified
       AND (excluded.status, excluded.template_id, excluded.template_version, excluded.errors,
            excluded.processed)
           IS DISTINCT FROM (h.status, h.template_id, h.template_version, h.errors, h.processed));

-- name: insert_logs
INSERT INTO mc.delivery_log_histo AS h (
    instance_id, id, event_id, queue, status, channel, address, template_id, template_version,
    message_id, provider_answer, error, tries, created, delivery, failure_type, failure_reason,
    feedback_text, feedback_at, last_modified)
SELECT * FROM log_stage
ON CONFLICT (instance_id, id) DO UPDATE SET
    status = excluded.status, delivery = excluded.delivery, failure_type = excluded.failure_type,
    failure_reason = excluded.failure_reason, feedback_text = excluded.feedback_text,
    feedback_at = excluded.feedback_at, last_modified = excluded.last_modified, archived_at = now()
WHERE excluded.last_modified > h.last_modified OR h.last_modified IS NULL;

-- name: record_run
-- The archived period only grows: each run reads from the previous archived_until. lag_seconds is
-- the archiving lag when the run ended: now - end of the archived period (not of the run's own
-- interval: a backfill of an old period leaves the lag as it was). Read live with `archive_lags`.
INSERT INTO mc.archive_state AS s (
    instance, instance_id, archived_until, last_run_at, last_interval_start, last_interval_end,
    events_copied, logs_copied, total_events, total_logs, lag_seconds)
VALUES (%(instance)s, %(instance_id)s, %(end)s, now(), %(start)s, %(end)s, %(events)s, %(logs)s,
        %(events)s, %(logs)s, extract(epoch FROM clock_timestamp() - %(end)s))
ON CONFLICT (instance) DO UPDATE SET
    instance_id = excluded.instance_id,
    archived_until = greatest(s.archived_until, excluded.archived_until),
    last_run_at = excluded.last_run_at,
    last_interval_start = excluded.last_interval_start,
    last_interval_end = excluded.last_interval_end,
    events_copied = excluded.events_copied,
    logs_copied = excluded.logs_copied,
    total_events = s.total_events + excluded.events_copied,
    total_logs = s.total_logs + excluded.logs_copied,
    lag_seconds = extract(epoch FROM clock_timestamp() - greatest(s.archived_until, excluded.archived_until))
RETURNING archived_until;

-- name: set_archive_mark
-- Written back on the execution database: what mcCleanup may purge.
INSERT INTO mc.archive_mark (singleton, archived_until) VALUES (true, %(until)s)
ON CONFLICT (singleton) DO UPDATE
SET archived_until = greatest(mc.archive_mark.archived_until, excluded.archived_until), updated_at = now();

-- name: purge_events
-- One batch of final events (2-6) older than the retention whose current state is archived.
DELETE FROM {events}
WHERE id IN (
    SELECT id FROM {events}
    WHERE status >= 2
      AND last_modified < least(now() - make_interval(secs => %(retention)s),
                                (SELECT archived_until FROM mc.archive_mark))
    LIMIT %(limit)s
);

-- name: purge_logs
-- One batch of archived delivery logs older than the retention (last changed then), already
-- copied onto their event.
DELETE FROM mc.delivery_log
WHERE id IN (
    SELECT id FROM mc.delivery_log
    WHERE last_modified < least(now() - make_interval(secs => %(retention)s),
                          (SELECT archived_until FROM mc.archive_mark))
      AND txid < (SELECT txid FROM mc.status_watermark WHERE name = 'delivery_log')
    LIMIT %(limit)s
);

-- name: get_archive_mark
SELECT archived_until FROM mc.archive_mark;

-- name: database_now
-- The execution database's clock: an interval that ends after it cannot be archived yet.
SELECT now();

-- name: set_snapshot_read_only
-- One snapshot for both queues and the logs of an archiving run.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: copy_out_binary
-- Stream a named select (select_events, select_logs) out of the execution database...
COPY ({select}) TO STDOUT (FORMAT BINARY);

-- name: copy_in_binary
-- ... straight into a staging table on control.
COPY {stage} FROM STDIN (FORMAT BINARY);
