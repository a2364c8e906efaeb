-- Execution database, version 2: published templates, delivery logs, quarantine, and what the
-- processing workflows need on the queues (DESIGN §3, §4, §6).

-- Templates as published by the control instance (or loaded with `templates load`).
-- The most recently published version of an (event_type, channel) wins.
CREATE TABLE mc.published_template (
    id            bigserial   PRIMARY KEY,
    template_id   bigint      NOT NULL,               -- master template id (control), stable across versions
    version       integer     NOT NULL,
    event_type    text        NOT NULL,
    channel       smallint    NOT NULL CHECK (channel IN (0, 1, 41, 42)),
    subject       text,                               -- email subject / push title
    html          text,                               -- email HTML part
    text          text,                               -- email text part / SMS / push body
    data          jsonb,                              -- push data (values are templates)
    content_hash  text        NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (template_id, version)
);
CREATE INDEX published_template_route
    ON mc.published_template (event_type, channel, published_at DESC, version DESC);

-- One final delivery result per event (Sent 2 / Ignored 3 / Failed 4). Transient errors are
-- counted on the event (errors, next_try) and end here only once final.
CREATE TABLE mc.delivery_log (
    id               bigserial   PRIMARY KEY,
    event_id         bigint      NOT NULL,
    queue            text        NOT NULL CHECK (queue IN ('rt', 'batch')),
    status           smallint    NOT NULL CHECK (status IN (2, 3, 4)),
    channel          smallint    NOT NULL,
    address          text,
    template_id      bigint,
    template_version integer,
    message_id       text,                            -- SMTP Message-ID / provider message id
    provider_answer  text,                            -- what the transport said (truncated)
    error            text,                            -- why Ignored / Failed
    tries            integer     NOT NULL DEFAULT 1,
    created          timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The writing transaction: updateEventsStatus and archiving read past a watermark of
    -- completed transactions (pg_snapshot_xmin), so a late commit is never skipped.
    txid             xid8        NOT NULL DEFAULT pg_current_xact_id()
);
-- An event is delivered at most once: a second final log (a retry after a crash) is refused.
CREATE UNIQUE INDEX delivery_log_event ON mc.delivery_log (event_id);
CREATE INDEX delivery_log_txid ON mc.delivery_log (txid);
CREATE INDEX delivery_log_created ON mc.delivery_log (created);

-- Addresses that must not receive messages (bounces, complaints, opt-outs): deliveries are Ignored.
CREATE TABLE mc.quarantine (
    channel  smallint    NOT NULL CHECK (channel IN (0, 1, 41, 42)),
    address  text        NOT NULL,                    -- e-mail lower-cased; phone / token as given
    reason   text,
    created  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, address)
);

-- Watermarks of updateEventsStatus: delivery logs of transactions below txid are copied.
CREATE TABLE mc.status_watermark (
    name        text        PRIMARY KEY,
    txid        xid8        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Processing columns on both queues.
--   batch_id: the split run that claimed the event (shards are read back by it).
--   next_try: lease and retry time in one: an event is claimable when next_try <= now();
--             'infinity' once its final delivery log is written (awaiting the status copy).
ALTER TABLE mc.rt_event ADD COLUMN batch_id bigint;
ALTER TABLE mc.batch_event ADD COLUMN batch_id bigint;
CREATE SEQUENCE mc.batch_seq;

-- Wake the real-time drain as soon as events arrive (one notification per statement, not per row).
CREATE FUNCTION mc.notify_rt_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mc_rt_event', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER rt_event_notify AFTER INSERT ON mc.rt_event
    FOR EACH STATEMENT EXECUTE FUNCTION mc.notify_rt_event();
