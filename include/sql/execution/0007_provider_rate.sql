-- Execution database, version 7: providers' rate limits, shared by every worker of the instance.
-- A provider limits per account, not per process: each worker reserves its next send slots here
-- (one row per provider; next_free moves forward by n / rate for n slots reserved).
CREATE TABLE mc.provider_rate (
    provider   text        PRIMARY KEY,          -- the connection id (mc_smtp, mc_sms, mc_push)
    next_free  timestamptz NOT NULL              -- the first slot nobody has reserved yet
);
