"""Prompt outputs: content produced by a custom GPT or model for a prompt, rated and classified."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, insert, select
from sqlalchemy.orm import Session

from outputhub.common.errors import DuplicateError, InvalidInputError, NotFoundError, UnknownReferenceError
from outputhub.common.ids import new_uuid
from outputhub.common.schemas import OutputCreate, OutputRead
from outputhub.server.api.base import (
    Tenant,
    allocate_revisions,
    apply_page,
    check_new_ids,
    check_revision,
    get_live,
    has_all_links,
    insert_links,
    live_ids,
    load_links,
    page_rows,
    parse_sort,
    reject_nulls,
    replace_links,
    stamp_changed,
)
from outputhub.server.api.lookups.service import OUTPUT_KNOWLEDGE_TYPES, OUTPUT_TAGS, custom_gpts_in_groups
from outputhub.server.api.outputs.bodies import OutputBodies
from outputhub.server.events import emit_change, row_snapshot
from outputhub.server.storage.documents import DocumentExistsError
from outputhub.server.storage.tables import (
    AccuracyLevel,
    CustomGpt,
    GptModel,
    KnowledgeType,
    Output,
    Prompt,
    Tag,
)

SCALARS = (
    "prompt_id",
    "content",
    "notes",
    "custom_gpt_id",
    "gpt_model_id",
    "accuracy_level_id",
    "produced_at",
)
REFERENCES: tuple[tuple[str, type[Any]], ...] = (
    ("prompt_id", Prompt),
    ("custom_gpt_id", CustomGpt),
    ("gpt_model_id", GptModel),
    ("accuracy_level_id", AccuracyLevel),
)
SET_REFERENCES: tuple[tuple[str, type[Any]], ...] = (("knowledge_type_ids", KnowledgeType), ("tag_ids", Tag))
COLUMNS = [c.key for c in Output.__table__.columns]
BODY_FIELDS = {"transcript", "token_usage", "metadata"}


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _check_new_ids(
    session: Session, *, tenant: Tenant, ids: list[uuid.UUID], bulk: bool, all_ids: list[uuid.UUID]
) -> None:
    """An id held by any record of the organization, or by an output of any organization, is a 409 before
    any body document is written."""
    given = set(ids)
    check_new_ids(session, tenant=tenant, ids=[i if i in given else None for i in all_ids], bulk=bulk)
    taken = session.execute(select(Output.id).where(Output.id.in_(ids)).limit(1)).scalar_one_or_none()
    if taken is not None:
        raise DuplicateError(f"body.items.{all_ids.index(taken)}.id" if bulk else "body.id", str(taken))


def to_read(session: Session, *, tenant: Tenant, rows: Sequence[Output]) -> list[OutputRead]:
    ids = [r.id for r in rows]
    kinds = load_links(session, OUTPUT_KNOWLEDGE_TYPES, tenant=tenant, parent_ids=ids)
    tags = load_links(session, OUTPUT_TAGS, tenant=tenant, parent_ids=ids)
    return [
        OutputRead.model_validate(
            {**{k: getattr(r, k) for k in COLUMNS}, "knowledge_type_ids": kinds[r.id], "tag_ids": tags[r.id]}
        )
        for r in rows
    ]


def _check_many(session: Session, *, tenant: Tenant, items: Sequence[dict[str, Any]], prefix: str) -> None:
    """Check every reference of every item in one query per relation; errors name ``items.N.field``."""
    for field, model in (*REFERENCES, *SET_REFERENCES):
        wanted: dict[uuid.UUID, int] = {}
        for index, item in enumerate(items):
            value = item.get(field)
            for ident in value if isinstance(value, list) else [value]:
                if ident is not None:
                    wanted.setdefault(ident, index)
        if not wanted:
            continue
        found = live_ids(session, model, tenant=tenant, ids=wanted)
        for ident, index in wanted.items():
            if ident not in found:
                raise UnknownReferenceError(f"{prefix}{index}.{field}" if prefix else f"body.{field}", ident)


def _inherit_model(session: Session, *, tenant: Tenant, items: list[dict[str, Any]]) -> None:
    """An output made by a custom GPT was made by that GPT's model, unless the caller says otherwise."""
    gpt_ids = {
        i["custom_gpt_id"]
        for i in items
        if i.get("custom_gpt_id") and "gpt_model_id" not in i.get("_set", ())
    }
    if not gpt_ids:
        return
    models = dict(
        session.execute(
            select(CustomGpt.id, CustomGpt.gpt_model_id).where(
                CustomGpt.org_id == tenant.org_id, CustomGpt.id.in_(gpt_ids)
            )
        ).all()
    )
    for item in items:
        if item.get("custom_gpt_id") in models and "gpt_model_id" not in item.get("_set", ()):
            item["gpt_model_id"] = models[item["custom_gpt_id"]]


def create_many(
    session: Session,
    *,
    tenant: Tenant,
    data: Sequence[OutputCreate],
    now: datetime,
    bulk: bool,
    bodies: OutputBodies | None = None,
) -> list[Output]:
    """Insert outputs in one go: all or none (any bad item fails the whole request, naming the item).

    Items with a body (transcript, token usage, metadata) need ``bodies``: the documents are staged before
    the rows are inserted (see :mod:`outputhub.server.api.outputs.bodies`).
    """
    items = [{**d.model_dump(exclude=BODY_FIELDS), "_set": d.model_fields_set} for d in data]
    _check_many(session, tenant=tenant, items=items, prefix="body.items." if bulk else "")
    _inherit_model(session, tenant=tenant, items=items)
    first = allocate_revisions(session, org_id=tenant.org_id, count=len(items))
    rows: list[dict[str, Any]] = []
    for offset, item in enumerate(items):
        rows.append(
            {
                **{k: item[k] for k in SCALARS},
                "id": item.get("id") or new_uuid(),
                "org_id": tenant.org_id,
                "revision": first + offset,
                "deleted": False,
                "created_at": now,
                "updated_at": now,
                "created_by": tenant.actor,
                "updated_by": tenant.actor,
            }
        )
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("body.items", "two items have the same id")
    with_body = [(r["id"], d) for r, d in zip(rows, data, strict=True) if d.has_body()]
    if with_body and bodies is None:
        raise InvalidInputError("body.transcript", "output bodies are not accepted on this path")
    given = [r["id"] for r, i in zip(rows, items, strict=True) if i.get("id")]
    if given:  # a taken id is named with its item (the insert's own error could not say which)
        _check_new_ids(session, tenant=tenant, ids=given, bulk=bulk, all_ids=ids)
    sizes: dict[uuid.UUID, int] = {}
    if with_body and bodies is not None:
        try:
            sizes = bodies.stage(session, tenant=tenant, items=with_body, now=now)
        except DocumentExistsError as exc:
            index = ids.index(uuid.UUID(exc.doc_id)) if _is_uuid(exc.doc_id) else 0
            raise DuplicateError(f"body.items.{index}.id" if bulk else "body.id", exc.doc_id) from exc
    try:
        session.execute(insert(Output), rows)
    except Exception:
        if sizes and bodies is not None:  # best effort; reconcile removes what this misses
            bodies.discard(tenant=tenant, ids=list(sizes))
        raise
    insert_links(
        session,
        OUTPUT_KNOWLEDGE_TYPES,
        tenant=tenant,
        pairs=[(r["id"], k) for r, i in zip(rows, items, strict=True) for k in i["knowledge_type_ids"]],
    )
    insert_links(
        session,
        OUTPUT_TAGS,
        tenant=tenant,
        pairs=[(r["id"], t) for r, i in zip(rows, items, strict=True) for t in i["tag_ids"]],
    )
    if sizes and bodies is not None:
        bodies.add_refs(session, tenant=tenant, sizes=sizes, now=now)
    for row, item in zip(rows, items, strict=True):
        emit_change(
            session,
            org_id=tenant.org_id,
            actor=tenant.actor,
            kind="output.created",
            entity_id=row["id"],
            at=now,
            revision=row["revision"],
            after={
                **{k: row[k] for k in ("id", *SCALARS)},
                "knowledge_type_ids": item["knowledge_type_ids"],
                "tag_ids": item["tag_ids"],
            },
            details={"body": True, "bulk": bulk} if row["id"] in sizes else {"bulk": bulk},
        )
    return list(
        session.execute(select(Output).where(Output.org_id == tenant.org_id, Output.id.in_(ids))).scalars()
    )


def get(session: Session, *, tenant: Tenant, ident: uuid.UUID) -> Output:
    row = get_live(session, Output, tenant=tenant, ident=ident)
    if row is None:
        raise NotFoundError("output", ident)
    return row


def update_one(
    session: Session,
    *,
    tenant: Tenant,
    ident: uuid.UUID,
    data: dict[str, Any],
    now: datetime,
    if_match: frozenset[int] | None = None,
) -> Output:
    reject_nulls(data, ("prompt_id", "content", "notes", "knowledge_type_ids", "tag_ids"))
    row = get(session, tenant=tenant, ident=ident)
    check_revision(row, if_match=if_match)
    _check_many(session, tenant=tenant, items=[data], prefix="")
    before = row_snapshot(row, only=[n for n in SCALARS if n in data])
    for name, link in (("knowledge_type_ids", OUTPUT_KNOWLEDGE_TYPES), ("tag_ids", OUTPUT_TAGS)):
        if name in data:
            before[name] = [
                str(i) for i in load_links(session, link, tenant=tenant, parent_ids=[row.id])[row.id]
            ]
    for name in SCALARS:
        if name in data:
            setattr(row, name, data[name])
    if "knowledge_type_ids" in data:
        replace_links(
            session,
            OUTPUT_KNOWLEDGE_TYPES,
            tenant=tenant,
            parent_id=row.id,
            child_ids=data["knowledge_type_ids"],
        )
    if "tag_ids" in data:
        replace_links(session, OUTPUT_TAGS, tenant=tenant, parent_id=row.id, child_ids=data["tag_ids"])
    stamp_changed(row, tenant=tenant, revision=allocate_revisions(session, org_id=tenant.org_id), now=now)
    session.flush()
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="output.updated",
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
    row.deleted = True
    stamp_changed(row, tenant=tenant, revision=allocate_revisions(session, org_id=tenant.org_id), now=now)
    session.flush()
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="output.deleted",
        entity_id=row.id,
        at=now,
        revision=row.revision,
        before=row_snapshot(row, only=SCALARS),
    )


def output_conditions(
    *,
    tenant: Tenant,
    prompt_ids: Sequence[uuid.UUID] = (),
    tag_ids: Sequence[uuid.UUID] = (),
    knowledge_type_ids: Sequence[uuid.UUID] = (),
    accuracy_level_ids: Sequence[uuid.UUID] = (),
    custom_gpt_ids: Sequence[uuid.UUID] = (),
    gpt_model_ids: Sequence[uuid.UUID] = (),
    agent_group_ids: Sequence[uuid.UUID] = (),
    development_stage_ids: Sequence[uuid.UUID] = (),
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> list[ColumnElement[bool]]:
    """The live outputs of the caller's organization that match every filter (lists, analytics, portal):
    tags and knowledge types must all be present, the other relations match any of the given ids."""
    conditions: list[ColumnElement[bool]] = [Output.org_id == tenant.org_id, Output.deleted.is_(False)]
    for column, wanted in (
        (Output.prompt_id, prompt_ids),
        (Output.accuracy_level_id, accuracy_level_ids),
        (Output.custom_gpt_id, custom_gpt_ids),
        (Output.gpt_model_id, gpt_model_ids),
    ):
        if wanted:
            conditions.append(column.in_(wanted))
    conditions += has_all_links(Output.id, OUTPUT_TAGS, tag_ids)
    conditions += has_all_links(Output.id, OUTPUT_KNOWLEDGE_TYPES, knowledge_type_ids)
    if agent_group_ids:
        conditions.append(Output.custom_gpt_id.in_(custom_gpts_in_groups(agent_group_ids)))
    if development_stage_ids:
        staged = select(Prompt.id).where(
            Prompt.org_id == tenant.org_id, Prompt.development_stage_id.in_(development_stage_ids)
        )
        conditions.append(Output.prompt_id.in_(staged))
    if created_from:
        conditions.append(Output.created_at >= created_from)
    if created_to:
        conditions.append(Output.created_at < created_to)
    return conditions


def list_page(
    session: Session,
    *,
    tenant: Tenant,
    q: str | None,
    prompt_ids: Sequence[uuid.UUID],
    tag_ids: Sequence[uuid.UUID],
    knowledge_type_ids: Sequence[uuid.UUID],
    accuracy_level_ids: Sequence[uuid.UUID],
    custom_gpt_ids: Sequence[uuid.UUID],
    gpt_model_ids: Sequence[uuid.UUID],
    agent_group_ids: Sequence[uuid.UUID],
    development_stage_ids: Sequence[uuid.UUID],
    created_after: datetime | None,
    created_before: datetime | None,
    sort: str,
    cursor: str | None,
    limit: int,
) -> tuple[list[Output], str | None]:
    sort_key = parse_sort(sort, model=Output, allowed=("created_at", "updated_at"))
    stmt = select(Output).where(
        *output_conditions(
            tenant=tenant,
            prompt_ids=prompt_ids,
            tag_ids=tag_ids,
            knowledge_type_ids=knowledge_type_ids,
            accuracy_level_ids=accuracy_level_ids,
            custom_gpt_ids=custom_gpt_ids,
            gpt_model_ids=gpt_model_ids,
            agent_group_ids=agent_group_ids,
            development_stage_ids=development_stage_ids,
            created_from=created_after,
            created_to=created_before,
        )
    )
    if q:
        stmt = stmt.where(
            Output.content.icontains(q, autoescape=True) | Output.notes.icontains(q, autoescape=True)
        )
    rows = (
        session.execute(apply_page(stmt, model=Output, sort=sort_key, cursor=cursor, limit=limit))
        .scalars()
        .all()
    )
    return page_rows(rows, sort=sort_key, limit=limit)
