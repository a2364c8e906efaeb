"""Signed return paths: every event id round-trips, nothing forged or altered decodes."""

from __future__ import annotations

import smtplib

import pytest

from messagecenter.core.ids import make_event_id
from messagecenter.delivery import OutgoingMessage, SmtpClient, SmtpTransport
from messagecenter.feedback import verp

KEY = b"feedback-tests-verp-key-0001"
DOMAIN = "bounces.shop.example.com"
IDS = [
    make_event_id(1, 1),
    make_event_id(1, 1001),
    make_event_id(200, 7),  # stored negative: instance ids 128..255
    make_event_id(255, (1 << 56) - 1),
    (1 << 63) - 1,
    -(1 << 63),
    0,
]


@pytest.mark.parametrize("event_id", IDS)
def test_every_event_id_round_trips_within_the_local_part_limit(event_id: int) -> None:
    address = verp.return_path(event_id, DOMAIN, KEY)
    local, _, domain = address.partition("@")
    assert len(local) <= 64
    assert domain == DOMAIN
    assert verp.event_id_from(address, KEY) == event_id


def test_decoding_ignores_case_brackets_and_spaces() -> None:
    address = verp.return_path(make_event_id(1, 1001), "Bounces.Shop.Example.COM", KEY)
    assert address.endswith("@bounces.shop.example.com")
    assert verp.event_id_from(address.upper(), KEY) == make_event_id(1, 1001)
    assert verp.event_id_from(f" <{address}> ", KEY) == make_event_id(1, 1001)


def test_addresses_already_sent_keep_decoding() -> None:
    """The format is a contract with mail in flight: these were built by this code and sit in the
    test fixtures; a change of encoding or MAC would orphan every bounce still to come."""
    assert verp.event_id_from("bounce+jpia9pm8kix-h3u27zfahsoe@bounces.shop.example.com", KEY) == (
        72057594037928937
    )
    assert verp.event_id_from("bounce+31hpl1ybjhqmf-x4fwwstmhuzz@bounces.shop.example.com", KEY) == (
        -4035225266123964409
    )


def _altered(address: str, index: int) -> str:
    """``address`` with the character at ``index`` changed to another valid one."""
    char = address[index]
    return address[:index] + ("b" if char != "b" else "c") + address[index + 1 :]


def test_forged_or_altered_addresses_give_none() -> None:
    event_id = make_event_id(1, 1001)
    address = verp.return_path(event_id, DOMAIN, KEY)
    local, _, _ = address.partition("@")
    id_start, mac_start = local.index("+") + 1, local.index("-") + 1
    forged = [
        verp.return_path(event_id, DOMAIN, b"another-key-of-some-length"),  # wrong key
        _altered(address, id_start + 2),  # another event id, same MAC
        _altered(address, mac_start + 3),  # MAC tampered
        address.replace(DOMAIN, "bounces.evil.example"),  # copied to another domain
        address.replace("bounce+", "bounces+"),  # another prefix
        local.replace("+", "+0") + "@" + DOMAIN,  # leading zero: same number, other spelling
        f"bounce+{'z' * 13}-{local[mac_start:]}@{DOMAIN}",  # beyond 64 bits
    ]
    assert [verp.event_id_from(value, KEY) for value in forged] == [None] * len(forged)
    # ...while the untouched address still decodes.
    assert verp.event_id_from(address, KEY) == event_id


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bounce@bounces.shop.example.com",
        "bounce+-@bounces.shop.example.com",
        "bounce+1-abc@bounces.shop.example.com",
        "bounce+1-aaaaaaaaaaaa",
        "bounce+1-aaaaaaaaaaaa@",
        "bounce+é-aaaaaaaaaaaa@bounces.shop.example.com",
        "<<<>>>",
        "bounce+" + "1" * 100_000 + "-aaaaaaaaaaaa@x.example",
        "\x00\udcff@\n",
    ],
)
def test_malformed_addresses_give_none(value: str) -> None:
    assert verp.event_id_from(value, KEY) is None


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        verp.return_path(1, DOMAIN, b"short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        verp.event_id_from("bounce+1-aaaaaaaaaaaa@x.example", b"")


def test_unbuildable_return_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        verp.return_path(1 << 63, DOMAIN, KEY)
    with pytest.raises(ValueError, match="cannot build"):
        verp.return_path(1, "bounces example com", KEY)


def test_return_paths_are_found_in_header_text_in_order() -> None:
    first = verp.return_path(1, DOMAIN, KEY)
    second = verp.return_path(2, DOMAIN, KEY)
    text = f"Final-Recipient: rfc822; <{first.upper()}>, {second}. And {first} again."
    assert verp.find_return_paths(text) == [first, second]


def test_the_message_id_the_smtp_transport_writes_gives_the_event_back() -> None:
    """Built by the real transport (not a copy of its format), on a client that never connects."""
    transport = SmtpTransport(
        lambda: SmtpClient(smtplib.SMTP(), "Shop <no-reply@shop.example.com>"), name="test"
    )
    event_id = make_event_id(200, 7)
    with transport:
        mail = transport.build_message(
            OutgoingMessage(event_id=event_id, channel=0, address="a@example.net", subject="s", text="t")
        )
    assert verp.event_id_from_message_id(str(mail["Message-ID"])) == event_id
    assert verp.event_id_from_message_id(verp.message_id(event_id, "shop.example.com")) == event_id


@pytest.mark.parametrize(
    "value",
    ["", "<abc@example.com>", "<123.456.mcx@example.com>", "<1.2.mc1>", f"<1.mc{1 << 64}@x.example>"],
)
def test_other_message_ids_give_none(value: str) -> None:
    assert verp.event_id_from_message_id(value) is None
