-- Statements of delivery feedback (bounces, complaints, unsubscribes, provider receipts), its
-- qualification rules and the quarantine. Values are %(named)s parameters.

-- name: logs_by_event
-- The delivery logs of these events (a VERP return path or a Message-ID names the event).
SELECT id, event_id, channel, address, status, delivery, message_id
FROM mc.delivery_log WHERE event_id = ANY(%(ids)s);

-- name: logs_by_message_id
-- The delivery logs of these provider message ids (stored at send).
SELECT id, event_id, channel, address, status, delivery, message_id
FROM mc.delivery_log WHERE message_id = ANY(%(ids)s);

-- name: apply_log_feedback
-- What happened after the send, one row per log (the caller keeps the most decisive per log):
--   failed    Sent -> Failed (status 4, delivery 2): final, nothing changes it afterwards;
--   delivered delivery 1, unless the log already failed;
--   deferred  a soft, intermediate answer: its reason is kept, the status stays;
--   complaint the recipient reported it as spam (the address is denylisted by the caller);
--   ignored   an auto-reply or an event that says nothing about delivery: its text is kept.
-- A changed log gets a new txid, so updateEventsStatus copies it again, and a new last_modified,
-- so archiving copies it again. A repeated callback finds nothing to change.
UPDATE mc.delivery_log AS l
SET status = CASE WHEN v.outcome = 'failed' AND l.status = 2 THEN 4 ELSE l.status END,
    delivery = CASE WHEN v.outcome = 'failed' THEN 2
                    WHEN v.outcome = 'delivered' THEN 1
                    ELSE l.delivery END,
    failure_type = CASE WHEN v.outcome IN ('failed', 'deferred', 'ignored')
                        THEN v.failure_type ELSE l.failure_type END,
    failure_reason = CASE WHEN v.outcome IN ('failed', 'deferred', 'ignored')
                          THEN v.failure_reason ELSE l.failure_reason END,
    feedback_text = coalesce(v.feedback_text, l.feedback_text),
    feedback_key = coalesce(v.feedback_key, l.feedback_key),
    feedback_at = v.at,
    complained_at = CASE WHEN v.outcome = 'complaint' THEN v.at ELSE l.complained_at END,
    txid = pg_current_xact_id(),
    last_modified = clock_timestamp()
FROM unnest(%(log_id)s::bigint[], %(outcome)s::text[], %(failure_type)s::smallint[],
            %(failure_reason)s::smallint[], %(feedback_text)s::text[], %(feedback_key)s::text[],
            %(at)s::timestamptz[])
     AS v(log_id, outcome, failure_type, failure_reason, feedback_text, feedback_key, at)
WHERE l.id = v.log_id
  AND l.id = ANY(%(log_id)s::bigint[])  -- the batch's logs by their key, not a pass over the table
  AND l.delivery IS DISTINCT FROM 2
  AND NOT (v.outcome = 'delivered' AND coalesce(l.delivery, 0) = 1)
  AND NOT (v.outcome = 'complaint' AND l.complained_at IS NOT NULL)
  AND NOT (v.outcome IN ('deferred', 'ignored') AND l.delivery IS NOT NULL)
RETURNING l.id, l.event_id, l.status;

-- name: count_feedback_messages
-- Every distinct normalised text, qualified or not, is kept and counted (capped at 100,000).
INSERT INTO mc.feedback_message AS m
    (feedback_key, first_text, failure_type, failure_reason, occurrences)
SELECT * FROM unnest(%(feedback_key)s::text[], %(first_text)s::text[], %(failure_type)s::smallint[],
                     %(failure_reason)s::smallint[], %(occurrences)s::bigint[])
ON CONFLICT (feedback_key) DO UPDATE
SET occurrences = least(m.occurrences + excluded.occurrences, 100000),
    failure_type = excluded.failure_type, failure_reason = excluded.failure_reason,
    last_seen = now();

-- name: list_feedback_messages
-- The qualification table as operators read it, most frequent first; unqualified (reason 0) only
-- when asked.
SELECT feedback_key, first_text, failure_type, failure_reason, occurrences, first_seen, last_seen
FROM mc.feedback_message
WHERE NOT %(unqualified)s OR failure_reason = 0
ORDER BY occurrences DESC, feedback_key
LIMIT %(limit)s;

-- name: list_feedback_rules
SELECT id, pattern, failure_type, failure_reason, priority, note, updated
FROM mc.feedback_rule ORDER BY priority, id;

-- name: upsert_feedback_rule
-- An operator's rule: a new pattern, or a new type / reason / priority for an existing one.
INSERT INTO mc.feedback_rule (pattern, failure_type, failure_reason, priority, note)
VALUES (%(pattern)s, %(failure_type)s, %(failure_reason)s, %(priority)s, %(note)s)
ON CONFLICT (pattern) DO UPDATE
SET failure_type = excluded.failure_type, failure_reason = excluded.failure_reason,
    priority = excluded.priority, note = excluded.note, updated = now()
RETURNING id;

-- name: delete_feedback_rule
DELETE FROM mc.feedback_rule WHERE id = %(id)s;

-- name: requalify_feedback_message
-- A rule changed: the texts it now matches take its qualification.
UPDATE mc.feedback_message
SET failure_type = %(failure_type)s, failure_reason = %(failure_reason)s
WHERE feedback_key = ANY(%(keys)s);

-- name: mark_feedback_seen
-- Provider events not applied before; a replay returns nothing and changes nothing.
INSERT INTO mc.feedback_seen (provider, event_key)
SELECT %(provider)s, k FROM unnest(%(keys)s::text[]) AS k
ON CONFLICT DO NOTHING
RETURNING event_key;

-- name: insert_unmatched_feedback
INSERT INTO mc.feedback_unmatched
    (provider, message_id, address, kind, failure_type, failure_reason, feedback_text, feedback_key)
SELECT * FROM unnest(%(provider)s::text[], %(message_id)s::text[], %(address)s::text[],
                     %(kind)s::text[], %(failure_type)s::smallint[], %(failure_reason)s::smallint[],
                     %(feedback_text)s::text[], %(feedback_key)s::text[]);

-- name: take_matchable_unmatched
-- Kept feedback whose delivery log exists now (a receipt that came before the submit answer).
DELETE FROM mc.feedback_unmatched AS u
USING mc.delivery_log AS l
WHERE l.message_id = u.message_id AND u.message_id IS NOT NULL
RETURNING u.provider, u.message_id, u.address, u.kind, u.failure_type, u.failure_reason,
          u.feedback_text, u.feedback_key, u.received;

-- name: purge_unmatched_feedback
DELETE FROM mc.feedback_unmatched WHERE received < now() - make_interval(secs => %(seconds)s);

-- name: record_address_feedback
-- Campaign's quarantine rules for a batch of (channel, address), one row each (the caller keeps
-- the strongest per address). The proposed status says what happened: 3 denylist (complaint,
-- unsubscribe: never released automatically), 2 a hard error (Quarantine at once), 1 a soft error
-- (one more error, at most once per significant-error period; Quarantine when the count reaches
-- max_errors, With errors before). A released address (status 0) counts again from zero.
INSERT INTO mc.quarantine AS q
    (channel, address, status, errors, failure_reason, reason, last_error, source, updated)
SELECT v.channel, v.address,
       CASE WHEN v.status = 1 AND %(max_errors)s <= 1 THEN 2 ELSE v.status END,
       CASE WHEN v.status = 3 THEN 0 ELSE 1 END,
       v.failure_reason, v.reason, CASE WHEN v.status < 3 THEN v.at END, v.source, clock_timestamp()
FROM unnest(%(channel)s::smallint[], %(address)s::text[], %(status)s::smallint[],
            %(failure_reason)s::smallint[], %(reason)s::text[], %(at)s::timestamptz[],
            %(source)s::text[]) AS v(channel, address, status, failure_reason, reason, at, source)
ON CONFLICT (channel, address) DO UPDATE
SET status = CASE
        WHEN excluded.status = 3 THEN 3
        WHEN excluded.status = 2 OR q.status = 2 THEN 2
        WHEN (CASE WHEN q.status = 0 THEN 0 ELSE q.errors END) + 1 >= %(max_errors)s THEN 2
        ELSE 1 END,
    errors = CASE WHEN excluded.status = 3 THEN q.errors
                  WHEN q.status = 0 THEN 1
                  ELSE q.errors + 1 END,
    failure_reason = coalesce(excluded.failure_reason, q.failure_reason),
    reason = coalesce(excluded.reason, q.reason),
    last_error = coalesce(excluded.last_error, q.last_error),
    source = excluded.source,
    updated = clock_timestamp()
WHERE q.status <> 3
  AND (excluded.status = 3
       OR excluded.status = 2 AND q.status < 2
       OR q.status = 0
       OR q.last_error IS NULL
       OR excluded.last_error >= q.last_error + make_interval(secs => %(significant_seconds)s));

-- name: clear_with_errors
-- A successful delivery to an address With errors makes it Valid again.
UPDATE mc.quarantine
SET status = 0, errors = 0, updated = clock_timestamp(), source = 'delivered'
WHERE channel = %(channel)s AND address = ANY(%(addresses)s) AND status = 1;

-- name: release_quarantine_automatically
-- Campaign's cleanup: With errors and no error for reset_seconds -> Valid; Mailbox full in
-- Quarantine for mailbox_full_seconds -> Valid. Denylisted is never released automatically.
UPDATE mc.quarantine
SET status = 0, errors = 0, updated = clock_timestamp(), source = 'released automatically'
WHERE (status = 1 AND last_error < now() - make_interval(secs => %(reset_seconds)s))
   OR (status = 2 AND failure_reason = 5
       AND last_error < now() - make_interval(secs => %(mailbox_full_seconds)s));

-- name: get_quarantine
SELECT channel, address, status, errors, failure_reason, reason, last_error, source, created, updated
FROM mc.quarantine WHERE channel = %(channel)s AND address = %(address)s;

-- name: list_quarantine
-- Operators' list: not Valid rows, newest first, optionally one channel / status.
SELECT channel, address, status, errors, failure_reason, reason, last_error, source, created, updated
FROM mc.quarantine
WHERE status > 0
  AND (%(channel)s::smallint IS NULL OR channel = %(channel)s)
  AND (%(status)s::smallint IS NULL OR status = %(status)s)
ORDER BY updated DESC
LIMIT %(limit)s;

-- name: set_quarantine
-- An operator puts an address in a status (Quarantine or Denylisted), or releases it (Valid).
INSERT INTO mc.quarantine AS q (channel, address, status, errors, reason, source, updated)
VALUES (%(channel)s, %(address)s, %(status)s, 0, %(reason)s, %(source)s, clock_timestamp())
ON CONFLICT (channel, address) DO UPDATE
SET status = excluded.status, reason = coalesce(excluded.reason, q.reason),
    errors = CASE WHEN excluded.status = 0 THEN 0 ELSE q.errors END,
    source = excluded.source, updated = excluded.updated
RETURNING status;

-- name: quarantine_counts
-- The page's and the doctor's figures: addresses per status and failure reason.
SELECT status, coalesce(failure_reason, 0) AS failure_reason, count(*)
FROM mc.quarantine WHERE status > 0
GROUP BY status, coalesce(failure_reason, 0);

-- name: feedback_rates
-- Over the last `seconds`: messages sent, hard failures after the send, complaints.
SELECT count(*) FILTER (WHERE status IN (2, 4)) AS sent,
       count(*) FILTER (WHERE delivery = 2) AS bounced,
       count(*) FILTER (WHERE complained_at IS NOT NULL) AS complained
FROM mc.delivery_log
WHERE created >= now() - make_interval(secs => %(seconds)s);

-- name: changed_quarantine
-- Control's sync: this instance's quarantine rows changed since `since` (NULL: all of them).
SELECT channel, address, status, errors, failure_reason, reason, last_error, source, updated
FROM mc.quarantine
WHERE %(since)s::timestamptz IS NULL OR updated >= %(since)s;

-- name: merge_quarantine
-- Control's sync: rows pushed from control; the newest change of an address wins.
INSERT INTO mc.quarantine AS q
    (channel, address, status, errors, failure_reason, reason, last_error, source, updated)
SELECT * FROM unnest(%(channel)s::smallint[], %(address)s::text[], %(status)s::smallint[],
                     %(errors)s::integer[], %(failure_reason)s::smallint[], %(reason)s::text[],
                     %(last_error)s::timestamptz[], %(source)s::text[], %(updated)s::timestamptz[])
ON CONFLICT (channel, address) DO UPDATE
SET status = excluded.status, errors = excluded.errors, failure_reason = excluded.failure_reason,
    reason = excluded.reason, last_error = excluded.last_error, source = excluded.source,
    updated = excluded.updated
WHERE excluded.updated > q.updated;

-- name: unqualified_send_failures
-- Failed at send time (a synchronous refusal) and not qualified yet, oldest first.
SELECT id, event_id, channel, address, coalesce(provider_answer, error) AS text,
       provider_answer IS NOT NULL AS from_provider, created
FROM mc.delivery_log
WHERE status = 4 AND failure_type IS NULL
ORDER BY id
LIMIT %(limit)s;

-- name: qualify_send_failures
-- Their qualification; the status stays Failed (it was copied already), archiving copies it again.
UPDATE mc.delivery_log AS l
SET failure_type = v.failure_type, failure_reason = v.failure_reason, feedback_key = v.feedback_key,
    last_modified = clock_timestamp()
FROM unnest(%(log_id)s::bigint[], %(failure_type)s::smallint[], %(failure_reason)s::smallint[],
            %(feedback_key)s::text[]) AS v(log_id, failure_type, failure_reason, feedback_key)
WHERE l.id = v.log_id;
