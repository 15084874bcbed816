"""The feed data the bulk push builds in Python (``Feed.data_json``) is what the read schema serializes, and
the commit hook's revision spans left to rebuild (``records.uncovered``) are exactly the ones not marked."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
from hypothesis import given
from hypothesis import strategies as st

from outputhub.common.schemas import OutputRead
from outputhub.server.api.sync.feed import FEED_BY_NAME
from outputhub.server.api.sync.records import uncovered

_AT = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1))


@given(
    at=_AT,
    offset=st.integers(min_value=-12 * 60, max_value=12 * 60),
    ids=st.lists(st.uuids(), max_size=4, unique=True),
    prompt=st.uuids(),
    text=st.text(max_size=50),
)
def test_output_data_is_the_read_schema(
    at: datetime, offset: int, ids: list[uuid.UUID], prompt: uuid.UUID, text: str
) -> None:
    when = at.replace(tzinfo=timezone(timedelta(minutes=offset)))
    row = {
        "id": prompt,
        "revision": 7,
        "created_at": when,
        "updated_at": at,  # naive: UTC, as the UTCDateTime column stores it
        "created_by": "user:x",
        "updated_by": "user:y",
        "prompt_id": prompt,
        "content": text,
        "notes": "",
        "custom_gpt_id": None,
        "gpt_model_id": None,
        "accuracy_level_id": ids[0] if ids else None,
    }  # produced_at left out: its column has no default, so NULL
    links = {"knowledge_type_ids": list(reversed(ids)), "tag_ids": ids[:1]}
    built = orjson.loads(FEED_BY_NAME["outputs"].data_json(row, links))
    expected = OutputRead(
        **{**row, "created_at": when.astimezone(UTC), "updated_at": at.replace(tzinfo=UTC)},  # as read back
        produced_at=None,
        knowledge_type_ids=sorted(ids, key=str),
        tag_ids=ids[:1],
    ).model_dump(mode="json")
    assert built == expected


@given(
    low=st.integers(min_value=1, max_value=50),
    size=st.integers(min_value=0, max_value=50),
    covered=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 10)), max_size=6),
)
def test_uncovered_is_the_complement(low: int, size: int, covered: list[tuple[int, int]]) -> None:
    high = low + size
    spans = [(first, first + length) for first, length in covered]
    marked = {r for first, last in spans for r in range(first, last + 1)}
    left = uncovered(low, high, spans)
    assert [r for first, last in left for r in range(first, last + 1)] == [
        r for r in range(low, high + 1) if r not in marked
    ]
    assert all(b[0] > a[1] + 1 for a, b in itertools.pairwise(left))  # maximal spans, in order
