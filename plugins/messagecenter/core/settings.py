"""One typed settings object for every process (DAG task, API, CLI, test).

Each setting is declared once, as a field of a small frozen dataclass grouped by purpose: its type
is the field's annotation, its default the field's default, and :func:`setting` attaches the rest
(environment variable, bounds, one line of help). From those declarations come the loader
(:func:`load_settings`: everything is read from the environment once, and a bad value fails early
with a message that names the variable instead of surfacing later as a confusing SQL or Airflow
error), the intake limits (:class:`IntakeSettings` is what the decoders take) and the configuration
reference (:func:`reference_markdown`, written to ``docs/configuration.md`` by ``make config-docs``).

The connection ids below are names, not settings: the connections themselves are configured in Airflow.
"""

from __future__ import annotations

import functools
import os
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from datetime import timedelta
from typing import Any, Literal, TypeVar, get_args, get_origin

from messagecenter.core.errors import ConfigError

Role = Literal["control", "execution", "all"]

DEFAULT_EXECUTION_CONN_ID = "mc_execution"
CONTROL_CONN_ID = "mc_control"
API_CONN_ID = "mc_api"
EXEC_CONN_PREFIX = "mc_exec_"
SMTP_CONN_ID = "mc_smtp"
SMS_CONN_ID = "mc_sms"
PUSH_CONN_ID = "mc_push"
# A platform's own push connection, used instead of mc_push when it is defined.
ANDROID_PUSH_CONN_ID = "mc_push_android"
IOS_PUSH_CONN_ID = "mc_push_ios"
BOUNCE_MAILBOX_CONN_ID = "mc_bounce_mailbox"

T = TypeVar("T")
# The feedback secret signs VERP return paths and unsubscribe links: shorter keys are refused.
MIN_SECRET_BYTES = 32
_SETTING = "messagecenter.setting"
_GROUP = "messagecenter.group"


@dataclass(frozen=True)
class Declaration:
    """What a field's type and default do not say: where its value comes from and what it may be.

    :param env: the environment variable.
    :param help: one line for the configuration reference.
    :param low: smallest accepted value (numbers, durations in ``unit``; a pair's warning level).
    :param high: largest accepted value.
    :param unit: for a duration: what the variable counts.
    """

    env: str
    help: str
    low: float | None = None
    high: float | None = None
    unit: Literal["seconds", "days"] | None = None


def setting(
    default: T,
    *,
    env: str,
    help: str,
    low: float | None = None,
    high: float | None = None,
    unit: Literal["seconds", "days"] | None = None,
) -> T:
    """Declare a setting: a dataclass field whose default is ``default``, read from ``env``."""
    declared = Declaration(env=env, help=help, low=low, high=high, unit=unit)
    return field(default=default, metadata={_SETTING: declared})


def group(cls: Callable[[], T]) -> T:
    """Declare a field holding a group of settings (its defaults come from its own declarations)."""
    return field(default_factory=cls, metadata={_GROUP: cls})


@dataclass(frozen=True)
class IntakeSettings:
    """What intake accepts (REST, SOAP, CLI): the limits every decoder of a push takes."""

    max_batch: int = setting(
        10_000, env="MC_MAX_BATCH", low=1, high=100_000, help="most events accepted in one push request"
    )
    max_ctx_bytes: int = setting(
        64 * 1024,
        env="MC_MAX_CTX_BYTES",
        low=256,
        high=16 * 1024 * 1024,
        help="largest personalisation object (`ctx`), as JSON bytes",
    )
    max_ctx_depth: int = setting(
        32,
        env="MC_MAX_CTX_DEPTH",
        low=1,
        high=256,
        help="deepest nesting of `ctx` (the object itself is level 1)",
    )
    max_body_bytes: int = setting(
        64 * 1024 * 1024,
        env="MC_MAX_BODY_BYTES",
        low=1024,
        high=1024**3,
        help="largest request body the API reads",
    )
    soap_max_events: int | None = setting(
        None,
        env="MC_SOAP_MAX_EVENTS",
        low=1,
        high=100_000,
        help="most events in one SOAP `PushEvents` call; empty: `MC_MAX_BATCH`",
    )
    soap_max_body_bytes: int = setting(
        16 * 1024 * 1024,
        env="MC_SOAP_MAX_BODY_BYTES",
        low=1024,
        high=1024**3,
        # Lower than MC_MAX_BODY_BYTES: an XML tree takes up to about 30 times the size of a hostile
        # body in memory (many tiny elements), and the body is parsed before its credentials are checked.
        help="largest SOAP request body the API reads (parsed XML takes many times its size in memory)",
    )

    @property
    def soap_events_limit(self) -> int:
        """Most events in one SOAP ``PushEvents`` call: ``soap_max_events``, else ``max_batch``."""
        return self.max_batch if self.soap_max_events is None else self.soap_max_events


@dataclass(frozen=True)
class ProcessingSettings:
    """How the execution workflows claim, deliver, render and retry."""

    claim_chunk: int = setting(
        10_000,
        env="MC_CLAIM_CHUNK",
        low=1,
        high=1_000_000,
        help="events claimed per transaction by the queue split",
    )
    max_events_per_run: int = setting(
        200_000,
        env="MC_MAX_EVENTS_PER_RUN",
        low=1,
        high=100_000_000,
        help="most events one split claims; the rest waits for the next run",
    )
    deliver_chunk: int = setting(
        500,
        env="MC_DELIVER_CHUNK",
        low=1,
        high=100_000,
        help="events per delivery chunk, one SMTP connection and one log write each",
    )
    parallelism: int = setting(
        4,
        env="MC_DELIVERY_PARALLELISM",
        low=1,
        high=256,
        help="most shards (mapped delivery tasks) per (event type, channel)",
    )
    min_shard_size: int = setting(
        250,
        env="MC_MIN_SHARD_SIZE",
        low=1,
        high=10_000_000,
        help="a group smaller than `MC_DELIVERY_PARALLELISM` times this gets fewer shards",
    )
    lease_seconds: int = setting(
        300,
        env="MC_LEASE_SECONDS",
        low=1,
        high=86_400,
        help="how long a hung worker keeps what it claimed (the split's lease; a silent delivery "
        "session's timeout, a live worker speaks every third of it)",
    )
    max_tries: int = setting(
        5, env="MC_MAX_TRIES", low=1, high=100, help="delivery tries before an event is Delivery failed"
    )
    retry_backoff_seconds: float = setting(
        60.0,
        env="MC_RETRY_BACKOFF_SECONDS",
        low=0,
        high=86_400,
        help="first retry delay, doubled at each try, capped at one hour",
    )
    rt_validity_seconds: int = setting(
        3_600,
        env="MC_RT_VALIDITY",
        low=1,
        high=365 * 86_400,
        help="seconds after which a real-time event not delivered expires",
    )
    batch_validity_seconds: int = setting(
        86_400,
        env="MC_BATCH_VALIDITY",
        low=1,
        high=365 * 86_400,
        help="seconds after which a batch event not delivered expires",
    )
    rt_drain_seconds: int = setting(
        300,
        env="MC_RT_DRAIN_SECONDS",
        low=1,
        high=86_400,
        help="lifetime of one real-time drain task; the next run takes over",
    )
    deliver_time_budget_seconds: int = setting(
        600,
        env="MC_DELIVER_TIME_BUDGET_SECONDS",
        low=1,
        high=86_400,
        help="a delivery task stops claiming after this; the next run resumes",
    )
    log_flush_seconds: float = setting(
        0.2,
        env="MC_LOG_FLUSH_SECONDS",
        low=0.01,
        high=60,
        help="how often a delivery chunk commits the logs of the messages it sent, on a connection "
        "of its own: a database restart re-sends at most the messages in flight and this much",
    )
    render_timeout_seconds: float = setting(
        2.0,
        env="MC_RENDER_TIMEOUT_SECONDS",
        low=1,
        high=3_600,
        help="most seconds one render may take (the event fails alone past it)",
    )
    render_max_chars: int = setting(
        1_000_000,
        env="MC_RENDER_MAX_CHARS",
        low=1_000,
        high=100_000_000,
        help="most characters a rendered field (or a `*`, `center`, `indent` result) may hold",
    )
    breaker_threshold: int = setting(
        5,
        env="MC_BREAKER_THRESHOLD",
        low=1,
        high=10_000,
        help="transient errors in a row after which a worker stops calling a provider for a while",
    )
    breaker_cooldown_seconds: float = setting(
        30.0,
        env="MC_BREAKER_COOLDOWN_SECONDS",
        low=1,
        high=3_600,
        help="how long it stops; then one message tries the provider again",
    )


@dataclass(frozen=True)
class AlertLevels:
    """Alert levels of the page and the doctor, as (warning, alert) pairs: Campaign's, mailbox providers'."""

    pending: tuple[float, float] = setting(
        (100, 400), env="MC_ALERT_PENDING", low=0, help="pending events of the real-time queue"
    )
    queue_seconds: tuple[float, float] = setting(
        (4, 8),
        env="MC_ALERT_QUEUE_SECONDS",
        low=0,
        help="average queue time of the real-time queue, in seconds",
    )
    processing_seconds: tuple[float, float] = setting(
        (10, 20),
        env="MC_ALERT_PROCESSING_SECONDS",
        low=0,
        help="processing time (arrival to final status) of the real-time queue, in seconds",
    )
    batch_pending: tuple[float, float] = setting(
        (10_000, 50_000), env="MC_ALERT_BATCH_PENDING", low=0, help="pending events of the batch queue"
    )
    batch_queue_seconds: tuple[float, float] = setting(
        (90, 300),
        env="MC_ALERT_BATCH_QUEUE_SECONDS",
        low=0,
        help="average queue time of the batch queue, in seconds (batch events wait up to a minute, "
        "for the next batchEventsProcessing run)",
    )
    batch_processing_seconds: tuple[float, float] = setting(
        (120, 600),
        env="MC_ALERT_BATCH_PROCESSING_SECONDS",
        low=0,
        help="processing time (arrival to final status) of the batch queue, in seconds",
    )
    error_rate_percent: tuple[float, float] = setting(
        (1, 5), env="MC_ALERT_ERROR_RATE", low=0, help="error rate, in percent"
    )
    bounce_rate_percent: tuple[float, float] = setting(
        (2, 5),
        env="MC_ALERT_BOUNCE_RATE",
        low=0,
        help="bounce rate (failed after the send among the messages sent), in percent",
    )
    complaint_rate_percent: tuple[float, float] = setting(
        (0.1, 0.3),
        env="MC_ALERT_COMPLAINT_RATE",
        low=0,
        help="complaint rate, in percent; Gmail and Yahoo require bulk senders to stay under 0.3 %",
    )


@dataclass(frozen=True)
class MonitoringSettings:
    """What the doctor, the Message Center page and publishTemplates take as healthy."""

    heartbeat_seconds: int = setting(
        30,
        env="MC_HEARTBEAT_SECONDS",
        low=1,
        high=3_600,
        help="how often a long real-time drain refreshes its workflow heartbeat",
    )
    heartbeat_max_age: int = setting(
        600,
        env="MC_HEARTBEAT_MAX_AGE_SECONDS",
        low=10,
        high=7 * 86_400,
        help="seconds after which a technical workflow's heartbeat means it stopped "
        "(doctor, page, `publishTemplates`)",
    )
    archive_lag_warning: int = setting(
        3 * 3_600,
        env="MC_ARCHIVE_LAG_WARNING_SECONDS",
        low=60,
        high=30 * 86_400,
        help="archiving lag (now minus the archived period's end) past which the doctor warns; "
        "three times it is an error",
    )
    feedback_window: int = setting(
        86_400,
        env="MC_FEEDBACK_WINDOW_SECONDS",
        low=60,
        high=30 * 86_400,
        help="period over which the page, the doctor and the metrics measure bounce and complaint rates",
    )
    alerts: AlertLevels = group(AlertLevels)


@dataclass(frozen=True)
class ArchivingSettings:
    """How the control instance archives and the execution instances purge."""

    retention: timedelta = setting(
        timedelta(days=30),
        env="MC_RETENTION_DAYS",
        unit="days",
        low=1,
        high=36_500,
        help="age past which `mcCleanup` purges archived final events and delivery logs",
    )
    archive_overlap: timedelta = setting(
        timedelta(minutes=15),
        env="MC_ARCHIVE_OVERLAP_SECONDS",
        unit="seconds",
        low=0,
        high=86_400,
        help="how much before its interval an archiving run re-reads (late commits are also waited for)",
    )
    registry_poll_seconds: int = setting(
        15,
        env="MC_REGISTRY_POLL_SECONDS",
        low=1,
        high=3_600,
        help="how often the plugin mirrors `mc_exec_*` connections into the archiving registry",
    )


@dataclass(frozen=True)
class FeedbackSettings:
    """What happens after "Sent": bounces, complaints, unsubscribes, quarantine (Campaign's defaults)."""

    secret: str = setting(
        "",
        env="MC_FEEDBACK_SECRET",
        help="key of the HMACs in VERP return paths and unsubscribe links (32+ characters); "
        "empty: no VERP, no one-click link",
    )
    public_url: str = setting(
        "",
        env="MC_PUBLIC_URL",
        help="the intake API's public base URL (`https://host/messagecenter`), for one-click "
        "unsubscribe links and the SMS providers' status callbacks (Twilio, Vonage)",
    )
    max_errors: int = setting(
        5,
        env="MC_QUARANTINE_MAX_ERRORS",
        low=1,
        high=100,
        help="soft errors (counted once per significant-error period) whose count quarantines the address",
    )
    significant_error: timedelta = setting(
        timedelta(days=1),
        env="MC_QUARANTINE_SIGNIFICANT_ERROR_SECONDS",
        unit="seconds",
        low=0,
        high=30 * 86_400,
        help="a soft error counts only this long after the last counted one",
    )
    reset_after: timedelta = setting(
        timedelta(days=10),
        env="MC_QUARANTINE_RESET_DAYS",
        unit="days",
        low=1,
        high=3_650,
        help="an address With errors and no new error for this long is Valid again",
    )
    mailbox_full_release: timedelta = setting(
        timedelta(days=30),
        env="MC_QUARANTINE_MAILBOX_FULL_DAYS",
        unit="days",
        low=1,
        high=3_650,
        help="an address quarantined for Mailbox full is released after this long",
    )
    bounce_batch: int = setting(
        200,
        env="MC_BOUNCE_BATCH",
        low=1,
        high=10_000,
        help="bounce mails read and applied per transaction by `bounceProcessing`",
    )
    bounce_max_bytes: int = setting(
        10 * 1024 * 1024,
        env="MC_BOUNCE_MAX_BYTES",
        low=64 * 1024,
        high=1024**3,
        help="largest bounce mail read; a larger one is set aside unread",
    )
    bounce_max_recipients: int = setting(
        1_000,
        env="MC_BOUNCE_MAX_RECIPIENTS",
        low=1,
        high=100_000,
        help="most recipients read from one delivery status notification",
    )
    max_webhook_bytes: int = setting(
        16 * 1024 * 1024,
        env="MC_WEBHOOK_MAX_BYTES",
        low=1024,
        high=1024**3,
        help="largest provider webhook body the API reads",
    )

    def __post_init__(self) -> None:
        if self.secret and len(self.secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"MC_FEEDBACK_SECRET must be at least {MIN_SECRET_BYTES} bytes long "
                f"(got {len(self.secret.encode())}): it signs return paths and unsubscribe links"
            )

    @property
    def key(self) -> bytes | None:
        """The HMAC key, or ``None`` when no secret is set."""
        return self.secret.encode() if self.secret else None


@dataclass(frozen=True)
class Settings:
    """What this deployment is and where it finds its databases.

    The other settings hang from it in groups: ``intake``, ``processing``, ``monitoring``,
    ``archiving``, ``feedback``.
    """

    role: Role = setting(
        "all", env="MC_ROLE", help="which DAGs this deployment defines (execution, control or both)"
    )
    instance_id: int = setting(
        1,
        env="MC_INSTANCE_ID",
        low=1,
        high=255,
        help="this execution instance's id, the high byte of every event id",
    )
    execution_conn_id: str = setting(
        DEFAULT_EXECUTION_CONN_ID,
        env="MC_EXECUTION_CONN_ID",
        help="Airflow connection of this execution instance's database",
    )
    control_conn_id: str = setting(
        CONTROL_CONN_ID, env="MC_CONTROL_CONN_ID", help="Airflow connection of the control database"
    )
    api_tokens: tuple[str, ...] = setting(
        (),
        env="MC_API_TOKENS",
        help="bearer tokens accepted by the intake API; empty: the password of the `mc_api` connection",
    )
    execution_queue: str = setting(
        "default", env="MC_EXECUTION_QUEUE", help="Celery queue of the execution tasks"
    )
    intake: IntakeSettings = group(IntakeSettings)
    processing: ProcessingSettings = group(ProcessingSettings)
    monitoring: MonitoringSettings = group(MonitoringSettings)
    archiving: ArchivingSettings = group(ArchivingSettings)
    feedback: FeedbackSettings = group(FeedbackSettings)

    @property
    def runs_execution(self) -> bool:
        return self.role in ("execution", "all")

    @property
    def runs_control(self) -> bool:
        return self.role in ("control", "all")


# Variables read where they are used, not settings: their default depends on the machine, or they
# configure tooling. Listed here so that the configuration reference names every MC_* variable.
OTHER_VARIABLES: tuple[tuple[str, str, str], ...] = (
    (
        "MC_REGISTRY_CACHE",
        "`$AIRFLOW_HOME/messagecenter/archiving_instances.json`",
        "last known list of execution instances, on the local disk of each dag-processor and worker",
    ),
    ("MC_SQL_DIR", "the repository's `include/sql`", "folder of the DDL versions and named statements"),
    ("MC_LOG_LEVEL", "`INFO`", "log level of the command line (`python -m messagecenter`)"),
)


# Reading: one parser per field type.


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _bounds_text(declared: Declaration) -> str:
    low, high = declared.low, declared.high
    if low is not None and high is not None:
        return f"between {_number_text(low)} and {_number_text(high)}"
    if low is not None:
        return f"at least {_number_text(low)}"
    return "" if high is None else f"at most {_number_text(high)}"


def _number(raw: str, declared: Declaration, convert: Callable[[str], float], what: str) -> float:
    bounds = _bounds_text(declared)
    try:
        value = convert(raw)
    except ValueError:
        wanted = f"{what} {bounds}" if bounds else what
        raise ConfigError(f"{declared.env} must be {wanted}, got {raw!r}") from None
    low, high = declared.low, declared.high
    if (low is not None and not value >= low) or (high is not None and not value <= high):  # NaN too
        raise ConfigError(f"{declared.env} must be {bounds}, got {_number_text(value)}")
    return value


def _int(raw: str, declared: Declaration) -> int:
    return int(_number(raw, declared, int, "an integer"))


def _float(raw: str, declared: Declaration) -> float:
    return _number(raw, declared, float, "a number")


def _duration(raw: str, declared: Declaration) -> timedelta:
    return timedelta(**{declared.unit or "seconds": _int(raw, declared)})


def _tokens(raw: str, declared: Declaration) -> tuple[str, ...]:
    return tuple(token.strip() for token in raw.split(",") if token.strip())


def _pair(raw: str, declared: Declaration) -> tuple[float, float]:
    try:
        warning, alert = (float(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{declared.env} must be two numbers 'warning,alert', got {raw!r}") from None
    if not (declared.low or 0) <= warning <= alert:
        raise ConfigError(f"{declared.env}: want {_pair_bounds(declared)}, got {raw!r}")
    return warning, alert


def _pair_bounds(declared: Declaration) -> str:
    return f"{_number_text(declared.low or 0)} <= warning <= alert"


def _text(raw: str, declared: Declaration) -> str:
    return raw


@dataclass(frozen=True)
class _Kind:
    """How values of one field type are read from their variable and shown in the reference."""

    name: str
    parse: Callable[[str, Declaration], Any]
    show: Callable[[Any, Declaration], str]
    accepted: Callable[[Declaration], str] = _bounds_text


def _show_duration(value: timedelta, declared: Declaration) -> str:
    return _number_text(value / timedelta(**{declared.unit or "seconds": 1}))


_KINDS: dict[Any, _Kind] = {
    int: _Kind("integer", _int, lambda v, d: str(v)),
    int | None: _Kind("integer or empty", _int, lambda v, d: "" if v is None else str(v)),
    float: _Kind("number", _float, lambda v, d: _number_text(v)),
    str: _Kind("text", _text, lambda v, d: v),
    timedelta: _Kind("whole {unit}", _duration, _show_duration),
    tuple[str, ...]: _Kind("comma-separated tokens", _tokens, lambda v, d: ",".join(v)),
    tuple[float, float]: _Kind(
        "two numbers `warning,alert`",
        _pair,
        lambda v, d: ",".join(_number_text(x) for x in v),
        _pair_bounds,
    ),
}


def _choice_kind(choices: tuple[str, ...]) -> _Kind:
    def parse(raw: str, declared: Declaration) -> str:
        value = raw.lower()
        if value not in choices:
            raise ConfigError(f"{declared.env} must be one of {', '.join(choices)}; got {value!r}")
        return value

    names = ", ".join(f"`{choice}`" for choice in choices)
    return _Kind("choice", parse, lambda v, d: v, lambda d: names)


def _kind(annotation: Any) -> _Kind:
    if get_origin(annotation) is Literal:
        return _choice_kind(get_args(annotation))
    kind = _KINDS.get(annotation)
    if kind is None:
        raise TypeError(f"no reader for settings of type {annotation!r}")
    return kind


# The declarations, walked in order.


@dataclass(frozen=True)
class Declared:
    """One setting as declared: where it sits in :class:`Settings`, its default, how it is read."""

    path: str  # the attribute path from a Settings object, e.g. "intake.max_batch"
    default: Any
    declaration: Declaration
    kind: _Kind

    @property
    def env(self) -> str:
        return self.declaration.env

    def parse(self, raw: str) -> Any:
        """The value of ``raw``, as the loader reads it (raises :class:`ConfigError`)."""
        return self.kind.parse(raw, self.declaration)

    def shown(self, value: Any) -> str:
        """``value`` written as the variable would hold it."""
        return self.kind.show(value, self.declaration)

    @property
    def type_text(self) -> str:
        return self.kind.name.format(unit=self.declaration.unit)

    @property
    def accepted_text(self) -> str:
        return self.kind.accepted(self.declaration)


@functools.cache
def _members(cls: type) -> tuple[tuple[Field[Any], Any], ...]:
    """The fields of a settings class with their resolved annotations."""
    hints = typing.get_type_hints(cls)
    return tuple((member, hints[member.name]) for member in fields(cls))


def _settings_of(cls: type, prefix: str = "") -> Iterator[Declared]:
    """The settings declared directly in ``cls`` (not in its groups)."""
    for member, annotation in _members(cls):
        if _SETTING in member.metadata:
            declaration = member.metadata[_SETTING]
            yield Declared(prefix + member.name, member.default, declaration, _kind(annotation))
        elif _GROUP not in member.metadata:
            raise TypeError(f"{cls.__name__}.{member.name} is neither a setting nor a group")


def _groups_of(cls: type) -> Iterator[tuple[str, type]]:
    for member, _ in _members(cls):
        if _GROUP in member.metadata:
            yield member.name, member.metadata[_GROUP]


def declared_settings(cls: type = Settings, prefix: str = "") -> Iterator[Declared]:
    """Every setting under ``cls``, its groups included, in declaration order."""
    yield from _settings_of(cls, prefix)
    for name, child in _groups_of(cls):
        yield from declared_settings(child, f"{prefix}{name}.")


G = TypeVar("G")


def _load(cls: type[G], env: Mapping[str, str]) -> G:
    values: dict[str, Any] = {}
    for item in _settings_of(cls):
        raw = env.get(item.env, "").strip()
        if raw:  # unset or blank: the declared default
            values[item.path] = item.parse(raw)
    for name, child in _groups_of(cls):
        values[name] = _load(child, env)
    return cls(**values)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: the process environment), validating each value.

    :raises ConfigError: naming the variable whose value is refused.
    """
    return _load(Settings, os.environ if env is None else env)


@functools.cache
def get_settings() -> Settings:
    """Settings of this process, read once."""
    return load_settings()


# The configuration reference (docs/configuration.md).


def _section(cls: type, heading: str, attribute: str, level: int, *, groups: bool = True) -> Iterator[str]:
    """One group's table, then its own groups' as subsections."""
    purpose = (cls.__doc__ or "").strip().splitlines()[0]
    yield from (f"{'#' * level} {heading}", "", f"{purpose} Attributes of `{attribute}`:", "")
    yield "| Variable | Attribute | Type | Default | Accepted | Meaning |"
    yield "|---|---|---|---|---|---|"
    for item in _settings_of(cls):
        default = item.shown(item.default)
        yield (
            f"| `{item.env}` | `{item.path}` | {item.type_text} | {f'`{default}`' if default else '(empty)'} "
            f"| {item.accepted_text} | {item.declaration.help} |"
        )
    for name, child in _groups_of(cls) if groups else ():
        yield ""
        yield from _section(child, name.capitalize(), f"{attribute}.{name}", level + 1)


def reference_markdown() -> str:
    """The configuration reference: every setting, grouped by purpose, from the declarations."""
    lines = [
        "<!-- Generated by `make config-docs` from plugins/messagecenter/core/settings.py: do not edit. -->",
        "",
        "# Configuration",
        "",
        "This page is generated from the declarations in `plugins/messagecenter/core/settings.py`;",
        "regenerate it with `make config-docs` (a test fails when it differs from them).",
        "",
        "Every setting is an environment variable, read once per process (DAG task, API, CLI). An unset",
        "or blank variable takes the default; any other value outside what is accepted stops the process",
        "with an error naming the variable.",
        "",
        *_section(Settings, "Instance", "settings", 2, groups=False),  # its groups are sections of their own
    ]
    for name, child in _groups_of(Settings):
        lines += ["", *_section(child, name.capitalize(), f"settings.{name}", 2)]
    lines += [
        "",
        "## Other variables",
        "",
        "Not settings: read where they are used (their default depends on the machine, or they",
        "configure tooling).",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
        *(f"| `{name}` | {default} | {meaning} |" for name, default, meaning in OTHER_VARIABLES),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
