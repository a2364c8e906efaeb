"""Signed one-click unsubscribe links: what they carry, and that nobody can forge one."""

from __future__ import annotations

import pytest

from messagecenter.core.types import Channel
from messagecenter.feedback.unsubscribe import Unsubscription, headers, make_token, read_token

KEY = b"k" * 32


def test_a_token_reads_back_what_it_was_made_of() -> None:
    token = make_token(Channel.EMAIL, "ann:smith@example.com", 2**56 + 7, KEY)
    assert read_token(token, KEY) == Unsubscription(Channel.EMAIL, "ann:smith@example.com", 2**56 + 7)


def test_the_headers_follow_rfc_8058() -> None:
    found = headers("https://mc.example.com/messagecenter/", Channel.EMAIL, "a@example.com", 1, KEY)
    assert found["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = found["List-Unsubscribe"]
    assert url.startswith("<https://mc.example.com/messagecenter/api/v1/unsubscribe/")
    assert url.endswith(">")
    assert read_token(url[1:-1].rsplit("/", 1)[1], KEY) == Unsubscription(Channel.EMAIL, "a@example.com", 1)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # another signature
        lambda t: make_token(Channel.EMAIL, "victim@example.com", 1, b"x" * 32),  # another key
        lambda t: t.split(".")[0],  # no signature
        lambda t: "",
        lambda t: "...",
        lambda t: "%%%.%%%",
        lambda t: "a" * 5000 + "." + "b",
    ],
)
def test_forged_or_malformed_tokens_read_as_nothing(mangle) -> None:
    assert read_token(mangle(make_token(Channel.EMAIL, "a@example.com", 1, KEY)), KEY) is None


def test_another_address_under_the_same_signature_is_refused() -> None:
    token = make_token(Channel.EMAIL, "a@example.com", 1, KEY)
    _body, mac = token.split(".")
    forged = make_token(Channel.EMAIL, "b@example.com", 1, KEY).split(".")[0] + "." + mac
    assert read_token(forged, KEY) is None
