-- Execution database, version 3: how far the control instance has archived this instance, written
-- back by each archiving run so mcCleanup can check it without a connection to control.
CREATE TABLE mc.archive_mark (
    singleton       boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    archived_until  timestamptz NOT NULL,            -- rows last modified before this are archived
    updated_at      timestamptz NOT NULL DEFAULT now()
);
