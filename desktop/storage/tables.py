"""Generic row storage for the replicated entities: table descriptions, record <-> row conversion, and the
upsert / get / list / delete / bulk statements built from them. Callers hold the connection lock and the
transaction; driver errors are translated by the caller too.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from itertools import islice
from typing import Any, Final, Generic, TypeVar

import orjson

from outputhub.desktop.storage.cipher import Connection
from outputhub.desktop.storage.records import (
    CustomGptRecord,
    LocalStatus,
    LookupKind,
    LookupRecord,
    OutputRecord,
    PromptRecord,
    PromptVersionRecord,
    ReplicatedRecord,
)

R = TypeVar("R", bound=ReplicatedRecord)

META_COLUMNS: Final = (
    "id",
    "org_id",
    "revision",
    "deleted",
    "local_status",
    "base",
    "field_clocks",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
)


def to_timestamp(value: datetime) -> str:
    """UTC ISO-8601 text with microseconds: fixed width, so text order is time order."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got naive {value!r}")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat is ~10x cheaper than strftime (every pulled row has two or three timestamps)
    return f"{value.replace(tzinfo=None).isoformat(timespec='microseconds')}Z"


def from_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def dumps(value: object) -> str:
    """Compact JSON with sorted keys (orjson: merge states are dumped once per pulled record)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


@dataclass(frozen=True)
class Link:
    """A many-to-many link table owned by the entity: ``record.<field>`` lists ``<target>`` ids."""

    field: str
    table: str
    owner: str
    target: str


@dataclass(frozen=True)
class FtsIndex:
    """The external-content FTS5 table fed from the entity's table by ``insert_trigger``."""

    table: str
    columns: tuple[str, ...]
    insert_trigger: str


@dataclass(frozen=True)
class EntityTable(Generic[R]):
    table: str
    record_type: type[R]
    columns: tuple[str, ...]  # entity-specific columns, after META_COLUMNS
    timestamp_columns: frozenset[str] = frozenset()
    none_defaults: Mapping[str, object] = field(default_factory=dict)  # stored instead of None
    links: tuple[Link, ...] = ()
    fts: FtsIndex | None = None

    @cached_property
    def all_columns(self) -> tuple[str, ...]:
        return META_COLUMNS + self.columns

    @cached_property
    def select_sql(self) -> str:
        return f"SELECT {', '.join(self.all_columns)} FROM {self.table}"

    @cached_property
    def upsert_sql(self) -> str:
        cols = self.all_columns
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "id")
        return (
            f"INSERT INTO {self.table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT (id) DO UPDATE SET {updates}"
        )

    @cached_property
    def insert_sql(self) -> str:
        cols = self.all_columns
        return f"INSERT INTO {self.table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

    def to_row(self, record: R) -> tuple[object, ...]:
        if not isinstance(record, self.record_type):
            raise TypeError(f"{self.table} stores {self.record_type.__name__}, not {type(record).__name__}")
        row: list[object] = [
            record.id,
            record.org_id,
            record.revision,
            1 if record.deleted else 0,
            LocalStatus(record.local_status).value,
            None if record.base is None else dumps(record.base),
            dumps(record.field_clocks),
            to_timestamp(record.created_at),
            to_timestamp(record.updated_at),
            record.created_by,
            record.updated_by,
        ]
        for column in self.columns:
            value = getattr(record, column)
            if value is None:
                value = self.none_defaults.get(column)
            elif column in self.timestamp_columns:
                value = to_timestamp(value)
            row.append(value)
        return tuple(row)

    def from_row(self, row: Sequence[Any], links: Mapping[str, tuple[str, ...]]) -> R:
        values: dict[str, Any] = {
            "id": row[0],
            "org_id": row[1],
            "revision": row[2],
            "deleted": bool(row[3]),
            "local_status": LocalStatus(row[4]),
            "base": None if row[5] is None else json.loads(row[5]),
            "field_clocks": json.loads(row[6]),
            "created_at": from_timestamp(row[7]),
            "updated_at": from_timestamp(row[8]),
            "created_by": row[9],
            "updated_by": row[10],
        }
        for column, value in zip(self.columns, row[len(META_COLUMNS) :], strict=True):
            if value is not None and column in self.timestamp_columns:
                value = from_timestamp(value)
            values[column] = value
        for link in self.links:
            values[link.field] = links.get(link.field, ())
        return self.record_type(**values)


PROMPTS: Final = EntityTable(
    "prompts",
    PromptRecord,
    ("title", "body", "description", "development_stage_id", "version"),
    links=(Link("tag_ids", "prompt_tags", "prompt_id", "tag_id"),),
    fts=FtsIndex("prompts_fts", ("title", "body"), "prompts_fts_insert"),
)
PROMPT_VERSIONS: Final = EntityTable(
    "prompt_versions", PromptVersionRecord, ("prompt_id", "version", "title", "body")
)
OUTPUTS: Final = EntityTable(
    "outputs",
    OutputRecord,
    ("prompt_id", "content", "notes", "custom_gpt_id", "gpt_model_id", "accuracy_level_id", "produced_at"),
    timestamp_columns=frozenset({"produced_at"}),
    links=(
        Link("tag_ids", "output_tags", "output_id", "tag_id"),
        Link("knowledge_type_ids", "output_knowledge_types", "output_id", "knowledge_type_id"),
    ),
    fts=FtsIndex("outputs_fts", ("content",), "outputs_fts_insert"),
)
CUSTOM_GPTS: Final = EntityTable(
    "custom_gpts",
    CustomGptRecord,
    ("name", "description", "instructions", "gpt_model_id"),
    links=(Link("agent_group_ids", "custom_gpt_agent_groups", "custom_gpt_id", "agent_group_id"),),
)
_LOOKUP_COLUMNS: Final = ("name", "description", "position")
LOOKUPS: Final[Mapping[LookupKind, EntityTable[LookupRecord]]] = {
    kind: EntityTable(
        kind.value,
        LookupRecord,
        _LOOKUP_COLUMNS
        + (("score",) if kind is LookupKind.ACCURACY_LEVELS else ())
        + (("provider",) if kind is LookupKind.GPT_MODELS else ()),
        none_defaults={"score": 0, "provider": ""},
    )
    for kind in LookupKind
}


def check_lookup(kind: LookupKind, record: LookupRecord) -> None:
    if record.score is not None and kind is not LookupKind.ACCURACY_LEVELS:
        raise ValueError(f"only accuracy levels have a score, not {kind.value}")
    if record.provider is not None and kind is not LookupKind.GPT_MODELS:
        raise ValueError(f"only GPT models have a provider, not {kind.value}")


# --- statements ---------------------------------------------------------------------------------------------


def _replace_links(
    conn: Connection, spec: EntityTable[R], records: Sequence[R], *, new: bool = False
) -> None:
    """Each record's link rows become its link fields (``new``: the records were just inserted, they have no
    link rows yet). Only the link rows that change are deleted or inserted: an edit of other fields (and a
    pulled record this replica already shows) leaves them, and the pages they sit on, untouched."""
    if not spec.links:
        return
    for link in spec.links:
        pairs = [(r.id, target) for r in records for target in dict.fromkeys(getattr(r, link.field))]
        if not new:
            conn.executemany(
                f"DELETE FROM {link.table} WHERE {link.owner} = ? "
                f"AND {link.target} NOT IN (SELECT value FROM json_each(?))",
                [(r.id, dumps(list(dict.fromkeys(getattr(r, link.field))))) for r in records],
            )
        _insert_links(conn, link, pairs, keep_present=not new)


def _insert_links(
    conn: Connection, link: Link, pairs: Sequence[tuple[str, str]], *, keep_present: bool = False
) -> None:
    """Insert link rows ``(owner id, target id)``; ``keep_present``: rows already there are left as they are
    (``INSERT OR IGNORE``), else one that is there fails the insert."""
    if pairs:
        verb = "INSERT OR IGNORE" if keep_present else "INSERT"
        conn.executemany(f"{verb} INTO {link.table} ({link.owner}, {link.target}) VALUES (?, ?)", pairs)


def upsert(conn: Connection, spec: EntityTable[R], record: R) -> None:
    conn.execute(spec.upsert_sql, spec.to_row(record))
    _replace_links(conn, spec, [record])


def bulk_upsert(
    conn: Connection, spec: EntityTable[R], records: Iterable[R], *, chunk_size: int, new: bool = False
) -> int:
    """executemany in chunks (bounded memory); the caller holds one transaction around it.

    Full-text indexing is done per chunk with one set-based statement instead of the per-row insert trigger
    (about twice as fast): the trigger is dropped and re-created *inside the caller's transaction*, so no
    other connection ever sees it missing. Rows that already existed keep their ``seq`` and go through the
    update trigger as usual. Within a chunk a repeated id keeps its last version. Returns the rows written.

    ``new``: the caller has checked, in its transaction, that none of the ids exists (a pull's new records):
    plain inserts, no link rows to delete first; an id that does exist fails the insert (nothing is
    overwritten)."""
    count = 0
    iterator: Iterator[R] = iter(records)
    with _indexed_per_statement(conn, spec) as indexed:
        while chunk := list({r.id: r for r in islice(iterator, chunk_size)}.values()):
            if new:
                added, replaced = chunk, []
            else:  # ids not there yet are plain inserts with no link rows to delete (seq order is kept)
                present = _present_ids(conn, spec, [r.id for r in chunk])
                added = [r for r in chunk if r.id not in present]
                replaced = [r for r in chunk if r.id in present]

            def write(added: list[R] = added, replaced: list[R] = replaced) -> None:
                if added:
                    conn.executemany(spec.insert_sql, [spec.to_row(r) for r in added])
                if replaced:
                    conn.executemany(spec.upsert_sql, [spec.to_row(r) for r in replaced])

            indexed(write)
            _replace_links(conn, spec, added, new=True)
            _replace_links(conn, spec, replaced)
            count += len(chunk)
    return count


def _present_ids(conn: Connection, spec: EntityTable[R], ids: list[str]) -> set[str]:
    rows = conn.execute(
        f"SELECT id FROM {spec.table} WHERE id IN (SELECT value FROM json_each(?))", (dumps(ids),)
    )
    return {str(row[0]) for row in rows}


def insert_new_rows(
    conn: Connection,
    spec: EntityTable[R],
    rows: Sequence[tuple[object, ...]],
    links: Mapping[str, Sequence[tuple[str, str]]],
    *,
    defer_index: bool = False,
) -> int:
    """Plain inserts of rows already in column order (``spec.all_columns``, as :meth:`EntityTable.to_row`
    gives them) and of their link rows (``links[field]``: ``(owner id, target id)`` pairs without repeats).

    For a pull's new records, built straight from the pulled data (no record objects): the caller has
    checked, in its transaction, that none of the ids exists (an id that does exist fails the insert). The
    full-text index is fed with one statement for all the rows, as in :func:`bulk_upsert`; with
    ``defer_index`` the rows join the search backlog instead (:func:`index_backlog` indexes them later)."""
    with _indexed_per_statement(conn, spec, defer=defer_index) as indexed:
        indexed(lambda: conn.executemany(spec.insert_sql, rows))
    for link in spec.links:
        _insert_links(conn, link, links.get(link.field, ()))
    return len(rows)


@contextlib.contextmanager
def _indexed_per_statement(
    conn: Connection, spec: EntityTable[R], *, defer: bool = False
) -> Iterator[Callable[[Callable[[], object]], None]]:
    """Yields ``indexed(write)``: runs ``write`` (statements inserting rows into ``spec.table``) and adds the
    rows it inserted to the full-text index with one ``INSERT ... SELECT``; the per-row insert trigger is
    dropped meanwhile and re-created on leaving, all in the caller's transaction (an error leaves it dropped:
    the caller's rollback restores it).

    Rows above the table's search-backlog mark (migration 0003) are left out: the catch-up indexes them.
    ``defer``: start a backlog at the current end of the table when there is none, so that the rows
    written here are left to the catch-up too."""
    trigger_sql: str | None = None
    if spec.fts is not None:
        row = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (spec.fts.insert_trigger,)
        ).fetchone()
        if row is not None:
            trigger_sql = str(row[0])
            conn.execute(f"DROP TRIGGER {spec.fts.insert_trigger}")

    def indexed(write: Callable[[], object]) -> None:
        if spec.fts is None or trigger_sql is None:
            write()
            return
        last_seq = conn.execute(f"SELECT coalesce(max(seq), 0) FROM {spec.table}").fetchone()[0]
        # (a replica made with the migrations before 0003, as tests do, has no backlog table)
        upto = backlog_mark(conn, spec.table) if "search_backlog" in trigger_sql else None
        if upto is None and defer:
            conn.execute(
                "INSERT INTO search_backlog (tbl, indexed_upto) VALUES (?, ?)", (spec.table, last_seq)
            )
            upto = last_seq
        write()
        if upto is not None and upto <= last_seq:
            return  # every row written here is above the mark
        columns = ", ".join(spec.fts.columns)
        conn.execute(
            f"INSERT INTO {spec.fts.table} (rowid, {columns}) "
            f"SELECT seq, {columns} FROM {spec.table} WHERE seq > ? AND seq <= ?",
            (last_seq, _MAX_SEQ if upto is None else upto),
        )

    yield indexed
    if trigger_sql is not None:
        conn.execute(trigger_sql)


_MAX_SEQ: Final = 2**63 - 1


def backlog_mark(conn: Connection, table: str) -> int | None:
    """The table's search-backlog mark: rows with a higher ``seq`` are not in its full-text index yet;
    ``None``: every row is (no backlog)."""
    row = conn.execute("SELECT indexed_upto FROM search_backlog WHERE tbl = ?", (table,)).fetchone()
    return None if row is None else int(row[0])


def backlog_size(conn: Connection, spec: EntityTable[R], *, live_only: bool = False) -> int:
    """How many rows of ``spec.table`` are waiting for the full-text index (0: none); ``live_only``: leave
    tombstones out (what a search would find among them)."""
    upto = backlog_mark(conn, spec.table)
    if upto is None:
        return 0
    live = " AND deleted = 0" if live_only else ""
    return int(conn.execute(f"SELECT count(*) FROM {spec.table} WHERE seq > ?{live}", (upto,)).fetchone()[0])


def index_backlog(conn: Connection, spec: EntityTable[R], *, rows: int) -> int:
    """Index up to ``rows`` of the table's backlog (oldest first) and move its mark past them; the backlog
    ends when nothing is left above the mark. Returns the rows indexed (0: no backlog left)."""
    upto = backlog_mark(conn, spec.table)
    if upto is None or spec.fts is None:
        return 0
    last = conn.execute(
        f"SELECT max(seq), count(*) FROM (SELECT seq FROM {spec.table} WHERE seq > ? ORDER BY seq LIMIT ?)",
        (upto, rows),
    ).fetchone()
    if last[0] is None:
        conn.execute("DELETE FROM search_backlog WHERE tbl = ?", (spec.table,))
        return 0
    columns = ", ".join(spec.fts.columns)
    conn.execute(
        f"INSERT INTO {spec.fts.table} (rowid, {columns}) "
        f"SELECT seq, {columns} FROM {spec.table} WHERE seq > ? AND seq <= ?",
        (upto, last[0]),
    )
    more = conn.execute(f"SELECT 1 FROM {spec.table} WHERE seq > ? LIMIT 1", (last[0],)).fetchone()
    if more is None:
        conn.execute("DELETE FROM search_backlog WHERE tbl = ?", (spec.table,))
    else:
        conn.execute("UPDATE search_backlog SET indexed_upto = ? WHERE tbl = ?", (last[0], spec.table))
    return int(last[1])


def _links_for(
    conn: Connection, spec: EntityTable[R], ids: list[str]
) -> dict[str, dict[str, tuple[str, ...]]]:
    result: dict[str, dict[str, list[str]]] = {}
    if spec.links and ids:
        id_list = dumps(ids)
        for link in spec.links:
            rows = conn.execute(
                f"SELECT {link.owner}, {link.target} FROM {link.table} "
                f"WHERE {link.owner} IN (SELECT value FROM json_each(?)) "
                f"ORDER BY {link.owner}, {link.target}",
                (id_list,),
            )
            for owner, target in rows:
                result.setdefault(owner, {}).setdefault(link.field, []).append(target)
    return {owner: {name: tuple(v) for name, v in fields.items()} for owner, fields in result.items()}


def _records(conn: Connection, spec: EntityTable[R], rows: list[Any]) -> list[R]:
    links = _links_for(conn, spec, [row[0] for row in rows])
    return [spec.from_row(row, links.get(row[0], {})) for row in rows]


def get(conn: Connection, spec: EntityTable[R], record_id: str) -> R | None:
    rows = conn.execute(f"{spec.select_sql} WHERE id = ?", (record_id,)).fetchall()
    return _records(conn, spec, rows)[0] if rows else None


def get_many(conn: Connection, spec: EntityTable[R], record_ids: Sequence[str]) -> list[R]:
    """The records with these ids, in the order given (missing ids skipped): one query per table."""
    rows = conn.execute(
        f"{spec.select_sql} WHERE id IN (SELECT value FROM json_each(?))", (dumps(list(record_ids)),)
    ).fetchall()
    by_id = {record.id: record for record in _records(conn, spec, rows)}
    return [by_id[i] for i in dict.fromkeys(record_ids) if i in by_id]


def list_records(
    conn: Connection,
    spec: EntityTable[R],
    *,
    equals: Mapping[str, object],
    linked: Mapping[str, str | None],
    include_deleted: bool,
    order_by: str,
    descending: bool,
    limit: int,
    offset: int,
) -> list[R]:
    """Rows whose columns equal ``equals`` (None values ignored) and that link to ``linked`` ids."""
    if order_by not in spec.all_columns:
        raise ValueError(
            f"cannot order {spec.table} by {order_by!r}; use one of {', '.join(spec.all_columns)}"
        )
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    where: list[str] = []
    params: list[object] = []
    if not include_deleted:
        where.append("deleted = 0")
    for column, value in equals.items():
        if value is None:
            continue
        if column not in spec.all_columns:
            raise ValueError(f"{spec.table} has no column {column!r}")
        where.append(f"{column} = ?")
        params.append(value.value if isinstance(value, LocalStatus) else value)
    links_by_field = {link.field: link for link in spec.links}
    for link_field, target_id in linked.items():
        if target_id is None:
            continue
        link = links_by_field[link_field]
        where.append(f"id IN (SELECT {link.owner} FROM {link.table} WHERE {link.target} = ?)")
        params.append(target_id)
    direction = "DESC" if descending else "ASC"
    # Deferred join: page through (order column, seq) alone, then read the page's full rows. SQLite computes
    # every row an OFFSET skips, so selecting the wide rows directly decrypts and decodes all skipped rows
    # (1.7 s for a page at offset 200k on the desktop); the index on the order column covers the subquery.
    order = f"ORDER BY {order_by} {direction}, seq {direction}"
    page = f"SELECT seq FROM {spec.table}"
    if where:
        page += " WHERE " + " AND ".join(where)
    sql = f"{spec.select_sql} WHERE seq IN ({page} {order} LIMIT ? OFFSET ?) {order}"
    rows = conn.execute(sql, (*params, limit, offset)).fetchall()
    return _records(conn, spec, rows)


def tombstone(conn: Connection, spec: EntityTable[R], record_id: str, *, at: datetime) -> bool:
    cursor = conn.execute(
        f"UPDATE {spec.table} SET deleted = 1, local_status = ?, updated_at = ? WHERE id = ?",
        (LocalStatus.DELETED.value, to_timestamp(at), record_id),
    )
    return cursor.rowcount > 0


def purge(conn: Connection, spec: EntityTable[R], record_id: str) -> bool:
    return conn.execute(f"DELETE FROM {spec.table} WHERE id = ?", (record_id,)).rowcount > 0
