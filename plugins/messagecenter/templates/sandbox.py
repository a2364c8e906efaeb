"""The Jinja sandbox every template renders in, shared by the file checks and the renderer.

Templates are written by operators but fed with ``ctx`` data pushed by external applications, so a
template can read its variables and nothing else of the process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from messagecenter.core.settings import ProcessingSettings


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

    Operators and filters that multiply a size check the result's size before building it.
    """

    intercepted_binops = frozenset({"*", "**"})
    max_size = ProcessingSettings.render_max_chars

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > self.max_size
                ):
                    raise SecurityError(f"'*' would build {len(seq) * times} items (limit {self.max_size})")
        elif (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(right) > 1000
            and abs(left) > 1
        ):
            raise SecurityError(f"'**' with an exponent of {right} (limit 1000)")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def make_environment(
    *, autoescape: bool, max_size: int = ProcessingSettings.render_max_chars
) -> ImmutableSandboxedEnvironment:
    """A sandboxed Jinja environment where an undefined variable is an error.

    The immutable sandbox also refuses ``ctx.items.append(...)``: rendering never changes the event.

    :param max_size: the largest string or list an operator or a padding filter may build.
    """
    env = _Environment(autoescape=autoescape, undefined=_Undefined, finalize=_finalize)
    env.max_size = max_size
    for name in ("center", "indent"):
        env.filters[name] = _bounded(env.filters[name], max_size)
    return env


def _bounded(filter_: Callable[..., Any], max_size: int) -> Callable[..., Any]:
    """A padding filter that refuses a width over ``max_size`` (``'x'|center(10**9)``)."""

    def bounded(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > max_size:
            raise SecurityError(f"a width of {width} (limit {max_size})")
        return filter_(value, width, *args, **kwargs)

    bounded.__name__ = getattr(filter_, "__name__", "bounded")
    return bounded


def syntax_problem(exc: jinja2.TemplateError) -> str:
    """One line for a template that does not compile, with the line number when Jinja knows it."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"template syntax error at line {exc.lineno}: {exc.message}"
    return f"template error: {exc}"
