"""The outbox payload encoded by orjson in one pass equals what the Python walk (``jsonable``) made."""

from __future__ import annotations

import enum
import uuid
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from outputhub.server.events import DomainEvent, event_from_json, event_json, event_to_json, jsonable


class Colour(enum.Enum):
    RED = "red"
    BLUE = 2


def reference(event: DomainEvent) -> dict[str, Any]:
    """The payload as it was built before: every field through ``jsonable``."""
    return {f.name: jsonable(getattr(event, f.name)) for f in fields(event)}


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.uuids(),
    st.datetimes(timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-5, minutes=-30))])),
    st.sampled_from(list(Colour)),
)
hashable = st.one_of(st.text(max_size=10), st.integers(-100, 100), st.uuids())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.frozensets(hashable, max_size=4),
        st.sets(hashable, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.dictionaries(st.uuids(), inner, max_size=2),
    ),
    max_leaves=12,
)
events = st.builds(
    DomainEvent,
    org_id=st.uuids(),
    kind=st.sampled_from(["output.created", "prompt.updated", "conflict.created"]),
    entity=st.text(max_size=10),
    entity_id=st.text(max_size=36),
    actor=st.text(max_size=40),
    at=st.datetimes(timezones=st.just(UTC)),
    revision=st.none() | st.integers(0, 2**62),
    source=st.sampled_from(["api", "sync", "import", "system"]),
    device=st.none() | st.text(max_size=20),
    made_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    before=st.none() | st.dictionaries(st.text(max_size=8), values, max_size=4),
    after=st.none() | st.dictionaries(st.text(max_size=8), values, max_size=4),
    merge=st.none() | st.sampled_from(["applied", "merged", "conflict", "noop"]),
    details=st.dictionaries(st.text(max_size=8), values, max_size=4),
)


@given(events)
def test_the_payload_equals_the_python_walk(event: DomainEvent) -> None:
    assert event_to_json(event) == reference(event)


def test_a_round_trip_gives_the_event_back() -> None:
    event = DomainEvent(
        org_id=uuid.uuid4(),
        kind="output.created",
        entity="output",
        entity_id=str(uuid.uuid4()),
        actor="user:x",
        at=datetime(2026, 11, 26, 11, 0, 0, tzinfo=UTC),
        revision=7,
        source="sync",
        device="node-1",
        made_at=datetime(2026, 11, 26, 10, 59, 59, 123456, tzinfo=UTC),
        before={"title": "a"},
        after={"title": "b", "tag_ids": ["x", "y"]},
        merge="applied",
        details={"op_id": "op", "changed": ["title"]},
    )
    assert event_from_json(event_to_json(event)) == event
    assert event_json(event).startswith(b"{")
