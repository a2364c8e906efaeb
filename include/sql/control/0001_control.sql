-- Control database, version 1: master templates, the events and delivery logs archive of every
-- execution instance, and the archiving state per instance (DESIGN §4).

CREATE SCHEMA IF NOT EXISTS mc;

-- Master templates, versioned: a version is created only when the content changes.
CREATE TABLE mc.template (
    id            bigserial   PRIMARY KEY,
    template_id   bigint      NOT NULL,               -- stable across versions
    version       integer     NOT NULL,
    event_type    text        NOT NULL,
    channel       smallint    NOT NULL CHECK (channel IN (0, 1, 41, 42)),
    subject       text,
    html          text,
    text          text,
    data          jsonb,
    content_hash  text        NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT clock_timestamp(),  -- created on control
    UNIQUE (template_id, version)
);
CREATE INDEX template_route ON mc.template (event_type, channel, published_at DESC, version DESC);

-- Archived events of every execution instance (ids are unique across instances: high byte).
CREATE TABLE mc.event_histo (
    id               bigint      PRIMARY KEY,
    instance_id      smallint    NOT NULL,
    queue            text        NOT NULL CHECK (queue IN ('rt', 'batch')),
    event_type       text        NOT NULL,
    channel          smallint    NOT NULL,
    email            text,
    mobile_phone     text,
    push_token       text,
    external_id      text,
    language         text,
    country          text,
    origin           text,
    ctx              jsonb       NOT NULL,
    created          timestamptz NOT NULL,
    scheduled        timestamptz,
    status           smallint    NOT NULL,
    template_id      bigint,
    template_version integer,
    errors           integer     NOT NULL,
    processed        timestamptz,
    last_modified    timestamptz NOT NULL,
    archived_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_histo_instance_modified ON mc.event_histo (instance_id, last_modified);
CREATE INDEX event_histo_created ON mc.event_histo (created);

-- Archived delivery logs; (instance_id, id) because log ids are per execution database.
CREATE TABLE mc.delivery_log_histo (
    instance_id      smallint    NOT NULL,
    id               bigint      NOT NULL,
    event_id         bigint      NOT NULL,
    queue            text        NOT NULL,
    status           smallint    NOT NULL,
    channel          smallint    NOT NULL,
    address          text,
    template_id      bigint,
    template_version integer,
    message_id       text,
    provider_answer  text,
    error            text,
    tries            integer     NOT NULL,
    created          timestamptz NOT NULL,
    archived_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, id)
);
CREATE INDEX delivery_log_histo_event ON mc.delivery_log_histo (event_id);

-- Where archiving of each execution instance stands. Runs always read from the previous
-- archived_until (or from the beginning for the first run), so the archived period has no gap.
CREATE TABLE mc.archive_state (
    instance            text        PRIMARY KEY,     -- the name in mc_exec_<instance>
    instance_id         smallint    NOT NULL,
    archived_until      timestamptz NOT NULL,        -- every row last modified before this is archived
    last_run_at         timestamptz NOT NULL,
    last_interval_start timestamptz NOT NULL,
    last_interval_end   timestamptz NOT NULL,
    events_copied       bigint      NOT NULL,        -- new or changed rows, by the last run
    logs_copied         bigint      NOT NULL,
    total_events        bigint      NOT NULL,        -- by every run so far
    total_logs          bigint      NOT NULL,
    lag_seconds         double precision NOT NULL    -- last run's end - its interval end
);
