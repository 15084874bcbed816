"""lookup name nfc: lookup names and their uniqueness keys in Unicode NFC

Revision ID: 0013
Revises: 0012

A lookup's ``name_key`` (one live name per key and organization: tags, knowledge types, accuracy levels,
development stages, GPT models, agent groups) was ``name.strip().casefold()``, blind to Unicode
normalization: "Café" typed as NFC (U+00E9) and as NFD (e + U+0301, as macOS input often gives it) were two
tags. From this revision the key is the NFC form of the stripped, case-folded name and names are stored
stripped and in NFC (``common/names.py``). This brings the rows written before in line, one organization
at a time (row-level security admits one organization per transaction setting):

- every entry whose key differs from the new rule's gets the new key (deleted ones too: their key only
  matters again if they are restored);
- a live entry whose name is not stored as names now are (NFD, surrounding spaces) gets its name in NFC,
  stripped, with a new revision and ``updated_at`` of its organization, as a REST rename would: the sync
  layer derives the server's edit from the row (``server/api/sync/records.py``), so every replica gets the
  name at its next sync. No event or audit record is written for it. A deleted entry keeps its name (a
  tombstone's state takes no edit; a restore is checked under the new key);
- where two live entries of one organization and kind would have one key under the new rule (a "Café" made
  as NFC and another as NFD before), **both keep their names**: the migration does not fail and deletes
  nothing. One holds the key (the one that had it, else the lowest id); the other's key becomes
  ``" #0013#<its id>"`` (:data:`STALE_KEY_PREFIX`: no name's key starts with a space), and it is logged (organization, table,
  id). It cannot then be edited through sync (its pushes are refused as ``name-taken``) until one of the two
  is renamed or deleted (REST edits of its other fields still work); then it takes the new rule's key
  (``repair_stale_keys`` in server/api/lookups/service.py finds it by its prefix), so its name stays taken;
- the ``name_key`` column holds 800 characters instead of 200 (PostgreSQL; SQLite does not hold a column to
  its length): case folding and NFC write some letters longer, so the key of a 200-character name may be
  600 characters long. An entry whose name would pass the 200 characters of its column in NFC (letters
  without a composed form, such as U+0958, are written longer) keeps its name (its key follows the rule).

Changed keys are written in two steps (a placeholder first), so that no intermediate row breaks the unique
index whatever the order. The rule is frozen here (a later change of ``common/names.py`` migrates on its
own). Running it again changes nothing. The downgrade keeps the data as it is: new keys stay valid keys.
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

TABLES = ("tags", "knowledge_types", "accuracy_levels", "development_stages", "gpt_models", "agent_groups")
"""The lookup tables at this revision (frozen)."""

COLUMN_MAX = 200
"""The length of the ``name`` column."""
KEY_COLUMN_MAX = 800
"""The length of the ``name_key`` column from this revision (it was 200): case folding writes some letters
longer ("ß" as "ss", "ﬃ" as "ffi") and so does NFC ("\u0958" as two), so the key of a 200-character name may
be 600 characters long (a 500 on PostgreSQL)."""


def _name(name: str) -> str:
    return unicodedata.normalize("NFC", name.strip()).strip()


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name.strip()).casefold())


def _org(statement: str, **columns: Any) -> sa.TextClause:
    clause = sa.text(statement).bindparams(sa.bindparam("org", type_=sa.Uuid()))
    return clause.columns(**columns) if columns else clause


STALE_KEY_PREFIX = " #0013#"
"""The key of a live entry whose name another holds under the new rule is this and its id (frozen here: the
server's ``STALE_KEY_PREFIX`` is the same)."""


def _plan(rows: list[Any]) -> tuple[dict[uuid.UUID, tuple[str, str]], list[uuid.UUID]]:
    """(id -> (new name, new key) for each row to change, the ids of live rows whose name another holds:
    their keys become :data:`STALE_KEY_PREFIX` and their id)."""
    wanted: dict[uuid.UUID, tuple[str, str]] = {}
    for row in rows:
        name = row.name if row.deleted else _name(row.name)
        if len(name) > COLUMN_MAX:
            name = row.name  # (kept as it is: its column cannot hold it in NFC)
        key = _key(row.name)
        if (name, key) == (row.name, row.name_key) or not name or len(key) > KEY_COLUMN_MAX:
            continue
        wanted[row.id] = (name, key)
    live = [r for r in rows if not r.deleted]
    held: set[uuid.UUID] = set()
    while True:
        final: dict[str, list[uuid.UUID]] = {}
        for row in live:
            changing = row.id in wanted and row.id not in held
            final.setdefault(wanted[row.id][1] if changing else row.name_key, []).append(row.id)
        colliding = {i for ids in final.values() if len(ids) > 1 for i in ids}
        more = {i for i in colliding if i in wanted and i not in held}
        if not more:
            break
        held |= more
    changes = {i: v for i, v in wanted.items() if i not in held}
    keys = {changes[r.id][1] if r.id in changes else r.name_key for r in live if r.id not in held}
    by_id = {r.id: r for r in rows}
    stale: list[uuid.UUID] = []
    for ident in sorted(held, key=str):  # the first of a group no entry holds the key of takes it
        name, key = wanted[ident]
        if key in keys:
            changes[ident] = (by_id[ident].name, f"{STALE_KEY_PREFIX}{ident}")
            stale.append(ident)
        else:
            changes[ident] = (name, key)
            keys.add(key)
    return changes, stale


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    now = datetime.now(UTC)
    if not postgres:
        now = now.replace(tzinfo=None)  # SQLite stores UTC date-times naive (``UTCDateTime``)
    if postgres:  # (SQLite does not hold a column to its declared length)
        for table in TABLES:
            op.alter_column(
                table, "name_key", type_=sa.String(KEY_COLUMN_MAX), existing_type=sa.String(COLUMN_MAX)
            )
    orgs = [row[0] for row in bind.execute(sa.text("SELECT id FROM organizations").columns(id=sa.Uuid()))]
    for org in orgs:
        if postgres:
            bind.execute(sa.text("SELECT set_config('outputhub.org_id', :org, true)"), {"org": str(org)})
        for table in TABLES:
            rows = bind.execute(
                _org(
                    f"SELECT id, name, name_key, deleted FROM {table} WHERE org_id = :org",
                    id=sa.Uuid(),
                    deleted=sa.Boolean(),
                ),
                {"org": org},
            ).all()
            changes, stale = _plan(list(rows))
            if stale:
                log.warning(
                    "%s of organization %s: %s keep their names, which other entries have in another case or "
                    "Unicode normal form (rename or delete one of each pair)",
                    table,
                    org,
                    ", ".join(str(i) for i in stale),
                )
            if not changes:
                continue
            before = {r.id: r for r in rows}
            renamed = sorted((i for i, (name, _) in changes.items() if name != before[i].name), key=str)
            revisions: dict[uuid.UUID, int] = {}
            if renamed:
                last = bind.execute(
                    _org(
                        "UPDATE org_revisions SET revision = revision + :n WHERE org_id = :org RETURNING revision"
                    ),
                    {"org": org, "n": len(renamed)},
                ).scalar_one()
                first = int(last) - len(renamed) + 1
                revisions = {ident: first + n for n, ident in enumerate(renamed)}
            by_id = sa.bindparam("id", type_=sa.Uuid())
            placeholder = sa.text(f"UPDATE {table} SET name_key = :key WHERE id = :id").bindparams(by_id)
            for ident in sorted(changes, key=str):
                # (not a key any name has: a tag named "#0013#<an id>" made this fail; QA)
                bind.execute(placeholder, {"id": ident, "key": f"{STALE_KEY_PREFIX}{ident}"})
            rekey = sa.text(f"UPDATE {table} SET name_key = :key WHERE id = :id").bindparams(by_id)
            rename = sa.text(
                f"UPDATE {table} SET name = :name, name_key = :key, revision = :revision, updated_at = :at "
                "WHERE id = :id"
            ).bindparams(by_id, sa.bindparam("at", type_=sa.DateTime(timezone=True)))
            for ident, (name, key) in sorted(changes.items(), key=lambda item: str(item[0])):
                if ident in revisions:
                    bind.execute(
                        rename,
                        {"id": ident, "name": name, "key": key, "revision": revisions[ident], "at": now},
                    )
                else:
                    bind.execute(rekey, {"id": ident, "key": key})


def downgrade() -> None:
    pass  # the names, keys and the wider key column stay: a key of the NFC rule is still a valid key
