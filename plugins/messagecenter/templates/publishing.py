"""Publishing: write new template versions, and read the version in use (the routing rule).

``templates load`` publishes what changed in a file; the control instance publishes its master
versions under their own ids and versions through the same function. The version in use for an
(event type, channel) is the most recently published one: that rule is the SQL statement
``current_templates``, and every reader here and in the execution workflows runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from messagecenter.core.errors import TemplateError
from messagecenter.core.types import Channel
from messagecenter.db.queries import TemplateTable, fetch_value, query
from messagecenter.templates.spec import PublishedTemplate, PublishedVersion, TemplateSpec

log = logging.getLogger(__name__)


EXECUTION_TABLE: TemplateTable = "execution"  # mc.published_template: what routes events
CONTROL_TABLE: TemplateTable = "control"  # mc.template: control's versioned master


def publish_templates(
    conn: psycopg.Connection[Any], specs: Iterable[TemplateSpec], *, table: TemplateTable = EXECUTION_TABLE
) -> list[PublishedVersion]:
    """Publish ``specs`` in one transaction; return what happened to each, in order.

    A spec without ids whose content equals the latest version of its (event type, channel) writes
    nothing; otherwise it becomes version latest + 1 of that template (a new template id when the
    pair is new). A spec with ``template_id`` and ``version`` (control instance) is inserted unless
    that version already exists, so replaying a publication is harmless.

    :param table: ``execution`` (``mc.published_template``: what routes) or ``control``
        (``mc.template``: the master).

    :raises TemplateError: an explicit (template_id, version) already exists with another content.
    """
    specs = list(specs)
    results: list[PublishedVersion] = []
    with conn.transaction():
        conn.execute(query("lock_templates", templates=table))
        for spec in specs:
            if spec.template_id is None:
                results.append(_publish_next(conn, spec, table))
            else:
                results.append(_publish_explicit(conn, spec, table))
    for result in results:
        if result.created:
            log.info(
                "Published template %s version %s (%s, %s)",
                result.template_id,
                result.version,
                result.event_type,
                Channel(result.channel).label,
            )
    log.info(
        "%s template version(s) published, %s unchanged",
        sum(r.created for r in results),
        sum(not r.created for r in results),
    )
    return results


def _publish_next(
    conn: psycopg.Connection[Any], spec: TemplateSpec, table: TemplateTable
) -> PublishedVersion:
    digest = spec.content_hash
    latest = latest_template(conn, spec.event_type, spec.channel, table=table)
    if latest is not None and latest.content_hash == digest:
        return PublishedVersion(
            spec.event_type, spec.channel, latest.template_id, latest.version, created=False
        )
    if latest is not None:
        template_id = latest.template_id
        version = fetch_value(conn, query("next_version", templates=table), {"template_id": template_id})
    else:
        template_id, version = fetch_value(conn, query("next_template_id", templates=table)), 1
    _insert(conn, table, template_id, version, spec, digest)
    return PublishedVersion(spec.event_type, spec.channel, template_id, version, created=True)


def _publish_explicit(
    conn: psycopg.Connection[Any], spec: TemplateSpec, table: TemplateTable
) -> PublishedVersion:
    template_id, version = spec.template_id, spec.version
    if template_id is None or version is None:
        raise ValueError("an explicit publication needs template_id and version")
    digest = spec.content_hash
    existing = conn.execute(
        query("get_template_version", templates=table), {"template_id": template_id, "version": version}
    ).fetchone()
    if existing is None:
        _insert(conn, table, template_id, version, spec, digest)
    elif tuple(existing) != (spec.event_type, spec.channel, digest):
        raise TemplateError(
            f"template {template_id} version {version} is already published with another "
            f"content ({existing[0]}, {Channel(existing[1]).label}); "
            "a published version never changes: publish a new version"
        )
    return PublishedVersion(spec.event_type, spec.channel, template_id, version, created=existing is None)


def _insert(
    conn: psycopg.Connection[Any],
    table: TemplateTable,
    template_id: int,
    version: int,
    spec: TemplateSpec,
    digest: str,
) -> None:
    conn.execute(
        query("insert_template_version", templates=table),
        {
            "template_id": template_id,
            "version": version,
            "event_type": spec.event_type,
            "channel": spec.channel,
            "subject": spec.subject,
            "html": spec.html,
            "text": spec.text,
            "data": None if spec.data is None else Jsonb(spec.data),
            "content_hash": digest,
            "list_unsubscribe": spec.list_unsubscribe,
            "badge": spec.badge,
            "sound": spec.sound,
            "collapse_id": spec.collapse_id,
            "thread_id": spec.thread_id,
        },
    )


def _current(
    conn: psycopg.Connection[Any], table: TemplateTable, event_type: str | None, channel: int | None
) -> list[PublishedTemplate]:
    with conn.cursor(row_factory=class_row(PublishedTemplate)) as cur:
        params = {"event_type": event_type, "channel": channel}
        return cur.execute(query("current_templates", templates=table), params).fetchall()


def latest_template(
    conn: psycopg.Connection[Any],
    event_type: str,
    channel: int | str,
    *,
    table: TemplateTable = EXECUTION_TABLE,
) -> PublishedTemplate | None:
    """The version in use for (``event_type``, ``channel``): the most recently published one."""
    found = _current(conn, table, event_type, int(Channel.parse(channel)))
    return found[0] if found else None


def latest_templates(
    conn: psycopg.Connection[Any], *, table: TemplateTable = EXECUTION_TABLE
) -> dict[tuple[str, int], PublishedTemplate]:
    """Every (event type, channel code) -> version in use, in one query (what ``publishTemplates``
    copies from control's master table)."""
    return {(t.event_type, t.channel): t for t in _current(conn, table, None, None)}


def publish_latest(
    control_conn: psycopg.Connection[Any], exec_conn: psycopg.Connection[Any]
) -> list[PublishedVersion]:
    """Publish control's latest master versions on one execution instance, under their master ids.

    Replaying is harmless (a version already there is kept), so ``publishTemplates`` may rerun.
    """
    specs = [t.spec() for t in latest_templates(control_conn, table=CONTROL_TABLE).values()]
    control_conn.rollback()
    return publish_templates(exec_conn, specs)
