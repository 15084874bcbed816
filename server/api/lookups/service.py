"""The per-organization lookups: tags, knowledge types, accuracy levels, development stages, GPT models and
agent groups. One generic service, parametrized by the lookup's table; deleting a lookup detaches it from
every record that used it (those records get a new revision, so the change replicates)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from outputhub.common.errors import DuplicateError, NotFoundError
from outputhub.common.names import name_key, normalize_name
from outputhub.server.api.base import (
    Link,
    Tenant,
    allocate_revisions,
    apply_page,
    check_new_ids,
    check_revision,
    get_live,
    mark_unlink_revision,
    new_id,
    page_rows,
    parse_sort,
    reject_nulls,
    stamp_changed,
    stamp_new,
)
from outputhub.server.events import emit_change, row_snapshot
from outputhub.server.storage.tables import (
    AccuracyLevel,
    AgentGroup,
    CustomGpt,
    CustomGptAgentGroup,
    DevelopmentStage,
    GptModel,
    KnowledgeType,
    LookupRow,
    Output,
    OutputKnowledgeType,
    OutputTag,
    Prompt,
    PromptTag,
    ReplicatedRow,
    Tag,
)


@dataclass(frozen=True)
class ColumnRef:
    """A record's scalar reference to a lookup (set to null when the lookup is deleted)."""

    table: type[ReplicatedRow]
    column: str


@dataclass(frozen=True)
class LinkRef:
    """A many-to-many link to a lookup (the link is removed when the lookup is deleted)."""

    link: Link
    parent_table: type[ReplicatedRow]


@dataclass(frozen=True)
class LookupKind:
    slug: str  # URL segment, e.g. "accuracy-levels"
    label: str  # singular, human: "accuracy level"
    table: type[LookupRow]
    ordered: bool = False
    extra_fields: tuple[str, ...] = ()
    references: tuple[ColumnRef | LinkRef, ...] = field(default=())

    @property
    def entity(self) -> str:
        """The event/audit entity name: ``tag``, ``accuracy_level``, ``gpt_model``, ..."""
        return self.label.lower().replace(" ", "_")

    def fields(self) -> tuple[str, ...]:
        return ("name", "description", "position", *self.extra_fields)


PROMPT_TAGS = Link(PromptTag, "prompt_id", "tag_id")
OUTPUT_TAGS = Link(OutputTag, "output_id", "tag_id")
OUTPUT_KNOWLEDGE_TYPES = Link(OutputKnowledgeType, "output_id", "knowledge_type_id")
CUSTOM_GPT_AGENT_GROUPS = Link(CustomGptAgentGroup, "custom_gpt_id", "agent_group_id")


def custom_gpts_in_groups(agent_group_ids: Sequence[uuid.UUID]) -> Select[tuple[uuid.UUID]]:
    """The ids of custom GPTs belonging to any of these agent groups (a subquery)."""
    return select(CUSTOM_GPT_AGENT_GROUPS.parent_col()).where(
        CUSTOM_GPT_AGENT_GROUPS.child_col().in_(agent_group_ids)
    )


KINDS: tuple[LookupKind, ...] = (
    LookupKind("tags", "tag", Tag, references=(LinkRef(PROMPT_TAGS, Prompt), LinkRef(OUTPUT_TAGS, Output))),
    LookupKind(
        "knowledge-types",
        "knowledge type",
        KnowledgeType,
        references=(LinkRef(OUTPUT_KNOWLEDGE_TYPES, Output),),
    ),
    LookupKind(
        "accuracy-levels",
        "accuracy level",
        AccuracyLevel,
        ordered=True,
        extra_fields=("score",),
        references=(ColumnRef(Output, "accuracy_level_id"),),
    ),
    LookupKind(
        "development-stages",
        "development stage",
        DevelopmentStage,
        ordered=True,
        references=(ColumnRef(Prompt, "development_stage_id"),),
    ),
    LookupKind(
        "gpt-models",
        "GPT model",
        GptModel,
        extra_fields=("provider",),
        references=(ColumnRef(CustomGpt, "gpt_model_id"), ColumnRef(Output, "gpt_model_id")),
    ),
    LookupKind(
        "agent-groups", "agent group", AgentGroup, references=(LinkRef(CUSTOM_GPT_AGENT_GROUPS, CustomGpt),)
    ),
)
KIND_BY_TABLE: dict[type[LookupRow], LookupKind] = {k.table: k for k in KINDS}

DEFAULTS: dict[type[LookupRow], list[dict[str, Any]]] = {
    AccuracyLevel: [
        {"name": "Incorrect", "score": 0, "description": "Wrong or misleading."},
        {"name": "Partially correct", "score": 40, "description": "Useful parts, significant errors."},
        {"name": "Mostly correct", "score": 75, "description": "Minor errors or omissions."},
        {"name": "Accurate", "score": 100, "description": "Correct and complete."},
    ],
    DevelopmentStage: [
        {"name": "Idea"},
        {"name": "Draft"},
        {"name": "Testing"},
        {"name": "Production"},
        {"name": "Retired"},
    ],
    KnowledgeType: [
        {"name": "Factual"},
        {"name": "Procedural"},
        {"name": "Conceptual"},
        {"name": "Creative"},
        {"name": "Code"},
    ],
    GptModel: [
        {"name": "GPT-4o", "provider": "OpenAI"},
        {"name": "GPT-4o mini", "provider": "OpenAI"},
        {"name": "GPT-4.1", "provider": "OpenAI"},
        {"name": "o3", "provider": "OpenAI"},
    ],
    AgentGroup: [{"name": "General", "description": "Custom GPTs for everyday work."}],
}


def ensure_unique_name(
    session: Session,
    kind: LookupKind,
    *,
    tenant: Tenant,
    name: str,
    exclude: uuid.UUID | None,
    field_name: str = "body.name",
) -> None:
    """Raise ``DuplicateError`` (409 naming ``field_name``) when another live entry of this kind has the name
    (:func:`name_key`: case and Unicode normal form aside)."""
    table = kind.table
    stmt = select(table.id).where(
        table.org_id == tenant.org_id, table.deleted.is_(False), table.name_key == name_key(name)
    )
    if exclude is not None:
        stmt = stmt.where(table.id != exclude)
    if session.execute(stmt).first():
        raise DuplicateError(field_name, name)


STALE_KEY_PREFIX: Final = " #0013#"
"""Migration 0013 gives a live entry whose name another entry has under the new rule (a "Café" made as NFD
beside one made as NFC before) this key and its id: no name has it (a name's key never starts with a space,
so a tag a user names "#0013#..." is not one; QA), and :func:`repair_stale_keys` finds it."""


def repair_stale_keys(session: Session, kind: LookupKind, *, org_id: uuid.UUID) -> int:
    """Give each live entry of this kind that migration 0013 left without its key (:data:`STALE_KEY_PREFIX`)
    its name's key, where no other live entry holds it (the lowest id first). Called after a rename or a
    delete of a lookup (REST, a push, a conflict's resolution): once one of such a pair is renamed or deleted,
    the other's name stays taken (a second "CAFÉ" was a 201). Returns how many keys it changed."""
    table = kind.table
    live = (table.org_id == org_id, table.deleted.is_(False))
    stale = session.execute(
        select(table.id, table.name)
        .where(*live, table.name_key.startswith(STALE_KEY_PREFIX, autoescape=True))
        .order_by(table.id)
    ).all()
    changed = 0
    for ident, name in stale:
        wanted = name_key(name)
        if session.execute(select(table.id).where(*live, table.name_key == wanted)).first() is None:
            session.execute(update(table).where(table.id == ident).values(name_key=wanted))
            changed += 1
    return changed


def _next_position(session: Session, kind: LookupKind, *, tenant: Tenant) -> int:
    table = kind.table
    current = session.execute(
        select(func.max(table.position)).where(table.org_id == tenant.org_id, table.deleted.is_(False))
    ).scalar_one()
    return 0 if current is None else int(current) + 1


def create(
    session: Session, kind: LookupKind, *, tenant: Tenant, data: dict[str, Any], now: datetime
) -> LookupRow:
    name = normalize_name(data["name"])
    ensure_unique_name(session, kind, tenant=tenant, name=name, exclude=None)
    check_new_ids(session, tenant=tenant, ids=[data.get("id")])
    row = kind.table(id=new_id(data.get("id")), name=name, name_key=name_key(name))
    row.description = data.get("description") or ""
    row.position = (
        data["position"] if data.get("position") is not None else _next_position(session, kind, tenant=tenant)
    )
    for extra in kind.extra_fields:
        if data.get(extra) is not None:
            setattr(row, extra, data[extra])
    stamp_new(row, tenant=tenant, revision=allocate_revisions(session, org_id=tenant.org_id), now=now)
    session.add(row)
    session.flush()
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind=f"{kind.entity}.created",
        entity_id=row.id,
        at=now,
        revision=row.revision,
        after=row_snapshot(row, only=("id", *kind.fields())),
    )
    return row


def seed_defaults(session: Session, *, tenant: Tenant, now: datetime) -> None:
    for table, rows in DEFAULTS.items():
        kind = KIND_BY_TABLE[table]
        for position, values in enumerate(rows):
            create(session, kind, tenant=tenant, data={**values, "position": position}, now=now)


def get(session: Session, kind: LookupKind, *, tenant: Tenant, ident: uuid.UUID) -> LookupRow:
    row = get_live(session, kind.table, tenant=tenant, ident=ident)
    if row is None:
        raise NotFoundError(kind.label, ident)
    return row


def update_one(
    session: Session,
    kind: LookupKind,
    *,
    tenant: Tenant,
    ident: uuid.UUID,
    data: dict[str, Any],
    now: datetime,
    if_match: frozenset[int] | None = None,
) -> LookupRow:
    reject_nulls(data, ("name", "description", "position", *kind.extra_fields))
    row = get(session, kind, tenant=tenant, ident=ident)
    check_revision(row, if_match=if_match)
    before = row_snapshot(row, only=[n for n in kind.fields() if n in data])
    # (its own name as served, sent back with other fields, is no rename: for an entry migration 0013 left
    # without its key, its NFD name in NFC is another's; QA)
    renamed = "name" in data and (stored := normalize_name(data["name"])) != normalize_name(row.name)
    if renamed:
        ensure_unique_name(session, kind, tenant=tenant, name=stored, exclude=row.id)
        row.name = stored
        row.name_key = name_key(stored)
    for name in ("description", "position", *kind.extra_fields):
        if name in data:
            setattr(row, name, data[name])
    stamp_changed(row, tenant=tenant, revision=allocate_revisions(session, org_id=tenant.org_id), now=now)
    session.flush()
    if renamed:
        repair_stale_keys(session, kind, org_id=tenant.org_id)
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind=f"{kind.entity}.updated",
        entity_id=row.id,
        at=now,
        revision=row.revision,
        before=before,
        after=row_snapshot(row, only=list(before)),
    )
    return row


def delete_one(
    session: Session,
    kind: LookupKind,
    *,
    tenant: Tenant,
    ident: uuid.UUID,
    now: datetime,
    if_match: frozenset[int] | None = None,
) -> None:
    row = get(session, kind, tenant=tenant, ident=ident)
    check_revision(row, if_match=if_match)
    revision = allocate_revisions(session, org_id=tenant.org_id)
    take_off_records(session, kind, tenant=tenant, ident=row.id, revision=revision, now=now)
    row.deleted = True
    stamp_changed(row, tenant=tenant, revision=revision, now=now)
    session.flush()
    repair_stale_keys(session, kind, org_id=tenant.org_id)
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind=f"{kind.entity}.deleted",
        entity_id=row.id,
        at=now,
        revision=revision,
        before=row_snapshot(row, only=kind.fields()),
    )


def take_off_records(
    session: Session, kind: LookupKind, *, tenant: Tenant, ident: uuid.UUID, revision: int, now: datetime
) -> None:
    """Take the entry ``ident`` off every live record that names it (stamped with ``revision``): what deleting
    an entry does, through the API or by keeping its delete as a conflict's resolution.

    A deleted record keeps what it named: its sync state cannot take an edit while it is a tombstone, so
    taking the link off its row alone left the row and the state telling two stories once an offline edit
    restored it (REST said no tag, every replica the tag; the check compares revisions and never saw it). A
    restore brings the entry back with it, as for any live record naming a deleted entry.

    The records' derived edit is an unlink (:func:`mark_unlink_revision`): it does not bring back a record a
    replica deleted meanwhile (QA: it did, with a delete conflict)."""
    mark_unlink_revision(session, org_id=tenant.org_id, revision=revision)
    for ref in kind.references:
        if isinstance(ref, ColumnRef):
            col = getattr(ref.table, ref.column)
            session.execute(
                update(ref.table)
                .where(ref.table.org_id == tenant.org_id, col == ident, ref.table.deleted.is_(False))
                .values(
                    {ref.column: None, "revision": revision, "updated_at": now, "updated_by": tenant.actor}
                )
                .execution_options(synchronize_session=False)
            )
        else:
            live = select(ref.parent_table.id).where(
                ref.parent_table.org_id == tenant.org_id, ref.parent_table.deleted.is_(False)
            )
            parents = select(ref.link.parent_col()).where(
                ref.link.table.org_id == tenant.org_id,  # type: ignore[attr-defined]
                ref.link.child_col() == ident,
                ref.link.parent_col().in_(live),
            )
            session.execute(
                update(ref.parent_table)
                .where(ref.parent_table.org_id == tenant.org_id, ref.parent_table.id.in_(parents))
                .values(revision=revision, updated_at=now, updated_by=tenant.actor)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                delete(ref.link.table).where(
                    ref.link.table.org_id == tenant.org_id,  # type: ignore[attr-defined]
                    ref.link.child_col() == ident,
                    ref.link.parent_col().in_(live),
                )
            )


def list_page(
    session: Session,
    kind: LookupKind,
    *,
    tenant: Tenant,
    q: str | None,
    sort: str,
    cursor: str | None,
    limit: int,
) -> tuple[list[LookupRow], str | None]:
    table = kind.table
    sort_key = parse_sort(sort, model=table, allowed=("position", "name", "created_at", "updated_at"))
    stmt = select(table).where(table.org_id == tenant.org_id, table.deleted.is_(False))
    if q:
        stmt = stmt.where(table.name.icontains(q, autoescape=True))
    rows = (
        session.execute(apply_page(stmt, model=table, sort=sort_key, cursor=cursor, limit=limit))
        .scalars()
        .all()
    )
    return page_rows(rows, sort=sort_key, limit=limit)
