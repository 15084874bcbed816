from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outputhub.common.clock import (
    DEFAULT_MAX_DRIFT_MS,
    HLC,
    MAX_COUNTER,
    ClockDriftError,
    ClockError,
    after,
    receive,
    tick,
)

EXAMPLES = int(os.environ.get("OUTPUTHUB_HYPOTHESIS_EXAMPLES", "200"))

nodes = st.text(alphabet="abcdef-0123456789", min_size=1, max_size=12)
walls = st.integers(0, 10**13)
hlcs = st.builds(HLC, walls, st.integers(0, 1000), nodes)


def test_order_is_wall_then_counter_then_node() -> None:
    assert HLC(1, 9, "z") < HLC(2, 0, "a")
    assert HLC(1, 1, "z") < HLC(1, 2, "a")
    assert HLC(1, 1, "a") < HLC(1, 1, "b")
    assert sorted([HLC(2, 0, "a"), HLC(1, 5, "b"), HLC(1, 5, "a")]) == [
        HLC(1, 5, "a"),
        HLC(1, 5, "b"),
        HLC(2, 0, "a"),
    ]


def test_encode_is_fixed_width_and_round_trips() -> None:
    hlc = HLC(1_700_000_000_123, 7, "node-1")
    assert hlc.encode() == "001700000000123-000007-node-1"
    assert HLC.decode(hlc.encode()) == hlc
    assert str(hlc) == hlc.encode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1-2-a",
        "001700000000123-000007",
        "00170000000012x-000007-a",
        "001700000000123-000007-",
        "\u0661" * 15 + "-000007-a",
    ],
)
def test_decode_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ClockError):
        HLC.decode(text)


@pytest.mark.parametrize(
    ("wall", "counter", "node"),
    [(-1, 0, "a"), (10**15, 0, "a"), (0, -1, "a"), (0, MAX_COUNTER + 1, "a"), (0, 0, "")],
)
def test_invalid_values_are_refused(wall: int, counter: int, node: str) -> None:
    with pytest.raises(ClockError):
        HLC(wall, counter, node)


def test_tick_follows_the_physical_clock_and_never_goes_back() -> None:
    first = tick(None, now_ms=1000, node="a")
    assert first == HLC(1000, 0, "a")
    assert tick(first, now_ms=2000, node="a") == HLC(2000, 0, "a")
    assert tick(first, now_ms=1000, node="a") == HLC(1000, 1, "a")
    assert tick(first, now_ms=500, node="a") == HLC(1000, 1, "a")  # the physical clock went backwards


def test_past_the_last_counter_of_a_millisecond_the_clock_moves_on_to_the_next() -> None:
    """A version at the last counter of its millisecond may come from another replica (up to the allowed
    drift ahead): the next local event is the next millisecond's first, not an error (which made the record
    uneditable on every replica until the clock passed it)."""
    last = HLC(1000, MAX_COUNTER, "b")
    assert tick(last, now_ms=1000, node="a") == HLC(1001, 0, "a")
    assert tick(last, now_ms=1001, node="a") == HLC(1001, 0, "a")
    assert receive(HLC(900, 1, "a"), last, now_ms=1000, node="a") == HLC(1001, 0, "a")
    assert receive(last, HLC(1000, 5, "c"), now_ms=10, node="a") == HLC(1001, 0, "a")
    assert after(last, node="a") == HLC(1001, 0, "a") and after(HLC(5, 7, "b"), node="a") == HLC(5, 8, "a")


def test_receive_takes_the_maximum_and_increments() -> None:
    local = HLC(1000, 3, "a")
    assert receive(local, HLC(1000, 7, "b"), now_ms=900, node="a") == HLC(1000, 8, "a")
    assert receive(local, HLC(1500, 2, "b"), now_ms=900, node="a") == HLC(1500, 3, "a")
    assert receive(local, HLC(800, 9, "b"), now_ms=900, node="a") == HLC(1000, 4, "a")
    assert receive(local, HLC(800, 9, "b"), now_ms=2000, node="a") == HLC(2000, 0, "a")
    assert receive(None, HLC(800, 9, "b"), now_ms=700, node="a") == HLC(800, 10, "a")


def test_remote_clock_too_far_ahead_is_refused() -> None:
    now = 1_700_000_000_000
    ok = HLC(now + DEFAULT_MAX_DRIFT_MS, 0, "b")
    assert receive(None, ok, now_ms=now, node="a") > ok
    with pytest.raises(ClockDriftError) as info:
        receive(None, HLC(now + DEFAULT_MAX_DRIFT_MS + 1, 0, "b"), now_ms=now, node="a")
    assert info.value.max_drift_ms == DEFAULT_MAX_DRIFT_MS
    with pytest.raises(ClockDriftError):
        receive(None, HLC(now + 61_000, 0, "b"), now_ms=now, node="a", max_drift_ms=60_000)


@settings(derandomize=True, max_examples=EXAMPLES)
@given(a=hlcs, b=hlcs)
def test_encoding_preserves_the_order(a: HLC, b: HLC) -> None:
    assert (a < b) == (a.encode() < b.encode())
    assert (a == b) == (a.encode() == b.encode())
    assert HLC.decode(a.encode()) == a


@settings(derandomize=True, max_examples=EXAMPLES)
@given(prev=st.none() | hlcs, now=walls, node=nodes)
def test_tick_is_strictly_increasing(prev: HLC | None, now: int, node: str) -> None:
    nxt = tick(prev, now_ms=now, node=node)
    assert nxt.wall_ms >= now
    if prev is not None:
        assert (nxt.wall_ms, nxt.counter) > (prev.wall_ms, prev.counter)


@settings(derandomize=True, max_examples=EXAMPLES)
@given(local=st.none() | hlcs, remote=hlcs, now=walls, node=nodes)
def test_receive_is_after_both_clocks(local: HLC | None, remote: HLC, now: int, node: str) -> None:
    if remote.wall_ms - now > DEFAULT_MAX_DRIFT_MS:
        with pytest.raises(ClockDriftError):
            receive(local, remote, now_ms=now, node=node)
        return
    got = receive(local, remote, now_ms=now, node=node)
    assert (got.wall_ms, got.counter) > (remote.wall_ms, remote.counter)
    if local is not None:
        assert (got.wall_ms, got.counter) > (local.wall_ms, local.counter)
    assert got.wall_ms == max(now, remote.wall_ms, local.wall_ms if local else 0)
