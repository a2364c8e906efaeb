from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from messagecenter.core.errors import RenderError, TemplateError
from messagecenter.templates import rendering, spec
from messagecenter.templates.files import load_template_file
from messagecenter.templates.publishing import latest_template, latest_templates, publish_templates
from messagecenter.templates.rendering import Renderer
from messagecenter.templates.spec import PublishedTemplate, TemplateSpec
from tests.support.builders import REPO

EXAMPLE = REPO / "include" / "templates" / "example.yaml"

DOC: dict[str, Any] = {
    "templates": [
        {
            "event_type": "ORDER_CONFIRMATION",
            "channel": "email",
            "subject": "Order {{ ctx.orderId }} confirmed",
            "html": "<p>Hello {{ ctx.firstName }}, your order {{ ctx.orderId }} ships soon.</p>",
            "text": "Hello {{ ctx.firstName }}, your order {{ ctx.orderId }} ships soon.",
        },
        {"event_type": "OTP", "channel": "sms", "text": "Your code is {{ ctx.code }}"},
        {
            "event_type": "ORDER_SHIPPED",
            "channel": "ios",
            "subject": "Shipped",
            "text": "Order {{ ctx.orderId }} is on its way",
            "data": {"orderId": "{{ ctx.orderId }}", "n": 3, "tags": ["{{ event.type }}", True]},
        },
    ]
}


def write(tmp_path: Path, doc: Any, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if name.endswith(".json") else yaml.safe_dump(doc))
    return path


def with_item(index: int, **changes: Any) -> dict[str, Any]:
    """DOC with item ``index`` changed (a value of None removes the key)."""
    items = [dict(item) for item in DOC["templates"]]
    items[index].update(changes)
    items[index] = {k: v for k, v in items[index].items() if v is not None}
    return {"templates": items}


def count_rows(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM mc.published_template").fetchone()[0]


def published(
    text: str | None = None, *, channel: int = 1, template_id: int = 1, version: int = 1, **fields: Any
) -> PublishedTemplate:
    values: dict[str, Any] = {"subject": None, "html": None, "data": None, **fields}
    return PublishedTemplate(
        id=1, template_id=template_id, version=version, event_type="T", channel=channel, text=text, **values
    )


# --- Loading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t.yaml", "t.yml", "t.json"])
def test_load_yaml_and_json(tmp_path: Path, name: str) -> None:
    specs = load_template_file(write(tmp_path, DOC, name))
    assert [(s.event_type, s.channel) for s in specs] == [
        ("ORDER_CONFIRMATION", 0),
        ("OTP", 1),
        ("ORDER_SHIPPED", 41),
    ]
    email, sms, push = specs
    assert email.subject == "Order {{ ctx.orderId }} confirmed"
    assert email.html.startswith("<p>Hello")
    assert (sms.subject, sms.html, sms.data) == (None, None, None)
    assert push.data == {"orderId": "{{ ctx.orderId }}", "n": 3, "tags": ["{{ event.type }}", True]}


def test_example_file_loads() -> None:
    specs = load_template_file(EXAMPLE)
    assert {(s.event_type, s.channel) for s in specs} == {
        ("ORDER_CONFIRMATION", 0),
        ("OTP", 1),
        ("ORDER_SHIPPED", 41),
        ("ORDER_SHIPPED", 42),
        ("PASSWORD_RESET", 0),
    }


def test_content_hash_covers_content_not_ids() -> None:
    spec = TemplateSpec("OTP", 1, text="a")
    assert spec.content_hash == TemplateSpec("OTP", 1, text="a", template_id=7, version=2).content_hash
    assert spec.content_hash != TemplateSpec("OTP", 1, text="b").content_hash
    assert spec.content_hash != TemplateSpec("OTP2", 1, text="a").content_hash
    assert spec.content_hash != TemplateSpec("OTP", 41, text="a").content_hash
    assert TemplateSpec("X", 41, text="a", data={"a": 1, "b": 2}).content_hash == (
        TemplateSpec("X", 41, text="a", data={"b": 2, "a": 1}).content_hash
    )


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (with_item(1, channel="fax"), "templates[1].channel: unknown channel 'fax'"),
        (with_item(1, channel=None), "templates[1].channel: missing"),
        (with_item(0, event_type=None), "templates[0].event_type: missing"),
        (with_item(0, event_type="bad type!"), "templates[0].event_type: 'bad type!' is not a valid"),
        (with_item(0, subject=None), "templates[0].subject: an email template needs a subject"),
        (with_item(0, subject="  "), "templates[0].subject: an email template needs a subject"),
        (with_item(0, html=None, text=None), "templates[0].html: an email template needs an html or a text"),
        (with_item(1, text=None), "templates[1].text: an sms template needs a text"),
        (with_item(2, text=None), "templates[2].text: a ios push template needs a text"),
        (with_item(1, subject="Hi"), "templates[1].subject: not used by sms templates"),
        (with_item(0, data={"a": "b"}), "templates[0].data: not used by email templates"),
        (with_item(2, data=["x"]), "templates[2].data: must be an object, got list"),
        (with_item(2, data={"a": {"b": "{{ x"}}), "templates[2].data.a.b: template syntax error at line 1"),
        (with_item(1, text=42), "templates[1].text: must be a string, got int"),
        (with_item(1, body="x"), "templates[1]: unknown key(s) 'body'"),
        (with_item(1, text="Code {{ ctx.code }"), "templates[1].text: template syntax error at line 1"),
        (with_item(0, html="<p>\n{% if %}</p>"), "templates[0].html: template syntax error at line 2"),
        (with_item(0, subject="{{ ctx.x | nosuchfilter }}"), "templates[0].subject: template syntax error"),
        ({"templates": [*DOC["templates"], DOC["templates"][1]]}, "templates[3]: duplicate of templates[1]"),
        ({"templates": ["OTP"]}, "templates[0]: expected a mapping, got str"),
        ({"templates": {"a": 1}}, "templates: expected a list, got dict"),
        ({"template": []}, "expected a mapping with a 'templates' list"),
        ({**DOC, "version": 2}, "unknown top-level key(s) 'version'"),
        (None, "expected a mapping with a 'templates' list"),
    ],
)
def test_invalid_file_names_index_and_field_and_loads_nothing(
    tmp_path: Path, conn: psycopg.Connection, doc: Any, expected: str
) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(TemplateError) as info:
        publish_templates(conn, load_template_file(path))
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)
    assert count_rows(conn) == 0


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("t.json", "{not json", "malformed JSON"),
        ("t.yaml", "templates: [unclosed", "malformed YAML"),
        ("t.txt", "templates: []", "unsupported file type '.txt'"),
        ("missing.yaml", None, "cannot read"),
    ],
)
def test_unreadable_file(tmp_path: Path, name: str, content: str | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(TemplateError, match=expected):
        load_template_file(path)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("templates: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(TemplateError, match="malformed YAML"):
        load_template_file(path)


# --- Publishing ---------------------------------------------------------------------------------


def test_publish_then_reload_then_change(tmp_path: Path, conn: psycopg.Connection) -> None:
    path = write(tmp_path, DOC)
    first = publish_templates(conn, load_template_file(path))
    assert [(p.event_type, p.channel, p.template_id, p.version, p.created) for p in first] == [
        ("ORDER_CONFIRMATION", 0, 1, 1, True),
        ("OTP", 1, 2, 1, True),
        ("ORDER_SHIPPED", 41, 3, 1, True),
    ]
    row = conn.execute(
        "SELECT subject, data, content_hash FROM mc.published_template WHERE template_id = 3"
    ).fetchone()
    assert row[0] == "Shipped"
    assert row[1] == DOC["templates"][2]["data"]
    assert row[2] == load_template_file(path)[2].content_hash

    again = publish_templates(conn, load_template_file(path))
    assert [(p.template_id, p.version, p.created) for p in again] == [
        (1, 1, False),
        (2, 1, False),
        (3, 1, False),
    ]
    assert count_rows(conn) == 3

    changed = write(tmp_path, with_item(1, text="Your one-time code: {{ ctx.code }}"), "changed.yaml")
    third = publish_templates(conn, load_template_file(changed))
    assert [(p.template_id, p.version, p.created) for p in third] == [
        (1, 1, False),
        (2, 2, True),
        (3, 1, False),
    ]
    assert count_rows(conn) == 4

    latest = latest_template(conn, "OTP", "sms")
    assert latest is not None
    assert (latest.template_id, latest.version, latest.text) == (2, 2, "Your one-time code: {{ ctx.code }}")
    assert latest_template(conn, "OTP", 1) == latest
    assert latest_template(conn, "OTP", "email") is None
    assert latest_template(conn, "NOPE", "sms") is None
    assert latest_templates(conn)[("OTP", 1)] == latest
    assert len(latest_templates(conn)) == 3

    # Going back to the first content is a new version on top, not the old one revived.
    reverted = publish_templates(conn, load_template_file(path))
    assert [(p.template_id, p.version, p.created) for p in reverted] == [
        (1, 1, False),
        (2, 3, True),
        (3, 1, False),
    ]
    assert latest_template(conn, "OTP", "sms").text == "Your code is {{ ctx.code }}"  # type: ignore[union-attr]


def test_publish_is_one_transaction(conn: psycopg.Connection) -> None:
    good = TemplateSpec("OTP", 1, text="a")
    conflicting = TemplateSpec("X", 1, text="b", template_id=1, version=1)  # taken by the first spec
    with pytest.raises(TemplateError, match="already published with another content"):
        publish_templates(conn, [good, conflicting])
    assert count_rows(conn) == 0


def test_concurrent_loaders_queue_and_readers_do_not(db_dsn: str, conn: psycopg.Connection) -> None:
    conn.execute("SET lock_timeout = '5s'")
    results: list[spec.PublishedVersion] = []
    with psycopg.connect(db_dsn) as first:
        with first.transaction():
            publish_templates(first, [TemplateSpec("A", 1, text="a")])  # holds the lock until commit
            assert latest_template(conn, "A", 1) is None  # readers are not blocked, see the old state
            second = threading.Thread(
                target=lambda: results.extend(publish_templates(conn, [TemplateSpec("B", 1, text="b")]))
            )
            second.start()
            second.join(0.3)
            assert second.is_alive()  # waiting for the lock, not picking the same new id
        second.join(5)
    assert [(r.event_type, r.template_id, r.version) for r in results] == [("B", 2, 1)]
    assert latest_template(conn, "A", 1).template_id == 1  # type: ignore[union-attr]


def test_explicit_ids_are_idempotent(conn: psycopg.Connection) -> None:
    v5 = TemplateSpec("OTP", 1, text="five", template_id=500, version=5)
    v4 = TemplateSpec("OTP", 1, text="four", template_id=500, version=4)
    assert [p.created for p in publish_templates(conn, [v5])] == [True]
    assert [p.created for p in publish_templates(conn, [v5])] == [False]
    publish_templates(conn, [v4])  # replayed late: it is now the latest published
    assert latest_template(conn, "OTP", 1).version == 4  # type: ignore[union-attr]
    # A local change goes on top of the highest version, never colliding with it.
    (local,) = publish_templates(conn, [TemplateSpec("OTP", 1, text="local")])
    assert (local.template_id, local.version, local.created) == (500, 6, True)
    # A brand-new pair gets an id above every id in use.
    (other,) = publish_templates(conn, [TemplateSpec("OTHER", 1, text="x")])
    assert (other.template_id, other.version) == (501, 1)
    with pytest.raises(ValueError, match="together"):
        TemplateSpec("OTP", 1, text="x", template_id=1)


# --- Rendering ----------------------------------------------------------------------------------


def test_render_email_with_ctx_and_event() -> None:
    template = published(
        channel=0,
        subject=" Order {{ ctx.orderId }} for {{ event.email }} ",
        html="<p>Hello {{ ctx.firstName }}</p>\n",
        text="Hello {{ ctx.firstName }} ({{ event.language }})\n",
    )
    out = Renderer().render(
        template,
        event={"email": "ann@example.com", "language": "fr"},
        ctx={"orderId": 42, "firstName": "Zoé"},
    )
    assert out.subject == "Order 42 for ann@example.com"
    assert out.html == "<p>Hello Zoé</p>"
    assert out.text == "Hello Zoé (fr)"
    assert out.data is None
    assert not out.is_empty(0)
    assert not out.is_empty("email")


def test_render_sms_and_push() -> None:
    renderer = Renderer()
    sms = renderer.render(published("Your code is {{ ctx.code }}"), event={}, ctx={"code": "123456"})
    assert (sms.subject, sms.html, sms.text, sms.data) == (None, None, "Your code is 123456", None)
    push = published(
        "Order {{ ctx.orderId }} is on its way",
        channel=41,
        subject="Shipped",
        data={"orderId": "{{ ctx.orderId }}", "n": 3, "nested": {"list": ["{{ event.type }}", None, False]}},
    )
    out = renderer.render(push, event={"type": "ORDER_SHIPPED"}, ctx={"orderId": "A-1"})
    assert out.subject == "Shipped"
    assert out.text == "Order A-1 is on its way"
    assert out.data == {"orderId": "A-1", "n": 3, "nested": {"list": ["ORDER_SHIPPED", None, False]}}


def test_html_escapes_ctx_values_but_text_does_not() -> None:
    template = published(
        "{{ ctx.name }}", channel=0, subject="{{ ctx.name }}", html="<p>{{ ctx.name }}</p>", data=None
    )
    out = Renderer().render(template, event={}, ctx={"name": "<script>alert(1)</script>"})
    assert out.html == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert out.text == "<script>alert(1)</script>"
    assert out.subject == "<script>alert(1)</script>"


def test_subject_is_one_line() -> None:
    out = Renderer().render(
        published("t", channel=0, subject="Hi {{ ctx.x }}"), event={}, ctx={"x": "a\r\nBcc: b"}
    )
    assert out.subject == "Hi a Bcc: b"


def test_null_ctx_value_renders_empty() -> None:
    assert Renderer().render(published("[{{ ctx.x }}]"), event={}, ctx={"x": None}).text == "[]"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (published("Your code is {{ ctx.code }}"), "text: 'code' is undefined"),
        (published("{{ code }}"), "text: 'code' is undefined"),
        (published("t", channel=0, subject="{{ ctx.a.b }}"), "subject: 'a' is undefined"),
        (published("t", channel=0, subject="s", html="{{ ctx.a }}"), "html: 'a' is undefined"),
        (published("t", channel=41, data={"k": ["{{ ctx.id }}"]}), "data.k[0]: 'id' is undefined"),
        (published("{% if ctx.optional %}x{% endif %}"), "text: 'optional' is undefined"),
        (published("{{ 1 / ctx.zero }}"), "text: ZeroDivisionError"),
        (published("{{ ctx.n + 'a' }}"), "text: TypeError"),
    ],
)
def test_render_errors_name_the_field(template: PublishedTemplate, expected: str) -> None:
    with pytest.raises(RenderError) as info:
        Renderer().render(template, event={}, ctx={"zero": 0, "n": 1})
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.system('touch {marker}') }}",
        "{{ ''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__['__builtins__'] }}",
        "{{ '{0.__class__.__init__.__globals__}'.format(ctx) }}",
        "{{ ctx.list.append(1) }}",
        "{{ event.__class__ }}",
    ],
)
def test_sandbox_blocks_escapes(tmp_path: Path, source: str) -> None:
    marker = tmp_path / "pwned"
    ctx = {"list": []}
    with pytest.raises(RenderError, match=r"^text: .*unsafe"):
        Renderer().render(published(source.replace("{marker}", str(marker))), event={}, ctx=ctx)
    assert not marker.exists()
    assert ctx == {"list": []}


def test_compile_once_per_version(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = Renderer()
    compiled: list[str] = []
    for env in (renderer.text_env, renderer.html_env):
        original = env.from_string

        def spy(source: str, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            compiled.append(source)
            return _original(source, *args, **kwargs)

        monkeypatch.setattr(env, "from_string", spy)
    v1 = published("Hi {{ ctx.n }}", channel=0, subject="S {{ ctx.n }}", html="<b>{{ ctx.n }}</b>")
    for n in range(1000):
        out = renderer.render(v1, event={}, ctx={"n": n})
    assert out.text == "Hi 999"
    assert sorted(compiled) == sorted(["Hi {{ ctx.n }}", "S {{ ctx.n }}", "<b>{{ ctx.n }}</b>"])
    info = renderer.cache_info()
    assert (info.misses, info.hits, info.currsize) == (3, 2997, 3)

    v2 = published("Hello {{ ctx.n }}", version=2)
    renderer.render(v2, event={}, ctx={"n": 1})
    renderer.render(v2, event={}, ctx={"n": 2})
    assert len(compiled) == 4


def test_cache_is_bounded() -> None:
    renderer = Renderer(cache_size=2)
    for version in range(1, 6):
        renderer.render(published("v{{ ctx.n }}", version=version), event={}, ctx={"n": version})
    assert renderer.cache_info().currsize == 2


def test_is_empty() -> None:
    assert rendering.Rendered(subject="s").is_empty(0)
    assert not rendering.Rendered(subject="s", html="<p/>").is_empty("email")
    assert not rendering.Rendered(text="t").is_empty(0)
    assert rendering.Rendered(subject="title", data={"a": 1}).is_empty("ios")
    assert rendering.Rendered(text="").is_empty(1)
    assert not rendering.Rendered(text="x").is_empty(42)
    out = Renderer().render(published("{% if ctx.send %}code{% endif %}"), event={}, ctx={"send": False})
    assert out.is_empty("sms")
    with pytest.raises(ValueError, match="unknown channel"):
        out.is_empty("fax")


def test_a_ctx_key_wins_over_a_dict_method_and_methods_stay_reachable() -> None:
    ctx = {"items": ["a", "b"], "tags": {"x": 1}}
    rendered = Renderer().render(
        published(
            "{{ ctx.items | join(',') }} {% for k, v in ctx.tags.items() %}{{ k }}={{ v }}{% endfor %}"
        ),
        event={},
        ctx=ctx,
    )
    assert rendered.text == "a,b x=1"
    with pytest.raises(RenderError, match="unsafe"):  # a key lookup never opens an attribute
        Renderer().render(published("{{ ctx.__class__ }}"), event={}, ctx={"a": 1})


# --- Bounds -------------------------------------------------------------------------------------


def test_subject_control_characters_become_one_printable_line() -> None:
    rendered = Renderer().render(
        published("t", channel=0, subject="Order {{ ctx.id }}"), event={}, ctx={"id": "A-1\x0bNote\x00\tx"}
    )
    assert rendered.subject == "Order A-1 Note x"


@pytest.mark.parametrize(
    ("source", "ctx", "expected"),
    [
        ("{{ ctx.s * ctx.n }}", {"s": "ab", "n": 10**9}, "'*' would build 2000000000 items"),
        ("{{ ctx.n * ctx.s }}", {"s": "ab", "n": 10**9}, "'*' would build"),
        ("{{ 10 ** ctx.n }}", {"n": 10**8}, "'**' with an exponent of 100000000"),
        ("{{ 'x' | center(ctx.n) }}", {"n": 10**9}, "a width of 1000000000"),
        (
            "{% for i in range(100000) %}{{ ctx.s }}{% endfor %}",
            {"s": "0123456789abcdefghijk"},
            "longer than",
        ),
    ],
)
def test_renders_cannot_build_a_huge_string(source: str, ctx: dict[str, Any], expected: str) -> None:
    renderer = Renderer(max_output_chars=1_000_000)
    with pytest.raises(RenderError, match=re.escape(expected)):
        renderer.render(published(source), event={}, ctx=ctx)


def test_a_render_past_its_time_limit_fails_and_the_next_one_works() -> None:
    renderer = Renderer(time_limit=0.3)
    handler_before = signal.getsignal(signal.SIGALRM)
    spin = published("{% for i in range(ctx.n) %}{% for j in range(ctx.n) %}{% endfor %}{% endfor %}done")
    with renderer.time_limits():
        start = time.monotonic()
        with pytest.raises(RenderError, match=r"render took longer than 0\.3 s"):
            renderer.render(spin, event={}, ctx={"n": 100_000})
        assert time.monotonic() - start < 1.5
        assert renderer.render(spin, event={}, ctx={"n": 10}).text == "done"
        time.sleep(0.4)  # no alarm is left armed between renders
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is handler_before  # whatever was there is put back
