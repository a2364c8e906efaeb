-- Execution database, version 9: what happened after "Sent". A delivery log keeps changing after
-- the provider accepted the message (delivered, bounced, complained); one rules table qualifies
-- every error text; the quarantine keeps Campaign's statuses per (channel, address).

-- Feedback on a delivery log. status still says Sent / Ignored / Failed (a later hard failure turns
-- Sent into Failed); these columns say what came after and why.
ALTER TABLE mc.delivery_log
    ADD COLUMN delivery       smallint CHECK (delivery IN (1, 2)),  -- NULL accepted, 1 delivered, 2 failed after the send
    ADD COLUMN failure_type   smallint CHECK (failure_type IN (1, 2, 3)),  -- 1 soft, 2 hard, 3 ignored (Campaign's codes)
    ADD COLUMN failure_reason smallint,                -- Campaign's reason code (0 not defined, 1 user unknown...)
    ADD COLUMN feedback_text  text,                    -- the provider's raw text of the last feedback (truncated)
    ADD COLUMN feedback_key   text,                    -- its normalised form (mc.feedback_message)
    ADD COLUMN feedback_at    timestamptz,             -- when the last feedback arrived
    ADD COLUMN complained_at  timestamptz,             -- the recipient reported it as spam (ARF, provider)
    -- A changed log is copied again (updateEventsStatus reads past txid) and archived again.
    ADD COLUMN last_modified  timestamptz;
UPDATE mc.delivery_log SET last_modified = created;
ALTER TABLE mc.delivery_log
    ALTER COLUMN last_modified SET DEFAULT clock_timestamp(),
    ALTER COLUMN last_modified SET NOT NULL;
CREATE INDEX delivery_log_last_modified ON mc.delivery_log (last_modified);
-- Feedback that names the provider's message id (webhooks, SMS receipts) finds its log.
CREATE INDEX delivery_log_message_id ON mc.delivery_log (message_id) WHERE message_id IS NOT NULL;
-- Failed at send time and not qualified yet (updateEventsStatus qualifies them).
CREATE INDEX delivery_log_unqualified ON mc.delivery_log (id) WHERE status = 4 AND failure_type IS NULL;

-- Operators' qualification rules (the seeded ones ship with the code and come after these):
-- a regular expression over the normalised text gives the failure type and reason.
CREATE TABLE mc.feedback_rule (
    id             serial      PRIMARY KEY,
    pattern        text        NOT NULL UNIQUE,
    failure_type   smallint    NOT NULL CHECK (failure_type IN (1, 2, 3)),
    failure_reason smallint    NOT NULL,
    priority       integer     NOT NULL DEFAULT 0,   -- lower first
    note           text,
    created        timestamptz NOT NULL DEFAULT now(),
    updated        timestamptz NOT NULL DEFAULT now()
);

-- Every distinct normalised feedback text (Campaign's delivery log qualification): qualified or
-- not, counted, never dropped. failure_reason 0 = not defined: no rule matched it.
CREATE TABLE mc.feedback_message (
    feedback_key   text        PRIMARY KEY,
    first_text     text        NOT NULL,
    failure_type   smallint,
    failure_reason smallint    NOT NULL DEFAULT 0,
    occurrences    bigint      NOT NULL DEFAULT 0,   -- capped at 100,000 as in Campaign
    first_seen     timestamptz NOT NULL DEFAULT now(),
    last_seen      timestamptz NOT NULL DEFAULT now()
);

-- Quarantine per (channel, address), Campaign's statuses: 0 valid (kept so that a release reaches
-- every instance), 1 with errors, 2 quarantine, 3 denylisted. Rows of earlier versions quarantined.
ALTER TABLE mc.quarantine
    ADD COLUMN status         smallint    NOT NULL DEFAULT 2 CHECK (status IN (0, 1, 2, 3)),
    ADD COLUMN errors         integer     NOT NULL DEFAULT 0,  -- significant errors counted
    ADD COLUMN failure_reason smallint,
    ADD COLUMN last_error     timestamptz,                     -- the last significant error
    ADD COLUMN source         text,                            -- bounce, webhook, unsubscribe, operator, control...
    ADD COLUMN updated        timestamptz NOT NULL DEFAULT clock_timestamp();
CREATE INDEX quarantine_updated ON mc.quarantine (updated);
-- What the automatic releases look at: With errors, and Mailbox full in quarantine.
CREATE INDEX quarantine_release ON mc.quarantine (last_error) WHERE status = 1 OR (status = 2 AND failure_reason = 5);

-- Provider events already applied (webhook replays, Mailgun tokens): applying one twice changes nothing.
CREATE TABLE mc.feedback_seen (
    provider  text        NOT NULL,
    event_key text        NOT NULL,
    received  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_key)
);

-- Feedback whose delivery log was not found yet (an SMS receipt may come before the submit answer):
-- kept, counted on the page, and matched again by later runs until it is too old.
CREATE TABLE mc.feedback_unmatched (
    id            bigserial   PRIMARY KEY,
    provider      text        NOT NULL,
    message_id    text,
    address       text,
    kind          text        NOT NULL,
    failure_type  smallint,
    failure_reason smallint,
    feedback_text text,
    feedback_key  text,
    received      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_unmatched_message ON mc.feedback_unmatched (message_id);

-- An e-mail template may ask for RFC 8058 one-click unsubscribe headers.
ALTER TABLE mc.published_template ADD COLUMN list_unsubscribe boolean NOT NULL DEFAULT false;
