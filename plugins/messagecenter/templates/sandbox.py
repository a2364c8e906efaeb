"""The Jinja sandbox every template renders in, shared by the file checks and the renderer.

Templates are written by operators but fed with ``ctx`` data pushed by external applications, so a
template can read its variables and nothing else of the process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


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


def syntax_problem(exc: jinja2.TemplateError) -> str:
    """One line for a template that does not compile, with the line number when Jinja knows it."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"template syntax error at line {exc.lineno}: {exc.message}"
    return f"template error: {exc}"
