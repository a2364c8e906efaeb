"""Message templates: load them from files, publish them in the execution database, render them.

Operators keep templates in git as YAML or JSON files. ``templates load`` validates a whole file first
(one bad item and nothing is written), then publishes a new version of every template whose content
changed; the control instance publishes its own ids and versions through the same function. The most
recently published version of an (event type, channel) is the one used (DESIGN §3).

Templates are Jinja run in a sandbox: they are written by operators but fed with ``ctx`` data pushed
by external applications, so a template can read its variables and nothing else of the process. The
sandbox stops code execution, not resource use (``'x'|center(10**9)`` still allocates): template
authors are trusted not to write denial-of-service templates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import psycopg
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from messagecenter.exceptions import RenderError, TemplateError
from messagecenter.models import CHANNEL_CODES, CHANNEL_NAMES

# Where templates live: what routes on an execution instance, and the versioned master on control.
EXECUTION_TABLE = "published_template"
CONTROL_TABLE = "template"

log = logging.getLogger(__name__)

EMAIL, SMS, IOS, ANDROID = (CHANNEL_CODES[name] for name in ("email", "sms", "ios", "android"))
PUSH_CHANNELS = frozenset({IOS, ANDROID})
TEXT_FIELDS = ("subject", "html", "text")

_ITEM_KEYS = ("event_type", "channel", "subject", "html", "text", "data")
# What each channel uses; anything else is refused, so a field that would be silently ignored
# (an SMS subject, an e-mail data object) is caught when the file is loaded.
_CHANNEL_FIELDS: dict[int, tuple[str, ...]] = {
    EMAIL: ("subject", "html", "text"),
    SMS: ("text",),
    IOS: ("subject", "text", "data"),
    ANDROID: ("subject", "text", "data"),
}
_EVENT_TYPE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # the rule of intake.EventType
_NEWLINES_RE = re.compile(r"\s*[\r\n]+\s*")
DEFAULT_CACHE_SIZE = 4096


def channel_code(channel: int | str) -> int:
    """The channel code of a name (``"sms"``) or a code (``1``); anything else is a ``ValueError``."""
    code = CHANNEL_CODES.get(channel) if isinstance(channel, str) else channel
    if code not in CHANNEL_NAMES:
        raise ValueError(f"unknown channel {channel!r}; choose from {', '.join(CHANNEL_CODES)}")
    return code


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class TemplateSpec:
    """A template's content, as loaded from a file or received from the control instance.

    :param event_type: the event type it renders.
    :param channel: channel code (email 0, sms 1, ios 41, android 42).
    :param subject: e-mail subject / push title.
    :param html: e-mail HTML part.
    :param text: e-mail text part, SMS text or push body.
    :param data: push data; string values (at any depth) are templates.
    :param template_id: publish under this id (control instance); ``None`` lets
        :func:`publish_templates` pick the id and the next version.
    :param version: the version to publish, given together with ``template_id``.
    """

    event_type: str
    channel: int
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    data: dict[str, Any] | None = field(default=None, hash=False)
    template_id: int | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        if (self.template_id is None) != (self.version is None):
            raise ValueError("template_id and version are given together or not at all")

    @property
    def content_hash(self) -> str:
        """sha256 of the content (ids excluded): an unchanged file publishes nothing new."""
        content = {
            "event_type": self.event_type,
            "channel": self.channel,
            "subject": self.subject,
            "html": self.html,
            "text": self.text,
            "data": self.data,
        }
        return hashlib.sha256(_canonical_json(content).encode()).hexdigest()


@dataclass(frozen=True)
class PublishedVersion:
    """What :func:`publish_templates` did for one spec: a new version (``created``) or the latest kept."""

    event_type: str
    channel: int
    template_id: int
    version: int
    created: bool


@dataclass(frozen=True)
class PublishedTemplate:
    """One row of ``mc.published_template``."""

    id: int
    template_id: int
    version: int
    event_type: str
    channel: int
    subject: str | None
    html: str | None
    text: str | None
    data: dict[str, Any] | None = field(default=None, hash=False)


# --- Sandbox -------------------------------------------------------------------------------------


class _Undefined(jinja2.StrictUndefined):
    """``StrictUndefined`` whose message names the missing key (``'code' is undefined``), not the
    type of the object it was looked up in (``'dict object' has no attribute 'code'``)."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if (
            self._undefined_hint is None
            and isinstance(self._undefined_obj, Mapping)
            and isinstance(self._undefined_name, str)
        ):
            return f"{self._undefined_name!r} is undefined"
        return super()._undefined_message


def _finalize(value: Any) -> Any:
    # A ctx value pushed as null prints nothing rather than "None"; a missing key is still an error.
    return "" if value is None else value


class _Environment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, where ``ctx.key`` on a JSON object reads the key first.

    ``ctx`` and ``event`` are plain dicts of data: a key is looked up before any attribute, so
    ``ctx.items`` is the pushed ``items`` value rather than ``dict.items``, and the lookup skips the
    failing attribute access Jinja otherwise tries first (a tenth of the rendering time).
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def make_environment(*, autoescape: bool) -> ImmutableSandboxedEnvironment:
    """A sandboxed Jinja environment where an undefined variable is an error.

    The immutable sandbox also refuses ``ctx.items.append(...)``: rendering never changes the event.
    """
    return _Environment(autoescape=autoescape, undefined=_Undefined, finalize=_finalize)


_CHECK_ENVS = {False: make_environment(autoescape=False), True: make_environment(autoescape=True)}


def _syntax_problem(exc: jinja2.TemplateError) -> str:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"template syntax error at line {exc.lineno}: {exc.message}"
    return f"template error: {exc}"


# --- Loading -------------------------------------------------------------------------------------


def load_template_file(path: str | Path) -> list[TemplateSpec]:
    """Read and validate a YAML (``.yaml``/``.yml``) or JSON (``.json``) template file.

    :raises TemplateError: naming the file, the item index and the field; nothing is returned then.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise TemplateError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .yaml, .yml or .json")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read: {exc}") from exc
    try:
        document = json.loads(raw) if suffix == ".json" else yaml.safe_load(raw)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if suffix == ".json" else "YAML"
        raise TemplateError(f"{path}: malformed {kind}: {exc}") from None
    try:
        return parse_templates(document)
    except TemplateError as exc:
        raise TemplateError(f"{path}: {exc}") from None


def parse_templates(document: Any) -> list[TemplateSpec]:
    """Validate a decoded template document (``{"templates": [...]}``) into specs, all or none."""
    if not isinstance(document, dict) or "templates" not in document:
        raise TemplateError("expected a mapping with a 'templates' list")
    extra = sorted(str(k) for k in document if k != "templates")
    if extra:
        raise TemplateError(f"unknown top-level key(s) {', '.join(map(repr, extra))}; only 'templates'")
    items = document["templates"]
    if not isinstance(items, list):
        raise TemplateError(f"templates: expected a list, got {type(items).__name__}")
    specs: list[TemplateSpec] = []
    seen: dict[tuple[str, int], int] = {}
    for index, item in enumerate(items):
        spec = _parse_item(index, item)
        key = (spec.event_type, spec.channel)
        if key in seen:
            raise TemplateError(
                f"templates[{index}]: duplicate of templates[{seen[key]}] "
                f"(event_type {spec.event_type!r}, channel {CHANNEL_NAMES[spec.channel]})"
            )
        seen[key] = index
        specs.append(spec)
    return specs


def _parse_item(index: int, item: Any) -> TemplateSpec:
    where = f"templates[{index}]"
    if not isinstance(item, dict):
        raise TemplateError(f"{where}: expected a mapping, got {type(item).__name__}")
    unknown = sorted(str(k) for k in item if k not in _ITEM_KEYS)
    if unknown:
        raise TemplateError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(_ITEM_KEYS)}"
        )

    event_type = item.get("event_type")
    if event_type is None or event_type == "":
        raise TemplateError(f"{where}.event_type: missing")
    if not isinstance(event_type, str) or not _EVENT_TYPE_RE.match(event_type):
        raise TemplateError(
            f"{where}.event_type: {event_type!r} is not a valid event type (1 to 64 of A-Z a-z 0-9 _ . : -)"
        )
    name = item.get("channel")
    if name is None:
        raise TemplateError(f"{where}.channel: missing (one of {', '.join(CHANNEL_CODES)})")
    if not isinstance(name, str) or name not in CHANNEL_CODES:
        raise TemplateError(
            f"{where}.channel: unknown channel {name!r}; choose from {', '.join(CHANNEL_CODES)}"
        )
    channel = CHANNEL_CODES[name]

    texts: dict[str, str | None] = {}
    for key in TEXT_FIELDS:
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise TemplateError(f"{where}.{key}: must be a string, got {type(value).__name__}")
        texts[key] = value if value and value.strip() else None  # blank means absent
    data = item.get("data")
    present = {k for k, v in {**texts, "data": data}.items() if v is not None}
    misplaced = sorted(present - set(_CHANNEL_FIELDS[channel]))
    if misplaced:
        raise TemplateError(
            f"{where}.{misplaced[0]}: not used by {name} templates "
            f"(they use {', '.join(_CHANNEL_FIELDS[channel])})"
        )

    if channel == EMAIL:
        if texts["subject"] is None:
            raise TemplateError(f"{where}.subject: an email template needs a subject")
        if texts["html"] is None and texts["text"] is None:
            raise TemplateError(f"{where}.html: an email template needs an html or a text part (or both)")
    elif texts["text"] is None:
        kind = "an sms" if channel == SMS else f"a {name} push"
        raise TemplateError(f"{where}.text: {kind} template needs a text")
    if data is not None:
        if not isinstance(data, dict):
            raise TemplateError(f"{where}.data: must be an object, got {type(data).__name__}")
        _check_data(f"{where}.data", data)

    for key, source in texts.items():
        if source is not None:
            _check_compiles(f"{where}.{key}", source, html=key == "html")
    return TemplateSpec(event_type=event_type, channel=channel, data=data, **texts)


def _check_data(where: str, value: Any) -> None:
    """JSON values only (YAML also knows dates, sets...); every string compiles."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TemplateError(f"{where}: keys must be strings, got {key!r}")
            _check_data(f"{where}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_data(f"{where}[{i}]", item)
    elif isinstance(value, str):
        _check_compiles(where, value, html=False)
    elif isinstance(value, float) and not math.isfinite(value):
        raise TemplateError(f"{where}: {value} is not a JSON number")
    elif value is not None and not isinstance(value, int | float):  # bool is an int
        raise TemplateError(f"{where}: unsupported value of type {type(value).__name__}")


def _check_compiles(where: str, source: str, *, html: bool) -> None:
    try:
        _CHECK_ENVS[html].from_string(source)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{where}: {_syntax_problem(exc)}") from None


# --- Publishing ----------------------------------------------------------------------------------


def publish_templates(
    conn: psycopg.Connection[Any], specs: Iterable[TemplateSpec], *, table: str = EXECUTION_TABLE
) -> list[PublishedVersion]:
    """Publish ``specs`` in one transaction; return what happened to each, in order.

    A spec without ids whose content equals the latest version of its (event type, channel) writes
    nothing; otherwise it becomes version latest + 1 of that template (a new template id when the
    pair is new). A spec with ``template_id`` and ``version`` (control instance) is inserted unless
    that version already exists, so replaying a publication is harmless.

    :param table: ``published_template`` (execution: what routes) or ``template`` (control's master).

    :raises TemplateError: an explicit (template_id, version) already exists with another content.
    """
    specs = list(specs)
    results: list[PublishedVersion] = []
    with conn.transaction():
        # Self-conflicting and blocking writers only: concurrent loaders queue here and never pick
        # the same new template id or version, while deliveries keep reading templates.
        conn.execute(_sql("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE", table))
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
                CHANNEL_NAMES[result.channel],
            )
    log.info(
        "%s template version(s) published, %s unchanged",
        sum(r.created for r in results),
        sum(not r.created for r in results),
    )
    return results


def _sql(statement: str, table: str) -> sql.Composed:
    """``statement`` with ``{table}`` bound to ``mc.<table>`` (an identifier, never formatted in)."""
    if table not in (EXECUTION_TABLE, CONTROL_TABLE):
        raise ValueError(f"unknown template table {table!r}")
    return sql.SQL(statement).format(table=sql.Identifier("mc", table))  # type: ignore[arg-type]


def _publish_next(conn: psycopg.Connection[Any], spec: TemplateSpec, table: str) -> PublishedVersion:
    digest = spec.content_hash
    latest = conn.execute(
        _sql(
            "SELECT template_id, version, content_hash FROM {table}"
            " WHERE event_type = %s AND channel = %s ORDER BY published_at DESC, version DESC LIMIT 1",
            table,
        ),
        (spec.event_type, spec.channel),
    ).fetchone()
    if latest is not None and latest[2] == digest:
        return PublishedVersion(spec.event_type, spec.channel, latest[0], latest[1], created=False)
    if latest is not None:
        template_id = latest[0]
        # max, not latest + 1: an older version may have been published (replayed) after a newer one.
        row = conn.execute(
            _sql("SELECT max(version) + 1 FROM {table} WHERE template_id = %s", table), (template_id,)
        ).fetchone()
        version = row[0]  # type: ignore[index]
    else:
        row = conn.execute(_sql("SELECT coalesce(max(template_id), 0) + 1 FROM {table}", table)).fetchone()
        template_id, version = row[0], 1  # type: ignore[index]
    _insert(conn, table, template_id, version, spec, digest)
    return PublishedVersion(spec.event_type, spec.channel, template_id, version, created=True)


def _publish_explicit(conn: psycopg.Connection[Any], spec: TemplateSpec, table: str) -> PublishedVersion:
    template_id, version = spec.template_id, spec.version
    if template_id is None or version is None:
        raise ValueError("an explicit publication needs template_id and version")
    digest = spec.content_hash
    existing = conn.execute(
        _sql(
            "SELECT event_type, channel, content_hash FROM {table} WHERE template_id = %s AND version = %s",
            table,
        ),
        (template_id, version),
    ).fetchone()
    if existing is None:
        _insert(conn, table, template_id, version, spec, digest)
    elif tuple(existing) != (spec.event_type, spec.channel, digest):
        raise TemplateError(
            f"template {template_id} version {version} is already published with another "
            f"content ({existing[0]}, {CHANNEL_NAMES.get(existing[1], existing[1])}); "
            "a published version never changes: publish a new version"
        )
    return PublishedVersion(spec.event_type, spec.channel, template_id, version, created=existing is None)


def _insert(
    conn: psycopg.Connection[Any], table: str, template_id: int, version: int, spec: TemplateSpec, digest: str
) -> None:
    conn.execute(
        _sql(
            "INSERT INTO {table}"
            " (template_id, version, event_type, channel, subject, html, text, data, content_hash)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            table,
        ),
        (
            template_id,
            version,
            spec.event_type,
            spec.channel,
            spec.subject,
            spec.html,
            spec.text,
            None if spec.data is None else Jsonb(spec.data),
            digest,
        ),
    )


def latest_template(
    conn: psycopg.Connection[Any], event_type: str, channel: int | str
) -> PublishedTemplate | None:
    """The version in use for (``event_type``, ``channel``): the most recently published one."""
    with conn.cursor(row_factory=class_row(PublishedTemplate)) as cur:
        return cur.execute(
            "SELECT id, template_id, version, event_type, channel, subject, html, text, data"
            " FROM mc.published_template WHERE event_type = %s AND channel = %s"
            " ORDER BY published_at DESC, version DESC LIMIT 1",
            (event_type, channel_code(channel)),
        ).fetchone()


def latest_templates(
    conn: psycopg.Connection[Any], *, table: str = EXECUTION_TABLE
) -> dict[tuple[str, int], PublishedTemplate]:
    """Every (event type, channel code) -> version in use, in one query (a worker's chunk lookup,
    and what ``publishTemplates`` copies from control's master table)."""
    with conn.cursor(row_factory=class_row(PublishedTemplate)) as cur:
        rows = cur.execute(
            _sql(
                "SELECT DISTINCT ON (event_type, channel)"
                " id, template_id, version, event_type, channel, subject, html, text, data"
                " FROM {table} ORDER BY event_type, channel, published_at DESC, version DESC",
                table,
            )
        ).fetchall()
    return {(t.event_type, t.channel): t for t in rows}


def publish_latest(
    control_conn: psycopg.Connection[Any], exec_conn: psycopg.Connection[Any]
) -> list[PublishedVersion]:
    """Publish control's latest master versions on one execution instance, under their master ids.

    Replaying is harmless (a version already there is kept), so ``publishTemplates`` may rerun.
    """
    specs = [
        TemplateSpec(
            t.event_type,
            t.channel,
            t.subject,
            t.html,
            t.text,
            t.data,
            template_id=t.template_id,
            version=t.version,
        )
        for t in latest_templates(control_conn, table=CONTROL_TABLE).values()
    ]
    control_conn.rollback()
    return publish_templates(exec_conn, specs)


# --- Rendering -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """A template rendered for one event; every string is stripped.

    :param subject: e-mail subject / push title, on one line.
    :param html: e-mail HTML part (ctx values HTML-escaped).
    :param text: e-mail text part, SMS text or push body.
    :param data: push data, string values rendered.
    """

    subject: str | None = None
    html: str | None = None
    text: str | None = None
    data: dict[str, Any] | None = field(default=None, hash=False)

    def is_empty(self, channel: int | str) -> bool:
        """Nothing to send: an e-mail without html and text, an SMS or push without text."""
        if channel_code(channel) == EMAIL:
            return not self.html and not self.text
        return not self.text


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    maxsize: int
    currsize: int


class Renderer:
    """Render published templates for events, in a Jinja sandbox.

    Each field of a template version is compiled once and kept in a bounded LRU cache keyed by
    (template_id, version, field, source): compiling costs far more than rendering, and a worker
    renders the same few versions for thousands of events. The source is part of the key so a
    version's content can never be served stale. Safe to share between threads.

    :param cache_size: most compiled fields kept.
    """

    def __init__(self, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.text_env = make_environment(autoescape=False)
        self.html_env = make_environment(autoescape=True)
        self._globals = dict(self.text_env.globals)
        self._maxsize = cache_size
        self._cache: OrderedDict[tuple[int, int, str, str], jinja2.Template] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def render(
        self, template: PublishedTemplate, *, event: Mapping[str, Any], ctx: Mapping[str, Any]
    ) -> Rendered:
        """Render every part of ``template`` with ``event`` (its fields) and ``ctx`` (personalisation).

        :raises RenderError: naming the field, e.g. ``text: 'code' is undefined``.
        """
        # The environment's globals (range, dict, namespace...) go in with the variables, so each
        # part renders in a "shared" context: Jinja then skips merging them into a new dict per
        # render, which was a third of the rendering time.
        variables = {**self._globals, "event": event, "ctx": ctx}
        subject = self._render(template, "subject", template.subject, variables, html=False)
        if subject is not None:
            subject = _NEWLINES_RE.sub(" ", subject)  # a header / push title: one line, no injection
        return Rendered(
            subject=subject,
            html=self._render(template, "html", template.html, variables, html=True),
            text=self._render(template, "text", template.text, variables, html=False),
            data=None
            if template.data is None
            else self._render_data(template, "data", template.data, variables),
        )

    def cache_info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, self._maxsize, len(self._cache))

    def cache_clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self._hits = self._misses = 0

    def _render_data(
        self, template: PublishedTemplate, where: str, value: Any, variables: dict[str, Any]
    ) -> Any:
        if isinstance(value, str):
            return self._render(template, where, value, variables, html=False)
        if isinstance(value, dict):
            return {k: self._render_data(template, f"{where}.{k}", v, variables) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render_data(template, f"{where}[{i}]", v, variables) for i, v in enumerate(value)]
        return value

    def _render(
        self,
        template: PublishedTemplate,
        where: str,
        source: str | None,
        variables: dict[str, Any],
        *,
        html: bool,
    ) -> str | None:
        if source is None:
            return None
        compiled = self._compiled(template, where, source, html=html)
        try:
            context = compiled.new_context(variables, shared=True)
            return compiled.environment.concat(compiled.root_render_func(context)).strip()  # type: ignore[attr-defined]
        except jinja2.TemplateError as exc:  # UndefinedError, SecurityError...
            raise RenderError(f"{where}: {exc}") from exc
        except Exception as exc:  # a template is code: whatever it raises fails this event only
            raise RenderError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def _compiled(
        self, template: PublishedTemplate, where: str, source: str, *, html: bool
    ) -> jinja2.Template:
        key = (template.template_id, template.version, where, source)
        with self._lock:
            compiled = self._cache.get(key)
            if compiled is not None:
                self._cache.move_to_end(key)
                self._hits += 1
                return compiled
            self._misses += 1
        env = self.html_env if html else self.text_env
        try:
            compiled = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise RenderError(f"{where}: {_syntax_problem(exc)}") from exc
        # Each render copies the keys of the template's globals into a set; from a ChainMap (Jinja's
        # default) that was a tenth of the rendering time. The environment's globals never change.
        compiled.globals = dict(compiled.globals)
        with self._lock:
            self._cache[key] = compiled
            if len(self._cache) > self._maxsize:
                self._cache.popitem(last=False)
        return compiled
