-- Control database, version 2: delivery feedback reaches the archive, and one quarantine for every
-- execution instance (a hard bounce seen on one instance reaches the others).
ALTER TABLE mc.delivery_log_histo
    ADD COLUMN delivery       smallint,
    ADD COLUMN failure_type   smallint,
    ADD COLUMN failure_reason smallint,
    ADD COLUMN feedback_text  text,
    ADD COLUMN feedback_at    timestamptz,
    ADD COLUMN last_modified  timestamptz;
UPDATE mc.delivery_log_histo SET last_modified = created;

-- The merged quarantine: the newest change of each (channel, address) from any instance.
CREATE TABLE mc.quarantine_master (
    channel        smallint    NOT NULL,
    address        text        NOT NULL,
    status         smallint    NOT NULL CHECK (status IN (0, 1, 2, 3)),
    errors         integer     NOT NULL DEFAULT 0,
    failure_reason smallint,
    reason         text,
    last_error     timestamptz,
    source         text,
    updated        timestamptz NOT NULL,
    instance       text,                              -- where the change was seen
    PRIMARY KEY (channel, address)
);
CREATE INDEX quarantine_master_updated ON mc.quarantine_master (updated);

-- How far each instance's quarantine has been read into the master and written back from it.
CREATE TABLE mc.quarantine_sync (
    instance     text        PRIMARY KEY,
    pulled_until timestamptz NOT NULL,
    pushed_until timestamptz NOT NULL
);

-- An e-mail template may ask for RFC 8058 one-click unsubscribe headers.
ALTER TABLE mc.template ADD COLUMN list_unsubscribe boolean NOT NULL DEFAULT false;
