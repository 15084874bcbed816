"""The pull feed's SQL formats ids and timestamps exactly as the read schemas serialize them.

The feed builds each record's JSON in the database (``server/api/sync/feed.py``); these run its SQL value
expressions on a real SQLite and a real PostgreSQL for arbitrary timestamps and ids and compare with what
pydantic gives for the same values.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from outputhub.server.api.sync.feed import postgres_timestamp_sql, sqlite_timestamp_sql, sqlite_uuid_sql


class _Shape(BaseModel):
    at: datetime
    ident: uuid.UUID


def _expected(at: datetime, ident: uuid.UUID) -> dict[str, str]:
    return _Shape(at=at.replace(tzinfo=UTC), ident=ident).model_dump(mode="json")  # type: ignore[return-value]


_AT = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1))


@pytest.fixture(scope="module")
def lite() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (at TEXT, id CHAR(32))")
    yield conn
    conn.close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(at=_AT, ident=st.uuids())
def test_sqlite_text_formats_match_the_schema(
    lite: sqlite3.Connection, at: datetime, ident: uuid.UUID
) -> None:
    # SQLAlchemy keeps a naive UTC datetime as "YYYY-MM-DD HH:MM:SS.ffffff" and a UUID as 32 hex digits
    stored = at.strftime("%Y-%m-%d %H:%M:%S.%f")
    lite.execute("DELETE FROM t")
    lite.execute("INSERT INTO t VALUES (?, ?)", (stored, ident.hex))
    got = lite.execute(f"SELECT {sqlite_timestamp_sql('t.at')}, {sqlite_uuid_sql('t.id')} FROM t").fetchone()
    expected = _expected(at, ident)
    assert got == (expected["at"], expected["ident"])


def test_sqlite_whole_seconds_and_nulls(lite: sqlite3.Connection) -> None:
    lite.execute("DELETE FROM t")
    lite.executemany("INSERT INTO t VALUES (?, ?)", [("2026-11-26 05:00:01", None), (None, None)])
    got = lite.execute(f"SELECT {sqlite_timestamp_sql('t.at')}, {sqlite_uuid_sql('t.id')} FROM t").fetchall()
    assert got == [("2026-11-26T05:00:01Z", None), (None, None)]


@pytest.mark.postgres
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(at=_AT, ident=st.uuids())
def test_postgres_formats_match_the_schema(pg_url: str, at: datetime, ident: uuid.UUID) -> None:
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        # a session in another time zone must still get UTC
        conn.execute("SET TIME ZONE 'America/New_York'")
        got = conn.execute(
            f"SELECT {postgres_timestamp_sql('x.at')}, x.id::text "
            "FROM (SELECT %s::timestamptz AS at, %s::uuid AS id) x",
            (at.replace(tzinfo=UTC), ident),
        ).fetchone()
    expected = _expected(at, ident)
    assert got == (expected["at"], expected["ident"])
