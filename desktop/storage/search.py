"""Full-text search over prompts (title + body) and outputs (content) with FTS5.

User input is never passed to ``MATCH`` as query syntax: each whitespace-separated word becomes a quoted
FTS5 string (``"..."`` with inner quotes doubled), so ``AND``, ``NEAR(``, ``title:x``, ``-x`` or a stray
``"`` are plain words. Words are ANDed; a trailing ``*`` keeps its meaning as a prefix search. Words with no
letter or digit are dropped (the tokenizer would drop them anyway).
"""

from __future__ import annotations

import json
from typing import Final

from outputhub.desktop.storage.cipher import Connection
from outputhub.desktop.storage.records import SearchEntity, SearchHit

MAX_TERMS: Final = 32
SNIPPET_TOKENS: Final = 16

RANK_WINDOW: Final = 2000
"""Relevance is computed among the newest ``RANK_WINDOW`` matches of each table (all of them when there are
fewer). Ranking every match of a word found in 100k+ rows costs seconds; newest-first within a large match set
is what a person scanning their library expects anyway."""

# (table, fts table, bm25 weights, snippet column)
_SOURCES: Final = {
    "prompt": ("prompts", "prompts_fts", "2.0, 1.0", -1),
    "output": ("outputs", "outputs_fts", "1.0", 0),
}


def match_expression(query: str) -> str | None:
    """A safe FTS5 query for free text typed by a user; ``None`` when nothing searchable is left."""
    terms: list[str] = []
    for word in query.split():
        prefix = word.endswith("*")
        word = "".join(ch for ch in word.rstrip("*") if ch.isprintable())
        if not any(ch.isalnum() for ch in word):
            continue
        terms.append('"' + word.replace('"', '""') + '"' + ("*" if prefix else ""))
        if len(terms) == MAX_TERMS:
            break
    return " ".join(terms) or None


def _ranked(conn: Connection, entity: SearchEntity, match: str, *, want: int) -> list[tuple[int, float]]:
    """(rowid, bm25) of the best ``want`` matches within the rank window: only the index is read."""
    _table, fts, weights, _column = _SOURCES[entity]
    floor_row = conn.execute(
        f"SELECT rowid FROM {fts} WHERE {fts} MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
        (match, RANK_WINDOW - 1),
    ).fetchone()
    floor = int(floor_row[0]) if floor_row is not None else 0
    rows = conn.execute(
        f"SELECT rowid, bm25({fts}, {weights}) AS score FROM {fts} "
        f"WHERE {fts} MATCH ? AND rowid >= ? ORDER BY score LIMIT ?",
        (match, floor, want),
    )
    return [(int(rowid), float(score)) for rowid, score in rows]


def _hits(
    conn: Connection,
    entity: SearchEntity,
    match: str,
    ranked: list[tuple[int, float]],
    *,
    org_id: str | None,
    mark_start: str,
    mark_end: str,
) -> list[SearchHit]:
    """Live rows among ``ranked`` (tombstones and other organizations dropped) with their snippets."""
    if not ranked:
        return []
    table, fts, _weights, column = _SOURCES[entity]
    rowids = json.dumps([rowid for rowid, _ in ranked])
    rows = conn.execute(
        f"SELECT f.rowid, t.id, snippet({fts}, {column}, ?, ?, '…', ?) FROM {fts} AS f "
        f"JOIN {table} AS t ON t.seq = f.rowid "
        f"WHERE {fts} MATCH ? AND f.rowid IN (SELECT value FROM json_each(?)) "
        f"AND t.deleted = 0 AND (? IS NULL OR t.org_id = ?)",
        (mark_start, mark_end, SNIPPET_TOKENS, match, rowids, org_id, org_id),
    )
    found = {int(rowid): (ident, snippet) for rowid, ident, snippet in rows}
    return [
        SearchHit(entity=entity, id=found[rowid][0], snippet=found[rowid][1], rank=score)
        for rowid, score in ranked
        if rowid in found
    ]


def search(
    conn: Connection,
    query: str,
    *,
    limit: int,
    entities: tuple[SearchEntity, ...],
    org_id: str | None,
    mark_start: str,
    mark_end: str,
) -> list[SearchHit]:
    """Best bm25 first (prompt titles weigh double), ties by id; snippets only for the hits returned.

    Two steps per table: rank rowids from the index alone (newest ``RANK_WINDOW`` matches), then read the
    page's rows for the liveness/organization filter and the snippets. Tombstoned or foreign rows in the
    ranked set are over-fetched for (twice the limit) rather than ranked again.
    """
    match = match_expression(query)
    if match is None or limit <= 0:
        return []
    hits: list[SearchHit] = []
    for entity in ("prompt", "output"):
        if entity not in entities:
            continue
        want = limit * 2 + 8
        ranked = _ranked(conn, entity, match, want=want)  # type: ignore[arg-type]
        found = _hits(
            conn,
            entity,
            match,
            ranked,
            org_id=org_id,
            mark_start=mark_start,
            mark_end=mark_end,  # type: ignore[arg-type]
        )
        if len(found) < min(limit, len(ranked)) and len(ranked) == want:
            # many dead rows among the best: rank deeper once
            ranked = _ranked(conn, entity, match, want=want * 8)  # type: ignore[arg-type]
            found = _hits(
                conn,
                entity,
                match,
                ranked,
                org_id=org_id,
                mark_start=mark_start,
                mark_end=mark_end,  # type: ignore[arg-type]
            )
        hits.extend(found)
    hits.sort(key=lambda h: (h.rank, h.id))
    return hits[:limit]
