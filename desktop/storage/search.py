"""Full-text search over prompts (title + body) and outputs (content) with FTS5.

User input is never passed to ``MATCH`` as query syntax: each whitespace-separated word becomes a quoted
FTS5 string (``"..."`` with inner quotes doubled), so ``AND``, ``NEAR(``, ``title:x``, ``-x`` or a stray
``"`` are plain words. Words are ANDed; a trailing ``*`` keeps its meaning as a prefix search. Words with no
letter or digit are dropped (the tokenizer would drop them anyway).

**Order.** A query is ranked by relevance (bm25, best first) when that is cheap: it matches at most
``RANK_WINDOW`` rows and its words are not too common. bm25 weighs rare words above common ones, so it reads
the whole posting list of every word of the query (``act`` and ``as`` are in 85% of the rows: 15 ms at
200k outputs, and a word in most rows weighs ~nothing anyway); otherwise the matches are listed **newest
first** (highest ``seq``: the order rows arrived in the replica), which the index yields in order, so a page
costs the page and not the match set. The plan is chosen from cheap probes of the index (:func:`plan`).

**Pages.** Candidates come from the full-text index alone; tombstones are left out through the small
partial index ``<table>_tombstones`` (migration 0002) without reading the rows; only the page's rows are
read (for the id and the snippet). Conditions on the row itself (organization, relation filters) do read
each candidate row: in newest-first order at most ``FILTER_SCAN`` candidates are examined per call.

**Counts** are capped (:func:`count`): a huge match set is never counted through; the caller shows "1,000+"
(with row conditions, "333+" means: 333 among the newest ``COUNT_SCAN`` matches).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from outputhub.desktop.storage import tables
from outputhub.desktop.storage.cipher import Connection
from outputhub.desktop.storage.records import MatchCount, SearchEntity, SearchHit

MAX_TERMS: Final = 32
SNIPPET_TOKENS: Final = 16

RANK_WINDOW: Final = 1000
"""A query matching more rows than this is listed newest first instead of ranked: bm25 costs about 3-5 us
per match on the 2-core dev machine, so ranking is kept to ~5 ms of a keystroke's 20 ms budget."""

RANK_BUDGET: Final = 50_000
"""bm25 reads every posting of every word of the query: when the words together occur in more rows than this
(estimated), the matches are listed newest first even if there are few of them ("act interview")."""

FILTER_SCAN: Final = 10_000
"""With conditions on the row (organization, relation filters), a newest-first search examines at most this
many of the newest matches per call: each examined match costs reading its row."""

COUNT_CAP: Final = 1000
"""Counts stop here; more matches are reported as ``MatchCount(COUNT_CAP, capped=True)``."""

COUNT_SCAN: Final = 2000
"""With row conditions, a count examines at most this many of the newest matches (it runs after the first
page, but holds the replica while it reads the rows)."""

_CHUNK: Final = 200  # candidates checked against row conditions per statement


@dataclass(frozen=True, slots=True)
class _Source:
    table: str
    fts: str
    weights: str  # bm25 column weights
    snippet_column: int  # -1: the column with the best match


_SOURCES: Final[Mapping[SearchEntity, _Source]] = {
    "prompt": _Source("prompts", "prompts_fts", "2.0, 1.0", -1),
    "output": _Source("outputs", "outputs_fts", "1.0", 0),
}
_SPECS: Final = {"prompt": tables.PROMPTS, "output": tables.OUTPUTS}


@dataclass(frozen=True, slots=True)
class Conditions:
    """Conditions on the searched row (SQL on alias ``t``, ANDed) with their parameters."""

    sql: tuple[str, ...] = ()
    params: tuple[object, ...] = ()


NO_CONDITIONS: Final = Conditions()


def row_conditions(
    entity: SearchEntity,
    *,
    org_id: str | None = None,
    equals: Mapping[str, str | None] | None = None,
    linked: Mapping[str, str | None] | None = None,
) -> Conditions:
    """Equality filters on columns and link filters (``tag_ids=...``), ``None`` values ignored, as for
    ``Replica.list_*``."""
    spec = _SPECS[entity]
    sql: list[str] = []
    params: list[object] = []
    for column, value in {"org_id": org_id, **(equals or {})}.items():
        if value is None:
            continue
        if column not in spec.all_columns:
            raise ValueError(f"{spec.table} has no column {column!r}")
        sql.append(f"t.{column} = ?")
        params.append(value)
    links = {link.field: link for link in spec.links}
    for field, target in (linked or {}).items():
        if target is None:
            continue
        if field not in links:
            raise ValueError(f"{spec.table} has no link {field!r}")
        link = links[field]  # one primary-key probe per candidate row
        sql.append(
            f"EXISTS (SELECT 1 FROM {link.table} AS l WHERE l.{link.owner} = t.id AND l.{link.target} = ?)"
        )
        params.append(target)
    return Conditions(tuple(sql), tuple(params))


def query_terms(query: str) -> list[str]:
    """The quoted FTS5 terms of free user text (at most ``MAX_TERMS``, repeats dropped)."""
    terms: list[str] = []
    for word in query.split():
        prefix = word.endswith("*")
        word = "".join(ch for ch in word.rstrip("*") if ch.isprintable())
        if not any(ch.isalnum() for ch in word):
            continue
        term = '"' + word.replace('"', '""') + '"' + ("*" if prefix else "")
        if term not in terms:
            terms.append(term)
        if len(terms) == MAX_TERMS:
            break
    return terms


def match_expression(query: str) -> str | None:
    """A safe FTS5 query for free text typed by a user; ``None`` when nothing searchable is left."""
    return " ".join(query_terms(query)) or None


# --- the plan -------------------------------------------------------------------------------------------


def _live(source: _Source) -> str:
    """The candidate ``f.rowid`` is not a tombstone (an index probe; the row itself is not read)."""
    return (
        f"NOT EXISTS (SELECT 1 FROM {source.table} AS d INDEXED BY {source.table}_tombstones "
        f"WHERE d.seq = f.rowid AND d.deleted = 1)"
    )


def _nth_newest(conn: Connection, source: _Source, match: str, n: int) -> int | None:
    """The rowid of the ``n``-th newest match (tombstones included), or None when there are fewer."""
    row = conn.execute(
        f"SELECT rowid FROM {source.fts} WHERE {source.fts} MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
        (match, n - 1),
    ).fetchone()
    return None if row is None else int(row[0])


def plan(conn: Connection, entity: SearchEntity, terms: Sequence[str]) -> bool:
    """Whether to rank ``terms`` by relevance (True) or list the matches newest first (False).

    With several words, first estimates each word's row count from how far back its ``RANK_WINDOW``-th newest
    occurrence lies (at most that many postings of one word each: cheaper than intersecting a rare word with
    a very common one); then probes the index for the query's ``RANK_WINDOW + 1``-th newest match."""
    source = _SOURCES[entity]
    if len(terms) > 1:
        low, high = conn.execute(  # two subqueries: min() and max() together would scan the table
            f"SELECT (SELECT min(seq) FROM {source.table}), (SELECT max(seq) FROM {source.table})"
        ).fetchone()
        if high is None:
            return True
        span = int(high) - int(low) + 1
        postings = 0
        for term in terms:
            nth = _nth_newest(conn, source, term, RANK_WINDOW)
            postings += RANK_WINDOW if nth is None else RANK_WINDOW * span // max(1, int(high) - nth + 1)
            if postings > RANK_BUDGET:
                return False
    return _nth_newest(conn, source, " ".join(terms), RANK_WINDOW + 1) is None


# --- candidates, in result order --------------------------------------------------------------------------


def _ranked(conn: Connection, source: _Source, match: str, *, limit: int = -1) -> list[tuple[int, float]]:
    """(rowid, bm25) of the best ``limit`` live matches (all: -1), best first (only called for at most
    ``RANK_WINDOW`` matches)."""
    rows = conn.execute(
        f"SELECT f.rowid, bm25({source.fts}, {source.weights}) AS score FROM {source.fts} AS f "
        f"WHERE {source.fts} MATCH ? AND {_live(source)} ORDER BY score, f.rowid DESC LIMIT ?",
        (match, limit),
    )
    return [(int(rowid), float(score)) for rowid, score in rows]


def _newest(conn: Connection, source: _Source, match: str, *, limit: int, offset: int = 0) -> list[int]:
    """Rowids of live matches, newest first: the index yields them in this order, so this reads ``offset +
    limit`` postings and tombstone probes, never the rows."""
    rows = conn.execute(
        f"SELECT f.rowid FROM {source.fts} AS f WHERE {source.fts} MATCH ? AND {_live(source)} "
        f"ORDER BY f.rowid DESC LIMIT ? OFFSET ?",
        (match, limit, offset),
    )
    return [int(rowid) for (rowid,) in rows]


class _NewestFirst:
    """Live matches newest first, in chunks growing from ``_CHUNK`` (each chunk evaluates the MATCH again),
    at most ``FILTER_SCAN`` in all (``truncated``: the scan stopped there and more matches may follow)."""

    def __init__(self, conn: Connection, source: _Source, match: str, *, scan: int | None = None) -> None:
        self._conn, self._source, self._match = conn, source, match
        self._scan = FILTER_SCAN if scan is None else scan
        self.truncated = False

    def __iter__(self) -> Iterator[list[int]]:
        source = self._source
        select = f"SELECT f.rowid FROM {source.fts} AS f WHERE {source.fts} MATCH ? AND {_live(source)} "
        below: int | None = None
        scanned = 0
        size = _CHUNK
        while True:
            size = min(size, self._scan - scanned)
            if below is None:
                rows = self._conn.execute(
                    select + "ORDER BY f.rowid DESC LIMIT ?", (self._match, max(size, 1))
                )
            else:  # a plain rowid bound, which the index seeks to
                rows = self._conn.execute(
                    select + "AND f.rowid < ? ORDER BY f.rowid DESC LIMIT ?",
                    (self._match, below, max(size, 1)),
                )
            chunk = [int(rowid) for (rowid,) in rows]
            if size == 0:  # the scan is used up: is there more?
                self.truncated = bool(chunk)
                return
            if chunk:
                yield chunk
            if len(chunk) < size:
                return
            scanned += len(chunk)
            below = chunk[-1]
            size *= 2


def _kept(conn: Connection, source: _Source, rowids: Sequence[int], conditions: Conditions) -> list[int]:
    """The rowids (in their order) whose rows meet ``conditions``: each candidate row is looked up by rowid
    (CROSS JOIN keeps the planner from driving the lookup from a filter's index instead: a tag's outputs
    times the candidates)."""
    if not rowids:
        return []
    found = {
        int(seq)
        for (seq,) in conn.execute(
            f"SELECT t.seq FROM json_each(?) AS c CROSS JOIN {source.table} AS t ON t.seq = c.value "
            f"WHERE {' AND '.join(conditions.sql)}",
            (json.dumps(list(rowids)), *conditions.params),
        )
    }
    return [rowid for rowid in rowids if rowid in found]


def _filtered(
    conn: Connection, source: _Source, chunks: Iterable[list[int]], conditions: Conditions, *, want: int
) -> list[int]:
    """The first ``want`` candidates (in order) meeting ``conditions``."""
    kept: list[int] = []
    for chunk in chunks:
        kept += _kept(conn, source, chunk, conditions)
        if len(kept) >= want:
            break
    return kept[:want]


def _chunks_of(rowids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(rowids), _CHUNK):
        yield list(rowids[start : start + _CHUNK])


# --- the page -------------------------------------------------------------------------------------------


def _page(
    conn: Connection,
    source: _Source,
    match: str,
    rowids: Sequence[int],
    *,
    snippets: bool,
    mark_start: str,
    mark_end: str,
) -> dict[int, tuple[str, str]]:
    """rowid -> (id, snippet) of the page's rows (snippet ``""`` unless ``snippets``)."""
    if not rowids:
        return {}
    listed = json.dumps(list(rowids))
    if not snippets:
        rows = conn.execute(
            f"SELECT seq, id, '' FROM {source.table} WHERE seq IN (SELECT value FROM json_each(?))", (listed,)
        )
    else:
        # One MATCH over the page's rowid range; ``+f.rowid`` keeps the list out of the index lookup, which
        # would re-run the MATCH once per listed rowid (a prefix query re-merges its terms every time).
        rows = conn.execute(
            f"SELECT f.rowid, t.id, snippet({source.fts}, {source.snippet_column}, ?, ?, '…', ?) "
            f"FROM {source.fts} AS f JOIN {source.table} AS t ON t.seq = f.rowid "
            f"WHERE {source.fts} MATCH ? AND f.rowid BETWEEN ? AND ? "
            f"AND +f.rowid IN (SELECT value FROM json_each(?))",
            (mark_start, mark_end, SNIPPET_TOKENS, match, min(rowids), max(rowids), listed),
        )
    return {int(rowid): (str(ident), str(snippet)) for rowid, ident, snippet in rows}


def search_table(
    conn: Connection,
    entity: SearchEntity,
    terms: Sequence[str],
    *,
    limit: int,
    offset: int,
    conditions: Conditions,
    snippets: bool,
    mark_start: str,
    mark_end: str,
) -> list[SearchHit]:
    """One page of live matches of one table: best bm25 first or newest first (rank 0.0), see :func:`plan`."""
    source = _SOURCES[entity]
    match = " ".join(terms)
    want = offset + limit
    scores: dict[int, float] = {}
    if plan(conn, entity, terms):
        ranked = _ranked(conn, source, match, limit=-1 if conditions.sql else want)
        scores = dict(ranked)
        order = [rowid for rowid, _ in ranked]
        if conditions.sql:
            order = _filtered(conn, source, _chunks_of(order), conditions, want=want)
        page = order[offset:want]
    elif conditions.sql:
        found = _filtered(conn, source, _NewestFirst(conn, source, match), conditions, want=want)
        page = found[offset:want]
    elif snippets and offset == 0:
        # the first page in one statement: one MATCH evaluation fewer (a prefix query merges its terms'
        # postings on each), and the join reads only the page's rows
        rows = conn.execute(
            f"SELECT t.id, snippet({source.fts}, {source.snippet_column}, ?, ?, '…', ?) "
            f"FROM {source.fts} AS f JOIN {source.table} AS t ON t.seq = f.rowid "
            f"WHERE {source.fts} MATCH ? AND {_live(source)} ORDER BY f.rowid DESC LIMIT ?",
            (mark_start, mark_end, SNIPPET_TOKENS, match, limit),
        )
        return [SearchHit(entity=entity, id=str(i), snippet=str(snip), rank=0.0) for i, snip in rows]
    else:
        page = _newest(conn, source, match, limit=limit, offset=offset)
    rows = _page(conn, source, match, page, snippets=snippets, mark_start=mark_start, mark_end=mark_end)
    return [
        SearchHit(entity=entity, id=rows[rowid][0], snippet=rows[rowid][1], rank=scores.get(rowid, 0.0))
        for rowid in page
        if rowid in rows
    ]


def search(
    conn: Connection,
    query: str,
    *,
    limit: int,
    offset: int = 0,
    entities: tuple[SearchEntity, ...],
    conditions: Mapping[SearchEntity, Conditions] | None = None,
    snippets: bool = True,
    mark_start: str,
    mark_end: str,
) -> list[SearchHit]:
    """Live matches ``offset`` to ``offset + limit`` of each table in ``entities``.

    Ranked hits (bm25, lower is better; prompt titles weigh double) come first, best first; hits of a table
    listed newest first have rank 0.0 and follow, in that order. Snippets only for the hits returned.
    """
    terms = query_terms(query)
    if not terms or limit <= 0 or offset < 0:
        return []
    wanted = [entity for entity in _SOURCES if entity in entities]
    hits: list[SearchHit] = []
    for entity in wanted:
        hits += search_table(
            conn,
            entity,
            terms,
            limit=limit if len(wanted) == 1 else offset + limit,
            offset=offset if len(wanted) == 1 else 0,
            conditions=(conditions or {}).get(entity, NO_CONDITIONS),
            snippets=snippets,
            mark_start=mark_start,
            mark_end=mark_end,
        )
    if len(wanted) == 1:
        return hits
    hits.sort(key=lambda hit: hit.rank)  # stable: each table's own order is kept among equal ranks
    return hits[offset : offset + limit]


def count(
    conn: Connection,
    query: str,
    *,
    entity: SearchEntity,
    conditions: Conditions = NO_CONDITIONS,
    cap: int | None = None,
) -> MatchCount:
    """How many live rows of one table match, up to ``cap`` (default ``COUNT_CAP``; ``capped``: at least
    that many), whether :func:`search` ranks them by relevance, and how many rows of the table the index
    does not hold yet (``unindexed``: a large pull's search backlog, which no search sees until the
    catch-up has indexed it). Without row conditions only the index is read (``cap`` postings and tombstone
    probes); with them, at most ``COUNT_SCAN`` candidate rows."""
    cap = COUNT_CAP if cap is None else cap
    unindexed = tables.backlog_size(conn, _SPECS[entity], live_only=True)
    terms = query_terms(query)
    if not terms:
        return MatchCount(0, capped=False, ranked=True, unindexed=unindexed)
    source = _SOURCES[entity]
    match = " ".join(terms)
    ranked = plan(conn, entity, terms)
    if not conditions.sql:
        (found,) = conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {source.fts} AS f WHERE {source.fts} MATCH ? "
            f"AND {_live(source)} LIMIT ?)",
            (match, cap + 1),
        ).fetchone()
        return MatchCount(min(int(found), cap), capped=int(found) > cap, ranked=ranked, unindexed=unindexed)
    candidates = _NewestFirst(conn, source, match, scan=COUNT_SCAN)
    kept = _filtered(conn, source, candidates, conditions, want=cap + 1)
    return MatchCount(
        min(len(kept), cap),
        capped=len(kept) > cap or candidates.truncated,
        ranked=ranked,
        unindexed=unindexed,
    )
