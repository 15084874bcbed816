"""Engine, sessions and the tenant context, for both backends (embedded SQLite, PostgreSQL)."""

from __future__ import annotations

import select
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, InvalidatePoolError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import Executable

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
    engine = create_engine(
        url,
        echo=settings.sql_echo,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        **json_options,
    )
    install_liveness_check(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 10.0
"""A pooled connection idle longer than this is pinged (``SELECT 1``) before it is handed out."""

_IDLE_SINCE = "outputhub.idle_since"


def _socket_readable(dbapi_connection: Any) -> bool:
    """Whether the server has sent something to an idle connection: a dead backend's farewell (PostgreSQL
    sends a FATAL message, e.g. on shutdown or ``pg_terminate_backend``, then closes the socket) or an
    end of file. A healthy idle connection has nothing to read. Unknown (no socket): True."""
    try:
        fd = dbapi_connection.pgconn.socket
    except Exception:  # closed, or not a psycopg connection: let the ping decide
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    readable, _, errored = select.select([fd], [], [fd], 0)
    return bool(readable or errored)


def install_liveness_check(engine: Engine) -> None:
    """What ``pool_pre_ping`` guards against, without its ``SELECT 1`` round trip on every checkout.

    A pooled connection is pinged before it is handed out only when it may be dead: the server has written
    to it while it sat idle (a backend that is terminated, or a server that shuts down or restarts, sends
    a FATAL message and closes the socket: a zero-timeout ``poll`` sees it), or it has been idle longer
    than :data:`PING_AFTER_IDLE_SECONDS` (a connection dropped silently by the network). A failed ping
    raises ``InvalidatePoolError``: the pool then discards every connection older than it and hands out a
    fresh one, as with ``pool_pre_ping``. Connections in use keep the usual handling (a statement that hits
    a dead connection invalidates the pool and fails with ``StorageError``)."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None:  # a new connection: it has just proved itself by connecting
            return
        recent = time.monotonic() - idle_since <= PING_AFTER_IDLE_SECONDS
        if recent and not _socket_readable(dbapi_connection):
            return
        try:
            alive = dialect.do_ping(dbapi_connection)  # the public ping (pool_pre_ping's own statement)
        except dialect.loaded_dbapi.Error as exc:
            if not dialect.is_disconnect(exc, dbapi_connection, None):
                raise
            alive = False
        if not alive:
            raise InvalidatePoolError("a pooled connection is dead: the server closed it")


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


def write_from(session: Session, statement: Executable) -> None:
    """Run the write ``statement`` for a request in ``session``, whichever its transaction. A reading
    SQLite transaction (started deferred, ``READ_ONLY_OPTION``) cannot take the write lock once another
    writer has committed since it began: it fails at once ("database is locked"). There the write gets a
    connection and transaction of its own, waiting for the lock like any writer, and commits at once."""
    bind = session.get_bind()
    if bind.dialect.name == "sqlite" and session.connection().get_execution_options().get(READ_ONLY_OPTION):
        with bind.connect() as connection, connection.begin():
            connection.execute(statement)
        return
    session.execute(statement)


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


_BACKGROUND_SCOPE = "outputhub.background_scope"


def set_background_scope(session: Session, *, org_id: uuid.UUID | None) -> None:
    """Scope after-commit work that shares one transaction (``EventOutbox.deliver``) on PostgreSQL.

    With an organization: that organization's rows, no user (what ``set_tenant`` gives a background job);
    with None: the maintenance scope (every organization's documents and the event outbox, and no tenant
    table's rows at all). All three settings are set together, so one step's scope never leaks into the
    next; the statement is skipped when the transaction is in that scope already. Steps that share a
    transaction must scope themselves with this function only.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    transaction = session.get_transaction()
    current = session.info.get(_BACKGROUND_SCOPE)
    if current is not None and current[0] is transaction and current[1] == org_id:
        return
    session.execute(
        text(
            "SELECT set_config('outputhub.org_id', :org, true), set_config('outputhub.user_id', '', true), "
            "set_config('outputhub.maintenance', :maintenance, true)"
        ),
        {"org": str(org_id) if org_id else "", "maintenance": "" if org_id else "on"},
    )
    session.info[_BACKGROUND_SCOPE] = (transaction, org_id)


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
