from __future__ import annotations

import pytest

from messagecenter.core.ids import MAX_SEQUENCE, make_event_id, split_event_id


@pytest.mark.parametrize("instance_id", [1, 2, 127, 128, 200, 255])
@pytest.mark.parametrize("sequence", [1, 42, MAX_SEQUENCE])
def test_event_id_round_trips_and_fits_a_signed_bigint(instance_id: int, sequence: int) -> None:
    event_id = make_event_id(instance_id, sequence)
    assert -(2**63) <= event_id < 2**63
    assert split_event_id(event_id) == (instance_id, sequence)


def test_event_id_high_byte_is_the_instance() -> None:
    assert make_event_id(1, 5) == (1 << 56) | 5
    assert (make_event_id(3, 5) & (2**64 - 1)) >> 56 == 3


def test_event_ids_of_two_instances_never_collide() -> None:
    assert {make_event_id(1, s) for s in range(1, 1000)}.isdisjoint(
        {make_event_id(2, s) for s in range(1, 1000)}
    )


@pytest.mark.parametrize(("instance_id", "sequence"), [(0, 1), (256, 1), (1, 0), (1, MAX_SEQUENCE + 1)])
def test_event_id_refuses_out_of_range_parts(instance_id: int, sequence: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        make_event_id(instance_id, sequence)
