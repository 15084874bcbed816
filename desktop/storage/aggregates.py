"""Read-only aggregate queries over the replica for the desktop Analytics view (counted by SQLite).

Every query counts live (not tombstoned) rows only. Groups are returned as ids (``None`` for "not set");
turning ids into names is the caller's business.
"""

from __future__ import annotations

from typing import Final

from outputhub.desktop.storage.cipher import Connection

# output columns an accuracy distribution may be grouped by
ACCURACY_GROUPS: Final = frozenset({"gpt_model_id", "custom_gpt_id", "prompt_id"})


def accuracy_distribution(conn: Connection, *, group_by: str) -> list[tuple[str | None, str | None, int]]:
    """``(group id, accuracy level id, outputs)`` for every combination present."""
    if group_by not in ACCURACY_GROUPS:
        raise ValueError(f"cannot group accuracy by {group_by!r}; use one of {sorted(ACCURACY_GROUPS)}")
    rows = conn.execute(
        f"SELECT {group_by}, accuracy_level_id, count(*) FROM outputs WHERE deleted = 0 "
        f"GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return [(g, a, int(n)) for g, a, n in rows]


def outputs_by_knowledge_type_per_month(conn: Connection) -> list[tuple[str, str, int]]:
    """``(YYYY-MM, knowledge type id, outputs)``; the month is the output's ``produced_at``, else when it
    was created."""
    rows = conn.execute(
        "SELECT substr(coalesce(o.produced_at, o.created_at), 1, 7), k.knowledge_type_id, count(*) "
        "FROM output_knowledge_types AS k JOIN outputs AS o ON o.id = k.output_id "
        "WHERE o.deleted = 0 GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return [(m, k, int(n)) for m, k, n in rows]


def prompts_by_stage(conn: Connection) -> list[tuple[str | None, int]]:
    rows = conn.execute(
        "SELECT development_stage_id, count(*) FROM prompts WHERE deleted = 0 GROUP BY 1 ORDER BY 1"
    )
    return [(s, int(n)) for s, n in rows]


def tag_usage(conn: Connection) -> list[tuple[str, int, int]]:
    """``(tag id, live prompts tagged, live outputs tagged)`` for every tag used at least once."""
    rows = conn.execute(
        "SELECT tag_id, sum(prompts), sum(outputs) FROM ("
        " SELECT t.tag_id, count(*) AS prompts, 0 AS outputs FROM prompt_tags AS t"
        " JOIN prompts AS p ON p.id = t.prompt_id WHERE p.deleted = 0 GROUP BY 1"
        " UNION ALL"
        " SELECT t.tag_id, 0, count(*) FROM output_tags AS t"
        " JOIN outputs AS o ON o.id = t.output_id WHERE o.deleted = 0 GROUP BY 1"
        ") GROUP BY tag_id ORDER BY tag_id"
    )
    return [(t, int(p), int(o)) for t, p, o in rows]


def count_live(conn: Connection, *, table: str) -> int:
    if table not in {"prompts", "outputs", "custom_gpts"}:
        raise ValueError(f"cannot count {table!r}")
    return int(conn.execute(f"SELECT count(*) FROM {table} WHERE deleted = 0").fetchone()[0])
