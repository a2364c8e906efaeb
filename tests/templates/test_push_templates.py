"""Push templates' display options: badge, sound, collapse_id, thread_id (validated, hashed only
when set, published on both tables, carried from control to the instances)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg
import pytest

from messagecenter.core.errors import TemplateError
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import (
    CONTROL_TABLE,
    latest_template,
    publish_latest,
    publish_templates,
)
from messagecenter.templates.spec import TemplateSpec

IOS: dict[str, Any] = {
    "event_type": "ORDER",
    "channel": "ios",
    "subject": "Order {{ ctx.n }}",
    "text": "Shipped",
    "badge": 2,
    "sound": "chime.aiff",
    "collapse_id": "orders",
    "thread_id": "order-thread",
}


def parse_one(**item: Any) -> TemplateSpec:
    (spec,) = parse_templates({"templates": [item]})
    return spec


def options(template: Any) -> tuple[Any, ...]:
    return template.badge, template.sound, template.collapse_id, template.thread_id


def test_push_options_are_read() -> None:
    assert options(parse_one(**IOS)) == (2, "chime.aiff", "orders", "order-thread")
    android = parse_one(**{**IOS, "channel": "android", "thread_id": None})
    assert options(android) == (2, "chime.aiff", "orders", None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"channel": "android"}, "thread_id: not used by android templates"),
        ({"channel": "sms", "subject": None}, "not used by sms templates"),
        ({"badge": -1}, "badge: must be between 0"),
        ({"badge": True}, "badge: must be a whole number"),
        ({"badge": "3"}, "badge: must be a whole number"),
        ({"collapse_id": "x" * 65}, "collapse_id: must be one line of 1 to 64 bytes"),
        ({"sound": "a\nb"}, "sound: must be one line"),
        ({"thread_id": "  "}, "thread_id: must be one line"),
        ({"sound": 3}, "sound: must be a string"),
    ],
)
def test_push_options_are_checked(change: dict[str, Any], message: str) -> None:
    item = {k: v for k, v in {**IOS, **change}.items() if v is not None}
    with pytest.raises(TemplateError, match=message.replace("(", r"\(")):
        parse_templates({"templates": [item]})


def test_content_hash_changes_only_when_an_option_is_set() -> None:
    plain = TemplateSpec("ORDER", 41, subject="Hi", text="Shipped")
    content = {
        "event_type": "ORDER",
        "channel": 41,
        "subject": "Hi",
        "html": None,
        "text": "Shipped",
        "data": None,
    }
    expected = hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert plain.content_hash == expected  # what templates published before the options hashed to
    hashes = {
        TemplateSpec("ORDER", 41, subject="Hi", text="Shipped", **{name: value}).content_hash  # type: ignore[arg-type]
        for name, value in (("badge", 0), ("sound", "a"), ("collapse_id", "a"), ("thread_id", "a"))
    }
    assert len(hashes) == 4
    assert expected not in hashes


def test_options_are_published_and_reach_the_instances(make_db) -> None:
    with psycopg.connect(make_db()) as control, psycopg.connect(make_db()) as instance:
        publish_templates(control, [parse_one(**IOS)], table=CONTROL_TABLE)
        publish_latest(control, instance)
        for conn, table in ((control, CONTROL_TABLE), (instance, "execution")):
            template = latest_template(conn, "ORDER", "ios", table=table)  # type: ignore[arg-type]
            assert template is not None
            assert options(template) == (2, "chime.aiff", "orders", "order-thread")
        # Unchanged: publishing the same file again writes no new version.
        (again,) = publish_templates(instance, [parse_one(**IOS)])
        assert not again.created
