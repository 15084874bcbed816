"""The pull feed's rows, each record's ``data`` built as JSON text by the database itself.

A pull page carries thousands of records. Building them in Python cost ~300 µs per output even with Core
queries (a ``str`` per UUID, an ``isoformat`` per timestamp, a dict per row, a list per link field, the
garbage collector walking all of them); here one SQL statement per entity returns, per row, its revision,
id, tombstone flag, stored merge state (text, passed through untouched) and its ``data`` as one JSON text,
made by ``json_build_object`` (PostgreSQL) or ``json_object`` (SQLite) with the link sets as sorted arrays
from correlated subqueries over the link tables' primary keys. Python only sorts the rows and joins texts.

Each entity's read schema decides the fields, and the SQL formats every value exactly as the schema would
serialize it: UUIDs dashed lowercase (SQLite keeps 32 hex digits), timestamps RFC 3339 UTC with ``Z`` and
microseconds only when non-zero. ``tests/api/test_sync_pull.py`` checks that every pulled record's ``data``
equals its REST representation on both backends, and ``tests/unit/sync/test_feed_formats.py`` (hypothesis)
checks the SQL formats against the schemas for arbitrary timestamps and ids.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from pydantic import BaseModel
from sqlalchemy import BigInteger, Integer, TextClause, bindparam, text
from sqlalchemy.orm import Session
from sqlalchemy.types import Uuid

from outputhub.common.schemas import (
    AccuracyLevelRead,
    CustomGptRead,
    GptModelRead,
    LookupRead,
    OutputRead,
    PromptRead,
)
from outputhub.server.api.base import Link
from outputhub.server.api.lookups.service import (
    CUSTOM_GPT_AGENT_GROUPS,
    KINDS,
    OUTPUT_KNOWLEDGE_TYPES,
    OUTPUT_TAGS,
    PROMPT_TAGS,
)
from outputhub.server.storage.tables import (
    AccuracyLevel,
    CustomGpt,
    GptModel,
    Output,
    Prompt,
    ReplicatedRow,
    UTCDateTime,
)

# --- value formats, per dialect (SQL expressions over a column reference) -------------------------------


def sqlite_uuid_sql(col: str) -> str:
    """SQLite keeps UUIDs as 32 hex digits: dash them (NULL stays NULL)."""
    return (
        f"(substr({col},1,8)||'-'||substr({col},9,4)||'-'||substr({col},13,4)||'-'"
        f"||substr({col},17,4)||'-'||substr({col},21))"
    )


def sqlite_timestamp_sql(col: str) -> str:
    """SQLite keeps naive UTC ``YYYY-MM-DD HH:MM:SS[.ffffff]``: ``T`` and ``Z``, microseconds (6 digits)
    only when not all zero, as pydantic serializes a UTC datetime."""
    fraction = f"substr({col}, 21)"
    return (
        f"(CASE WHEN {col} IS NULL THEN NULL "
        f"WHEN length({col}) <= 19 OR rtrim({fraction}, '0') = '' "
        f"THEN substr({col},1,10)||'T'||substr({col},12,8)||'Z' "
        f"ELSE substr({col},1,10)||'T'||substr({col},12,8)||'.'||substr({fraction}||'000000',1,6)||'Z' END)"
    )


def postgres_timestamp_sql(col: str) -> str:
    utc = f"({col} AT TIME ZONE 'UTC')"
    return (
        f"(to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        f"||CASE WHEN mod(date_part('microseconds', {utc})::bigint, 1000000) = 0 THEN '' "
        f"ELSE to_char({utc}, '.US') END||'Z')"
    )


def _value_sql(table: type[ReplicatedRow], column: str, dialect: str) -> str:
    kind = getattr(table, column).type
    ref = f"t.{column}"
    if isinstance(kind, UTCDateTime):
        return sqlite_timestamp_sql(ref) if dialect == "sqlite" else postgres_timestamp_sql(ref)
    if isinstance(kind, Uuid) and dialect == "sqlite":
        return sqlite_uuid_sql(ref)
    return ref  # PostgreSQL's uuid, text and integer values become JSON as the schemas have them


def _link_sql(link: Link, dialect: str) -> str:
    """The sorted child ids of row ``t`` as a JSON array (``[]`` when none)."""
    table = link.table.__tablename__
    if dialect == "sqlite":
        inner = (
            f"SELECT {sqlite_uuid_sql('l.' + link.child)} AS c FROM {table} l "
            f"WHERE l.{link.parent} = t.id ORDER BY l.{link.child}"
        )
        return f"json((SELECT json_group_array(c) FROM ({inner})))"
    return (
        f"(SELECT coalesce(json_agg(l.{link.child} ORDER BY l.{link.child}), '[]'::json) "
        f"FROM {table} l WHERE l.{link.parent} = t.id)"
    )


def _column_default(table: type[ReplicatedRow], column: str) -> Any:
    """The value a Core insert that leaves ``column`` out stores: its scalar default, else NULL."""
    default = table.__table__.c[column].default  # type: ignore[attr-defined]
    if default is None:
        return None
    if not default.is_scalar:
        raise TypeError(f"{table.__tablename__}.{column}: no scalar default to build its feed data from")
    return default.arg


@dataclass
class FeedRow:
    feed: Feed
    id: str
    revision: int
    deleted: bool
    data: str
    """The record's read-schema representation, as JSON text."""
    state: str | None
    """The stored state's wire JSON when it is current (stored at this revision), else None: derive it."""
    size: int = 0
    """Bytes of the stored data and state as the database counted them (:func:`first_rows` only): what a
    pull page's byte bound adds up."""


_STATE_FORMS: Final[dict[int, str]] = {
    1: "s.state",
    # the stored compact form unless it is protocol 3's uniform form, which protocol 2 does not know
    2: "CASE WHEN s.wire LIKE '{\"u\"%' THEN s.state ELSE coalesce(s.wire, s.state) END",
    3: "coalesce(s.wire, s.state)",
}
"""How each protocol's pull reads a stored state: 1 the full state; 2 with long texts as ``{"=": 1}``
markers; 3 also in the uniform form (``sync.protocol.uniform_state_wire``). ``wire`` holds the most compact
form (``records.state_texts``)."""


@dataclass(frozen=True)
class Feed:
    """One replicated entity as the pull feed reads it."""

    name: str
    table: type[ReplicatedRow]
    columns: tuple[str, ...]
    links: tuple[tuple[str, Link], ...]

    def sql(self, dialect: str, *, one: bool = False, form: int = 1) -> TextClause:
        """The rows with ``:since < revision <= :until`` (or the one row ``:id``), data as JSON text, the
        states in the form protocol ``form`` sends (:data:`_STATE_FORMS`)."""
        return _feed_sql(self, dialect, one, form)

    def data_sql(self, dialect: str) -> str:
        """The JSON text of row ``t``'s ``data``, built from its columns and link tables."""
        pairs: list[str] = []
        for column in self.columns:
            pairs += [f"'{column}'", _value_sql(self.table, column, dialect)]
        for field, link in self.links:
            pairs += [f"'{field}'", _link_sql(link, dialect)]
        if dialect == "sqlite":
            return f"json_object({', '.join(pairs)})"
        return f"json_build_object({', '.join(pairs)})::text"

    def data_json(self, row: Mapping[str, Any], links: Mapping[str, Iterable[uuid.UUID]]) -> str:
        """What :meth:`data_sql` builds for a row, built in Python from the values it is inserted with
        (``row``: its columns, a column left out holding its scalar default or NULL; ``links``: the child
        ids per link field), for the bulk insert of new records: their ``data`` goes in with their states
        instead of being written by a second pass over them (:meth:`refresh_sql`). The same JSON values in
        the same formats (``tests/api/test_sync_push_bulk.py`` compares the two on both backends)."""
        data: dict[str, Any] = {}
        for column in self.columns:
            value = row[column] if column in row else _column_default(self.table, column)
            if isinstance(value, datetime):
                value = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
            data[column] = value
        for field, _link in self.links:
            data[field] = sorted(str(member) for member in links.get(field, ()))
        # orjson: UUIDs dashed lowercase, UTC timestamps with Z and microseconds only when not zero
        return orjson.dumps(data, option=orjson.OPT_UTC_Z).decode()

    def refresh_sql(self, dialect: str) -> TextClause:
        """Store the ``data`` of every row with ``:low <= revision <= :high`` beside its merge state (run
        when the transaction that wrote them commits, after the states are stored)."""
        return _refresh_sql(self, dialect)

    def _build_refresh_sql(self, dialect: str) -> TextClause:
        return text(
            f"UPDATE sync_record_states AS s SET data = {self.data_sql(dialect)} "
            f"FROM {self.table.__tablename__} AS t "
            "WHERE t.org_id = :org AND t.revision BETWEEN :low AND :high "
            "AND s.org_id = t.org_id AND s.record_id = t.id"
        ).bindparams(
            bindparam("org", type_=Uuid),
            bindparam("low", type_=BigInteger),
            bindparam("high", type_=BigInteger),
        )

    def select_sql(self, dialect: str, form: int, *, stored_only: bool = False) -> str:
        """``SELECT rev, ident, deleted, state_rev, state, data FROM <table> t LEFT JOIN <states> s``;
        ``stored_only``: data NULL where none is stored for the row's revision (cheap to plan: no JSON
        built)."""
        ident = sqlite_uuid_sql("t.id") if dialect == "sqlite" else "t.id::text"
        # the data stored when the row's transaction committed, else (rows written before it was stored, or
        # by a path that bypassed the hook) built here; CASE evaluates the ELSE branch only when needed
        fallback = "NULL" if stored_only else self.data_sql(dialect)
        data = f"CASE WHEN s.revision = t.revision AND s.data IS NOT NULL THEN s.data ELSE {fallback} END"
        state = _STATE_FORMS[min(max(form, 1), 3)]
        return (
            f"SELECT t.revision AS rev, {ident} AS ident, t.deleted AS deleted, s.revision AS state_rev, "
            f"{state} AS state, {data} AS data FROM {self.table.__tablename__} t "
            "LEFT JOIN sync_record_states s ON s.org_id = t.org_id AND s.record_id = t.id"
        )

    def _build_sql(self, dialect: str, one: bool, form: int) -> TextClause:
        where = "t.id = :id" if one else "t.revision > :since AND t.revision <= :until"
        statement = text(f"{self.select_sql(dialect, form)} WHERE t.org_id = :org AND {where}")
        if one:
            return statement.bindparams(bindparam("org", type_=Uuid), bindparam("id", type_=Uuid))
        return statement.bindparams(
            bindparam("org", type_=Uuid),
            bindparam("since", type_=BigInteger),
            bindparam("until", type_=BigInteger),
        )

    def rows(
        self,
        session: Session,
        *,
        org_id: uuid.UUID,
        since: int = 0,
        until: int = 0,
        record_id: uuid.UUID | None = None,
        form: int = 1,
    ) -> list[FeedRow]:
        """This entity's rows with ``since < revision <= until`` (or the one ``record_id``), unordered;
        ``form``: the protocol whose form of the stored states to read (:data:`_STATE_FORMS`)."""
        dialect = session.get_bind().dialect.name
        if record_id is not None:
            params: dict[str, Any] = {"org": org_id, "id": record_id}
        else:
            params = {"org": org_id, "since": since, "until": until}
        result = session.connection().execute(
            self.sql(dialect, one=record_id is not None, form=form), params
        )
        return [
            FeedRow(self, ident, int(rev), bool(deleted), data, state if state_rev == rev else None)
            for rev, ident, deleted, state_rev, state, data in result
        ]


def first_rows(
    session: Session,
    feeds: Sequence[Feed],
    *,
    org_id: uuid.UUID,
    since: int,
    n: int,
    form: int,
    budget: int,
) -> list[FeedRow]:
    """The first ``n`` rows after revision ``since`` of every feed, in one statement (unordered): a pull
    page is cut from them without a separate query for its bounds.

    A feed's rows stop early, in the database, once the rows of its earlier revisions pass ``budget`` bytes
    (:attr:`FeedRow.size`): the rows of the first revision past the budget are the last ones read. So large
    records are not all read into the server's memory to make one short page (5,000 outputs of 1 MB would
    be 5 GB). A page cut at ``budget`` (summing the same sizes in feed order) needs no row beyond those: a
    row before the cut has at most ``budget`` bytes of rows before it across all feeds, so also within its
    own feed; and the row the cut happens at is read, so the cut is seen.

    The statement reads stored data only (building it in SQL for nine tables made it cost ~5 ms to plan on
    PostgreSQL, more than a small pull's whole work); rows without it are read again through
    :meth:`Feed.rows`, which builds it: records written before it was stored, or whose data a purge
    cleared."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        rows = _first_rows_streamed(session, feeds, org_id=org_id, since=since, n=n, form=form, budget=budget)
    else:
        result = session.connection().execute(
            _first_rows_sql(tuple(feeds), dialect, form),
            {"org": org_id, "since": since, "n": n, "budget": budget},
        )
        rows = [
            FeedRow(
                feeds[i], ident, int(rev), bool(deleted), data, state if state_rev == rev else None, int(size)
            )
            for i, rev, ident, deleted, state_rev, state, data, size in result
        ]
    missing = [row for row in rows if row.data is None]
    for feed in dict.fromkeys(row.feed for row in missing):
        low = min(r.revision for r in missing if r.feed is feed)
        high = max(r.revision for r in missing if r.feed is feed)
        built = {
            r.id: r for r in feed.rows(session, org_id=org_id, since=low - 1, until=high, form=form)
        }
        for row in missing:
            if row.feed is feed:
                row.data = built[row.id].data
    return rows


def _first_rows_streamed(
    session: Session, feeds: Sequence[Feed], *, org_id: uuid.UUID, since: int, n: int, form: int, budget: int
) -> list[FeedRow]:
    """:func:`first_rows` on SQLite: each feed's rows are read in revision order, one statement per feed,
    and the reading stops at the budget here (SQLite steps a statement only as far as its rows are fetched,
    and it runs in this process: nine statements cost no round trips). The window function PostgreSQL
    bounds its reads with made SQLite copy every row, data and all, into a sorter first: 85 ms for a page of
    5,000 outputs against 27 ms read this way (docs/benchmarks.md, seventeenth session)."""
    connection = session.connection()
    params = {"org": org_id, "since": since, "n": n}
    rows: list[FeedRow] = []
    for feed in feeds:
        result = connection.execute(_feed_rows_sql(feed, form), params)
        before = 0  # bytes of the feed's rows at revisions before the current one
        current, at_current = -1, 0  # the current revision and its rows' bytes
        try:
            for rev, ident, deleted, state_rev, state, data, size in result:
                if rev != current:
                    before += at_current
                    current, at_current = rev, 0
                    if before > budget:
                        break  # the rows of the revision that passed the budget are the last ones read
                at_current += size
                kept = state if state_rev == rev else None
                rows.append(FeedRow(feed, ident, int(rev), bool(deleted), data, kept, size))
        finally:
            result.close()
    return rows


def _row_size_sql(dialect: str) -> str:
    """Bytes of row ``q``'s stored data and state. Bytes, not characters: PostgreSQL's ``octet_length`` reads
    a TOASTed value's size without fetching it."""
    size = "octet_length({})" if dialect == "postgresql" else "length(CAST({} AS BLOB))"
    return f"coalesce({size.format('q.data')}, 0) + coalesce({size.format('q.state')}, 0)"


def _first_n_sql(feed: Feed, dialect: str, form: int) -> str:
    """The feed's first ``:n`` rows after ``:since`` in revision order, stored data only (aliased ``q``)."""
    return (
        f"({feed.select_sql(dialect, form, stored_only=True)} "
        "WHERE t.org_id = :org AND t.revision > :since ORDER BY t.revision LIMIT :n) AS q"
    )


@functools.cache
def _feed_rows_sql(feed: Feed, form: int) -> TextClause:
    """One feed's first ``:n`` rows after ``:since`` with their sizes (SQLite), as ``_first_rows_sql``'s."""
    return text(
        f"SELECT q.*, {_row_size_sql('sqlite')} AS size FROM {_first_n_sql(feed, 'sqlite', form)}"
    ).bindparams(
        bindparam("org", type_=Uuid),
        bindparam("since", type_=BigInteger),
        bindparam("n", type_=Integer),
    )


@functools.cache
def _first_rows_sql(feeds: tuple[Feed, ...], dialect: str, form: int) -> TextClause:
    row_size = _row_size_sql(dialect)
    # bytes of the feed's rows at earlier revisions (RANGE: rows of one revision alike, in any order)
    before = f"sum({row_size}) OVER (ORDER BY q.rev RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
    parts = [
        f"SELECT {i} AS feed, w.rev, w.ident, w.deleted, w.state_rev, w.state, w.data, w.size FROM ("
        f"SELECT q.*, {row_size} AS size, coalesce({before}, 0) AS before "
        f"FROM {_first_n_sql(feed, dialect, form)}"
        f") AS w WHERE w.before <= :budget"
        for i, feed in enumerate(feeds)
    ]
    return text(" UNION ALL ".join(parts)).bindparams(
        bindparam("org", type_=Uuid),
        bindparam("since", type_=BigInteger),
        bindparam("n", type_=Integer),
        bindparam("budget", type_=BigInteger),
    )


@functools.cache
def _feed_sql(feed: Feed, dialect: str, one: bool, form: int) -> TextClause:
    """Built once per feed and dialect (every pull runs them)."""
    return feed._build_sql(dialect, one, form)


@functools.cache
def _refresh_sql(feed: Feed, dialect: str) -> TextClause:
    return feed._build_refresh_sql(dialect)


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


def page_rows(rows: Sequence[FeedRow], order: dict[str, int]) -> list[FeedRow]:
    """Rows in feed order: revision, then entity (lookups first), then id."""
    return sorted(rows, key=lambda r: (r.revision, order[r.feed.name], r.id))


LOOKUP_READ: dict[type[Any], type[BaseModel]] = {AccuracyLevel: AccuracyLevelRead, GptModel: GptModelRead}

# lookups first: within one revision a record never precedes the lookups it references
FEEDS: tuple[Feed, ...] = (
    *(
        make_feed(kind.table.__tablename__, kind.table, LOOKUP_READ.get(kind.table, LookupRead), {})
        for kind in KINDS
    ),
    make_feed("custom_gpts", CustomGpt, CustomGptRead, {"agent_group_ids": CUSTOM_GPT_AGENT_GROUPS}),
    make_feed("prompts", Prompt, PromptRead, {"tag_ids": PROMPT_TAGS}),
    make_feed(
        "outputs",
        Output,
        OutputRead,
        {"knowledge_type_ids": OUTPUT_KNOWLEDGE_TYPES, "tag_ids": OUTPUT_TAGS},
    ),
)
FEED_BY_NAME = {feed.name: feed for feed in FEEDS}
ENTITY_ORDER = {feed.name: i for i, feed in enumerate(FEEDS)}
