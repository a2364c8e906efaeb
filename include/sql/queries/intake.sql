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
SELECT id, event_type AS type, channel, status, email, mobile_phone, push_token, external_id,
       language, country, origin, ctx, created, scheduled, template_id, template_version, errors,
       next_try, processed, last_modified
FROM {events} WHERE id = %(id)s;

-- name: count_pending
-- Events not yet in a final status: pending (0) or pending delivery (1).
SELECT count(*) FROM {events} WHERE status IN (0, 1);

-- name: count_by_status
SELECT status, count(*) FROM {events} GROUP BY status ORDER BY status;
