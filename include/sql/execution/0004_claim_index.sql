-- Execution database, version 4: a delivery claim reads only its own (event type, channel) due
-- events, in the order it takes them. With the single (next_try) index of version 2, each claim of a
-- shard walked and sorted the due events of every shard (a claim of 500 read ~100k rows at 100k
-- linked events). Equality on the first two columns, a range on next_try, then id: no sort, no
-- other group's rows, and the id range of the shard is checked inside the index.
CREATE INDEX rt_event_due ON mc.rt_event (event_type, channel, next_try, id) WHERE status = 1;
CREATE INDEX batch_event_due ON mc.batch_event (event_type, channel, next_try, id) WHERE status = 1;
DROP INDEX mc.rt_event_in_delivery;
DROP INDEX IF EXISTS mc.batch_event_next_try_idx;  -- its copy, named by CREATE TABLE ... (LIKE ... INCLUDING ALL)
