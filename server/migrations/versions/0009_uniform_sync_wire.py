"""uniform sync wire: store protocol 3's uniform pull form of records written before protocol 3

Revision ID: 0009
Revises: 0008

Protocol 3 sends the state of a record written by one operation and nothing since (most of a library) as
``{"u": [version, op], "v": {...}}``, and the commit hook stores that form in ``sync_record_states.wire``
for every record written since. Records written before keep protocol 2's form there (long texts as
``{"=": 1}`` markers), or NULL (written before revision 0007, or nothing qualified), so a library pulled
from scratch would keep its bigger pulls until each record is edited. This stores, once, the wire the commit
hook would store (``records.wire_texts``: ``sync.protocol.compact_state_wire`` of the state and the record's
values) for every current state (stored at its row's revision, as the pull feed requires) that has its
``data`` (revision 0008 filled it; the texts the markers stand for are the data's), one organization at a
time (row-level security admits one organization per transaction setting), in batches of
:data:`BATCH` records in ``record_id`` order, writing only the rows whose wire changes. Stale states and
states without data are left alone: pulls handle them correctly (a protocol 3 pull of them is only bigger).
It is an optimization only: if the tables no longer match what the feed expects (a later revision changed
them), an organization is skipped with a notice and its records keep their current form.

The downgrade turns every uniform wire back into protocol 2's form (``expand_uniform`` gives exactly the
marker form the uniform one was made from; NULL when it has no marker), so a server from before protocol 3,
which sends ``wire`` to protocol 2 clients as it is, can run on the database again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Final

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

BATCH: Final = 1000
"""Records read (and at most written) per statement: a 100k-record organization is never held at once."""

_UNIFORM: Final = "'{\"u\"%'"
"""SQL pattern of a stored wire in the uniform form (as ``feed._STATE_FORMS`` tells it)."""


def _dumps(wire: Any) -> str:
    import orjson

    return orjson.dumps(wire).decode()  # as records._dumps


def _organizations(bind: sa.Connection) -> list[uuid.UUID]:
    return [row[0] for row in bind.execute(sa.text("SELECT id FROM organizations").columns(id=sa.Uuid()))]


def _each_organization(bind: sa.Connection, work: Any, what: str) -> None:
    """``work(org)`` for every organization, each in a savepoint with the tenant set; a database error skips
    that organization with a notice."""
    postgres = bind.dialect.name == "postgresql"
    for org in _organizations(bind):
        savepoint = bind.begin_nested()
        try:
            if postgres:
                bind.execute(sa.text("SELECT set_config('outputhub.org_id', :org, true)"), {"org": str(org)})
            changed = work(org)
            savepoint.commit()
        except sa.exc.DBAPIError as exc:
            savepoint.rollback()
            log.warning(
                "sync record wires not %s for organization %s (%s): pulls are correct, only bigger",
                what,
                org,
                exc,
            )
            continue
        if changed:
            log.info("%d sync record wires %s for organization %s", changed, what, org)


def _batches(bind: sa.Connection, sql: str, org: uuid.UUID) -> Iterator[Sequence[sa.Row[Any]]]:
    """The rows of ``sql`` (``... {after} ORDER BY s.record_id LIMIT :n``; its first column the record id)
    for the organization, a batch at a time (keyset pagination on the record id)."""
    after: uuid.UUID | None = None
    first = (
        sa.text(sql.replace("{after}", ""))
        .bindparams(sa.bindparam("org", type_=sa.Uuid()))
        .columns(record_id=sa.Uuid())
    )
    rest = (
        sa.text(sql.replace("{after}", "AND s.record_id > :after"))
        .bindparams(sa.bindparam("org", type_=sa.Uuid()), sa.bindparam("after", type_=sa.Uuid()))
        .columns(record_id=sa.Uuid())
    )
    while True:
        params: dict[str, Any] = {"org": org, "n": BATCH}
        if after is not None:
            params["after"] = after
        rows = bind.execute(first if after is None else rest, params).all()
        if not rows:
            return
        yield rows
        if len(rows) < BATCH:
            return
        after = rows[-1][0]


def _update_sql() -> sa.TextClause:
    return sa.text(
        "UPDATE sync_record_states SET wire = :wire "
        "WHERE org_id = :org AND record_id = :id AND revision = :rev"
    ).bindparams(
        sa.bindparam("org", type_=sa.Uuid()),
        sa.bindparam("id", type_=sa.Uuid()),
        sa.bindparam("rev", type_=sa.BigInteger()),
    )


def upgrade() -> None:
    import orjson

    from outputhub.server.api.sync.feed import FEEDS
    from outputhub.server.api.sync.records import wire_texts
    from outputhub.sync.protocol import TABLE_ENTITIES

    bind = op.get_bind()
    update = _update_sql()

    def work(org: uuid.UUID) -> int:
        changed = unreadable = 0
        for feed in FEEDS:
            entity = TABLE_ENTITIES[feed.name]
            # current states with their data; a wire already uniform was stored by the commit hook of
            # protocol 3 and is what it would store now
            sql = (
                "SELECT s.record_id, s.revision, s.state, s.data, s.wire FROM sync_record_states AS s "
                f"JOIN {feed.table.__tablename__} AS t ON t.org_id = s.org_id AND t.id = s.record_id "
                "WHERE s.org_id = :org {after} AND s.revision = t.revision AND s.data IS NOT NULL "
                f"AND (s.wire IS NULL OR s.wire NOT LIKE {_UNIFORM}) "
                "ORDER BY s.record_id LIMIT :n"
            )
            for rows in _batches(bind, sql, org):
                updates: list[dict[str, Any]] = []
                for record_id, rev, state, data, wire in rows:
                    # the data holds each of the entity's texts as its column does, as the values the
                    # commit hook compacts with (records.wire_texts) do: the same markers
                    try:
                        text = wire_texts(entity, orjson.loads(state), orjson.loads(data))["wire"]
                    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
                        unreadable += 1  # not a state this code can read: leave it as it is
                        continue
                    if text != wire:
                        updates.append({"org": org, "id": record_id, "rev": rev, "wire": text})
                if updates:
                    bind.execute(update, updates)
                    changed += len(updates)
        if unreadable:
            log.warning(
                "%d sync record states of organization %s left as they are (unreadable)", unreadable, org
            )
        return changed

    _each_organization(bind, work, "compacted")


def downgrade() -> None:
    import orjson

    from outputhub.sync.protocol import expand_uniform

    bind = op.get_bind()
    update = _update_sql()
    sql = (
        "SELECT s.record_id, s.revision, s.entity, s.state, s.wire FROM sync_record_states AS s "
        f"WHERE s.org_id = :org {{after}} AND s.wire LIKE {_UNIFORM} ORDER BY s.record_id LIMIT :n"
    )

    def work(org: uuid.UUID) -> int:
        changed = 0
        for rows in _batches(bind, sql, org):
            updates: list[dict[str, Any]] = []
            for record_id, rev, entity, state, wire in rows:
                try:
                    marked = expand_uniform(entity, orjson.loads(wire))
                    text = None if marked == orjson.loads(state) else _dumps(marked)
                except ValueError:
                    text = None  # the full state is valid in every protocol
                updates.append({"org": org, "id": record_id, "rev": rev, "wire": text})
            bind.execute(update, updates)
            changed += len(updates)
        return changed

    _each_organization(bind, work, "expanded to protocol 2's form")
