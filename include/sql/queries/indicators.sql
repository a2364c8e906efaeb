-- What monitoring/indicators.py measures for the Message Center page and the doctor (execution
-- database of one instance, unless said otherwise). `{events}` is a queue's table.

-- name: queue_now
-- Pending events (0 pending, 1 pending delivery) and how long they have been waiting on average.
SELECT count(*) AS pending,
       coalesce(avg(extract(epoch FROM clock_timestamp() - created)), 0)::float8 AS queue_seconds
FROM {events}
WHERE status IN (0, 1) AND (scheduled IS NULL OR scheduled <= clock_timestamp());

-- name: queue_last_hour
-- Events that reached a final status in the last hour: end-to-end processing time, and how many
-- were Sent (2) / Ignored (3) / Failed (4), for the error rate.
SELECT coalesce(avg(extract(epoch FROM processed - created))
                FILTER (WHERE status IN (2, 3, 4)), 0)::float8 AS processing_seconds,
       count(*) FILTER (WHERE status = 2) AS sent,
       count(*) FILTER (WHERE status = 3) AS ignored,
       count(*) FILTER (WHERE status = 4) AS failed
FROM {events}
WHERE processed >= clock_timestamp() - interval '1 hour';

-- name: status_since
-- Events received since %(seconds)s ago, per status.
SELECT status, count(*) FROM {events}
WHERE created >= clock_timestamp() - make_interval(secs => %(seconds)s)
GROUP BY status ORDER BY status;

-- name: throughput
-- Events per minute that reached a final status in the last %(seconds)s, per status.
SELECT extract(epoch FROM date_trunc('minute', processed))::bigint AS minute, status, count(*)
FROM {events}
WHERE status >= 2 AND processed >= clock_timestamp() - make_interval(secs => %(seconds)s)
GROUP BY 1, 2 ORDER BY 1, 2;

-- name: count_published_templates
-- Execution: template versions the instance routes to.
SELECT count(*) FROM mc.published_template;

-- name: archive_lags
-- Control: per instance, how far behind its archive is (now - end of the archived period).
SELECT instance, archived_until, extract(epoch FROM clock_timestamp() - archived_until)::float8 AS lag_seconds
FROM mc.archive_state
ORDER BY instance;

-- name: unqualified_feedback_since
-- Feedback texts no rule qualified (reason 0) seen in the last %(seconds)s, most frequent first,
-- with how many there are in all.
SELECT feedback_key, first_text, occurrences, last_seen, count(*) OVER () AS total
FROM mc.feedback_message
WHERE failure_reason = 0 AND last_seen >= clock_timestamp() - make_interval(secs => %(seconds)s)
ORDER BY occurrences DESC, feedback_key
LIMIT %(limit)s;

-- name: count_unmatched_feedback
-- Feedback kept because its delivery log was not found (yet).
SELECT count(*) FROM mc.feedback_unmatched;
