"""A live record never names a deleted one: what a push does when a delete meets a reference it did not see.

Replicas edit offline, so a delete and a new reference to the deleted record can cross: an output made on
the train under a prompt deleted on the laptop meanwhile, a tag put on a prompt while another replica deleted
the tag. The merge rules say an edit the deleter did not see wins over the delete, and nothing is lost; the
REST API keeps the same invariant by refusing such a delete (409) or by taking a deleted lookup off every
record. So after a push the server looks at what it wrote:

- every live record it wrote (created, restored, or with a changed reference) that names a deleted record;
- every record it deleted that a live record still names;

and restores each such deleted record with a *server restore concurrent with the delete* (its base names no
delete). The merge then shows the record live and keeps the overridden delete as a delete conflict, listed
and resolved like any other (keeping the delete takes the dependents along: see the desktop's conflict
service). A restored record's own references are checked in turn.

References to a custom GPT are provenance, not ownership: an output keeps naming a deleted custom GPT (the
desktop's delete says so), so they are not followed here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from outputhub.server.api.base import Link
from outputhub.server.api.sync.records import SPECS, EntitySpec, reference_ids
from outputhub.server.storage.tables import CustomGpt, ReplicatedRow
from outputhub.sync.engine import RecordState

CHUNK = 500


@dataclass(frozen=True)
class Reference:
    """One field of ``spec`` that must name a live record of ``target`` while its record is live."""

    spec: EntitySpec
    field: str
    target: type[ReplicatedRow]

    @property
    def link(self) -> Link | None:
        return self.spec.links.get(self.field)


KEPT_ALIVE: tuple[Reference, ...] = tuple(
    Reference(spec, name, target)
    for spec in SPECS.values()
    for name, target in spec.references.items()
    if target is not CustomGpt
)


def _chunks(ids: Iterable[uuid.UUID]) -> Iterator[list[uuid.UUID]]:
    items = sorted(ids)
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def named_by(
    spec: EntitySpec, state: RecordState, fields: Iterable[str] | None = None
) -> set[tuple[type[ReplicatedRow], uuid.UUID]]:
    """The records ``state`` names through references that keep them alive (all fields, or ``fields``)."""
    wanted = set(fields) if fields is not None else None
    kept = {r.field for r in KEPT_ALIVE if r.spec is spec}
    values = {n: v for n, v in state.values.items() if n in kept and (wanted is None or n in wanted)}
    try:
        return {(spec.references[name], ident) for name, ident in reference_ids(spec, values)}
    except ValueError:
        return set()  # refused before it was stored; nothing of it is kept


def deleted_among(
    session: Session, *, org_id: uuid.UUID, ids: dict[type[ReplicatedRow], set[uuid.UUID]]
) -> dict[type[ReplicatedRow], set[uuid.UUID]]:
    """The records among ``ids`` that are deleted."""
    session.flush()
    out: dict[type[ReplicatedRow], set[uuid.UUID]] = {}
    for table, wanted in ids.items():
        for chunk in _chunks(wanted):
            found = session.execute(
                select(table.id).where(table.org_id == org_id, table.deleted.is_(True), table.id.in_(chunk))
            ).scalars()
            out.setdefault(table, set()).update(found)
    return {t: s for t, s in out.items() if s}


def still_named(
    session: Session,
    *,
    org_id: uuid.UUID,
    ids: dict[type[ReplicatedRow], set[uuid.UUID]],
    references: Iterable[Reference] = KEPT_ALIVE,
    users: bool = False,
) -> dict[type[ReplicatedRow], set[uuid.UUID]]:
    """The records among ``ids`` that some live record names (through ``references``); with ``users``, the
    live records that name them instead (keyed by their table)."""
    session.flush()
    out: dict[type[ReplicatedRow], set[uuid.UUID]] = {}
    for ref in references:
        wanted = ids.get(ref.target)
        if not wanted:
            continue
        user = ref.spec.table
        for chunk in _chunks(wanted):
            link = ref.link
            if link is None:
                column = getattr(user, ref.field)
                query = select(user.id if users else column).where(
                    user.org_id == org_id, user.deleted.is_(False), column.in_(chunk)
                )
            else:
                query = (
                    select(link.parent_col() if users else link.child_col())
                    .join(user, user.id == link.parent_col())
                    .where(user.org_id == org_id, user.deleted.is_(False), link.child_col().in_(chunk))
                )
            key = user if users else ref.target
            out.setdefault(key, set()).update(session.execute(query.distinct()).scalars())
    return {t: s for t, s in out.items() if s}


def dangling_references(session: Session, *, org_id: uuid.UUID) -> list[tuple[str, str, str, str]]:
    """Every ``(entity, record id, field, named id)`` where a live record names a deleted one (through a
    reference that keeps it alive): none, after any push or REST call."""
    session.flush()
    out: list[tuple[str, str, str, str]] = []
    for ref in KEPT_ALIVE:
        user, target = ref.spec.table, ref.target
        link = ref.link
        if link is None:
            column = getattr(user, ref.field)
            query = (
                select(user.id, column)
                .join(target, target.id == column)
                .where(user.org_id == org_id, user.deleted.is_(False), target.deleted.is_(True))
            )
        else:
            query = (
                select(link.parent_col(), link.child_col())
                .join(user, user.id == link.parent_col())
                .join(target, target.id == link.child_col())
                .where(user.org_id == org_id, user.deleted.is_(False), target.deleted.is_(True))
            )
        out += [(ref.spec.entity, str(a), ref.field, str(b)) for a, b in session.execute(query)]
    return sorted(out)
