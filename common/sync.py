"""Replication wire messages (versioned). See docs/sync-protocol.md."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

PROTOCOL_VERSION = 4
"""What this client speaks. 2: a pulled state may stand for a long text of the record's data with the marker
``{"=": 1}``; 3: a state written by a single operation may come in the uniform form ``{"u": [version,
op_id], "v": {field: value}}``; 4: a push may ask for the changes after a cursor (``pull``), which come back
in its answer (``changes``), read once the push has committed (docs/sync-protocol.md); everything else is
as in 1."""
PULL_WITH_PUSH = 4
"""The first protocol whose push may carry a pull (``PushRequest.pull``; ``changes`` and ``checksums`` in the
answer)."""
SUPPORTED_PROTOCOLS = frozenset({1, 2, 3, PROTOCOL_VERSION})
"""What the server answers: a client of protocol 1 gets full states, one of protocol 2 no uniform form, one
of protocol 3 no pull with its push."""


class PulledRecord(BaseModel):
    entity: str = Field(description="Table name: prompts, outputs, custom_gpts, tags, knowledge_types, ...")
    id: uuid.UUID
    revision: int
    deleted: bool = Field(description="A tombstone: the record was deleted at this revision.")
    data: dict[str, Any] = Field(
        description="The record as the entity's read schema has it (relations included)."
    )
    state: dict[str, Any] | None = Field(
        default=None, description="The sync engine's per-field state (registers and versions), for merging."
    )


class PullPage(BaseModel):
    protocol: int
    records: list[PulledRecord]
    next_since: int = Field(
        description="Pass as `since` for the next page; store it as the replica's cursor."
    )
    has_more: bool
    head: int | None = Field(default=None, description="The organization's newest revision (for progress).")
    remaps: list[Remap] = Field(
        default_factory=list, description="Duplicate lookups merged since `since`: rewrite references."
    )
    purged: list[Purged] = Field(
        default_factory=list,
        description="Records the tombstone purge removed for good at a revision this page covers: drop them "
        "(unless they carry a local edit, which the server will refuse and the replica keeps).",
    )


class PullAlong(BaseModel):
    """Protocol 4: the pull a push asks for (the same parameters as ``GET .../sync/changes``). Strict, as the
    push's ``protocol``: a cursor as text, ``"checksums": "yes"`` or a misspelled parameter (ignored, so
    the pull started from 0) are a 422 naming the field (QA)."""

    model_config = ConfigDict(extra="forbid")

    since: StrictInt = Field(
        ge=0, le=2**63 - 1, description="The last revision the replica has (0: everything)."
    )
    limit: StrictInt = Field(default=1000, ge=1, le=5000, description="At most this many records.")
    checksums: StrictBool = Field(
        default=False,
        description="Also the check's per-table counts and revision sums (`checksums` in the answer, as "
        "`GET .../sync/checksums` gives them), read after the page in the same transaction.",
    )


class PushRequest(BaseModel):
    protocol: StrictInt = Field(description="The protocol version, a JSON number (not text, not true).")
    device: str = Field(min_length=1, max_length=64, description="The replica's node id.")
    changes: list[dict[str, Any]] = Field(
        max_length=1000,
        description="Operations, oldest first: {op_id, entity, id, kind, node, hlc, values, base}; `base` "
        "names, per changed field, the value and the versions the edit was made on (finer than one base "
        "revision per record; see docs/sync-protocol.md).",
    )
    pull: PullAlong | None = Field(
        default=None,
        description="Protocol 4 and later: also answer with the first page of changes after `pull.since`, "
        "read once this push has committed (`changes` in the answer), saving the client a request.",
    )


class OpError(BaseModel):
    code: str = Field(
        description="permission-denied, invalid, unknown-reference, name-taken, clock-drift, ..."
    )
    detail: str
    field: str | None = None

    @field_validator("detail", "field")
    @classmethod
    def _encodable(cls, text: str | None) -> str | None:
        """A detail may quote what was refused; a lone surrogate in it is written as its escape (the answer is
        UTF-8 JSON, which cannot hold one)."""
        return text.encode("utf-8", "backslashreplace").decode() if text is not None else None


class OpResult(BaseModel):
    op_id: str
    status: str = Field(description="applied | merged | conflict | noop | refused")
    entity: str | None = None
    id: str | None = None
    revision: int | None = Field(default=None, description="The record's revision after the operation.")
    conflicts: list[str] = Field(default_factory=list, description="Conflict ids this operation opened.")
    resolved: list[str] = Field(default_factory=list, description="Conflict ids this operation closed.")
    remapped_to: str | None = Field(
        default=None, description="A duplicate lookup: the id of the existing one it was merged into."
    )
    error: OpError | None = None
    replayed: bool = Field(default=False, description="The op id was seen before; this is the first answer.")


class RefusedRecord(BaseModel):
    """A record a refused op named, as the server has it after the push: the replica shows it again."""

    entity: str = Field(description="The op's entity (prompt, output, tag, ...).")
    id: str
    record: PulledRecord | None = Field(
        description="The record as `GET .../sync/records/{table}/{id}` gives it; null: the server has none."
    )


class PushResult(BaseModel):
    protocol: int
    results: list[OpResult]
    refused_records: list[RefusedRecord] = Field(
        default_factory=list,
        description="Each record a refused op of this push named, as the server has it now (read after the "
        "push): a replica resets its copy to it in the transaction that keeps the refused edit, without a "
        "request per record.",
    )
    changes: PullPage | None = Field(
        default=None,
        description="Only when the push asked for `pull`: the page `GET .../sync/changes?since=` would give "
        "right after this push (absent when it could not be read, e.g. a cursor too old: pull then).",
    )
    checksums: Checksums | None = Field(
        default=None,
        description="Only when the pull asked for them (and the page was read): the check's sums.",
    )


class Remap(BaseModel):
    entity: str
    from_id: uuid.UUID
    to_id: uuid.UUID
    revision: int


class Purged(BaseModel):
    entity: str = Field(description="Table name, as a record's `entity`.")
    id: uuid.UUID
    revision: int = Field(description="The purge's revision (newer than every revision the record had).")


class ConflictRead(BaseModel):
    id: uuid.UUID
    entity: str
    record_id: uuid.UUID
    field: str
    kind: str = Field(description="value | text | delete")
    winner: dict[str, Any] = Field(description="The side in place: {version, node, value}.")
    loser: dict[str, Any] = Field(description="The side that did not make it: {version, node, value}.")
    base: Any = Field(description="The value both sides were edited from.")
    opened_at: str
    resolved_at: str | None = None
    resolved_by: str | None = None


class ConflictResolve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep: str | None = Field(
        default=None,
        description="winner | loser (for a delete conflict: winner keeps the record, loser keeps the delete)",
    )
    value: Any = Field(
        default=None, description="An edited merge (instead of keep); not for delete conflicts."
    )
    cascade: bool = Field(
        default=False,
        description="Keeping a prompt's delete (keep=loser) deletes its live outputs too only with this, as "
        "`DELETE /prompts/{id}?cascade=true` does; without it such a resolution is refused (409 in-use) and "
        "names how many outputs it would delete.",
    )


class TableChecksum(BaseModel):
    count: int = Field(description="Records, tombstones included.")
    revision_sum: int = Field(
        description="Sum of their revisions (a cheap check: a missed or stale record shows)."
    )
    digest: str | None = Field(
        default=None, description="SHA-256 of the sorted (id, revision) pairs; only with `full=true`."
    )
    newest: str | None = Field(
        default=None,
        description="`<id>:<revision>` of the record with the highest revision (the smallest id among "
        "records of that revision); null when there is none.",
    )


class Checksums(BaseModel):
    protocol: int
    revision: int
    tables: dict[str, TableChecksum]


PullPage.model_rebuild()
