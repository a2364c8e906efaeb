-- Statements of the execution workflows. `{events}` is the queue's table (mc.rt_event or
-- mc.batch_event), filled in with psycopg.sql.Identifier; values are %(named)s parameters.

-- name: next_batch_id
-- One id per split run: the events it claims carry it until they are linked.
SELECT nextval('mc.batch_seq');

-- name: claim_pending
-- Claim one chunk of due, pending events for a split run; return per (event type, channel) stats.
-- status stays 0 (pending) and claimed_until is a lease: a crashed run's events come back after it.
-- Neither batch_id nor claimed_until is indexed, so the claim is a HOT update (schema version 5).
WITH candidate AS (
    SELECT id FROM {events}
    WHERE status = 0
      AND (scheduled IS NULL OR scheduled <= now())
      AND (claimed_until IS NULL OR claimed_until <= now())
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    -- By primary key: a join with the candidates made the planner hash the whole table per chunk.
    UPDATE {events} AS e
    SET batch_id = %(batch_id)s, claimed_until = now() + make_interval(secs => %(lease)s)
    WHERE e.id = ANY (ARRAY(SELECT id FROM candidate))
    RETURNING e.id, e.event_type, e.channel
)
SELECT event_type, channel, count(*) AS n, min(id) AS min_id, max(id) AS max_id
FROM claimed GROUP BY event_type, channel;

-- name: due_retries
-- (event type, channel) groups with linked events due for a (re)try: retries after a transient
-- error, or events whose earlier delivery task died.
SELECT event_type, channel, count(*) AS n
FROM {events} AS e
WHERE status = 1 AND next_try <= now()
  AND NOT EXISTS (SELECT 1 FROM mc.delivery_log AS l WHERE l.event_id = e.id)
GROUP BY event_type, channel;

-- name: link_template
-- 0 -> 1: link the shard's claimed events to the template; deliverable now.
UPDATE {events}
SET status = 1, template_id = %(template_id)s, template_version = %(version)s,
    next_try = now(), last_modified = now()
WHERE batch_id = %(batch_id)s AND event_type = %(event_type)s AND channel = %(channel)s
  AND id BETWEEN %(min_id)s AND %(max_id)s AND status = 0;

-- name: mark_not_taken
-- 0 -> 5: no published template for the shard's (event type, channel); final, never retried.
UPDATE {events}
SET status = 5, next_try = NULL, processed = now(), last_modified = now()
WHERE batch_id = %(batch_id)s AND event_type = %(event_type)s AND channel = %(channel)s
  AND id BETWEEN %(min_id)s AND %(max_id)s AND status = 0;

-- name: set_lease_timeout
-- A delivery chunk's lease: the server ends the session if it stays silent this long inside the
-- chunk's transaction (a hung worker), which frees the chunk's row locks. This transaction only.
SELECT set_config('idle_in_transaction_session_timeout', %(timeout)s, true);

-- name: keep_alive
-- A live worker speaks between messages, which restarts the idle-in-transaction clock.
SELECT 1;

-- name: claim_for_delivery
-- Claim one delivery chunk of the shard: linked events due now, past the previous chunk's last
-- (next_try, id), so a chunk never walks over the events delivered before it. The row locks are
-- the lease: the chunk's transaction holds them while it sends and writes its results; they go
-- when the worker dies, or when it hangs past idle_in_transaction_session_timeout.
-- One event's data never fails the chunk's fetch: a scheduled time Python cannot hold (before
-- year 1 or after 9999 in some time zone) is not loaded but flagged, and fails that event alone.
SELECT e.id, e.event_type, e.channel, e.email, e.mobile_phone, e.push_token, e.external_id,
       e.language, e.country, e.origin, e.ctx, e.created,
       CASE WHEN e.scheduled BETWEEN '0001-01-02 00:00+00' AND '9999-12-30 00:00+00'
            THEN e.scheduled END AS scheduled,
       coalesce(NOT e.scheduled BETWEEN '0001-01-02 00:00+00' AND '9999-12-30 00:00+00', false)
           AS scheduled_out_of_range,
       e.template_id, e.template_version, e.errors, e.next_try
FROM {events} AS e
WHERE status = 1 AND next_try <= now()
  AND event_type = %(event_type)s AND channel = %(channel)s
  AND id BETWEEN %(min_id)s AND %(max_id)s
  AND (next_try, id) > (%(after_next_try)s, %(after_id)s)
  -- Delivered already (final log written), waiting for its status copy.
  AND NOT EXISTS (SELECT 1 FROM mc.delivery_log AS l WHERE l.event_id = e.id)
ORDER BY next_try, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: delivered_already
-- Which claimed events got their final log after the claim's snapshot: another worker finished them
-- and let go of their locks between the two. A new statement's snapshot sees its log.
SELECT event_id FROM mc.delivery_log WHERE event_id = ANY(%(ids)s);

-- name: copy_delivery_logs
-- Final results of a chunk, in the column order of execution.deliver.LOG_COLUMNS.
COPY mc.delivery_log (event_id, queue, status, channel, address, template_id, template_version,
                      message_id, provider_answer, error, tries)
FROM STDIN;

-- name: insert_delivery_logs
-- Final results of a chunk; a second final log for an event (redelivery after a crash) is dropped.
INSERT INTO mc.delivery_log
    (event_id, queue, status, channel, address, template_id, template_version, message_id,
     provider_answer, error, tries)
SELECT * FROM unnest(
    %(event_id)s::bigint[], %(queue)s::text[], %(status)s::smallint[], %(channel)s::smallint[],
    %(address)s::text[], %(template_id)s::bigint[], %(template_version)s::integer[],
    %(message_id)s::text[], %(provider_answer)s::text[], %(error)s::text[], %(tries)s::integer[])
ON CONFLICT (event_id) DO NOTHING;

-- name: schedule_retries
-- Transient errors: count them and come back after the backoff.
UPDATE {events}
SET errors = v.errors, next_try = v.next_try, last_modified = now()
FROM unnest(%(id)s::bigint[], %(errors)s::integer[], %(next_try)s::timestamptz[]) AS v(id, errors, next_try)
WHERE {events}.id = v.id AND status = 1;

-- name: quarantined
-- These addresses' quarantine status on this channel, when not Valid: Quarantine (2) and
-- Denylisted (3) receive nothing; With errors (1) is sent to, and a success makes it Valid.
SELECT address, status FROM mc.quarantine
WHERE channel = %(channel)s AND address = ANY(%(addresses)s) AND status > 0;

-- name: listen_rt_events
-- The rt queue's statement trigger notifies this channel when an insert commits.
LISTEN mc_rt_event;

-- name: completed_txid
-- Every transaction below this id has ended: delivery logs below it can no longer appear late.
SELECT pg_snapshot_xmin(pg_current_snapshot());

-- name: get_watermark
SELECT txid FROM mc.status_watermark WHERE name = %(name)s FOR UPDATE;

-- name: set_watermark
INSERT INTO mc.status_watermark (name, txid, updated_at) VALUES (%(name)s, %(txid)s, now())
ON CONFLICT (name) DO UPDATE SET txid = excluded.txid, updated_at = excluded.updated_at;

-- name: copy_delivery_status
-- 1 -> 2 / 3 / 4: copy the final status of every delivery log visible now and written by a
-- transaction at or past the watermark. Logs of transactions still running are picked up by a
-- later run (the next watermark is at most their id); re-reading a log is harmless (status = 1).
-- errors: the failed send attempts (tries counts every attempt, the successful one included).
-- status 6: expired by expire_events while its delivery was finishing; the message went out.
-- 2 -> 4: a log that failed after the send (a bounce a week later) is copied again; nothing else
-- changes a final status.
UPDATE {events} AS e
SET status = l.status, errors = l.tries - (l.status = 2)::int, next_try = NULL,
    processed = coalesce(e.processed, l.created), last_modified = now()
FROM mc.delivery_log AS l
WHERE l.txid >= %(low)s AND l.queue = %(queue)s
  AND e.id = l.event_id AND (e.status IN (1, 6) OR (e.status = 2 AND l.status = 4));

-- name: expire_events
-- 0 / 1 -> 6: not delivered within the queue's validity (counted from `scheduled` when set).
-- Events whose final log is written wait for their status copy instead.
UPDATE {events} AS e
SET status = 6, next_try = NULL, processed = now(), last_modified = now()
WHERE status IN (0, 1)
  AND coalesce(scheduled, created) < now() - make_interval(secs => %(validity)s)
  AND NOT EXISTS (SELECT 1 FROM mc.delivery_log AS l WHERE l.event_id = e.id);

-- name: copy_delivered_status
-- 1 -> 2 / 3 / 4 for the events a real-time chunk just delivered, in the chunk's transaction (their
-- rows are locked by it): an API client sees Sent at once, not at the next updateEventsStatus run,
-- which finds them done (status no longer 1) and leaves them.
UPDATE {events} AS e
SET status = l.status, errors = l.tries - (l.status = 2)::int, next_try = NULL, processed = l.created,
    last_modified = now()
FROM mc.delivery_log AS l
WHERE l.event_id = ANY(%(ids)s) AND e.id = l.event_id AND e.status IN (1, 6);
