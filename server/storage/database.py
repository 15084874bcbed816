"""Engine, sessions and the tenant context, for both backends (embedded SQLite, PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from outputhub.common.errors import StorageError
from outputhub.server.settings import Settings


def json_text(value: object) -> str:
    """JSON columns' serializer (orjson: audit documents and the event outbox are written for every change;
    the standard library's encoder was a tenth of a bulk write's CPU)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def make_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    json_options = {"json_serializer": json_text, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=settings.sql_echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            **json_options,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        echo=settings.sql_echo,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        **json_options,
    )


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, and BEGIN IMMEDIATE so concurrent writers queue instead of failing."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        # readers start deferred and run beside the writer (WAL); writers queue for the lock up front
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


READ_ONLY_OPTION = "outputhub_read_only"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=True)


def set_tenant(session: Session, *, org_id: uuid.UUID | None, user_id: uuid.UUID | None = None) -> None:
    """Scope the current transaction to one organization (PostgreSQL row-level security).

    ``set_config(..., true)`` is ``SET LOCAL``: it ends with the transaction, so a pooled connection never
    carries one request's tenant into the next. On SQLite this is a no-op: the queries' own filters are the
    only guard there.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        text(
            "SELECT set_config('outputhub.org_id', :org, true), set_config('outputhub.user_id', :user, true)"
        ),
        {"org": str(org_id) if org_id else "", "user": str(user_id) if user_id else ""},
    )


@contextmanager
def unit_of_work(factory: sessionmaker[Session], *, read_only: bool = False) -> Iterator[Session]:
    """One transaction: commit when the block ends normally, roll back on any error.

    ``read_only`` lets SQLite start the transaction deferred, so readers do not queue behind writers.
    """
    session = factory()
    try:
        with session.begin():
            if read_only:
                session.connection(execution_options={READ_ONLY_OPTION: True})
            yield session
    except OperationalError as exc:
        raise StorageError(f"database unavailable: {exc.orig.__class__.__name__}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StorageError("database connection lost") from exc
        raise
    finally:
        session.close()


def check_rls_enforced(engine: Engine) -> str | None:
    """On PostgreSQL: a reason the connected role would bypass row-level security, or None."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
    if row.rolsuper:
        return "the database role is a superuser (superusers bypass row-level security)"
    if row.rolbypassrls:
        return "the database role has BYPASSRLS"
    return None
