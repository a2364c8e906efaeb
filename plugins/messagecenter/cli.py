"""``python -m messagecenter``: operator commands (``db``, ``events``, ``status``, ``templates``,
``archiving``, ``doctor``).

Connections are Airflow connections (``--conn``), resolved from the environment
(``AIRFLOW_CONN_<ID>``), a secrets backend or the Airflow metastore; ``--dsn`` bypasses them. The
commands that are also a button or a task call the same function (``messagecenter.airflow.actions``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from messagecenter.airflow import actions, registry
from messagecenter.airflow.hooks import MessageCenterDbHook
from messagecenter.core.errors import MessageCenterError, TemplateError
from messagecenter.core.settings import get_settings
from messagecenter.core.types import QUEUES, Channel
from messagecenter.db import schema
from messagecenter.db.queries import TEMPLATE_TABLES
from messagecenter.intake import store
from messagecenter.intake.decode import IntakeError, decode_push
from messagecenter.templates import files, publishing

log = logging.getLogger("messagecenter.cli")


def _hook(args: argparse.Namespace) -> MessageCenterDbHook:
    return MessageCenterDbHook(args.conn or get_settings().execution_conn_id, dsn=args.dsn)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _default_component(args: argparse.Namespace) -> str:
    """``control`` for the control connection, else ``execution``: what a command acts on by default."""
    settings = get_settings()
    return "control" if (args.conn or settings.execution_conn_id) == settings.control_conn_id else "execution"


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    components = args.schema or [_default_component(args)]
    with _hook(args).connect() as conn:
        for component in components:
            applied = schema.upgrade(conn, component)
            version = schema.current_version(conn, component)
            print(f"{component} schema at version {version} ({len(applied)} applied now)")
    return 0


def cmd_events_push(args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    if raw.lstrip().startswith(b"["):  # a bare list is accepted as a batch
        raw = b'{"events": ' + raw + b"}"
    settings = get_settings()
    try:
        events, is_batch = decode_push(raw, settings.intake)
    except IntakeError as exc:
        print(f"error: nothing stored, invalid input: {exc}", file=sys.stderr)
        return 2
    try:
        with _hook(args).connect() as conn:
            result = store.insert_events(
                conn,
                args.queue,
                events,
                instance_id=settings.instance_id,
                idempotency_key=args.key,
                batch=is_batch,
            )
    except store.IdempotencyConflict as exc:
        print(f"error: nothing stored: {exc}", file=sys.stderr)
        return 2
    _print_json({"ids": result.ids} if is_batch else {"id": result.ids[0]})
    return 0


def cmd_events_get(args: argparse.Namespace) -> int:
    with _hook(args).connect() as conn:
        row = store.get_event(conn, args.queue, args.id)
    if row is None:
        print(f"error: no event {args.id} in queue {args.queue}", file=sys.stderr)
        return 1
    _print_json(row)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _hook(args).connect() as conn:
        report = {
            "pending": store.pending_counts(conn),
            "by_status": {q: store.status_counts(conn, q) for q in QUEUES},
            "schema_version": schema.current_version(conn, "execution"),
        }
    _print_json(report)
    return 0


def _sms_preview(channel: int, text: str | None) -> dict[str, str]:
    """An SMS template's encoding and segments, on its static text (its expressions left out)."""
    if channel != Channel.SMS:
        return {}
    from messagecenter.delivery.gsm import sms_segments, static_text

    return {"sms": f"{sms_segments(static_text(text or '')).describe()}, on its static text"}


def cmd_templates_load(args: argparse.Namespace) -> int:
    target = args.target or _default_component(args)
    table = publishing.CONTROL_TABLE if target == "control" else publishing.EXECUTION_TABLE
    try:
        specs = files.load_template_file(args.file)  # the whole file is checked before connecting
        with _hook(args).connect() as conn:
            published = publishing.publish_templates(conn, specs, table=table)
    except TemplateError as exc:
        print(f"error: nothing loaded: {exc}", file=sys.stderr)
        return 2
    _print_json(
        {
            "file": args.file,
            "target": f"{target} (mc.{TEMPLATE_TABLES[table]})",
            "created": sum(p.created for p in published),
            "unchanged": sum(not p.created for p in published),
            "templates": [
                {
                    "event_type": p.event_type,
                    "channel": Channel(p.channel).label,
                    "template_id": p.template_id,
                    "version": p.version,
                    "result": "created" if p.created else "unchanged",
                    **_sms_preview(p.channel, spec.text),
                }
                for p, spec in zip(published, specs, strict=True)
            ],
        }
    )
    return 0


def cmd_templates_publish(args: argparse.Namespace) -> int:
    control_hook = MessageCenterDbHook(args.control or get_settings().control_conn_id)
    instance = args.conn or (args.dsn and "the --dsn database") or get_settings().execution_conn_id
    counts = actions.publish_to_instance(control_hook, _hook(args), instance=instance, force=args.force)
    print(f"{counts['created']} new template version(s) published, {counts['unchanged']} already there")
    return 0


def cmd_archiving_create(args: argparse.Namespace) -> int:
    _print_json(actions.register_instance(args.instance))
    return 0


def cmd_archiving_remove(args: argparse.Namespace) -> int:
    if not actions.unregister_instance(args.instance):
        print(f"error: {args.instance} is not registered", file=sys.stderr)
        return 1
    print(f"{args.instance} unregistered; {registry.archiving_dag_id(args.instance)} goes at the next parse")
    return 0


def cmd_archiving_list(args: argparse.Namespace) -> int:
    _print_json({name: registry.archiving_dag_id(name) for name in registry.archiving_instances()})
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from messagecenter.airflow.readers import run_doctor
    from messagecenter.monitoring.doctor import exit_code, render_json, render_table

    settings = get_settings()
    role = args.role or settings.role
    roles = {"execution": role in ("execution", "all"), "control": role in ("control", "all")}
    findings = run_doctor(settings, roles=roles)
    print(render_json(findings) if args.json else render_table(findings))
    return exit_code(findings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m messagecenter", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--conn", help="Airflow connection id (default: mc_execution / MC_EXECUTION_CONN_ID)")
    common.add_argument("--dsn", help="libpq DSN, instead of an Airflow connection")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    up = db.add_parser("upgrade", parents=[common], help="apply pending schema versions (idempotent)")
    up.add_argument(
        "--schema",
        action="append",
        choices=schema.COMPONENTS,
        help="schema to upgrade (repeatable; default: control for the control connection, else execution)",
    )
    up.set_defaults(func=cmd_db_upgrade)

    ev = sub.add_parser("events", help="push and read events").add_subparsers(dest="action", required=True)
    push = ev.add_parser("push", parents=[common], help="push events from a JSON file (or - for stdin)")
    push.add_argument("file", help='one event, a list, or {"events": [...]}')
    push.add_argument("--queue", choices=QUEUES, default="rt")
    push.add_argument("--key", help="idempotency key: a retried push returns the same ids")
    push.set_defaults(func=cmd_events_push)
    get = ev.add_parser("get", parents=[common], help="show one event with its status")
    get.add_argument("queue", choices=QUEUES)
    get.add_argument("id", type=int)
    get.set_defaults(func=cmd_events_get)

    st = sub.add_parser("status", parents=[common], help="pending counts and events per status")
    st.set_defaults(func=cmd_status)

    tpl = sub.add_parser("templates", help="message templates").add_subparsers(dest="action", required=True)
    load = tpl.add_parser(
        "load", parents=[common], help="validate a YAML/JSON template file and publish what changed"
    )
    load.add_argument("file", help="template file (.yaml, .yml or .json)")
    load.add_argument(
        "--target",
        choices=("control", "execution"),
        help="control: master templates, published by publishTemplates; execution: routed at once "
        "(default: control for the control connection, else execution)",
    )
    load.set_defaults(func=cmd_templates_load)

    pub = tpl.add_parser(
        "publish",
        parents=[common],
        help="publish control's latest template versions on one execution instance (what "
        "publishTemplates does for every instance)",
    )
    pub.add_argument("--control", help="control connection id (default: mc_control / MC_CONTROL_CONN_ID)")
    pub.add_argument(
        "--force",
        action="store_true",
        help="publish even if the instance's technical workflows have no recent heartbeat (e.g. at "
        "installation, before they are turned on)",
    )
    pub.set_defaults(func=cmd_templates_publish)

    arc = sub.add_parser("archiving", help="archiving workflows of the execution instances (control)")
    arc_sub = arc.add_subparsers(dest="action", required=True)
    create = arc_sub.add_parser(
        "create", help="Create the archiving workflow of an instance (connection mc_exec_<instance>)"
    )
    create.add_argument("instance", help="the <instance> of connection mc_exec_<instance>")
    create.set_defaults(func=cmd_archiving_create)
    remove = arc_sub.add_parser("remove", help="remove an instance registered with `archiving create`")
    remove.add_argument("instance")
    remove.set_defaults(func=cmd_archiving_remove)
    ls = arc_sub.add_parser("list", help="the instances archived, with their archiving DAG")
    ls.set_defaults(func=cmd_archiving_list)

    doc = sub.add_parser(
        "doctor",
        help="check that this deployment is ready; exit 0 ready, 1 errors, 2 warnings only",
        description="Check the databases, workflows, providers, API tokens, templates (execution) and "
        "the execution instances and their archiving (control); every failing line says what to do.",
    )
    doc.add_argument("--json", action="store_true", help="print the findings as JSON")
    doc.add_argument(
        "--role", choices=("execution", "control", "all"), help="roles to check (default: MC_ROLE)"
    )
    doc.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("MC_LOG_LEVEL", "INFO"), format="%(levelname)s %(message)s")
    # Outside a task the SDK reads connections from env vars and secrets backends only; as a server-side
    # tool the CLI may also read the Airflow metastore.
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MessageCenterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
