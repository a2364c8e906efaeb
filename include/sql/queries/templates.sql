-- Statements of template publishing and routing. `{templates}` is a template table:
-- mc.published_template (execution: what routes) or mc.template (control: the versioned master).

-- name: current_templates
-- THE ROUTING RULE: the version in use for an (event type, channel) is the most recently published
-- one (published_at, then version, breaks a tie). One row per pair; with both parameters NULL,
-- every pair (what publishTemplates copies, what a delivery chunk loads), else the one asked for
-- (what link_templates routes a shard to, and what a new publication compares itself with).
SELECT DISTINCT ON (event_type, channel)
       id, template_id, version, event_type, channel, subject, html, text, data, content_hash,
       list_unsubscribe, badge, sound, collapse_id, thread_id
FROM {templates}
WHERE (%(event_type)s::text IS NULL OR event_type = %(event_type)s::text)
  AND (%(channel)s::smallint IS NULL OR channel = %(channel)s::smallint)
ORDER BY event_type, channel, published_at DESC, version DESC;

-- name: lock_templates
-- Self-conflicting and blocking writers only: concurrent publishers queue here and never pick the
-- same new template id or version, while deliveries keep reading templates.
LOCK TABLE {templates} IN SHARE ROW EXCLUSIVE MODE;

-- name: next_version
-- max, not latest + 1: an older version may have been published (replayed) after a newer one.
SELECT max(version) + 1 FROM {templates} WHERE template_id = %(template_id)s;

-- name: next_template_id
SELECT coalesce(max(template_id), 0) + 1 FROM {templates};

-- name: get_template_version
SELECT event_type, channel, content_hash FROM {templates}
WHERE template_id = %(template_id)s AND version = %(version)s;

-- name: insert_template_version
INSERT INTO {templates}
    (template_id, version, event_type, channel, subject, html, text, data, content_hash,
     list_unsubscribe, badge, sound, collapse_id, thread_id)
VALUES (%(template_id)s, %(version)s, %(event_type)s, %(channel)s, %(subject)s, %(html)s, %(text)s,
        %(data)s, %(content_hash)s, %(list_unsubscribe)s, %(badge)s, %(sound)s, %(collapse_id)s,
        %(thread_id)s);

-- name: published_templates
-- The template versions a delivery chunk needs.
SELECT id, template_id, version, event_type, channel, subject, html, text, data, content_hash,
       list_unsubscribe, badge, sound, collapse_id, thread_id
FROM mc.published_template
WHERE (template_id, version) IN (SELECT * FROM unnest(%(template_id)s::bigint[], %(version)s::integer[]));
