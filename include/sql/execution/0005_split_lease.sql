-- Execution database, version 5: claiming pending events rewrites them in place.
-- A split leased its events in next_try, which the due index holds: every claimed event got a new
-- row version on another page and an entry in each index. The split's lease now has its own column,
-- in no index, and the queues keep half of each page free, room for a new version of every row a
-- claim chunk rewrites: the claim becomes a HOT update (same page, no index entry), and the link
-- and status updates that follow find room on the same page. next_try is now only the time a
-- linked event is due (first try or retry).
ALTER TABLE mc.rt_event ADD COLUMN claimed_until timestamptz;
ALTER TABLE mc.batch_event ADD COLUMN claimed_until timestamptz;
ALTER TABLE mc.rt_event SET (fillfactor = 50);
ALTER TABLE mc.batch_event SET (fillfactor = 50);
