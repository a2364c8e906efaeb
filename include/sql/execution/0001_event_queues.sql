-- Execution database, version 1: the two event queues (DESIGN §4).
-- Both queues have the same columns; rt_event is drained continuously, batch_event every minute.

CREATE SCHEMA IF NOT EXISTS mc;

-- Low 56 bits of every event id; the high byte is the execution instance id (see messagecenter/ids.py).
CREATE SEQUENCE mc.event_seq AS bigint MINVALUE 1 MAXVALUE 72057594037927935 CACHE 1000;

CREATE TABLE mc.rt_event (
    id               bigint PRIMARY KEY,             -- (instance_id << 56) | nextval('mc.event_seq')
    event_type       text        NOT NULL,
    channel          smallint    NOT NULL DEFAULT 0  -- email 0, sms 1, ios 41, android 42 (Campaign codes)
                     CHECK (channel IN (0, 1, 41, 42)),
    email            text,
    mobile_phone     text,
    push_token       text,
    external_id      text,
    language         text,
    country          text,
    origin           text,
    ctx              jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- personalisation data
    idempotency_key  text,                           -- Idempotency-Key header or external_id
    created          timestamptz NOT NULL DEFAULT now(),
    scheduled        timestamptz,                    -- not processed before this time
    status           smallint    NOT NULL DEFAULT 0
                     CHECK (status BETWEEN 0 AND 6),
                     -- 0 pending            (intake)
                     -- 0 -> 1 pending delivery (template linked)
                     -- 0 -> 5 not taken into account (no template; final)
                     -- 1 -> 2 sent / 3 ignored / 4 failed (copied from the delivery log; final)
                     -- 0,1 -> 6 expired (past validity; final)
    template_id      bigint,
    template_version integer,
    errors           integer     NOT NULL DEFAULT 0, -- transient delivery errors so far
    next_try         timestamptz,                    -- retry not before (backoff)
    processed        timestamptz,                    -- final status reached
    last_modified    timestamptz NOT NULL DEFAULT now()
);

-- Intake de-duplication: one event per key.
CREATE UNIQUE INDEX rt_event_idempotency_key ON mc.rt_event (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Claiming pending work stays an index range scan however many final events the table holds.
CREATE INDEX rt_event_pending ON mc.rt_event (id) WHERE status = 0;
-- Events being delivered or waiting for a retry (next_try).
CREATE INDEX rt_event_in_delivery ON mc.rt_event (next_try) WHERE status = 1;
CREATE INDEX rt_event_last_modified ON mc.rt_event (last_modified);

CREATE TABLE mc.batch_event (LIKE mc.rt_event INCLUDING ALL);
