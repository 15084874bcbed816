"""Custom GPTs: many-to-one GPT model, many-to-many agent groups."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from outputhub.common.errors import InUseError, NotFoundError
from outputhub.common.schemas import CustomGptCreate, CustomGptRead
from outputhub.server.api.base import (
    Tenant,
    allocate_revisions,
    apply_page,
    check_new_ids,
    check_refs,
    check_revision,
    get_live,
    has_all_links,
    load_links,
    new_id,
    page_rows,
    parse_sort,
    reject_nulls,
    replace_links,
    stamp_changed,
    stamp_new,
)
from outputhub.server.api.lookups.service import CUSTOM_GPT_AGENT_GROUPS
from outputhub.server.events import emit_change, row_snapshot
from outputhub.server.storage.tables import AgentGroup, CustomGpt, GptModel, Output

SCALARS = ("name", "description", "instructions", "gpt_model_id")


def to_read(session: Session, *, tenant: Tenant, rows: Sequence[CustomGpt]) -> list[CustomGptRead]:
    groups = load_links(session, CUSTOM_GPT_AGENT_GROUPS, tenant=tenant, parent_ids=[r.id for r in rows])
    return [CustomGptRead.model_validate({**_columns(r), "agent_group_ids": groups[r.id]}) for r in rows]


def _columns(row: CustomGpt) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in CustomGpt.__table__.columns}


def _check(session: Session, *, tenant: Tenant, data: dict[str, Any]) -> None:
    if "gpt_model_id" in data:
        check_refs(session, GptModel, tenant=tenant, ids=[data["gpt_model_id"]], field="body.gpt_model_id")
    if data.get("agent_group_ids"):
        check_refs(
            session, AgentGroup, tenant=tenant, ids=data["agent_group_ids"], field="body.agent_group_ids"
        )


def get(session: Session, *, tenant: Tenant, ident: uuid.UUID) -> CustomGpt:
    row = get_live(session, CustomGpt, tenant=tenant, ident=ident)
    if row is None:
        raise NotFoundError("custom GPT", ident)
    return row


def create(session: Session, *, tenant: Tenant, data: CustomGptCreate, now: datetime) -> CustomGpt:
    values = data.model_dump()
    _check(session, tenant=tenant, data=values)
    check_new_ids(session, tenant=tenant, ids=[data.id])
    row = CustomGpt(id=new_id(data.id), **{k: values[k] for k in SCALARS})
    stamp_new(row, tenant=tenant, revision=allocate_revisions(session, org_id=tenant.org_id), now=now)
    session.add(row)
    session.flush()
    replace_links(
        session, CUSTOM_GPT_AGENT_GROUPS, tenant=tenant, parent_id=row.id, child_ids=data.agent_group_ids
    )
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="custom_gpt.created",
        entity_id=row.id,
        at=now,
        revision=row.revision,
        after=row_snapshot(row, extra={"agent_group_ids": data.agent_group_ids}),
    )
    return row


def update_one(
    session: Session,
    *,
    tenant: Tenant,
    ident: uuid.UUID,
    data: dict[str, Any],
    now: datetime,
    if_match: frozenset[int] | None = None,
) -> CustomGpt:
    reject_nulls(data, ("name", "description", "instructions", "agent_group_ids"))
    row = get(session, tenant=tenant, ident=ident)
    check_revision(row, if_match=if_match)
    _check(session, tenant=tenant, data=data)
    before = row_snapshot(row, only=[n for n in SCALARS if n in data])
    if "agent_group_ids" in data:
        before["agent_group_ids"] = [
            str(g)
            for g in load_links(session, CUSTOM_GPT_AGENT_GROUPS, tenant=tenant, parent_ids=[row.id])[row.id]
        ]
    for name in SCALARS:
        if name in data:
            setattr(row, name, data[name])
    if "agent_group_ids" in data:
        replace_links(
            session,
            CUSTOM_GPT_AGENT_GROUPS,
            tenant=tenant,
            parent_id=row.id,
            child_ids=data["agent_group_ids"],
        )
    stamp_changed(row, tenant=tenant, revision=allocate_revisions(session, org_id=tenant.org_id), now=now)
    session.flush()
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="custom_gpt.updated",
        entity_id=row.id,
        at=now,
        revision=row.revision,
        before=before,
        after={n: data[n] for n in before},
    )
    return row


def delete_one(
    session: Session,
    *,
    tenant: Tenant,
    ident: uuid.UUID,
    now: datetime,
    if_match: frozenset[int] | None = None,
) -> None:
    row = get(session, tenant=tenant, ident=ident)
    check_revision(row, if_match=if_match)
    used = session.execute(
        select(Output.id)
        .where(Output.org_id == tenant.org_id, Output.custom_gpt_id == row.id, Output.deleted.is_(False))
        .limit(1)
    ).first()
    if used:
        raise InUseError("outputs still name this custom GPT; reassign or delete them first")
    row.deleted = True
    stamp_changed(row, tenant=tenant, revision=allocate_revisions(session, org_id=tenant.org_id), now=now)
    session.flush()
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="custom_gpt.deleted",
        entity_id=row.id,
        at=now,
        revision=row.revision,
        before=row_snapshot(row, only=SCALARS),
    )


def list_page(
    session: Session,
    *,
    tenant: Tenant,
    q: str | None,
    gpt_model_ids: Sequence[uuid.UUID],
    agent_group_ids: Sequence[uuid.UUID],
    sort: str,
    cursor: str | None,
    limit: int,
) -> tuple[list[CustomGpt], str | None]:
    sort_key = parse_sort(sort, model=CustomGpt, allowed=("name", "created_at", "updated_at"))
    stmt = select(CustomGpt).where(CustomGpt.org_id == tenant.org_id, CustomGpt.deleted.is_(False))
    if q:
        stmt = stmt.where(
            CustomGpt.name.icontains(q, autoescape=True) | CustomGpt.description.icontains(q, autoescape=True)
        )
    if gpt_model_ids:
        stmt = stmt.where(CustomGpt.gpt_model_id.in_(gpt_model_ids))
    for condition in has_all_links(CustomGpt.id, CUSTOM_GPT_AGENT_GROUPS, agent_group_ids):
        stmt = stmt.where(condition)
    rows = (
        session.execute(apply_page(stmt, model=CustomGpt, sort=sort_key, cursor=cursor, limit=limit))
        .scalars()
        .all()
    )
    return page_rows(rows, sort=sort_key, limit=limit)
