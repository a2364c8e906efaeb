-- Statements of the event store (intake and reads). `{events}` is the queue's table
-- (mc.rt_event or mc.batch_event); values are %(named)s parameters.

-- name: find_idempotency_keys
-- Events already stored under one of these de-duplication keys, with the hash of their content.
SELECT idempotency_key, id, request_hash FROM {events} WHERE idempotency_key = ANY(%(keys)s);

-- name: allocate_sequences
-- Sequence values for n new events in one round trip (the high byte of an id is added in Python).
SELECT array_agg(nextval('mc.event_seq')) FROM generate_series(1, %(n)s);

-- name: copy_events
-- New events, in the column order of intake.store.INTAKE_COLUMNS; status starts at 0 (pending).
COPY {events} (id, event_type, channel, email, mobile_phone, push_token, external_id, language,
               country, origin, ctx, idempotency_key, scheduled, request_hash)
FROM STDIN;

-- name: get_event
-- The event, with what its delivery log says of the send's outcome (NULL until it has one).
SELECT e.id, e.event_type AS type, e.channel, e.status, e.email, e.mobile_phone, e.push_token,
       e.external_id, e.language, e.country, e.origin, e.ctx, e.created, e.scheduled,
       e.template_id, e.template_version, e.errors, e.next_try, e.processed, e.last_modified,
       l.delivery, l.failure_type, l.failure_reason, l.feedback_at
FROM {events} AS e
LEFT JOIN mc.delivery_log AS l ON l.event_id = e.id
WHERE e.id = %(id)s;

-- name: count_pending
-- Events not yet in a final status: pending (0) or pending delivery (1).
SELECT count(*) FROM {events} WHERE status IN (0, 1);

-- name: count_by_status
SELECT status, count(*) FROM {events} GROUP BY status ORDER BY status;
