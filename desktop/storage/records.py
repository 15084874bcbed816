"""Values the replica stores and returns: one frozen dataclass per replicated entity, plus the sync tables.

Ids are canonical UUID strings (client-generated, so offline creation works). Timestamps are timezone-aware
``datetime`` values; they are stored as UTC ISO-8601 text (so text order is time order). ``base`` and
``field_clocks`` are JSON objects whose content belongs to the sync layer; the replica only stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeAlias

JsonObject: TypeAlias = dict[str, Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


class LocalStatus(StrEnum):
    """Where a row stands relative to the server."""

    CREATED = "created"  # made here, never pushed
    UPDATED = "updated"  # edited here since the last sync
    DELETED = "deleted"  # tombstoned here, delete not pushed yet
    SYNCED = "synced"  # equal to the server version ``revision``


class LookupKind(StrEnum):
    """The lookup (taxonomy) tables; the value is the table name."""

    TAGS = "tags"
    KNOWLEDGE_TYPES = "knowledge_types"
    ACCURACY_LEVELS = "accuracy_levels"
    DEVELOPMENT_STAGES = "development_stages"
    GPT_MODELS = "gpt_models"
    AGENT_GROUPS = "agent_groups"


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplicatedRecord:
    """The columns every replicated row carries."""

    id: str
    org_id: str
    revision: int | None = None  # server-assigned; None until the row has been synced
    deleted: bool = False  # tombstone
    local_status: LocalStatus = LocalStatus.CREATED
    base: JsonObject | None = None  # the server version this row was edited from
    field_clocks: JsonObject = field(default_factory=dict)
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    created_by: str = ""
    updated_by: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class PromptRecord(ReplicatedRecord):
    title: str
    body: str
    description: str = ""
    development_stage_id: str | None = None
    tag_ids: tuple[str, ...] = ()
    version: int = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class PromptVersionRecord(ReplicatedRecord):
    prompt_id: str
    version: int
    title: str
    body: str


@dataclass(frozen=True, kw_only=True, slots=True)
class OutputRecord(ReplicatedRecord):
    prompt_id: str
    content: str
    notes: str = ""
    custom_gpt_id: str | None = None
    gpt_model_id: str | None = None
    accuracy_level_id: str | None = None
    produced_at: datetime | None = None
    tag_ids: tuple[str, ...] = ()
    knowledge_type_ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class CustomGptRecord(ReplicatedRecord):
    name: str
    description: str = ""
    instructions: str = ""
    gpt_model_id: str | None = None
    agent_group_ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class LookupRecord(ReplicatedRecord):
    """A row of any lookup table. ``score`` is stored only for accuracy levels and ``provider`` only for GPT
    models; for the other kinds they must stay ``None``."""

    name: str
    description: str = ""
    position: int = 0
    score: int | None = None
    provider: str | None = None


SearchEntity: TypeAlias = Literal["prompt", "output"]


@dataclass(frozen=True, slots=True)
class SearchHit:
    entity: SearchEntity
    id: str
    snippet: str
    rank: float  # bm25: lower is better; 0.0 when the matches are listed newest first (too many to rank)


@dataclass(frozen=True, slots=True)
class MatchCount:
    """How many live rows match a search, counted up to a cap: a huge match set is never counted through."""

    count: int
    capped: bool  # at least ``count`` rows match (shown as "1,000+")
    ranked: bool  # the hits are ranked by relevance; otherwise listed newest first
    unindexed: int = 0  # rows of the table not in the full-text index yet (a large pull's backlog)

    def __str__(self) -> str:
        return f"{self.count:,}+" if self.capped else f"{self.count:,}"


@dataclass(frozen=True, slots=True)
class SyncState:
    server_url: str
    org_id: str
    cursor: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int  # push order
    op_id: str
    entity: str
    record_id: str
    payload: JsonObject
    base_revision: int | None
    created_at: datetime
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    id: str
    entity: str
    record_id: str
    field: str
    base: Any  # JSON values
    mine: Any
    theirs: Any
    created_at: datetime
    resolved_at: datetime | None
