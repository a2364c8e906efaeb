-- Execution database, version 10: push templates carry the platforms' display options (a badge
-- count, a sound, a collapse id, an iOS thread id), sent as they are (not templates).
ALTER TABLE mc.published_template
    ADD COLUMN badge       integer CHECK (badge >= 0),
    ADD COLUMN sound       text,
    ADD COLUMN collapse_id text,
    ADD COLUMN thread_id   text;
