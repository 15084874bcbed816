"""ORM tables: the server's storage (PostgreSQL is the system of record; SQLite the embedded default).

These are storage types only. API schemas live in ``outputhub.common.schemas``; services translate.
Every tenant-scoped table carries ``org_id``; on PostgreSQL row-level security enforces it a second time
(see the initial migration).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator, Uuid

from outputhub.common.limits import NAME_KEY_MAX

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite stores them naive; we re-attach UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TS = UTCDateTime()


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)
    created_by: Mapped[str] = mapped_column(String(64))


class AuthSession(Base):
    """A login: the refresh token (hashed, rotated on use) and the revocation switch for its access tokens."""

    __tablename__ = "auth_sessions"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    refresh_hash: Mapped[str] = mapped_column(String(64), unique=True)
    previous_refresh_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(TS)
    expires_at: Mapped[datetime] = mapped_column(TS)
    last_used_at: Mapped[datetime] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
    rotation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many times the refresh token was rotated; access tokens name the rotation that issued them."""
    rotation_seen: Mapped[bool] = mapped_column(Boolean, default=False, server_default=true())
    """An access token of the newest rotation was used: the client has its answer (migration 0012)."""


class OrgRevision(Base):
    """The per-tenant monotonic revision counter: the sync cursor and the ETag of every row at once."""

    __tablename__ = "org_revisions"
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    revision: Mapped[int] = mapped_column(BigInteger, default=0)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("org_id", "user_id"),)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)


class Invitation(Base):
    __tablename__ = "invitations"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TS)
    expires_at: Mapped[datetime] = mapped_column(TS)
    accepted_at: Mapped[datetime | None] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TS)
    last_used_at: Mapped[datetime | None] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)


class ReplicatedRow:
    """Columns every replicated, tenant-scoped row carries (see ARCHITECTURE.md rule 2)."""

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)

    @declared_attr
    @classmethod
    def org_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))

    revision: Mapped[int] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)
    created_by: Mapped[str] = mapped_column(String(64))
    updated_by: Mapped[str] = mapped_column(String(64))

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[object, ...]:
        return (
            Index(f"ix_{cls.__tablename__}_org_revision", "org_id", "revision"),  # type: ignore[attr-defined]
            Index(f"ix_{cls.__tablename__}_org_created", "org_id", "created_at", "id"),  # type: ignore[attr-defined]
            *cls.extra_table_args(),
        )

    @classmethod
    def extra_table_args(cls) -> tuple[object, ...]:
        return ()


class LookupRow(ReplicatedRow):
    """A per-organization lookup: tags, knowledge types, accuracy levels, development stages, ..."""

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)

    @classmethod
    def extra_table_args(cls) -> tuple[object, ...]:
        name = cls.__tablename__  # type: ignore[attr-defined]
        where = text("deleted = false")
        return (
            Index(
                f"uq_{name}_org_name",
                "org_id",
                "name_key",
                unique=True,
                postgresql_where=where,
                sqlite_where=where,
            ),
        )

    name_key: Mapped[str] = mapped_column(String(NAME_KEY_MAX))
    """The name's key (``common/names.py``): names are unique per organization whatever their case or Unicode
    normal form. Longer than the name: case folding writes some letters longer ("ß" as "ss")."""


class Tag(LookupRow, Base):
    __tablename__ = "tags"


class KnowledgeType(LookupRow, Base):
    __tablename__ = "knowledge_types"


class AccuracyLevel(LookupRow, Base):
    __tablename__ = "accuracy_levels"
    score: Mapped[int] = mapped_column(Integer, default=0)
    """0 (wrong) .. 100 (fully accurate); the analytics accuracy alerts compare against it."""


class DevelopmentStage(LookupRow, Base):
    __tablename__ = "development_stages"


class GptModel(LookupRow, Base):
    __tablename__ = "gpt_models"
    provider: Mapped[str] = mapped_column(String(100), default="")


class AgentGroup(LookupRow, Base):
    __tablename__ = "agent_groups"


class CustomGpt(ReplicatedRow, Base):
    __tablename__ = "custom_gpts"
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    instructions: Mapped[str] = mapped_column(Text, default="")
    gpt_model_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("gpt_models.id"), index=True)


class CustomGptAgentGroup(Base):
    __tablename__ = "custom_gpt_agent_groups"
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    custom_gpt_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("custom_gpts.id", ondelete="CASCADE"), primary_key=True
    )
    agent_group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agent_groups.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Prompt(ReplicatedRow, Base):
    __tablename__ = "prompts"
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    development_stage_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("development_stages.id"), index=True
    )
    version: Mapped[int] = mapped_column(Integer, default=1)


class PromptVersion(Base):
    """An immutable snapshot, written whenever a prompt's title or text changes."""

    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "version"),)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    prompt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TS)
    created_by: Mapped[str] = mapped_column(String(64))


class PromptTag(Base):
    __tablename__ = "prompt_tags"
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    prompt_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Output(ReplicatedRow, Base):
    __tablename__ = "outputs"
    prompt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prompts.id"), index=True)
    content: Mapped[str] = mapped_column(Text)
    notes: Mapped[str] = mapped_column(Text, default="")
    custom_gpt_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("custom_gpts.id"), index=True)
    gpt_model_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("gpt_models.id"), index=True)
    accuracy_level_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accuracy_levels.id"), index=True)
    produced_at: Mapped[datetime | None] = mapped_column(TS)


class OutputTag(Base):
    __tablename__ = "output_tags"
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    output_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("outputs.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class OutputKnowledgeType(Base):
    __tablename__ = "output_knowledge_types"
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    output_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("outputs.id", ondelete="CASCADE"), primary_key=True
    )
    knowledge_type_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("knowledge_types.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class SyncRecordState(Base):
    """The replication state of one record (the sync engine's per-field registers, as JSON).

    ``revision`` is the row revision the state was stored at; a row edited through the REST API since then
    has a newer revision, and the sync layer derives the server's edit from the difference.
    """

    __tablename__ = "sync_record_states"
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    record_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    entity: Mapped[str] = mapped_column(String(32))
    revision: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(Text)
    data: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The record's pull-feed ``data`` (its read schema as JSON text), built when the transaction that wrote
    the record committed; valid while ``revision`` is the row's. NULL: the feed builds it on the fly."""
    wire: Mapped[str | None] = mapped_column(Text, nullable=True)
    """``state`` as a protocol 2 pull sends it: long texts equal to the record's data replaced by the marker
    ``{"=": 1}``; written with ``state`` every time; NULL when no value qualifies."""


SYNC_OP_ENTITY_MAX = 32
SYNC_OP_TEXT_MAX = 64
"""The lengths of a remembered op's entity, and of its record id and device (what a push names there is cut
to them: a refused op may name an entity or id of any length; its result keeps them whole)."""


class SyncOp(Base):
    """A pushed operation the server has handled: replaying its op id returns this result."""

    __tablename__ = "sync_ops"
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    op_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entity: Mapped[str] = mapped_column(String(SYNC_OP_ENTITY_MAX))
    record_id: Mapped[str] = mapped_column(String(SYNC_OP_TEXT_MAX))
    device: Mapped[str] = mapped_column(String(SYNC_OP_TEXT_MAX))
    result: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TS)


class SyncConflict(Base):
    """An open (or resolved) merge conflict, mirrored from the record states for listing."""

    __tablename__ = "sync_conflicts"
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    entity: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    field: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(TS)
    opened_revision: Mapped[int] = mapped_column(BigInteger)
    resolved_at: Mapped[datetime | None] = mapped_column(TS)
    resolved_by: Mapped[str | None] = mapped_column(String(64))


class SyncRemap(Base):
    """A lookup created twice offline (same name): ``from_id`` was merged into ``to_id``."""

    __tablename__ = "sync_remaps"
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    from_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    to_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    entity: Mapped[str] = mapped_column(String(32))
    revision: Mapped[int] = mapped_column(BigInteger, index=True)


class SyncHorizon(Base):
    """Tombstones at or below ``revision`` have been purged: older cursors must resynchronize."""

    __tablename__ = "sync_horizons"
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    revision: Mapped[int] = mapped_column(BigInteger, default=0)


class SyncPurge(Base):
    """A record the tombstone purge removed for good, at the purge's own ``revision``: pulls after a cursor
    below it name the record (``purged`` in the page), so that a replica drops its copy instead of finding
    the difference at its check and pulling everything again. Forgotten by a later purge once older than
    its retention; the horizon then rises past ``revision``."""

    __tablename__ = "sync_purges"
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    record_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    entity: Mapped[str] = mapped_column(String(32))
    purged_at: Mapped[datetime] = mapped_column(TS)


REPLICATED_TABLES: tuple[str, ...] = (
    "tags",
    "knowledge_types",
    "accuracy_levels",
    "development_stages",
    "gpt_models",
    "agent_groups",
    "custom_gpts",
    "prompts",
    "outputs",
)
"""The tables of :class:`ReplicatedRow` records (what the sync check counts)."""


def sums_columns(table: str) -> tuple[str, str]:
    """The ``sync_sums`` columns that hold ``table``'s row count and the sum of its rows' revisions."""
    return f"{table}_count", f"{table}_revisions"


SYNC_SUMS = Table(
    "sync_sums",
    Base.metadata,
    Column("org_id", ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True),
    *(
        Column(name, BigInteger, nullable=False, default=0, server_default="0")
        for table in REPLICATED_TABLES
        for name in sums_columns(table)
    ),
)
"""Per organization, every replicated table's row count (tombstones included) and revision sum: what the
sync check answers, kept by database triggers on those tables (migration 0011) in the writing transaction,
so that the check reads one row instead of counting and summing every record after each write."""

SYNC_TABLES: tuple[str, ...] = (
    "sync_record_states",
    "sync_ops",
    "sync_conflicts",
    "sync_remaps",
    "sync_horizons",
    "sync_sums",
    "sync_purges",
)

TENANT_TABLES: tuple[str, ...] = (
    "org_revisions",
    "memberships",
    "invitations",
    "api_keys",
    *REPLICATED_TABLES,
    "custom_gpt_agent_groups",
    "prompt_versions",
    "prompt_tags",
    "output_tags",
    "output_knowledge_types",
    *SYNC_TABLES,
)
"""Tables under row-level security on PostgreSQL (all carry ``org_id``)."""
