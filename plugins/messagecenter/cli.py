"""``python -m messagecenter``: operator commands (``db``, ``events``, ``status``, ``templates``,
``archiving``, ``quarantine``, ``feedback``, ``doctor``).

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
from typing import Any, TextIO

from messagecenter.airflow import actions, registry
from messagecenter.airflow.hooks import MessageCenterDbHook
from messagecenter.core.errors import MessageCenterError, TemplateError
from messagecenter.core.settings import get_settings
from messagecenter.core.types import QUEUES, Channel
from messagecenter.db import schema
from messagecenter.db.queries import TEMPLATE_TABLES
from messagecenter.feedback import quarantine, rules
from messagecenter.feedback.quarantine import AddressStatus
from messagecenter.intake import store
from messagecenter.intake.decode import IntakeError, decode_push
from messagecenter.templates import files, publishing

log = logging.getLogger("messagecenter.cli")

# Where the command's output goes: the stdout ``main`` was given (see there).
_output: list[TextIO] = []


def _hook(args: argparse.Namespace) -> MessageCenterDbHook:
    return MessageCenterDbHook(args.conn or get_settings().execution_conn_id, dsn=args.dsn)


def _emit(text: str) -> None:
    """Write a line of the command's output (JSON, a table, a summary) to stdout: nothing else goes there."""
    print(text, file=_output[-1] if _output else sys.stdout)


def _print_json(value: Any) -> None:
    _emit(json.dumps(value, indent=2, default=str))


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
            _emit(f"{component} schema at version {version} ({len(applied)} applied now)")
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
    done = actions.publish_to_instance(control_hook, _hook(args), instance=instance, force=args.force)
    if done.waiting is not None:  # its workflows never ran: not an error, nothing to publish yet
        name = registry.instance_name(args.conn) if args.conn else None
        _emit(f"nothing published: {done.waiting.waiting_message(name)} (or publish now with --force)")
        return 0
    _emit(f"{done.created} new template version(s) published, {done.unchanged} already there")
    return 0


def cmd_archiving_create(args: argparse.Namespace) -> int:
    _print_json(actions.register_instance(args.instance))
    return 0


def cmd_archiving_remove(args: argparse.Namespace) -> int:
    if not actions.unregister_instance(args.instance):
        print(f"error: {args.instance} is not registered", file=sys.stderr)
        return 1
    _emit(f"{args.instance} unregistered; {registry.archiving_dag_id(args.instance)} is gone")
    return 0


def cmd_archiving_backfill(args: argparse.Namespace) -> int:
    result = actions.backfill_archiving(
        args.instance, args.from_date, args.to_date, wait=not args.no_wait, timeout=args.timeout
    )
    _print_json(result)
    unfinished = {"queued", "running"} & result["runs"].keys()
    return 1 if "failed" in result["runs"] or (unfinished and not args.no_wait) else 0


def cmd_archiving_list(args: argparse.Namespace) -> int:
    _print_json({name: registry.archiving_dag_id(name) for name in registry.archiving_instances()})
    return 0


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """Rows as aligned columns, for a person; ``--json`` gives them to a program."""
    cells = [
        [("" if row.get(c) is None else str(row[c])).replace("\n", " ") for c in columns] for row in rows
    ]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        _emit("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip())


QUARANTINE_COLUMNS = (
    "channel",
    "address",
    "status",
    "errors",
    "failure_reason",
    "reason",
    "source",
    "updated",
)


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    with _hook(args).connect() as conn:
        states = quarantine.list_states(
            conn,
            channel=Channel.parse(args.channel) if args.channel else None,
            status=AddressStatus.from_name(args.status) if args.status else None,
            limit=args.limit,
        )
    rows = [state.as_dict() for state in states]
    if args.json:
        _print_json(rows)
    else:
        _print_table(rows, QUARANTINE_COLUMNS)
    return 0


def _set_address(args: argparse.Namespace, status: AddressStatus, reason: str | None) -> int:
    try:
        with _hook(args).connect() as conn:
            state = quarantine.set_status(
                conn, Channel.parse(args.channel), args.address, status, reason=reason, source="cli"
            )
    except ValueError as exc:  # an empty address
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_json(state.as_dict())
    return 0


def cmd_quarantine_add(args: argparse.Namespace) -> int:
    return _set_address(args, AddressStatus.from_name(args.status), args.reason)


def cmd_quarantine_release(args: argparse.Namespace) -> int:
    return _set_address(args, AddressStatus.VALID, None)


def cmd_quarantine_show(args: argparse.Namespace) -> int:
    try:
        with _hook(args).connect() as conn:
            state = quarantine.get_state(conn, Channel.parse(args.channel), args.address)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_json(state.as_dict())
    return 0


def cmd_feedback_rules(args: argparse.Namespace) -> int:
    with _hook(args).connect() as conn:
        found = [rule.as_dict() for rule in rules.all_rules(conn)]
    if args.json:
        _print_json(found)
    else:
        _print_table(found, ("id", "origin", "priority", "type", "reason", "pattern", "note"))
    return 0


def cmd_feedback_rule_add(args: argparse.Namespace) -> int:
    try:
        kind, reason = rules.parse_type(args.type), rules.parse_reason(args.reason)
        with _hook(args).connect() as conn:
            rule_id = rules.save_rule(
                conn, args.pattern, kind, reason, priority=args.priority, note=args.note
            )
    except ValueError as exc:  # not a regular expression, unknown type or reason
        print(f"error: nothing saved: {exc}", file=sys.stderr)
        return 2
    _print_json(
        {
            "id": rule_id,
            "pattern": args.pattern,
            "type": kind.label,
            "reason": reason.label,
            "priority": args.priority,
        }
    )
    return 0


def cmd_feedback_rule_delete(args: argparse.Namespace) -> int:
    with _hook(args).connect() as conn:
        deleted = rules.delete_rule(conn, args.id)
    if not deleted:
        print(f"error: no operator rule {args.id} (seeded rules cannot be deleted)", file=sys.stderr)
        return 1
    print(f"rule {args.id} deleted", file=sys.stderr)
    return 0


def cmd_feedback_texts(args: argparse.Namespace) -> int:
    with _hook(args).connect() as conn:
        texts = rules.feedback_texts(conn, unqualified=args.unqualified, limit=args.limit)
    if args.json:
        _print_json(texts)
    else:
        _print_table(texts, ("occurrences", "type", "reason", "last_seen", "text"))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from messagecenter.airflow.readers import run_doctor
    from messagecenter.monitoring.doctor import exit_code, render_json, render_table

    settings = get_settings()
    role = args.role or settings.role
    roles = {"execution": role in ("execution", "all"), "control": role in ("control", "all")}
    findings = run_doctor(settings, roles=roles)
    _emit(render_json(findings) if args.json else render_table(findings))
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
    back = arc_sub.add_parser(
        "backfill",
        help="re-archive a period: backfill mcArchiving_<instance>, every hour of the range rerun "
        "(waits for a backfill of it still running, then for its own runs)",
    )
    back.add_argument("instance", help="the <instance> of mcArchiving_<instance>")
    back.add_argument(
        "--from-date", required=True, help="first hour (ISO 8601, e.g. 2026-11-01T00:00:00+00:00)"
    )
    back.add_argument("--to-date", required=True, help="last hour (ISO 8601)")
    back.add_argument(
        "--no-wait", action="store_true", help="return once created, without waiting for its runs"
    )
    back.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds to wait for a running backfill, then its runs (600)",
    )
    back.set_defaults(func=cmd_archiving_backfill)
    ls = arc_sub.add_parser("list", help="the instances archived, with their archiving DAG")
    ls.set_defaults(func=cmd_archiving_list)

    channels = [c.label for c in Channel]
    qua = sub.add_parser("quarantine", help="addresses kept from sending (Campaign's quarantine)")
    qua_sub = qua.add_subparsers(dest="action", required=True)
    q_list = qua_sub.add_parser("list", parents=[common], help="addresses that are not valid, newest first")
    q_list.add_argument("--channel", choices=channels)
    q_list.add_argument("--status", choices=[s.api_name for s in AddressStatus if s != AddressStatus.VALID])
    q_list.add_argument("--limit", type=int, default=100)
    q_list.add_argument("--json", action="store_true", help="print JSON")
    q_list.set_defaults(func=cmd_quarantine_list)
    q_add = qua_sub.add_parser(
        "add", parents=[common], help="put an address in quarantine or on the denylist"
    )
    q_add.add_argument("channel", choices=channels)
    q_add.add_argument("address")
    q_add.add_argument("--status", choices=("quarantine", "denylisted"), default="quarantine")
    q_add.add_argument("--reason", help="why (shown with the address)")
    q_add.set_defaults(func=cmd_quarantine_add)
    q_rel = qua_sub.add_parser("release", parents=[common], help="make an address valid again")
    q_rel.add_argument("channel", choices=channels)
    q_rel.add_argument("address")
    q_rel.set_defaults(func=cmd_quarantine_release)
    q_show = qua_sub.add_parser("show", parents=[common], help="one address's quarantine state")
    q_show.add_argument("channel", choices=channels)
    q_show.add_argument("address")
    q_show.set_defaults(func=cmd_quarantine_show)

    fb = sub.add_parser("feedback", help="qualification of delivery feedback (bounces, provider errors)")
    fb_sub = fb.add_subparsers(dest="action", required=True)
    f_rules = fb_sub.add_parser(
        "rules", parents=[common], help="qualification rules in the order they are tried (operators' first)"
    )
    f_rules.add_argument("--json", action="store_true", help="print JSON")
    f_rules.set_defaults(func=cmd_feedback_rules)
    f_add = fb_sub.add_parser(
        "rule-add",
        parents=[common],
        help="add a rule (or change the one with this pattern); the texts it matches are qualified again",
    )
    f_add.add_argument("pattern", help="regular expression over the normalised text (case-insensitive)")
    f_add.add_argument("--type", required=True, choices=("hard", "soft", "ignored"))
    f_add.add_argument(
        "--reason", required=True, help='Campaign\'s failure reason: code or name ("user unknown")'
    )
    f_add.add_argument("--priority", type=int, default=0, help="lower is tried first (default 0)")
    f_add.add_argument("--note")
    f_add.set_defaults(func=cmd_feedback_rule_add)
    f_del = fb_sub.add_parser("rule-delete", parents=[common], help="delete an operator's rule")
    f_del.add_argument("id", type=int)
    f_del.set_defaults(func=cmd_feedback_rule_delete)
    f_texts = fb_sub.add_parser("texts", parents=[common], help="feedback texts counted, most frequent first")
    f_texts.add_argument("--unqualified", action="store_true", help="only the texts no rule qualified")
    f_texts.add_argument("--limit", type=int, default=50)
    f_texts.add_argument("--json", action="store_true", help="print JSON")
    f_texts.set_defaults(func=cmd_feedback_texts)

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
    """Run one command: its output (``--json``: JSON only) on stdout, every log and warning on stderr.

    Airflow, imported by the first connection lookup, configures logging with a handler on
    ``sys.stdout`` (structlog's default output too): its warnings (a secret too short to mask, a
    deprecated option) would come before the JSON. So while the command runs ``sys.stdout`` is
    stderr, and the output goes to the stdout we were given (:func:`_emit`).
    """
    args = build_parser().parse_args(argv)  # --help is output: on stdout
    _output.append(sys.stdout)
    sys.stdout = sys.stderr
    try:
        logging.basicConfig(level=os.environ.get("MC_LOG_LEVEL", "INFO"), format="%(levelname)s %(message)s")
        # Outside a task the SDK reads connections from env vars and secrets backends only; as a
        # server-side tool the CLI may also read the Airflow metastore.
        os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
        try:
            return args.func(args)
        except MessageCenterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    finally:
        sys.stdout = _output.pop()
