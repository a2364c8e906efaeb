"""Rendering: published templates filled in for one event, compiled once per version.

The sandbox stops code execution; these bounds stop runaway resource use, so a template or a ctx
cannot make one render run for minutes or build a gigabyte string (each fails that event alone):

* output: at most ``max_output_chars`` per field, counted as the template produces it;
* size-multiplying operators (``'x' * n``, ``n ** m``) and filters (``center``, ``indent``) refuse
  a result over that limit before it is built (``sandbox``);
* time: at most ``time_limit`` seconds per render, enforced by a one-shot SIGALRM armed around
  each render of a delivery chunk (:meth:`Renderer.time_limits`), which interrupts even a loop
  that produces nothing. Signals reach the main thread only, and a process has one such timer: a
  render in another thread, or while another alarm is set (a task's ``execution_timeout``), has
  the output bounds alone.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jinja2

from messagecenter.core.errors import RenderError
from messagecenter.core.settings import ProcessingSettings
from messagecenter.core.types import Channel
from messagecenter.templates.sandbox import make_environment, syntax_problem
from messagecenter.templates.spec import PublishedTemplate

# A header / push title is one line of printable text: any control character (line breaks, a
# vertical tab...) becomes a space, so no value can inject a header or break the e-mail library.
_CONTROL_RE = re.compile(r"\s*[\x00-\x1f\x7f]+\s*")
DEFAULT_CACHE_SIZE = 4096


class RenderTimeout(Exception):
    """Raised inside a render that ran past its time limit (by the SIGALRM tick)."""


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
        if (channel if isinstance(channel, int) else Channel.parse(channel)) == Channel.EMAIL:
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
    :param time_limit: most seconds one render may take (see :meth:`time_limits`).
    :param max_output_chars: most characters one field may produce.
    """

    def __init__(
        self,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        time_limit: float = ProcessingSettings.render_timeout_seconds,
        max_output_chars: int = ProcessingSettings.render_max_chars,
    ) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.time_limit = time_limit
        self.max_output_chars = max_output_chars
        self._alarms = False  # True inside time_limits(): each render arms a one-shot SIGALRM
        self._rendering = False
        self.text_env = make_environment(autoescape=False, max_size=max_output_chars)
        self.html_env = make_environment(autoescape=True, max_size=max_output_chars)
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
        if self._alarms:
            self._rendering = True
            signal.setitimer(signal.ITIMER_REAL, self.time_limit)
        try:
            subject = self._render(template, "subject", template.subject, variables, html=False)
            if subject is not None:
                subject = _CONTROL_RE.sub(" ", subject)
            return Rendered(
                subject=subject,
                html=self._render(template, "html", template.html, variables, html=True),
                text=self._render(template, "text", template.text, variables, html=False),
                data=None
                if template.data is None
                else self._render_data(template, "data", template.data, variables),
            )
        finally:
            if self._alarms:
                signal.setitimer(signal.ITIMER_REAL, 0)
                self._rendering = False

    @contextlib.contextmanager
    def time_limits(self) -> Iterator[None]:
        """Enforce :attr:`time_limit` on the renders of this block (a delivery chunk).

        Installs a SIGALRM handler that raises :class:`RenderTimeout` in a render past its limit;
        each render arms and disarms a one-shot timer. System calls are restarted after the signal
        (``siginterrupt``), so the libraries running between renders never see it. The previous
        handler comes back afterwards.
        """
        usable = (
            self.time_limit > 0
            and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0  # nobody else's alarm is running
        )
        if not usable:
            yield
            return

        def on_alarm(signum: int, frame: Any) -> None:
            if self._rendering:
                self._rendering = False
                raise RenderTimeout(f"render took longer than {self.time_limit:g} s")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.siginterrupt(signal.SIGALRM, False)
        self._alarms = True
        try:
            yield
        finally:
            self._alarms = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

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
            parts, size, limit = [], 0, self.max_output_chars
            for part in compiled.root_render_func(context):
                size += len(part)
                if size > limit:
                    raise RenderError(f"{where}: the output is longer than {limit} characters")
                parts.append(part)
            return "".join(parts).strip()
        except RenderError:
            raise
        except RenderTimeout as exc:
            raise RenderError(f"{where}: {exc}") from None
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
            raise RenderError(f"{where}: {syntax_problem(exc)}") from exc
        # Each render copies the keys of the template's globals into a set; from a ChainMap (Jinja's
        # default) that was a tenth of the rendering time. The environment's globals never change.
        compiled.globals = dict(compiled.globals)
        with self._lock:
            self._cache[key] = compiled
            if len(self._cache) > self._maxsize:
                self._cache.popitem(last=False)
        return compiled
