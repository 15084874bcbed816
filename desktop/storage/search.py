"""Full-text search over prompts (title + body) and outputs (content) with FTS5.

User input is never passed to ``MATCH`` as query syntax: each whitespace-separated word becomes a quoted
FTS5 string (``"..."`` with inner quotes doubled), so ``AND``, ``NEAR(``, ``title:x``, ``-x`` or a stray
``"`` are plain words. Words are ANDed; a trailing ``*`` keeps its meaning as a prefix search. Words with no
letter or digit are dropped (the tokenizer would drop them anyway).
"""

from __future__ import annotations

from typing import Final

from outputhub.desktop.storage.cipher import Connection
from outputhub.desktop.storage.records import SearchEntity, SearchHit

MAX_TERMS: Final = 32
SNIPPET_TOKENS: Final = 16

_PROMPTS_SQL: Final = """
SELECT 'prompt', p.id, snippet(prompts_fts, -1, :start, :end, '…', :tokens), bm25(prompts_fts, 2.0, 1.0)
FROM prompts_fts JOIN prompts AS p ON p.seq = prompts_fts.rowid
WHERE prompts_fts MATCH :match AND p.deleted = 0 AND (:org_id IS NULL OR p.org_id = :org_id)
"""
_OUTPUTS_SQL: Final = """
SELECT 'output', o.id, snippet(outputs_fts, 0, :start, :end, '…', :tokens), bm25(outputs_fts)
FROM outputs_fts JOIN outputs AS o ON o.seq = outputs_fts.rowid
WHERE outputs_fts MATCH :match AND o.deleted = 0 AND (:org_id IS NULL OR o.org_id = :org_id)
"""


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
    match = match_expression(query)
    if match is None or limit <= 0:
        return []
    parts = [sql for name, sql in (("prompt", _PROMPTS_SQL), ("output", _OUTPUTS_SQL)) if name in entities]
    if not parts:
        return []
    sql = " UNION ALL ".join(parts) + " ORDER BY 4, 2 LIMIT :limit"
    params = {
        "match": match,
        "org_id": org_id,
        "start": mark_start,
        "end": mark_end,
        "tokens": SNIPPET_TOKENS,
        "limit": limit,
    }
    return [
        SearchHit(entity=entity, id=ident, snippet=snippet, rank=float(rank))
        for entity, ident, snippet, rank in conn.execute(sql, params)
    ]
