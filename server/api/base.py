"""What every domain service shares: the tenant context, revisions, reference checks, links, paging."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    insert,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.types import TypeDecorator

from outputhub.common.errors import (
    DuplicateError,
    InvalidInputError,
    PreconditionFailedError,
    UnknownReferenceError,
)
from outputhub.common.ids import new_uuid
from outputhub.common.roles import SCOPE_ROLE, Role
from outputhub.common.schemas import to_utc
from outputhub.server.api.filters import DB_INT4_MAX, DB_INT_MAX
from outputhub.server.events import touch_org
from outputhub.server.security import b64url, b64url_decode
from outputhub.server.storage.tables import Base, OrgRevision, ReplicatedRow, SyncRecordState

M = TypeVar("M", bound=Base)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Tenant:
    """The caller inside one organization: who acts, with which role. Every service call takes one."""

    org_id: uuid.UUID
    role: Role
    actor: str
    """``user:<uuid>`` or ``apikey:<uuid>``: recorded as created_by / updated_by."""
    user_id: uuid.UUID | None = None

    @property
    def acting_as(self) -> str:
        """Who is refused, in a refusal's words: "the viewer role", or "a read-scope API key" for a key (its
        scope gives it a role's rights: a read key was told "the viewer role may not edit records", QA)."""
        if self.actor.startswith("apikey:"):
            scope = next((s for s, r in SCOPE_ROLE.items() if r is self.role), None)
            if scope is not None:
                return f"a {scope.value}-scope API key"
        return f"the {self.role.value} role"


_COUNTERS = OrgRevision.__table__
_ALLOCATE = (
    update(_COUNTERS)
    .where(_COUNTERS.c.org_id == bindparam("org"))
    .values(revision=_COUNTERS.c.revision + bindparam("count"))
    .returning(_COUNTERS.c.revision)
)
"""Built once, on the table (every write runs it; an ORM ``update`` of the mapped class went through the
ORM's bulk-update machinery each time, for a row no session holds)."""


def allocate_revisions(session: Session, *, org_id: uuid.UUID, count: int = 1) -> int:
    """Reserve ``count`` consecutive revisions for this organization; returns the first.

    The counter row stays locked until the transaction ends, so revisions become visible in order:
    a pull that has seen revision N will never later find a row committed with a revision below N.
    """
    touch_org(session, org_id)
    last = session.execute(_ALLOCATE, {"org": org_id, "count": count}).scalar_one()
    first = int(last) - count + 1
    session.info.setdefault(REVISIONS_KEY, []).append((org_id, first, int(last)))
    return first


_LOCK_WRITES = select(_COUNTERS.c.revision).where(_COUNTERS.c.org_id == bindparam("org")).with_for_update()


def lock_org_writes(session: Session, *, org_id: uuid.UUID) -> None:
    """Take the organization's write lock (its revision counter row) now, before the request reads anything.

    Every write allocates revisions, which locks that row until the transaction ends; taken at the start of
    a writing request, the lock makes the request read what every earlier writer of the organization
    committed. Taken only at the allocation (after the reads), a request could act on rows read before it
    waited: a sync push would merge into a stale copy of a record that another push had just changed and
    derive a "server edit" undoing that push's edit, and two ``If-Match`` edits of one revision would both
    pass. One order (counter, then rows) for every writer also leaves no lock cycle between a REST edit and
    a push of the same record. SQLite serializes write transactions whole (``BEGIN IMMEDIATE``): nothing to
    do there."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK_WRITES, {"org": org_id})


REVISIONS_KEY = "outputhub.revisions"
"""``session.info`` entry: the (org, first, last) revision ranges this transaction allocated."""
UNLINK_REVISIONS_KEY = "outputhub.unlink_revisions"
"""``session.info`` entry: the (org, revision) pairs at which this transaction only took deleted lookup
entries off records (:func:`mark_unlink_revision`)."""


def mark_unlink_revision(session: Session, *, org_id: uuid.UUID, revision: int) -> None:
    """The rows written at ``revision`` only lost links to deleted lookup entries: the server's edit derived
    for them is an unlink (``sync.engine.is_unlink``), which brings back no record deleted meanwhile."""
    session.info.setdefault(UNLINK_REVISIONS_KEY, set()).add((org_id, revision))


def stamp_new(row: ReplicatedRow, *, tenant: Tenant, revision: int, now: datetime) -> None:
    row.org_id = tenant.org_id
    row.revision = revision
    row.deleted = False
    row.created_at = row.updated_at = now
    row.created_by = row.updated_by = tenant.actor


def stamp_changed(row: ReplicatedRow, *, tenant: Tenant, revision: int, now: datetime) -> None:
    row.revision = revision
    row.updated_at = now
    row.updated_by = tenant.actor


def get_live(session: Session, model: type[M], *, tenant: Tenant, ident: uuid.UUID) -> M | None:
    """The row with this id in the caller's organization, unless deleted. Never another tenant's."""
    return session.execute(
        select(model).where(
            model.id == ident,  # type: ignore[attr-defined]
            model.org_id == tenant.org_id,  # type: ignore[attr-defined]
            model.deleted.is_(False),  # type: ignore[attr-defined]
        )
    ).scalar_one_or_none()


def check_revision(row: ReplicatedRow, *, if_match: frozenset[int] | None) -> None:
    """``If-Match`` precondition: the caller edited from one of these revisions (RFC 9110 allows a list of
    entity tags), or the record moved on (412)."""
    if if_match is not None and row.revision not in if_match:
        if not if_match:  # only weak tags (W/"3"), which If-Match never matches (RFC 9110 compares strongly)
            raise PreconditionFailedError(
                f"the record is at revision {row.revision}: If-Match takes its ETag as given "
                f'("{row.revision}"); a weak one (W/...) never matches'
            )
        given = ", ".join(str(r) for r in sorted(if_match))
        raise PreconditionFailedError(
            f"the record is at revision {row.revision}, not {given}; reload and retry"
        )


def live_ids(
    session: Session, model: type[Base], *, tenant: Tenant, ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``ids`` name a live (not deleted) row of ``model`` in the caller's organization."""
    wanted = set(ids)
    if not wanted:
        return set()
    return set(
        session.execute(
            select(model.id).where(  # type: ignore[attr-defined]
                model.org_id == tenant.org_id,  # type: ignore[attr-defined]
                model.deleted.is_(False),  # type: ignore[attr-defined]
                model.id.in_(wanted),  # type: ignore[attr-defined]
            )
        ).scalars()
    )


def check_refs(
    session: Session, model: type[Base], *, tenant: Tenant, ids: Iterable[uuid.UUID | None], field: str
) -> None:
    """Every id must name a live row of ``model`` in the caller's organization (else 422 naming ``field``)."""
    wanted = {i for i in ids if i is not None}
    missing = sorted(wanted - live_ids(session, model, tenant=tenant, ids=wanted), key=str)
    if missing:
        raise UnknownReferenceError(field, missing[0])


@dataclass(frozen=True)
class Link:
    """A many-to-many link table: ``parent`` column -> ``child`` column, carrying org_id."""

    table: type[Base]
    parent: str
    child: str

    def parent_col(self) -> InstrumentedAttribute[uuid.UUID]:
        return getattr(self.table, self.parent)

    def child_col(self) -> InstrumentedAttribute[uuid.UUID]:
        return getattr(self.table, self.child)


def replace_links(
    session: Session, link: Link, *, tenant: Tenant, parent_id: uuid.UUID, child_ids: Sequence[uuid.UUID]
) -> None:
    set_links(session, link, org_id=tenant.org_id, parent_id=parent_id, child_ids=child_ids)


def set_links(
    session: Session, link: Link, *, org_id: uuid.UUID, parent_id: uuid.UUID, child_ids: Sequence[uuid.UUID]
) -> None:
    """The parent's link rows become exactly ``child_ids``, writing only the rows that change: the others
    are deleted, the missing ones inserted (``ON CONFLICT DO NOTHING`` for those already there). Every edit
    of a record used to delete and re-insert all its link rows: dead tuples and index churn on PostgreSQL,
    rewritten pages on SQLite, for an edit of its title."""
    unique = list(dict.fromkeys(child_ids))
    gone = delete(link.table).where(
        link.table.org_id == org_id,  # type: ignore[attr-defined]
        link.parent_col() == parent_id,
    )
    if unique:
        gone = gone.where(link.child_col().not_in(unique))
    session.execute(gone)
    if unique:
        dialect = session.get_bind().dialect.name
        insert_into = postgresql_insert if dialect == "postgresql" else sqlite_insert
        session.connection().execute(
            insert_into(link.table.__table__).on_conflict_do_nothing(),  # type: ignore[attr-defined]
            [{"org_id": org_id, link.parent: parent_id, link.child: c} for c in unique],
        )


def insert_links(
    session: Session, link: Link, *, tenant: Tenant, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]
) -> None:
    rows = [{"org_id": tenant.org_id, link.parent: p, link.child: c} for p, c in dict.fromkeys(pairs)]
    if rows:
        session.execute(insert(link.table), rows)


def load_links(
    session: Session, link: Link, *, tenant: Tenant, parent_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    result: dict[uuid.UUID, list[uuid.UUID]] = {p: [] for p in parent_ids}
    if not parent_ids:
        return result
    rows = session.execute(
        select(link.parent_col(), link.child_col())
        .where(link.table.org_id == tenant.org_id, link.parent_col().in_(parent_ids))  # type: ignore[attr-defined]
        .order_by(link.parent_col(), link.child_col())
    )
    for parent_id, child_id in rows:
        result[parent_id].append(child_id)
    return result


def has_all_links(
    parent_id_col: Any, link: Link, child_ids: Sequence[uuid.UUID]
) -> list[ColumnElement[bool]]:
    """One EXISTS per wanted child: the parent must carry every one of them."""
    return [
        select(link.parent_col())
        .where(link.parent_col() == parent_id_col, link.child_col() == child_id)
        .exists()
        for child_id in dict.fromkeys(child_ids)
    ]


def reject_nulls(data: dict[str, Any], fields: Iterable[str]) -> None:
    for name in fields:
        if name in data and data[name] is None:
            raise InvalidInputError(f"body.{name}", "may not be null")


# --- keyset pagination --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    """A sortable column; ``descending`` from a leading ``-`` in the ``sort`` parameter."""

    name: str
    column: InstrumentedAttribute[Any]
    descending: bool


def parse_sort(value: str, *, model: type[Base], allowed: Sequence[str]) -> SortKey:
    descending = value.startswith("-")
    name = value.lstrip("-")
    if name not in allowed:
        raise InvalidInputError(
            "query.sort", f"must be one of {', '.join(allowed)} (prefix with - to reverse)"
        )
    return SortKey(name=name, column=getattr(model, name), descending=descending)


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    return value


def _sort_type(column: InstrumentedAttribute[Any]) -> type:
    col_type = column.type
    if isinstance(col_type, TypeDecorator):
        col_type = col_type.impl
    return col_type.python_type  # type: ignore[no-any-return]


def _int_bound(column: InstrumentedAttribute[Any]) -> int:
    """The largest value an integer sort column holds on every backend: an ``Integer`` is int4 on
    PostgreSQL (a larger cursor value failed there with "integer out of range"), a ``BigInteger`` 64 bits."""
    col_type = column.type
    if isinstance(col_type, TypeDecorator):
        col_type = col_type.impl
    return DB_INT_MAX if isinstance(col_type, BigInteger) else DB_INT4_MAX


def _decode_value(value: Any, *, column: InstrumentedAttribute[Any]) -> Any:
    """The cursor's sort value, checked against the sort column's type: a cursor is the client's input, and a
    value of another type (or one the database cannot hold) reached the query as a 500. ``ValueError`` when
    it does not fit."""
    expected = _sort_type(column)
    if expected is datetime:
        if not (isinstance(value, dict) and value.keys() == {"t"} and isinstance(value["t"], str)):
            raise ValueError("a date-time sort value is {'t': ISO 8601}")
        return to_utc(datetime.fromisoformat(value["t"]))
    if expected is int:
        bound = _int_bound(column)
        if type(value) is not int or not -bound - 1 <= value <= bound:
            raise ValueError(f"an integer sort value is a {bound.bit_length() + 1}-bit integer")
        return value
    if expected is str:
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError("a text sort value is a string without NUL")
        value.encode()  # a lone surrogate ("\ud800") is no text a database holds: UnicodeEncodeError
        return value
    raise ValueError(f"no cursor decoding for {expected.__name__} sort values")


def encode_cursor(sort: SortKey, row: Any) -> str:
    payload = {
        "s": sort.name,
        "d": sort.descending,
        "v": _encode_value(getattr(row, sort.name)),
        "i": str(row.id),
    }
    return b64url(json.dumps(payload, separators=(",", ":")).encode())


def apply_page(
    stmt: Select[Any], *, model: type[Base], sort: SortKey, cursor: str | None, limit: int
) -> Select[Any]:
    """Order by the sort key then id, start after the cursor, fetch one extra row to detect a next page."""
    id_col = model.id  # type: ignore[attr-defined]
    if cursor:
        try:
            payload = json.loads(b64url_decode(cursor))
            if not isinstance(payload, dict) or not isinstance(payload.get("i"), str):
                raise ValueError("a cursor is an object with the last row's id")
            if payload.get("s") != sort.name or payload.get("d") is not sort.descending:
                raise ValueError("sort changed")
            last_value = _decode_value(payload.get("v"), column=sort.column)
            last_id = uuid.UUID(payload["i"])
        except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeError, binascii.Error: ValueErrors
            raise InvalidInputError(
                "query.cursor", "invalid cursor (it must come from next_cursor of the same query)"
            ) from exc
        col = sort.column
        if sort.descending:
            stmt = stmt.where(or_(col < last_value, and_(col == last_value, id_col < last_id)))
        else:
            stmt = stmt.where(or_(col > last_value, and_(col == last_value, id_col > last_id)))
    if sort.descending:
        stmt = stmt.order_by(sort.column.desc(), id_col.desc())
    else:
        stmt = stmt.order_by(sort.column.asc(), id_col.asc())
    return stmt.limit(limit + 1)


def page_rows(rows: Sequence[M], *, sort: SortKey, limit: int) -> tuple[list[M], str | None]:
    items = list(rows[:limit])
    next_cursor = encode_cursor(sort, items[-1]) if len(rows) > limit and items else None
    return items, next_cursor


def new_id(given: uuid.UUID | None) -> uuid.UUID:
    return given or new_uuid()


@functools.cache
def _replicated_tables() -> tuple[type[ReplicatedRow], ...]:
    """Every replicated table (prompts, outputs, custom GPTs, each lookup), in table-name order."""
    tables = [m.class_ for m in Base.registry.mappers if issubclass(m.class_, ReplicatedRow)]
    return tuple(sorted(tables, key=lambda t: str(t.__tablename__)))  # type: ignore[attr-defined]


def check_new_ids(
    session: Session, *, tenant: Tenant, ids: Sequence[uuid.UUID | None], bulk: bool = False
) -> None:
    """Client-chosen ids (None where the server picks one) must not be held by any record of the caller's
    organization, of whatever entity, deleted or not: 409 naming ``body.id`` (``body.items.N.id`` with
    ``bulk``, the first such item). The sync layer keeps one state per (organization, id), so a record of
    another entity reusing an id would take over that record's state. Checked before anything is written;
    an id of the same entity in another organization is refused by the table's primary key, with the same
    answer. Organization writes are serialized (:func:`lock_org_writes`), so nothing can take the id
    between this check and the insert."""
    first: dict[uuid.UUID, int] = {}
    for index, ident in enumerate(ids):
        if ident is not None:
            first.setdefault(ident, index)
    if not first:
        return
    wanted = list(first)
    taken: set[uuid.UUID] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = union_all(
            *(
                select(table.id).where(table.org_id == tenant.org_id, table.id.in_(chunk))
                for table in _replicated_tables()
            ),
            select(SyncRecordState.record_id).where(
                SyncRecordState.org_id == tenant.org_id, SyncRecordState.record_id.in_(chunk)
            ),
        )
        taken.update(session.execute(query).scalars())
    if taken:
        ident = min(taken, key=first.__getitem__)
        raise DuplicateError(f"body.items.{first[ident]}.id" if bulk else "body.id", str(ident))
