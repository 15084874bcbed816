"""The pull feed formats SQLite's stored text exactly as the read schemas serialize the values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from outputhub.server.api.sync.feed import _rfc3339, _sqlite_timestamp, _sqlite_uuid


class _Shape(BaseModel):
    at: datetime
    ident: uuid.UUID


@given(
    at=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)),
    ident=st.uuids(),
)
def test_sqlite_text_and_postgres_values_match_the_schema(at: datetime, ident: uuid.UUID) -> None:
    expected = _Shape(at=at.replace(tzinfo=UTC), ident=ident).model_dump(mode="json")
    stored = at.strftime("%Y-%m-%d %H:%M:%S.%f")  # how SQLAlchemy keeps a naive UTC datetime in SQLite
    assert _sqlite_timestamp(stored) == expected["at"]
    assert _rfc3339(at.replace(tzinfo=UTC)) == expected["at"]
    assert _sqlite_uuid(ident.hex) == expected["ident"]


def test_nulls_stay_null() -> None:
    assert _sqlite_timestamp(None) is None and _sqlite_uuid(None) is None and _rfc3339(None) is None
