"""The embedded document store: documents as JSON rows of the server's own SQL database (SQLite or
PostgreSQL), so ``outputhub serve`` needs no MongoDB. Staged writes join the request's transaction."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from outputhub.common.errors import StorageError
from outputhub.server.storage.database import set_background_scope
from outputhub.server.storage.documents.port import (
    AUDIT,
    COMMITTED,
    PENDING,
    After,
    Document,
    DocumentExistsError,
    truncate_ms,
)
from outputhub.server.storage.documents.tables import DocumentRow

PURGE_INTERVAL_SECONDS = 3600.0


def scope(conn: Connection | Session, *, org_id: uuid.UUID | None) -> None:
    """PostgreSQL: admit one organization's rows (``SET LOCAL``), or all of them (maintenance) for None."""
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    if bind.dialect.name != "postgresql":
        return
    conn.execute(
        text(
            "SELECT set_config('outputhub.org_id', :org, true), set_config('outputhub.maintenance', :m, true)"
        ),
        {"org": str(org_id) if org_id else "", "m": "" if org_id else "on"},
    )


class SqlDocumentStore:
    kind = "sql"

    def __init__(self, *, engine: Engine, audit_retention: timedelta | None) -> None:
        self._engine = engine
        self._retention = audit_retention
        self._last_purge = 0.0

    @contextmanager
    def _tx(self, what: str) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except DocumentExistsError:
            raise
        except SQLAlchemyError as exc:
            raise StorageError(f"document store: cannot {what} ({exc.__class__.__name__})") from exc

    # --- the port ---------------------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """The indexes come with migration 0004; here only expired audit records are purged."""
        self.purge_expired(now=_utcnow())

    def stage(self, collection: str, docs: Sequence[Document], *, session: Session) -> None:
        for org_id, group in _by_org(docs).items():
            ids = [d.id for d in group]
            existing = dict(
                session.execute(
                    select(DocumentRow.id, DocumentRow.state).where(
                        DocumentRow.collection == collection,
                        DocumentRow.org_id == org_id,
                        DocumentRow.id.in_(ids),
                    )
                ).all()
            )
            taken = [i for i, state in existing.items() if state == COMMITTED]
            if taken:
                raise DocumentExistsError(taken[0])
            if existing:
                session.execute(
                    delete(DocumentRow).where(
                        DocumentRow.collection == collection,
                        DocumentRow.org_id == org_id,
                        DocumentRow.id.in_(list(existing)),
                    )
                )
            # joining the transaction makes the write atomic with the rows: committed from the start
            session.execute(
                DocumentRow.__table__.insert(), [_row(collection, d, state=COMMITTED) for d in group]
            )

    def confirm(self, collection: str, *, org_id: uuid.UUID, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._tx("confirm documents") as conn:
            scope(conn, org_id=org_id)
            result = conn.execute(
                update(DocumentRow)
                .where(
                    DocumentRow.collection == collection,
                    DocumentRow.org_id == org_id,
                    DocumentRow.id.in_(list(ids)),
                    DocumentRow.state == PENDING,
                )
                .values(state=COMMITTED)
            )
            return int(result.rowcount or 0)

    def insert(self, collection: str, docs: Sequence[Document], *, skip_existing: bool = False) -> int:
        if not docs:
            return 0
        written = 0
        with self._tx("write documents") as conn:
            dialect = conn.dialect.name
            for org_id, group in _by_org(docs).items():
                scope(conn, org_id=org_id)
                rows = [_row(collection, d, state=d.state) for d in group]
                if skip_existing:
                    make = pg_insert if dialect == "postgresql" else sqlite_insert
                    table = DocumentRow.__table__
                    stmt = make(table).on_conflict_do_nothing().returning(table.c.id)
                    written += len(conn.execute(stmt, rows).all())
                else:
                    taken = conn.execute(
                        select(DocumentRow.id).where(
                            DocumentRow.collection == collection,
                            DocumentRow.org_id == org_id,
                            DocumentRow.id.in_([r["id"] for r in rows]),
                        )
                    ).first()
                    if taken:
                        raise DocumentExistsError(taken[0])
                    conn.execute(DocumentRow.__table__.insert(), rows)
                    written += len(rows)
        if collection == AUDIT and time.monotonic() - self._last_purge > PURGE_INTERVAL_SECONDS:
            self.purge_expired(now=_utcnow())
        return written

    def insert_joined(self, session: Session, collection: str, docs: Sequence[Document]) -> None:
        """``insert(..., skip_existing=True)`` inside ``session``'s transaction (shared after-commit work,
        ``EventOutbox.deliver``): each organization's documents under that organization's scope."""
        if not docs:
            return
        make = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = make(DocumentRow.__table__).on_conflict_do_nothing()
        for org_id, group in _by_org(docs).items():
            set_background_scope(session, org_id=org_id)
            session.execute(stmt, [_row(collection, d, state=d.state) for d in group])
        if collection == AUDIT and time.monotonic() - self._last_purge > PURGE_INTERVAL_SECONDS:
            # in the same transaction (on SQLite a second writer would wait for this one's lock)
            self._last_purge = time.monotonic()
            if self._retention:
                set_background_scope(session, org_id=None)
                session.execute(
                    delete(DocumentRow).where(
                        DocumentRow.collection == AUDIT, DocumentRow.at < _utcnow() - self._retention
                    )
                )

    def get(self, collection: str, *, org_id: uuid.UUID, doc_id: str) -> Document | None:
        with self._tx("read a document") as conn:
            scope(conn, org_id=org_id)
            row = conn.execute(
                select(DocumentRow).where(
                    DocumentRow.collection == collection,
                    DocumentRow.org_id == org_id,
                    DocumentRow.id == doc_id,
                )
            ).first()
        return _doc(row) if row else None

    def find(
        self,
        collection: str,
        *,
        org_id: uuid.UUID,
        equals: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: After | None = None,
        limit: int = 50,
    ) -> list[Document]:
        stmt = select(DocumentRow).where(DocumentRow.collection == collection, DocumentRow.org_id == org_id)
        for key, value in (equals or {}).items():
            stmt = stmt.where(DocumentRow.data[key].as_string() == value)
        if since is not None:
            stmt = stmt.where(DocumentRow.at >= since)
        if until is not None:
            stmt = stmt.where(DocumentRow.at < until)
        if after is not None:
            stmt = stmt.where(
                or_(DocumentRow.at < after.at, and_(DocumentRow.at == after.at, DocumentRow.id < after.id))
            )
        stmt = stmt.order_by(DocumentRow.at.desc(), DocumentRow.id.desc()).limit(limit)
        with self._tx("query documents") as conn:
            scope(conn, org_id=org_id)
            return [_doc(r) for r in conn.execute(stmt).all()]

    def delete(self, collection: str, *, org_id: uuid.UUID, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._tx("delete documents") as conn:
            scope(conn, org_id=org_id)
            result = conn.execute(
                delete(DocumentRow).where(
                    DocumentRow.collection == collection,
                    DocumentRow.org_id == org_id,
                    DocumentRow.id.in_(list(ids)),
                )
            )
            return int(result.rowcount or 0)

    def purge_org(self, collection: str, *, org_id: uuid.UUID) -> int:
        with self._tx("purge documents") as conn:
            scope(conn, org_id=org_id)
            result = conn.execute(
                delete(DocumentRow).where(DocumentRow.collection == collection, DocumentRow.org_id == org_id)
            )
            return int(result.rowcount or 0)

    def pending_before(
        self, collection: str, *, before: datetime, limit: int = 1000
    ) -> list[tuple[uuid.UUID, str]]:
        with self._tx("scan pending documents") as conn:
            scope(conn, org_id=None)
            rows = conn.execute(
                select(DocumentRow.org_id, DocumentRow.id)
                .where(
                    DocumentRow.collection == collection,
                    DocumentRow.state == PENDING,
                    DocumentRow.at < before,
                )
                .order_by(DocumentRow.at)
                .limit(limit)
            ).all()
        return [(r[0], r[1]) for r in rows]

    def purge_expired(self, *, now: datetime) -> int:
        self._last_purge = time.monotonic()
        if not self._retention:
            return 0
        with self._tx("purge expired audit records") as conn:
            scope(conn, org_id=None)
            result = conn.execute(
                delete(DocumentRow).where(
                    DocumentRow.collection == AUDIT, DocumentRow.at < now - self._retention
                )
            )
            return int(result.rowcount or 0)

    def status(self) -> str:
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return f"unavailable: {exc.__class__.__name__}"
        return "ok"

    def close(self) -> None:
        """The engine belongs to the composition root, which disposes of it."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _by_org(docs: Sequence[Document]) -> dict[uuid.UUID, list[Document]]:
    groups: dict[uuid.UUID, list[Document]] = defaultdict(list)
    for d in docs:
        groups[d.org_id].append(d)
    return groups


def _row(collection: str, doc: Document, *, state: str) -> dict[str, Any]:
    return {
        "collection": collection,
        "org_id": doc.org_id,
        "id": doc.id,
        "at": truncate_ms(doc.at),
        "state": state,
        "data": doc.data,
    }


def _doc(row: Any) -> Document:
    return Document(org_id=row.org_id, id=row.id, at=row.at, data=row.data, state=row.state)
