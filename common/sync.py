"""Replication wire messages (versioned). See docs/sync-protocol.md."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field

PROTOCOL_VERSION = 1
SUPPORTED_PROTOCOLS = frozenset({PROTOCOL_VERSION})


class PulledRecord(BaseModel):
    entity: str = Field(description="Table name: prompts, outputs, custom_gpts, tags, knowledge_types, ...")
    id: uuid.UUID
    revision: int
    deleted: bool = Field(description="A tombstone: the record was deleted at this revision.")
    data: dict[str, Any] = Field(
        description="The record as the entity's read schema has it (relations included)."
    )


class PullPage(BaseModel):
    protocol: int
    records: list[PulledRecord]
    next_since: int = Field(
        description="Pass as `since` for the next page; store it as the replica's cursor."
    )
    has_more: bool
