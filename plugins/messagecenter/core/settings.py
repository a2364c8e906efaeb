"""One typed settings object for every process (DAG task, API, CLI, test).

Everything is read from the environment once; bad values fail early with a message that
names the variable, instead of surfacing later as a confusing SQL or Airflow error.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, cast, get_args

from messagecenter.core.errors import ConfigError

Role = Literal["control", "execution", "all"]

DEFAULT_EXECUTION_CONN_ID = "mc_execution"
CONTROL_CONN_ID = "mc_control"
API_CONN_ID = "mc_api"
EXEC_CONN_PREFIX = "mc_exec_"
SMTP_CONN_ID = "mc_smtp"
SMS_CONN_ID = "mc_sms"
PUSH_CONN_ID = "mc_push"


@dataclass(frozen=True)
class ProcessingSettings:
    """How the execution workflows claim, deliver and retry (all ``MC_*`` environment variables).

    :param claim_chunk: events claimed per transaction by the queue split (``MC_CLAIM_CHUNK``).
    :param max_events_per_run: most events one split claims; the rest waits for the next run.
    :param deliver_chunk: events per delivery chunk, one SMTP connection and one log write each.
    :param parallelism: most shards per (event type, channel), i.e. mapped delivery tasks.
    :param min_shard_size: a group smaller than ``parallelism`` times this gets fewer shards (so the
        number of mapped tasks stops growing at a few thousand events per group).
    :param lease_seconds: how long a hung worker keeps what it claimed: events claimed by a split
        come back after it; the server ends a delivery session silent that long in its chunk's
        transaction (a live worker speaks every third of it, however long the chunk takes).
    :param max_tries: delivery tries before an event is Failed (``MC_MAX_TRIES``).
    :param retry_backoff_seconds: first retry delay, doubled at each try, capped at one hour.
    :param rt_validity_seconds: a real-time event not delivered within this expires (``MC_RT_VALIDITY``).
    :param batch_validity_seconds: the same for batch events (``MC_BATCH_VALIDITY``).
    :param rt_drain_seconds: lifetime of one real-time drain task (``MC_RT_DRAIN_SECONDS``).
    :param deliver_time_budget_seconds: a delivery task stops claiming after this; the next run resumes.
    :param render_timeout_seconds: most seconds one render may take (``MC_RENDER_TIMEOUT_SECONDS``).
    :param render_max_chars: most characters one rendered field may hold (``MC_RENDER_MAX_CHARS``).
    :param breaker_threshold: transient errors in a row after which a worker stops calling a
        provider for a while (``MC_BREAKER_THRESHOLD``).
    :param breaker_cooldown_seconds: how long it stops (``MC_BREAKER_COOLDOWN_SECONDS``).
    """

    claim_chunk: int = 10_000
    max_events_per_run: int = 200_000
    deliver_chunk: int = 500
    parallelism: int = 4
    min_shard_size: int = 250
    lease_seconds: int = 300
    max_tries: int = 5
    retry_backoff_seconds: float = 60.0
    rt_validity_seconds: int = 3_600
    batch_validity_seconds: int = 86_400
    rt_drain_seconds: int = 300
    deliver_time_budget_seconds: int = 600
    render_timeout_seconds: float = 2.0
    render_max_chars: int = 1_000_000
    breaker_threshold: int = 5
    breaker_cooldown_seconds: float = 30.0


@dataclass(frozen=True)
class AlertLevels:
    """(warning, alert) thresholds of the Message Center page, Campaign's defaults."""

    pending: tuple[float, float] = (100, 400)
    queue_seconds: tuple[float, float] = (4, 8)
    processing_seconds: tuple[float, float] = (10, 20)
    error_rate_percent: tuple[float, float] = (1, 5)


def _pair_env(
    env: dict[str, str] | os._Environ[str], name: str, default: tuple[float, float]
) -> tuple[float, float]:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        warning, alert = (float(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be two numbers 'warning,alert', got {raw!r}") from None
    if not 0 <= warning <= alert:
        raise ConfigError(f"{name}: want 0 <= warning <= alert, got {raw!r}")
    return warning, alert


@dataclass(frozen=True)
class Settings:
    """What this deployment is and where it finds its databases.

    :param role: which DAGs this deployment defines (``MC_ROLE``).
    :param instance_id: this execution instance's id, the high byte of every event id (``MC_INSTANCE_ID``).
    :param execution_conn_id: Airflow connection of the execution database (``MC_EXECUTION_CONN_ID``).
    :param api_tokens: bearer tokens accepted by the intake API (``MC_API_TOKENS``, comma-separated);
        empty means "ask the ``mc_api`` connection".
    :param execution_queue: Celery queue of execution tasks (``MC_EXECUTION_QUEUE``).
    :param max_batch: most events accepted in one request (``MC_MAX_BATCH``).
    :param max_ctx_bytes: largest personalisation object, as JSON bytes (``MC_MAX_CTX_BYTES``).
    :param max_ctx_depth: deepest nesting of the personalisation object, itself level 1
        (``MC_MAX_CTX_DEPTH``).
    :param max_body_bytes: largest request body the API reads (``MC_MAX_BODY_BYTES``).
    :param soap_max_events: most events in one SOAP ``PushEvents`` call (``MC_SOAP_MAX_EVENTS``);
        ``None`` means ``max_batch`` (see :attr:`soap_events_limit`).
    :param soap_max_body_bytes: largest SOAP request body the API reads (``MC_SOAP_MAX_BODY_BYTES``).
        Lower than ``max_body_bytes`` by default: an XML tree takes up to about 30 times the size of
        a hostile body in memory (many tiny elements), and the body is parsed before the credentials
        it carries are checked.
    :param retention: age past which ``mcCleanup`` purges archived final events (``MC_RETENTION_DAYS``).
    :param archive_overlap: how much before its interval an archiving run re-reads
        (``MC_ARCHIVE_OVERLAP_SECONDS``; late commits are also waited for).
    :param registry_poll_seconds: how often the plugin mirrors ``mc_exec_*`` connections into the
        archiving registry (``MC_REGISTRY_POLL_SECONDS``).
    :param heartbeat_seconds: how often a long real-time drain refreshes its workflow heartbeat
        (``MC_HEARTBEAT_SECONDS``).
    :param heartbeat_max_age: a technical workflow whose heartbeat is older than this is taken as
        stopped by the doctor and by ``publishTemplates`` (``MC_HEARTBEAT_MAX_AGE_SECONDS``).
    :param alerts: Campaign's alert levels of the Message Center page, as (warning, alert) pairs:
        pending events (``MC_ALERT_PENDING``, ``100,400``), average queue time in seconds
        (``MC_ALERT_QUEUE_SECONDS``, ``4,8``), processing time in seconds
        (``MC_ALERT_PROCESSING_SECONDS``, ``10,20``), error rate in percent (``MC_ALERT_ERROR_RATE``,
        ``1,5``).
    :param archive_lag_warning: archiving lag (now minus the archived period's end) past which the
        doctor warns (``MC_ARCHIVE_LAG_WARNING_SECONDS``); three times it is an error.
    """

    role: Role = "all"
    instance_id: int = 1
    execution_conn_id: str = DEFAULT_EXECUTION_CONN_ID
    control_conn_id: str = CONTROL_CONN_ID
    api_tokens: tuple[str, ...] = ()
    execution_queue: str = "default"
    max_batch: int = 10_000
    max_ctx_bytes: int = 64 * 1024
    max_ctx_depth: int = 32
    max_body_bytes: int = 64 * 1024 * 1024
    soap_max_events: int | None = None
    soap_max_body_bytes: int = 16 * 1024 * 1024
    retention: timedelta = timedelta(days=30)
    archive_overlap: timedelta = timedelta(minutes=15)
    registry_poll_seconds: int = 15
    heartbeat_seconds: int = 30
    heartbeat_max_age: int = 600
    archive_lag_warning: int = 3 * 3600
    alerts: AlertLevels = field(default_factory=lambda: AlertLevels())
    processing: ProcessingSettings = field(default_factory=lambda: ProcessingSettings())

    @property
    def soap_events_limit(self) -> int:
        """Most events in one SOAP ``PushEvents`` call: ``soap_max_events``, else ``max_batch``."""
        return self.max_batch if self.soap_max_events is None else self.soap_max_events

    @property
    def runs_execution(self) -> bool:
        return self.role in ("execution", "all")

    @property
    def runs_control(self) -> bool:
        return self.role in ("control", "all")


def _int_env(env: dict[str, str] | os._Environ[str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer between {low} and {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def load_settings(env: dict[str, str] | os._Environ[str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: the process environment), validating each value."""
    env = os.environ if env is None else env
    role = env.get("MC_ROLE", "all").strip().lower() or "all"
    if role not in get_args(Role):
        raise ConfigError(f"MC_ROLE must be one of control, execution, all; got {role!r}")
    tokens = tuple(t.strip() for t in env.get("MC_API_TOKENS", "").split(",") if t.strip())
    return Settings(
        role=cast(Role, role),
        instance_id=_int_env(env, "MC_INSTANCE_ID", 1, 1, 255),
        execution_conn_id=env.get("MC_EXECUTION_CONN_ID", "").strip() or DEFAULT_EXECUTION_CONN_ID,
        api_tokens=tokens,
        execution_queue=env.get("MC_EXECUTION_QUEUE", "").strip() or "default",
        max_batch=_int_env(env, "MC_MAX_BATCH", 10_000, 1, 100_000),
        max_ctx_bytes=_int_env(env, "MC_MAX_CTX_BYTES", 64 * 1024, 256, 16 * 1024 * 1024),
        max_ctx_depth=_int_env(env, "MC_MAX_CTX_DEPTH", 32, 1, 256),
        max_body_bytes=_int_env(env, "MC_MAX_BODY_BYTES", 64 * 1024 * 1024, 1024, 1024**3),
        soap_max_events=_int_env(env, "MC_SOAP_MAX_EVENTS", 0, 1, 100_000) or None,  # unset: max_batch
        soap_max_body_bytes=_int_env(env, "MC_SOAP_MAX_BODY_BYTES", 16 * 1024 * 1024, 1024, 1024**3),
        retention=timedelta(days=_int_env(env, "MC_RETENTION_DAYS", 30, 1, 36_500)),
        archive_overlap=timedelta(seconds=_int_env(env, "MC_ARCHIVE_OVERLAP_SECONDS", 900, 0, 86_400)),
        registry_poll_seconds=_int_env(env, "MC_REGISTRY_POLL_SECONDS", 15, 1, 3_600),
        heartbeat_seconds=_int_env(env, "MC_HEARTBEAT_SECONDS", 30, 1, 3_600),
        heartbeat_max_age=_int_env(env, "MC_HEARTBEAT_MAX_AGE_SECONDS", 600, 10, 7 * 86_400),
        archive_lag_warning=_int_env(env, "MC_ARCHIVE_LAG_WARNING_SECONDS", 3 * 3600, 60, 30 * 86_400),
        alerts=AlertLevels(
            pending=_pair_env(env, "MC_ALERT_PENDING", (100, 400)),
            queue_seconds=_pair_env(env, "MC_ALERT_QUEUE_SECONDS", (4, 8)),
            processing_seconds=_pair_env(env, "MC_ALERT_PROCESSING_SECONDS", (10, 20)),
            error_rate_percent=_pair_env(env, "MC_ALERT_ERROR_RATE", (1, 5)),
        ),
        processing=ProcessingSettings(
            claim_chunk=_int_env(env, "MC_CLAIM_CHUNK", 10_000, 1, 1_000_000),
            max_events_per_run=_int_env(env, "MC_MAX_EVENTS_PER_RUN", 200_000, 1, 100_000_000),
            deliver_chunk=_int_env(env, "MC_DELIVER_CHUNK", 500, 1, 100_000),
            parallelism=_int_env(env, "MC_DELIVERY_PARALLELISM", 4, 1, 256),
            lease_seconds=_int_env(env, "MC_LEASE_SECONDS", 300, 1, 86_400),
            max_tries=_int_env(env, "MC_MAX_TRIES", 5, 1, 100),
            retry_backoff_seconds=_int_env(env, "MC_RETRY_BACKOFF_SECONDS", 60, 0, 86_400),
            rt_validity_seconds=_int_env(env, "MC_RT_VALIDITY", 3_600, 1, 365 * 86_400),
            batch_validity_seconds=_int_env(env, "MC_BATCH_VALIDITY", 86_400, 1, 365 * 86_400),
            rt_drain_seconds=_int_env(env, "MC_RT_DRAIN_SECONDS", 300, 1, 86_400),
            render_timeout_seconds=_int_env(env, "MC_RENDER_TIMEOUT_SECONDS", 2, 1, 3_600),
            render_max_chars=_int_env(env, "MC_RENDER_MAX_CHARS", 1_000_000, 1_000, 100_000_000),
            breaker_threshold=_int_env(env, "MC_BREAKER_THRESHOLD", 5, 1, 10_000),
            breaker_cooldown_seconds=_int_env(env, "MC_BREAKER_COOLDOWN_SECONDS", 30, 1, 3_600),
        ),
    )


@functools.cache
def get_settings() -> Settings:
    """Settings of this process, read once."""
    return load_settings()
