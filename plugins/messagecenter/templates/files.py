"""Template files: read a YAML or JSON file and validate all of it before anything is published.

Operators keep templates in git. One bad item and nothing of the file is returned; each error names
the file, the item index and the field.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import jinja2
import yaml

from messagecenter.core.errors import TemplateError
from messagecenter.core.types import Channel
from messagecenter.templates.sandbox import make_environment, syntax_problem
from messagecenter.templates.spec import CHANNEL_FIELDS, PUSH_OPTIONS, TEXT_FIELDS, TemplateSpec

_ITEM_KEYS = ("event_type", "channel", "subject", "html", "text", "data", "list_unsubscribe", *PUSH_OPTIONS)
# Push options' bounds: APNs refuses a collapse id over 64 bytes; a badge is a small count.
_MAX_BADGE = 1_000_000
_MAX_OPTION_BYTES = {"sound": 256, "collapse_id": 64, "thread_id": 256}
_EVENT_TYPE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # the rule of intake.decode.EventType
_CHECK_ENVS = {False: make_environment(autoescape=False), True: make_environment(autoescape=True)}
_CHANNELS = {channel.label: channel for channel in Channel}
_CHANNEL_NAMES = ", ".join(_CHANNELS)


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
                f"(event_type {spec.event_type!r}, channel {Channel(spec.channel).label})"
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
        raise TemplateError(f"{where}.channel: missing (one of {_CHANNEL_NAMES})")
    if not isinstance(name, str) or name not in _CHANNELS:
        raise TemplateError(f"{where}.channel: unknown channel {name!r}; choose from {_CHANNEL_NAMES}")
    channel = _CHANNELS[name]

    texts: dict[str, str | None] = {}
    for key in TEXT_FIELDS:
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise TemplateError(f"{where}.{key}: must be a string, got {type(value).__name__}")
        texts[key] = value if value and value.strip() else None  # blank means absent
    data = item.get("data")
    list_unsubscribe = item.get("list_unsubscribe", False)
    if not isinstance(list_unsubscribe, bool):
        raise TemplateError(f"{where}.list_unsubscribe: must be true or false, got {list_unsubscribe!r}")
    flags = {"list_unsubscribe": list_unsubscribe or None}
    options = _push_options(where, item)
    present = {k for k, v in {**texts, "data": data, **flags, **options}.items() if v is not None}
    misplaced = sorted(present - set(CHANNEL_FIELDS[channel]))
    if misplaced:
        raise TemplateError(
            f"{where}.{misplaced[0]}: not used by {name} templates "
            f"(they use {', '.join(CHANNEL_FIELDS[channel])})"
        )

    if channel == Channel.EMAIL:
        if texts["subject"] is None:
            raise TemplateError(f"{where}.subject: an email template needs a subject")
        if texts["html"] is None and texts["text"] is None:
            raise TemplateError(f"{where}.html: an email template needs an html or a text part (or both)")
    elif texts["text"] is None:
        kind = "an sms" if channel == Channel.SMS else f"a {name} push"
        raise TemplateError(f"{where}.text: {kind} template needs a text")
    if data is not None:
        if not isinstance(data, dict):
            raise TemplateError(f"{where}.data: must be an object, got {type(data).__name__}")
        _check_data(f"{where}.data", data)

    for key, source in texts.items():
        if source is not None:
            _check_compiles(f"{where}.{key}", source, html=key == "html")
    return TemplateSpec(
        event_type=event_type,
        channel=int(channel),
        subject=texts["subject"],
        html=texts["html"],
        text=texts["text"],
        data=data,
        list_unsubscribe=list_unsubscribe,
        badge=options["badge"],
        sound=options["sound"],
        collapse_id=options["collapse_id"],
        thread_id=options["thread_id"],
    )


def _push_options(where: str, item: dict[str, Any]) -> dict[str, Any]:
    """The push display options, checked: a badge count, and one-line strings of bounded size
    (sent as they are: they are not templates)."""
    badge = item.get("badge")
    if badge is not None and (isinstance(badge, bool) or not isinstance(badge, int)):
        raise TemplateError(f"{where}.badge: must be a whole number, got {badge!r}")
    if badge is not None and not 0 <= badge <= _MAX_BADGE:
        raise TemplateError(f"{where}.badge: must be between 0 and {_MAX_BADGE}, got {badge}")
    options: dict[str, Any] = {"badge": badge}
    for key, most in _MAX_OPTION_BYTES.items():
        value = item.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise TemplateError(f"{where}.{key}: must be a string, got {type(value).__name__}")
            value = value.strip()
            if not value or len(value.encode()) > most or any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise TemplateError(f"{where}.{key}: must be one line of 1 to {most} bytes, got {value!r}")
        options[key] = value
    return options


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
        raise TemplateError(f"{where}: {syntax_problem(exc)}") from None
