-- Read by the doctor and the Message Center page.

-- name: count_published_templates
-- Execution: template versions the instance routes to.
SELECT count(*) FROM mc.published_template;

-- name: archive_lags
-- Control: per instance, how far behind its archive is (now - end of the archived period).
SELECT instance, archived_until, extract(epoch FROM clock_timestamp() - archived_until)::float8 AS lag_seconds
FROM mc.archive_state
ORDER BY instance;
