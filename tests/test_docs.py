"""The README stays a short entry point and the documentation site stays whole: every relative link
lands on a file (and heading) that exists, and every page is in the site's navigation. `make docs`
builds the site strictly; these checks run with the tests, without MkDocs."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.builders import REPO

DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README = REPO / "README.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SNIPPET = re.compile(r'^--8<-- "([^":]+)(?::([a-z][-_0-9a-z]*))?"\s*$', re.MULTILINE)


def _prose(text: str) -> str:
    """The text without code blocks, code spans and comments: what Markdown renders as links."""
    return _CODE.sub("", _COMMENT.sub("", _FENCE.sub("", text)))


def _slug(heading: str) -> str:
    """A heading's anchor as MkDocs writes it (Python-Markdown's toc slugify), for plain headings
    the same as GitHub's."""
    text = heading.replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    return {_slug(heading) for heading in _HEADING.findall(_FENCE.sub("", path.read_text()))}


def _links(path: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(_prose(path.read_text()))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:...
    ]


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 200


def test_the_readme_keeps_the_two_commands() -> None:
    text = README.read_text()
    assert re.search(r"^make demo +# run it", text, re.MULTILINE)
    assert re.search(r"^make test +# run the tests", text, re.MULTILINE)


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda path: str(path.relative_to(REPO)))
def test_relative_links_land_on_existing_files_and_headings(path: Path) -> None:
    broken = []
    for target in _links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
            broken.append(target)
    assert broken == [], f"{path.relative_to(REPO)} links to what does not exist"


def test_the_readme_links_every_docs_page() -> None:
    linked = {(REPO / target.partition("#")[0]).resolve() for target in _links(README)}
    assert [page.name for page in PAGES if page.resolve() not in linked] == []


def test_included_readme_sections_exist() -> None:
    """The overview page includes parts of the README (pymdownx.snippets): each named part exists."""
    readme = README.read_text()
    includes = [match for page in PAGES for match in _SNIPPET.findall(page.read_text())]
    assert includes
    for file, section in includes:
        assert file == "README.md"
        assert f"--8<-- [start:{section}]" in readme
        assert f"--8<-- [end:{section}]" in readme


class _Loader(yaml.SafeLoader):
    """mkdocs.yml with its tags (``!relative``) read as plain values."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    return loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None


_Loader.add_multi_constructor("!", _tagged)


def _nav_pages(entries: Any) -> list[str]:
    pages: list[str] = []
    for entry in entries if isinstance(entries, list) else [entries]:
        if isinstance(entry, str):
            pages.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                pages += _nav_pages(value)
    return pages


def test_the_nav_lists_every_page() -> None:
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_Loader)
    nav = _nav_pages(config["nav"])
    assert sorted(nav) == sorted(page.name for page in PAGES)
    assert (DOCS / "message-center-page.png").exists()


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def test_docs_tools_pin_shared_packages_as_the_runtime_does() -> None:
    """requirements-test.txt installs the docs tools into the same venv: a package both files pin
    must carry one version, or the install fails."""
    docs = _pins("requirements-docs.txt")
    others = _pins("requirements.txt") | _pins("requirements-dev.txt") | _pins("requirements-test.txt")
    assert {"mkdocs", "mkdocs-material"} <= docs.keys()
    differing = {name: (pin, others[name]) for name, pin in docs.items() if others.get(name, pin) != pin}
    assert differing == {}
    assert "-r requirements-docs.txt" in (REPO / "requirements-test.txt").read_text()
