-- Execution database, version 6: idempotency keys get one namespace per source, and keyed events the
-- hash of their content (messagecenter/intake/store.py).
-- Keys of different sources shared one namespace: item 0 of a batch pushed with Idempotency-Key K
-- was stored as K#0, the key of a single push with header K#0; an external_id was the same key as
-- an equal Idempotency-Key. A key is now prefixed by its source: h:K (header, single push),
-- b:K#i (header, item i of a batch), x:E (external_id, no header). A replay compares request_hash
-- (BLAKE2b-128 of the event's content): another content under a stored key is a conflict (409).
ALTER TABLE mc.rt_event ADD COLUMN request_hash bytea;
ALTER TABLE mc.batch_event ADD COLUMN request_hash bytea;

-- Existing keys move to their namespace, so a retry that spans the upgrade still finds its event.
-- The source was not recorded: a key equal to the event's external_id came from it; a key ending in
-- #<digits> was a batch item; any other came from the header of a single push (a batch of one also
-- used the bare header key: its retry is now a conflict rather than a duplicate). Their hash stays
-- NULL, which a replay takes as matching. The unique indexes are rebuilt around the rewrite: checked
-- row by row, they could see a new key meet an old one not yet rewritten.
DROP INDEX mc.rt_event_idempotency_key;
DROP INDEX mc.batch_event_idempotency_key_idx;
UPDATE mc.rt_event
SET idempotency_key = CASE
        WHEN idempotency_key = external_id THEN 'x:' || idempotency_key
        WHEN idempotency_key ~ '#[0-9]+$' THEN 'b:' || idempotency_key
        ELSE 'h:' || idempotency_key
    END
WHERE idempotency_key IS NOT NULL;
UPDATE mc.batch_event
SET idempotency_key = CASE
        WHEN idempotency_key = external_id THEN 'x:' || idempotency_key
        WHEN idempotency_key ~ '#[0-9]+$' THEN 'b:' || idempotency_key
        ELSE 'h:' || idempotency_key
    END
WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX rt_event_idempotency_key ON mc.rt_event (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX batch_event_idempotency_key_idx ON mc.batch_event (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
