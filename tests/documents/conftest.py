"""The document-store contract runs against every adapter: embedded on SQLite, embedded on PostgreSQL,
and MongoDB (a real wire-protocol server: OUTPUTHUB_TEST_MONGO_URL or SecantusDB)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from outputhub.server.settings import Settings
from outputhub.server.storage import migrate
from outputhub.server.storage.database import make_engine, make_session_factory
from outputhub.server.storage.documents import DocumentStore
from outputhub.server.storage.documents.mongo import MongoDocumentStore
from outputhub.server.storage.documents.sql import SqlDocumentStore

RETENTION = timedelta(days=30)


@dataclass
class StoreUnderTest:
    kind: str
    store: DocumentStore
    engine: Engine
    """A SQL database for the unit of work that ``stage`` joins (the store's own one for ``sql``)."""
    sessions: sessionmaker[Session]


def _engine(tmp: Path, url: str | None) -> Engine:
    engine = make_engine(Settings(data_dir=tmp, database_url=url, secret_key="x" * 40))
    migrate.upgrade(engine)
    return engine


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = _engine(tmp_path_factory.mktemp("docs-sqlite"), None)
    yield engine
    engine.dispose()


@pytest.fixture(
    scope="module", params=["sql-sqlite", pytest.param("sql-postgres", marks=pytest.mark.postgres), "mongo"]
)
def under_test(
    request: pytest.FixtureRequest, sqlite_engine: Engine, tmp_path_factory
) -> Iterator[StoreUnderTest]:
    kind = str(request.param)
    if kind == "sql-postgres":
        engine = _engine(tmp_path_factory.mktemp("docs-pg"), request.getfixturevalue("pg_url"))
        yield StoreUnderTest(kind, SqlDocumentStore(engine=engine, audit_retention=RETENTION), engine,
                             make_session_factory(engine))  # fmt: skip
        engine.dispose()
        return
    if kind == "sql-sqlite":
        store = SqlDocumentStore(engine=sqlite_engine, audit_retention=RETENTION)
        yield StoreUnderTest(kind, store, sqlite_engine, make_session_factory(sqlite_engine))
        return
    mongo = MongoDocumentStore(
        url=request.getfixturevalue("mongo_url"),
        database=f"contract_{uuid.uuid4().hex[:8]}",
        audit_retention=RETENTION,
        timeout_ms=5000,
    )
    yield StoreUnderTest(kind, mongo, sqlite_engine, make_session_factory(sqlite_engine))
    mongo.close()


@pytest.fixture
def store(under_test: StoreUnderTest) -> DocumentStore:
    under_test.store.ensure_indexes()
    return under_test.store
