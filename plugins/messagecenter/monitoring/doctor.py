"""``python -m messagecenter doctor``: is this deployment ready? Pure checks, one finding each.

Every check takes what was already read (versions, heartbeat ages, DAG states, probe answers) and
returns :class:`Finding` s: ``ok``, ``warning`` or ``error``, what was checked, and a message that
says what to do when it is not ok (which DAG to turn on, which command to run). Nothing here reads a
database, Airflow or the network: ``messagecenter.airflow.readers`` does (the provider probes are
:mod:`messagecenter.monitoring.probes`), so each check and its message is tested on its own.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from messagecenter.core.settings import BOUNCE_MAILBOX_CONN_ID
from messagecenter.monitoring.heartbeats import WorkflowsState, is_stale
from messagecenter.monitoring.indicators import MAILBOX_PROVIDERS_COMPLAINT_LINE, alert_level

Level = Literal["ok", "warning", "error"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "error")

# Exit codes of the doctor command.
READY, ERRORS, WARNINGS = 0, 1, 2


@dataclass(frozen=True)
class Finding:
    """One check: its level, what it is about, and what to do when it is not ok."""

    level: Level
    what: str
    message: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def ok(what: str, message: str) -> Finding:
    return Finding("ok", what, message)


def warning(what: str, message: str) -> Finding:
    return Finding("warning", what, message)


def error(what: str, message: str) -> Finding:
    return Finding("error", what, message)


def exit_code(findings: Iterable[Finding]) -> int:
    """0 ready, 1 some error, 2 warnings only."""
    levels = {f.level for f in findings}
    if "error" in levels:
        return ERRORS
    return WARNINGS if "warning" in levels else READY


def render_table(findings: Sequence[Finding]) -> str:
    """A plain-text table: level, what, message; then a one-line verdict."""
    width = max((len(f.what) for f in findings), default=4)
    lines = [f"{'LEVEL':<8} {'CHECK':<{width}}  MESSAGE"]
    lines += [f"{f.level.upper():<8} {f.what:<{width}}  {f.message}" for f in findings]
    counts = {level: sum(f.level == level for f in findings) for level in LEVELS}
    verdict = {READY: "ready", ERRORS: "NOT ready", WARNINGS: "ready, with warnings"}[exit_code(findings)]
    lines.append(
        f"\n{verdict}: {counts['ok']} ok, {counts['warning']} warning(s), {counts['error']} error(s)"
    )
    return "\n".join(lines)


def render_json(findings: Sequence[Finding]) -> str:
    return json.dumps(
        {"exit_code": exit_code(findings), "findings": [f.to_json() for f in findings]}, indent=2
    )


# --- Databases ---------------------------------------------------------------------------------------


def check_database(
    conn_id: str, component: str, *, version: int | None, newest: int, problem: str | None = None
) -> Finding:
    """The database of ``conn_id`` answers and its ``component`` schema is at the ``newest`` version.

    :param version: the applied version (None when the database could not be reached).
    :param problem: why it could not be reached.
    """
    what = f"{conn_id} database"
    upgrade = f"python -m messagecenter db upgrade --conn {conn_id} --schema {component}"
    if version is None:
        return error(
            what,
            f"unreachable: {problem}. Check the connection {conn_id} (host, port, login, password) "
            "with `airflow connections get " + conn_id + "` and that the database is up",
        )
    if version == 0:
        return error(what, f"reachable but the {component} schema is not installed: run `{upgrade}`")
    if version < newest:
        return error(
            what, f"{component} schema at version {version}, this code needs {newest}: run `{upgrade}`"
        )
    if version > newest:
        return error(
            what,
            f"{component} schema at version {version}, newer than this code ({newest}): "
            "upgrade Message Center on this machine",
        )
    return ok(what, f"reachable, {component} schema current (version {version})")


# --- Workflows -------------------------------------------------------------------------------------


def check_dags(dags: Mapping[str, bool | None], *, why: str = "") -> list[Finding]:
    """Each DAG exists and is on. ``dags`` maps a DAG id to ``is_paused`` (None: the DAG is absent)."""
    findings = []
    for dag_id, paused in dags.items():
        what = f"DAG {dag_id}"
        if paused is None:
            findings.append(
                error(
                    what,
                    "not found in Airflow: check that the DAG files are deployed and that MC_ROLE "
                    "includes this role, then see `airflow dags list-import-errors`",
                )
            )
        elif paused:
            findings.append(
                error(what, f"paused{why}: turn it on in the UI or run `airflow dags unpause {dag_id}`")
            )
        else:
            findings.append(ok(what, "present and on"))
    return findings


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def check_heartbeats(
    ages: Mapping[str, float | None], *, max_age_seconds: float, instance: str | None = None
) -> list[Finding]:
    """Each workflow runs. ``ages`` maps a workflow to its heartbeat's age (None: it never ran).

    A workflow that ran and stopped is an error; those that never ran make the instance *waiting*
    to be started: one warning naming them and where to turn them on.

    :param instance: the execution instance, when it is not this deployment (control's view).
    """
    where = f" on {instance}" if instance is not None else ""
    findings = []
    for workflow, age in ages.items():
        if age is None:
            continue
        what = f"{workflow} heartbeat{where}"
        if is_stale(age, max_age_seconds):
            start = (
                f"turn it on in the Airflow of instance {instance}"
                if instance is not None
                else f"turn the DAG {workflow} on (`airflow dags unpause {workflow}`)"
            )
            findings.append(
                error(
                    what,
                    f"last seen {_age(age)} ago (more than {_age(max_age_seconds)}): {start}, and check "
                    "the scheduler and the workers of the execution queue",
                )
            )
        else:
            findings.append(ok(what, f"last seen {_age(age)} ago"))
    waiting = tuple(workflow for workflow, age in ages.items() if age is None)
    if waiting:
        state = WorkflowsState(waiting=waiting, stopped=())
        findings.append(warning(f"technical workflows{where}", state.waiting_message(instance)))
    return findings


# --- Delivery, API, templates ------------------------------------------------------------------------


def check_delivery(conn_id: str, channel: str, problem: str | None, target: str = "") -> Finding:
    """The provider connection of ``channel`` is defined and answers (``problem`` None: it does)."""
    what = f"{conn_id} ({channel})"
    if problem is None:
        return ok(what, f"answers{' at ' + target if target else ''}")
    return error(
        what,
        f"{problem}: define or fix the connection {conn_id} (UI Admin > Connections, or "
        f"`airflow connections add {conn_id} ...`); {channel} messages wait in the queue until then",
    )


def check_api_tokens(count: int) -> Finding:
    if count:
        return ok("API tokens", f"{count} token(s) configured")
    return error(
        "API tokens",
        "none configured: every intake call is refused; set MC_API_TOKENS (comma-separated) or the "
        "password of the mc_api connection",
    )


def check_templates(published: int, where: str = "") -> Finding:
    what = f"templates{where}"
    if published:
        return ok(what, f"{published} template version(s) published")
    return warning(
        what,
        "none published: events are not taken into account; load them on control with "
        "`python -m messagecenter templates load FILE --conn mc_control`, then trigger publishTemplates",
    )


# --- Control: execution instances ------------------------------------------------------------------------


def check_instance_ids(
    ids: Mapping[str, int | None], problems: Mapping[str, str] | None = None
) -> list[Finding]:
    """Each instance's ``instance_id`` is set and unique across the instances."""
    problems = problems or {}
    by_id: dict[int, list[str]] = defaultdict(list)
    for name, value in ids.items():
        if value is not None:
            by_id[value].append(name)
    findings = []
    for name, value in ids.items():
        what = f"mc_exec_{name} instance_id"
        if value is None:
            findings.append(
                error(
                    what,
                    f"{problems.get(name, 'not set')}: set the connection extra "
                    '{"instance_id": N} (1..255, the MC_INSTANCE_ID of that instance)',
                )
            )
        elif len(by_id[value]) > 1:
            others = ", ".join(f"mc_exec_{n}" for n in by_id[value] if n != name)
            findings.append(
                error(
                    what,
                    f"{value} is also the instance_id of {others}: event ids would collide in the "
                    "archive; give each instance its own MC_INSTANCE_ID and connection extra",
                )
            )
        else:
            findings.append(ok(what, f"{value}, unique"))
    return findings


def check_archiving_dag(instance: str, dag_id: str, paused: bool | None) -> Finding:
    what = f"DAG {dag_id}"
    if paused is None:
        return error(
            what,
            f"absent: run `python -m messagecenter archiving create {instance}` (or press 'Create the "
            "archiving workflow' on the Message Center page); it appears within seconds",
        )
    if paused:
        return error(what, f"paused: nothing of {instance} is archived; run `airflow dags unpause {dag_id}`")
    return ok(what, "present and on")


def check_archive_lag(
    instance: str, dag_id: str, lag_seconds: float | None, *, warning_seconds: float
) -> Finding:
    """Archiving lag = now - end of the archived period (None: never archived)."""
    what = f"archiving lag of {instance}"
    if lag_seconds is None:
        return warning(
            what,
            f"nothing archived yet: the first run of {dag_id} archives it (hourly); trigger it with "
            f"`airflow dags trigger {dag_id}`",
        )
    if lag_seconds > warning_seconds:
        level: Level = "error" if lag_seconds > 3 * warning_seconds else "warning"
        return Finding(
            level,
            what,
            f"{_age(lag_seconds)} behind (alert past {_age(warning_seconds)}): check the failed runs of "
            f"{dag_id}; clear them, or re-archive with `airflow backfill create --dag-id {dag_id} "
            "--from-date ... --to-date ... --reprocess-behavior failed`",
        )
    return ok(what, f"{_age(lag_seconds)} behind")


# --- Delivery feedback ------------------------------------------------------------------------------

LIST_UNQUALIFIED = "python -m messagecenter feedback texts --unqualified"
ADD_RULE = "python -m messagecenter feedback rule-add"


def _window(seconds: float) -> str:
    return f"{seconds / 3600:.0f} h" if seconds % 3600 == 0 else _age(seconds)


def _percent(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") + " %"


def _rate(count: int, sent: int, value: float, window_seconds: float) -> str:
    return f"{_percent(value)} ({count} of {sent} sent in the last {_window(window_seconds)})"


def check_complaint_rate(
    complained: int,
    sent: int,
    *,
    levels: tuple[float, float],
    window_seconds: float,
    where: str = "",
) -> Finding:
    """Complaints among the messages sent in the window: a warning past the warning level, an error
    past the alert level (by default 0.3 %, the line Gmail and Yahoo hold bulk senders to)."""
    what = f"complaint rate{where}"
    if not sent:
        return ok(what, f"nothing sent in the last {_window(window_seconds)}")
    value = 100.0 * complained / sent
    rate = _rate(complained, sent, value, window_seconds)
    line = f"Gmail and Yahoo require bulk senders to stay under {_percent(MAILBOX_PROVIDERS_COMPLAINT_LINE)}"
    fix = (
        "send only what recipients asked for, remove inactive addresses, and keep the one-click "
        "unsubscribe on (MC_FEEDBACK_SECRET and MC_PUBLIC_URL set, `list_unsubscribe: true` in the templates)"
    )
    level = alert_level(value, levels)
    if level == "alert":
        return error(
            what,
            f"{rate}: at or past the alert level {_percent(levels[1])} (MC_ALERT_COMPLAINT_RATE; {line}): "
            f"past it their mailboxes reject or file as spam what this instance sends; {fix}",
        )
    if level == "warning":
        return warning(what, f"{rate}: at or past the warning level {_percent(levels[0])} ({line}); {fix}")
    return ok(what, f"{rate}; warning at {_percent(levels[0])}, alert at {_percent(levels[1])} ({line})")


def check_bounce_rate(
    bounced: int,
    sent: int,
    *,
    levels: tuple[float, float],
    window_seconds: float,
    where: str = "",
) -> Finding:
    """Failures after the send among the messages sent in the window, against MC_ALERT_BOUNCE_RATE."""
    what = f"bounce rate{where}"
    if not sent:
        return ok(what, f"nothing sent in the last {_window(window_seconds)}")
    value = 100.0 * bounced / sent
    rate = _rate(bounced, sent, value, window_seconds)
    fix = (
        "see which reasons grow in the quarantine (`python -m messagecenter quarantine list`): lists "
        "not mailed for long and addresses nobody confirmed bounce"
    )
    level = alert_level(value, levels)
    if level == "alert":
        return error(
            what,
            f"{rate}: at or past the alert level {_percent(levels[1])} (MC_ALERT_BOUNCE_RATE): mailbox "
            f"providers throttle or block senders that bounce this much; {fix}",
        )
    if level == "warning":
        return warning(what, f"{rate}: at or past the warning level {_percent(levels[0])}; {fix}")
    return ok(what, f"{rate}; warning at {_percent(levels[0])}, alert at {_percent(levels[1])}")


def check_quarantine(totals: Mapping[str, int], *, unmatched: int = 0, where: str = "") -> Finding:
    """Informative: addresses per quarantine status, and the feedback still waiting for its log."""
    names = {"quarantine": "in quarantine"}
    counts = ", ".join(f"{n} {names.get(status, status.replace('_', ' '))}" for status, n in totals.items())
    kept = f"; {unmatched} feedback item(s) kept unmatched (no delivery log found yet)" if unmatched else ""
    return ok(f"quarantine{where}", (counts or "empty") + kept)


def check_unqualified_texts(
    count: int, most_frequent: str | None, *, window_seconds: float, where: str = ""
) -> Finding:
    """A warning while feedback texts seen in the window match no rule: their addresses are not
    quarantined for the right reason (only the status code's class decides)."""
    what = f"unqualified feedback texts{where}"
    if not count:
        return ok(what, f"every feedback text of the last {_window(window_seconds)} matched a rule")
    example = f" (most frequent: {most_frequent!r})" if most_frequent else ""
    return warning(
        what,
        f"{count} text(s) seen in the last {_window(window_seconds)} match no rule{example}: list them "
        f"with `{LIST_UNQUALIFIED}`, then qualify each with `{ADD_RULE}` (a pattern, its failure type "
        "and reason)",
    )


def check_feedback_secret(secret_set: bool) -> Finding:
    """Without MC_FEEDBACK_SECRET there are no signed return paths and no one-click unsubscribe."""
    what = "feedback secret (MC_FEEDBACK_SECRET)"
    if secret_set:
        return ok(what, "set: VERP return paths and one-click unsubscribe links are on")
    return warning(
        what,
        "empty: VERP return paths and one-click unsubscribe are off (bounces are matched by "
        "Message-ID only, and Gmail and Yahoo require one-click unsubscribe of bulk senders); set "
        "MC_FEEDBACK_SECRET to 32 or more random characters, the same on every process of this instance",
    )


def check_bounce_mailbox(defined: bool, *, secret_set: bool) -> Finding:
    """Informative without it, unless VERP return paths point at it (a mailbox nobody reads)."""
    what = f"bounce mailbox ({BOUNCE_MAILBOX_CONN_ID})"
    if defined:
        return ok(what, "defined: bounceProcessing reads it")
    if not secret_set:
        return ok(what, "no bounce mailbox: bounces are not read")
    return warning(
        what,
        "no bounce mailbox: bounces are not read, yet MC_FEEDBACK_SECRET is set, so VERP return paths "
        f"point at a mailbox nobody reads; add the connection {BOUNCE_MAILBOX_CONN_ID} (conn type imap "
        "or pop3) and turn bounceProcessing on",
    )
