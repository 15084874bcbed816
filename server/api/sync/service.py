"""The pull half of replication: every change of an organization since a revision, tombstones included."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from outputhub.common.schemas import AccuracyLevelRead, GptModelRead, LookupRead
from outputhub.common.sync import PROTOCOL_VERSION, PulledRecord, PullPage
from outputhub.server.api.base import Tenant
from outputhub.server.api.custom_gpts import service as custom_gpts
from outputhub.server.api.lookups.service import KINDS
from outputhub.server.api.outputs import service as outputs
from outputhub.server.api.prompts import service as prompts
from outputhub.server.storage.tables import AccuracyLevel, CustomGpt, GptModel, Output, Prompt, ReplicatedRow

Serializer = Callable[[Session, Tenant, Sequence[Any]], list[BaseModel]]


def _lookup_serializer(read_schema: type[BaseModel]) -> Serializer:
    return lambda _session, _tenant, rows: [read_schema.model_validate(r, from_attributes=True) for r in rows]


LOOKUP_READ: dict[type[Any], type[BaseModel]] = {AccuracyLevel: AccuracyLevelRead, GptModel: GptModelRead}

# lookups first: within one revision a record never precedes the lookups it references
ENTITIES: tuple[tuple[str, type[ReplicatedRow], Serializer], ...] = (
    *(
        (kind.table.__tablename__, kind.table, _lookup_serializer(LOOKUP_READ.get(kind.table, LookupRead)))
        for kind in KINDS
    ),
    ("custom_gpts", CustomGpt, lambda s, t, rows: list(custom_gpts.to_read(s, tenant=t, rows=rows))),
    ("prompts", Prompt, lambda s, t, rows: list(prompts.to_read(s, tenant=t, rows=rows))),
    ("outputs", Output, lambda s, t, rows: list(outputs.to_read(s, tenant=t, rows=rows))),
)
ENTITY_ORDER = {name: i for i, (name, _, _) in enumerate(ENTITIES)}


def pull(session: Session, *, tenant: Tenant, since: int, limit: int) -> PullPage:
    """Changes with revision > ``since`` in revision order. A page never splits one revision, so
    ``next_since`` (the highest revision on the page) is always a safe cursor for the next call."""
    found: list[tuple[int, int, str, Any]] = []
    for name, table, _ in ENTITIES:
        rows = session.execute(
            select(table)
            .where(table.org_id == tenant.org_id, table.revision > since)
            .order_by(table.revision, table.id)
            .limit(limit + 1)
        ).scalars()
        found.extend((row.revision, ENTITY_ORDER[name], str(row.id), row) for row in rows)
    found.sort(key=lambda item: item[:3])
    has_more = len(found) > limit
    page = found[:limit]
    if has_more and page:
        last = page[-1][0]
        complete = [item for item in page if item[0] < last]
        if complete:
            page = complete
        else:  # one revision larger than a page: deliver all of it
            page = [item for item in found if item[0] == last]
            for name, table, _ in ENTITIES:
                seen = {item[2] for item in page if item[1] == ENTITY_ORDER[name]}
                extra = session.execute(
                    select(table).where(table.org_id == tenant.org_id, table.revision == last)
                ).scalars()
                page.extend((last, ENTITY_ORDER[name], str(r.id), r) for r in extra if str(r.id) not in seen)
            page.sort(key=lambda item: item[:3])
    records: list[PulledRecord] = []
    for name, _, serialize in ENTITIES:
        rows = [item[3] for item in page if item[1] == ENTITY_ORDER[name]]
        for row, data in zip(rows, serialize(session, tenant, rows), strict=True):
            records.append(
                PulledRecord(
                    entity=name, id=row.id, revision=row.revision, deleted=row.deleted, data=data.model_dump()
                )
            )
    records.sort(key=lambda r: (r.revision, ENTITY_ORDER[r.entity], str(r.id)))
    next_since = records[-1].revision if records else since
    return PullPage(protocol=PROTOCOL_VERSION, records=records, next_since=next_since, has_more=has_more)
