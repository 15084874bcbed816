"""The pull feed's rows, read with Core queries and written as JSON without ORM objects.

A pull page carries thousands of records; building them through ORM instances and the read schemas cost
~200 µs per output (a ``uuid.UUID`` per id column, a datetime per timestamp, a pydantic model per row). Here
each entity's read schema decides the columns, ids and timestamps come out of the database as text where
the dialect allows (and are formatted exactly as the read schema would: dashed lowercase UUIDs, RFC 3339
UTC with ``Z`` and microseconds only when non-zero), the link tables of a whole page are read with one query
each over the page's revision range, and the stored merge states come with the rows in the same query.

``tests/api/test_sync_feed.py`` checks that every record's ``data`` equals the REST representation.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, String, and_, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.types import Uuid

from outputhub.server.api.base import Link
from outputhub.server.storage.tables import ReplicatedRow, SyncRecordState, UTCDateTime

Convert = Callable[[Any], Any]


def _sqlite_uuid(value: str | None) -> str | None:
    """SQLite keeps UUIDs as 32 hex digits."""
    if value is None:
        return None
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def _sqlite_timestamp(value: str | None) -> str | None:
    """SQLite keeps UTC `YYYY-MM-DD HH:MM:SS[.ffffff]`; the read schemas want `...THH:MM:SS[.ffffff]Z`."""
    if value is None:
        return None
    text = value.replace(" ", "T", 1)
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(6, '0')}Z" if fraction.strip("0") else f"{whole}Z"


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@dataclass(frozen=True)
class Feed:
    """One replicated entity as the pull feed reads it."""

    name: str
    table: type[ReplicatedRow]
    columns: tuple[str, ...]
    links: tuple[tuple[str, Link], ...]

    def _reader(self, column: str, dialect: str) -> tuple[ColumnElement[Any], Convert | None]:
        col = getattr(self.table, column)
        kind = col.type
        if isinstance(kind, Uuid):
            return (type_coerce(col, String), _sqlite_uuid) if dialect == "sqlite" else (col, _text)
        if isinstance(kind, UTCDateTime):
            return (type_coerce(col, String), _sqlite_timestamp) if dialect == "sqlite" else (col, _rfc3339)
        return col, None

    def rows(
        self, session: Session, *, org_id: uuid.UUID, where: Sequence[ColumnElement[bool]], limit: int | None
    ) -> list[FeedRow]:
        """This entity's rows matching ``where`` in (revision, id) order, with their stored states."""
        dialect = session.get_bind().dialect.name
        readers = [self._reader(c, dialect) for c in self.columns]
        stmt: Select[Any] = (
            select(
                *(r[0] for r in readers), self.table.deleted, SyncRecordState.revision, SyncRecordState.state
            )
            .outerjoin(
                SyncRecordState,
                and_(SyncRecordState.org_id == org_id, SyncRecordState.record_id == self.table.id),
            )
            .where(self.table.org_id == org_id, *where)
            .order_by(self.table.revision, self.table.id)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        converters = [(i, conv) for i, (_, conv) in enumerate(readers) if conv is not None]
        names = self.columns
        out: list[FeedRow] = []
        for row in session.connection().execute(stmt):
            values = list(row[: len(names)])
            for i, conv in converters:
                values[i] = conv(values[i])
            data = dict(zip(names, values, strict=True))
            revision = int(data["revision"])
            state = row[-1] if row[-2] == revision else None
            out.append(FeedRow(self, data["id"], revision, bool(row[-3]), data, state))
        return out

    def add_links(
        self, session: Session, *, org_id: uuid.UUID, rows: Sequence[FeedRow], since: int, until: int
    ) -> None:
        """Fill the link fields of ``rows`` (all of this entity's rows with since < revision <= until)."""
        if not self.links or not rows:
            return
        dialect = session.get_bind().dialect.name
        by_id = {r.id: r.data for r in rows}
        for field, link in self.links:
            for data in by_id.values():
                data[field] = []
            parent, child = link.parent_col(), link.child_col()
            convert = _sqlite_uuid if dialect == "sqlite" else _text
            cols = (
                (type_coerce(parent, String), type_coerce(child, String))
                if dialect == "sqlite"
                else (parent, child)
            )
            stmt = (
                select(*cols)
                .join(self.table, and_(self.table.id == parent, self.table.org_id == org_id))
                .where(
                    link.table.org_id == org_id,  # type: ignore[attr-defined]
                    self.table.revision > since,
                    self.table.revision <= until,
                )
                .order_by(parent, child)
            )
            for parent_id, child_id in session.connection().execute(stmt):
                data = by_id.get(convert(parent_id))  # type: ignore[arg-type]
                if data is not None:
                    data[field].append(convert(child_id))


@dataclass
class FeedRow:
    feed: Feed
    id: str
    revision: int
    deleted: bool
    data: dict[str, Any]
    state: str | None
    """The stored state's wire JSON when it is current (stored at this revision), else None: derive it."""


def make_feed(name: str, table: type[ReplicatedRow], read: type[BaseModel], links: dict[str, Link]) -> Feed:
    """The columns come from the read schema, so the feed sends what the REST API sends."""
    names = {c.key for c in table.__table__.columns}  # type: ignore[attr-defined]
    columns: list[str] = []
    for field in read.model_fields:
        if field in links:
            continue
        if field not in names:
            raise TypeError(f"{read.__name__}.{field} is neither a column of {name} nor a link")
        columns.append(field)
    if "id" not in columns or "revision" not in columns:
        raise TypeError(f"{read.__name__} lacks id or revision")
    return Feed(name, table, tuple(columns), tuple(links.items()))
