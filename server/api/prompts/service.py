"""The prompt library: prompts with a development stage and project tags, immutable versions and diffs."""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from outputhub.common.errors import InUseError, NotFoundError
from outputhub.common.ids import new_uuid
from outputhub.common.schemas import DiffHunk, PromptCreate, PromptDiff, PromptRead
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
from outputhub.server.api.lookups.service import (
    OUTPUT_KNOWLEDGE_TYPES,
    PROMPT_TAGS,
    custom_gpts_in_groups,
)
from outputhub.server.events import emit_change, row_snapshot
from outputhub.server.storage.tables import DevelopmentStage, Output, Prompt, PromptVersion, Tag

SCALARS = ("title", "body", "description", "development_stage_id")


def _columns(row: Prompt) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in Prompt.__table__.columns}


def to_read(session: Session, *, tenant: Tenant, rows: Sequence[Prompt]) -> list[PromptRead]:
    tags = load_links(session, PROMPT_TAGS, tenant=tenant, parent_ids=[r.id for r in rows])
    return [PromptRead.model_validate({**_columns(r), "tag_ids": tags[r.id]}) for r in rows]


def _check(session: Session, *, tenant: Tenant, data: dict[str, Any]) -> None:
    if "development_stage_id" in data:
        check_refs(
            session,
            DevelopmentStage,
            tenant=tenant,
            ids=[data["development_stage_id"]],
            field="body.development_stage_id",
        )
    if data.get("tag_ids"):
        check_refs(session, Tag, tenant=tenant, ids=data["tag_ids"], field="body.tag_ids")


def _snapshot(session: Session, row: Prompt, *, tenant: Tenant, now: datetime) -> None:
    session.add(
        PromptVersion(
            id=new_uuid(),
            org_id=tenant.org_id,
            prompt_id=row.id,
            version=row.version,
            title=row.title,
            body=row.body,
            created_at=now,
            created_by=tenant.actor,
        )
    )


def get(session: Session, *, tenant: Tenant, ident: uuid.UUID) -> Prompt:
    row = get_live(session, Prompt, tenant=tenant, ident=ident)
    if row is None:
        raise NotFoundError("prompt", ident)
    return row


def create(session: Session, *, tenant: Tenant, data: PromptCreate, now: datetime) -> Prompt:
    values = data.model_dump()
    _check(session, tenant=tenant, data=values)
    check_new_ids(session, tenant=tenant, ids=[data.id])
    row = Prompt(id=new_id(data.id), version=1, **{k: values[k] for k in SCALARS})
    stamp_new(row, tenant=tenant, revision=allocate_revisions(session, org_id=tenant.org_id), now=now)
    session.add(row)
    session.flush()
    replace_links(session, PROMPT_TAGS, tenant=tenant, parent_id=row.id, child_ids=data.tag_ids)
    _snapshot(session, row, tenant=tenant, now=now)
    session.flush()
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="prompt.created",
        entity_id=row.id,
        at=now,
        revision=row.revision,
        after=row_snapshot(row, extra={"tag_ids": data.tag_ids}),
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
) -> Prompt:
    """Apply the fields present in ``data``; a change of title or text adds an immutable version."""
    reject_nulls(data, ("title", "body", "description", "tag_ids"))
    row = get(session, tenant=tenant, ident=ident)
    check_revision(row, if_match=if_match)
    _check(session, tenant=tenant, data=data)
    text_changed = any(name in data and data[name] != getattr(row, name) for name in ("title", "body"))
    changed = [name for name in (*SCALARS, "tag_ids") if name in data]
    before = row_snapshot(row, only=[n for n in changed if n in SCALARS], extra={"version": row.version})
    if "tag_ids" in data:
        before["tag_ids"] = [
            str(t) for t in load_links(session, PROMPT_TAGS, tenant=tenant, parent_ids=[row.id])[row.id]
        ]
    for name in SCALARS:
        if name in data:
            setattr(row, name, data[name])
    if "tag_ids" in data:
        replace_links(session, PROMPT_TAGS, tenant=tenant, parent_id=row.id, child_ids=data["tag_ids"])
    if text_changed:
        row.version += 1
        _snapshot(session, row, tenant=tenant, now=now)
    stamp_changed(row, tenant=tenant, revision=allocate_revisions(session, org_id=tenant.org_id), now=now)
    session.flush()
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="prompt.updated",
        entity_id=row.id,
        at=now,
        revision=row.revision,
        before=before,
        after={**{n: data[n] for n in changed}, "version": row.version},
    )
    return row


def delete_one(
    session: Session,
    *,
    tenant: Tenant,
    ident: uuid.UUID,
    cascade: bool,
    now: datetime,
    if_match: frozenset[int] | None = None,
) -> int:
    """Tombstone the prompt; its outputs too only with ``cascade``, else a prompt with outputs stays (409)."""
    row = get(session, tenant=tenant, ident=ident)
    check_revision(row, if_match=if_match)
    live_outputs = select(Output.id).where(
        Output.org_id == tenant.org_id, Output.prompt_id == row.id, Output.deleted.is_(False)
    )
    count = len(session.execute(live_outputs).all())
    if count and not cascade:
        raise InUseError(f"the prompt has {count} outputs; delete them first or pass cascade=true")
    revision = allocate_revisions(session, org_id=tenant.org_id)
    if count:
        delete_outputs(session, tenant=tenant, prompt_id=row.id, revision=revision, now=now)
    row.deleted = True
    stamp_changed(row, tenant=tenant, revision=revision, now=now)
    session.flush()
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="prompt.deleted",
        entity_id=row.id,
        at=now,
        revision=revision,
        before=row_snapshot(row, only=SCALARS),
        details={"outputs_deleted": count},
    )
    return count


def delete_outputs(
    session: Session, *, tenant: Tenant, prompt_id: uuid.UUID, revision: int, now: datetime
) -> None:
    """Tombstone the prompt's live outputs (stamped with ``revision``): what deleting a prompt with
    ``cascade`` does, and keeping a prompt's delete as a conflict's resolution."""
    session.execute(
        update(Output)
        .where(Output.org_id == tenant.org_id, Output.prompt_id == prompt_id, Output.deleted.is_(False))
        .values(deleted=True, revision=revision, updated_at=now, updated_by=tenant.actor)
        .execution_options(synchronize_session=False)
    )


def list_page(
    session: Session,
    *,
    tenant: Tenant,
    q: str | None,
    tag_ids: Sequence[uuid.UUID],
    development_stage_ids: Sequence[uuid.UUID],
    accuracy_level_ids: Sequence[uuid.UUID],
    knowledge_type_ids: Sequence[uuid.UUID],
    custom_gpt_ids: Sequence[uuid.UUID],
    gpt_model_ids: Sequence[uuid.UUID],
    agent_group_ids: Sequence[uuid.UUID],
    sort: str,
    cursor: str | None,
    limit: int,
) -> tuple[list[Prompt], str | None]:
    """Prompts matching every given filter. Output-side filters match prompts having such an output."""
    sort_key = parse_sort(sort, model=Prompt, allowed=("created_at", "updated_at", "title"))
    stmt = select(Prompt).where(Prompt.org_id == tenant.org_id, Prompt.deleted.is_(False))
    if q:
        stmt = stmt.where(
            Prompt.title.icontains(q, autoescape=True)
            | Prompt.body.icontains(q, autoescape=True)
            | Prompt.description.icontains(q, autoescape=True)
        )
    if development_stage_ids:
        stmt = stmt.where(Prompt.development_stage_id.in_(development_stage_ids))
    for condition in has_all_links(Prompt.id, PROMPT_TAGS, tag_ids):
        stmt = stmt.where(condition)
    if accuracy_level_ids or knowledge_type_ids or custom_gpt_ids or gpt_model_ids or agent_group_ids:
        outputs = select(Output.id).where(
            Output.org_id == tenant.org_id, Output.prompt_id == Prompt.id, Output.deleted.is_(False)
        )
        if accuracy_level_ids:
            outputs = outputs.where(Output.accuracy_level_id.in_(accuracy_level_ids))
        if custom_gpt_ids:
            outputs = outputs.where(Output.custom_gpt_id.in_(custom_gpt_ids))
        if gpt_model_ids:
            outputs = outputs.where(Output.gpt_model_id.in_(gpt_model_ids))
        for condition in has_all_links(Output.id, OUTPUT_KNOWLEDGE_TYPES, knowledge_type_ids):
            outputs = outputs.where(condition)
        if agent_group_ids:
            outputs = outputs.where(Output.custom_gpt_id.in_(custom_gpts_in_groups(agent_group_ids)))
        stmt = stmt.where(outputs.exists())
    rows = (
        session.execute(apply_page(stmt, model=Prompt, sort=sort_key, cursor=cursor, limit=limit))
        .scalars()
        .all()
    )
    return page_rows(rows, sort=sort_key, limit=limit)


def list_versions(session: Session, *, tenant: Tenant, ident: uuid.UUID) -> list[PromptVersion]:
    get(session, tenant=tenant, ident=ident)
    return list(
        session.execute(
            select(PromptVersion)
            .where(PromptVersion.org_id == tenant.org_id, PromptVersion.prompt_id == ident)
            .order_by(PromptVersion.version.desc())
        ).scalars()
    )


def get_version(session: Session, *, tenant: Tenant, ident: uuid.UUID, version: int) -> PromptVersion:
    get(session, tenant=tenant, ident=ident)
    row = session.execute(
        select(PromptVersion).where(
            PromptVersion.org_id == tenant.org_id,
            PromptVersion.prompt_id == ident,
            PromptVersion.version == version,
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError("prompt version", version)
    return row


def diff(
    session: Session, *, tenant: Tenant, ident: uuid.UUID, from_version: int, to_version: int
) -> PromptDiff:
    get(session, tenant=tenant, ident=ident)
    versions = {
        v.version: v
        for v in session.execute(
            select(PromptVersion).where(
                PromptVersion.org_id == tenant.org_id,
                PromptVersion.prompt_id == ident,
                PromptVersion.version.in_((from_version, to_version)),
            )
        ).scalars()
    }
    for field, number in (("query.from", from_version), ("query.to", to_version)):
        if number not in versions:
            raise NotFoundError("prompt version", number, field_name=field)
    old, new = versions[from_version], versions[to_version]
    old_lines, new_lines = old.body.splitlines(), new.body.splitlines()
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    hunks = [
        DiffHunk(
            op=op, old_start=i1 + 1, old_lines=old_lines[i1:i2], new_start=j1 + 1, new_lines=new_lines[j1:j2]
        )  # type: ignore[arg-type]
        for op, i1, i2, j1, j2 in matcher.get_opcodes()
    ]
    unified = "\n".join(
        difflib.unified_diff(old_lines, new_lines, f"v{from_version}", f"v{to_version}", lineterm="")
    )
    return PromptDiff(
        prompt_id=ident,
        from_version=from_version,
        to_version=to_version,
        title_from=old.title,
        title_to=new.title,
        unified=unified,
        hunks=hunks,
    )
