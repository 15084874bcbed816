"""API schemas: one family per entity (XCreate / XUpdate / XRead / XPage).

Create schemas accept an optional client-generated ``id`` (offline creation depends on it). Update schemas
are partial: only the fields present in the request change; ``null`` clears an optional reference.
Unknown fields are rejected, so a typo is a 422 naming the field rather than a silent no-op.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from outputhub.common.limits import (
    LONG_TEXT_MAX,
    MEMBERS_MAX,
    NAME_MAX,
    POSITION_MAX,
    SHORT_TEXT_MAX,
    TITLE_MAX,
)
from outputhub.common.names import has_visible, normalize_name
from outputhub.common.roles import ApiKeyScope, Role

T = TypeVar("T")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX)]


def _stored_name(value: object) -> object:
    """A lookup name as it is stored (anything else is left for the type check to refuse). One that only its
    stored form makes too long says so: "at most 200 characters" of a name of 200 was a riddle (QA)."""
    if not isinstance(value, str):
        return value
    if value.strip() and not has_visible(value):
        raise ValueError("shows nothing: it holds only spaces and invisible characters (such as U+200B)")
    stored = normalize_name(value)
    if len(stored) > NAME_MAX >= len(value.strip()):
        raise ValueError(
            f"is {len(stored)} characters once stored in Unicode NFC (the form names are kept in), and a "
            f"name may have {NAME_MAX}"
        )
    return stored


LookupName = Annotated[Name, BeforeValidator(_stored_name)]
"""A lookup's name: stored stripped and in Unicode NFC (``common/names.py``), its length checked as stored
(NFC writes some letters longer: 200 U+0958 are 400 characters)."""
LongText = Annotated[str, StringConstraints(max_length=LONG_TEXT_MAX)]
NonEmptyLongText = Annotated[str, StringConstraints(min_length=1, max_length=LONG_TEXT_MAX)]
ShortText = Annotated[str, StringConstraints(max_length=SHORT_TEXT_MAX)]
Password = Annotated[str, StringConstraints(min_length=10, max_length=256)]
IdList = Annotated[list[uuid.UUID], Field(max_length=MEMBERS_MAX)]

UTC_RANGE_MESSAGE = "must be between 0001-01-01 and 9999-12-31 in UTC"


def to_utc(value: datetime) -> datetime:
    """The same instant in UTC (a naive date-time is taken as UTC). An offset that carries it past the first
    or the last day a ``datetime`` holds (``0001-01-01T00:00:00+14:00``) is a ``ValueError`` here, where it
    names the field, instead of an ``OverflowError`` wherever it is first converted (a database bind, a
    comparison with an aware date-time)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(UTC_RANGE_MESSAGE) from exc


UtcDateTime = Annotated[datetime, AfterValidator(to_utc)]
"""Every date-time the API takes (bodies and query parameters): ISO 8601, UTC if naive, converted to UTC;
one that is no date-time in UTC is a 422 naming the field."""


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page."
    )


class RowMeta(BaseModel):
    id: uuid.UUID
    revision: int = Field(description="Per-organization monotonic revision: the sync cursor and the ETag.")
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str


# --- auth -------------------------------------------------------------------------------------------------


class RegisterRequest(Input):
    email: EmailStr
    password: Password
    display_name: Name


class LoginRequest(Input):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class RefreshRequest(Input):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    created_at: datetime


# --- organizations, members, invitations, API keys ----------------------------------------------------------


class OrgCreate(Input):
    id: uuid.UUID | None = None
    name: Name
    seed_defaults: bool = Field(
        default=True, description="Create the default accuracy levels, stages, knowledge types, models."
    )


class OrgUpdate(Input):
    name: Name


class OrgRead(BaseModel):
    id: uuid.UUID
    name: str
    role: Role = Field(description="The caller's role in this organization.")
    created_at: datetime


class MemberRead(BaseModel):
    user_id: uuid.UUID
    email: str
    display_name: str
    role: Role
    created_at: datetime


class MemberUpdate(Input):
    role: Role


class InvitationCreate(Input):
    email: EmailStr
    role: Role = Role.VIEWER


class InvitationRead(BaseModel):
    id: uuid.UUID
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None


class InvitationCreated(InvitationRead):
    token: str = Field(description="Give this to the invitee; it is shown only once.")


class InvitationAccept(Input):
    token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class ApiKeyCreate(Input):
    name: Name
    scope: ApiKeyScope = ApiKeyScope.READ


class ApiKeyRead(BaseModel):
    id: uuid.UUID
    name: str
    scope: ApiKeyScope
    prefix: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret key, shown only once. Send it as `Authorization: Bearer <key>`.")


# --- lookups ------------------------------------------------------------------------------------------------


class LookupCreate(Input):
    id: uuid.UUID | None = None
    name: LookupName
    description: ShortText = ""
    # strict: true was taken as 1 (QA), where a sync push refuses a boolean
    position: int | None = Field(
        default=None, ge=0, le=POSITION_MAX, strict=True, description="Order on ordered scales."
    )


class LookupUpdate(Input):
    name: LookupName | None = None
    description: ShortText | None = None
    position: int | None = Field(default=None, ge=0, le=POSITION_MAX, strict=True)


class LookupRead(RowMeta):
    name: str
    description: str
    position: int


class AccuracyLevelCreate(LookupCreate):
    score: int = Field(default=0, ge=0, le=100, strict=True, description="0 = wrong .. 100 = fully accurate.")


class AccuracyLevelUpdate(LookupUpdate):
    score: int | None = Field(default=None, ge=0, le=100, strict=True)


class AccuracyLevelRead(LookupRead):
    score: int


class GptModelCreate(LookupCreate):
    provider: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""


class GptModelUpdate(LookupUpdate):
    provider: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None


class GptModelRead(LookupRead):
    provider: str


# --- custom GPTs --------------------------------------------------------------------------------------------


class CustomGptCreate(Input):
    id: uuid.UUID | None = None
    name: Name
    description: ShortText = ""
    instructions: LongText = ""
    gpt_model_id: uuid.UUID | None = None
    agent_group_ids: IdList = Field(default_factory=list)


class CustomGptUpdate(Input):
    name: Name | None = None
    description: ShortText | None = None
    instructions: LongText | None = None
    gpt_model_id: uuid.UUID | None = None
    agent_group_ids: IdList | None = None


class CustomGptRead(RowMeta):
    name: str
    description: str
    instructions: str
    gpt_model_id: uuid.UUID | None
    agent_group_ids: list[uuid.UUID]


# --- prompts ------------------------------------------------------------------------------------------------


class PromptCreate(Input):
    id: uuid.UUID | None = None
    title: Title
    body: NonEmptyLongText
    description: ShortText = ""
    development_stage_id: uuid.UUID | None = None
    tag_ids: IdList = Field(default_factory=list, description="Project tags.")


class PromptUpdate(Input):
    title: Title | None = None
    body: NonEmptyLongText | None = None
    description: ShortText | None = None
    development_stage_id: uuid.UUID | None = None
    tag_ids: IdList | None = None


class PromptRead(RowMeta):
    title: str
    body: str
    description: str
    development_stage_id: uuid.UUID | None
    tag_ids: list[uuid.UUID]
    version: int = Field(description="Current version number; every change of title or text adds one.")


class PromptVersionRead(BaseModel):
    version: int
    title: str
    body: str
    created_at: datetime
    created_by: str


class DiffHunk(BaseModel):
    op: Literal["equal", "insert", "delete", "replace"]
    old_start: int
    old_lines: list[str]
    new_start: int
    new_lines: list[str]


class PromptDiff(BaseModel):
    prompt_id: uuid.UUID
    from_version: int
    to_version: int
    title_from: str
    title_to: str
    unified: str = Field(description="The body change as a unified diff.")
    hunks: list[DiffHunk] = Field(description="Line-level operations, for side-by-side display.")


# --- outputs ------------------------------------------------------------------------------------------------


METADATA_MAX_BYTES = 64 * 1024
METADATA_MAX_DEPTH = 20
METADATA_INT_MIN = -(2**63)
METADATA_INT_MAX = 2**63 - 1


def _check_metadata(value: Any, *, path: str = "", depth: int = 0) -> None:
    """Keys a document store can hold: no ``$`` prefix, no dots, no NUL; bounded nesting; numbers every store
    and JSON itself can carry: integers of 64 bits (signed, as BSON has them) and finite floats."""
    if depth > METADATA_MAX_DEPTH:
        raise ValueError(f"nested deeper than {METADATA_MAX_DEPTH} levels at {path or 'the top'}")
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"key {key!r} at {path or 'the top'}"
            if not key:
                raise ValueError(f"{where}: keys may not be empty")
            if key.startswith("$"):
                raise ValueError(f"{where}: keys may not start with $")
            if "." in key:
                raise ValueError(f"{where}: keys may not contain dots")
            if "\x00" in key:
                raise ValueError(f"{where}: keys may not contain a NUL character (U+0000)")
            _check_metadata(item, path=f"{path}.{key}" if path else key, depth=depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_metadata(item, path=f"{path}[{index}]", depth=depth + 1)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not METADATA_INT_MIN <= value <= METADATA_INT_MAX:
            raise ValueError(
                f"the integer at {path or 'the top'} does not fit in 64 bits"
                f" ({METADATA_INT_MIN} .. {METADATA_INT_MAX})"
            )
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"the number at {path or 'the top'} is not finite ({value}); JSON cannot carry it")


class TranscriptMessage(Input):
    role: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = Field(
        description="system, user, assistant, tool, ..."
    )
    content: LongText
    name: Annotated[str, StringConstraints(max_length=200)] | None = None


class TokenUsage(Input):
    prompt_tokens: int = Field(ge=0, le=10**9)
    completion_tokens: int = Field(ge=0, le=10**9)
    total_tokens: int | None = Field(default=None, ge=0, le=2 * 10**9, description="Default: the sum.")

    @model_validator(mode="after")
    def _total(self) -> TokenUsage:
        if self.total_tokens is None:
            self.total_tokens = self.prompt_tokens + self.completion_tokens
        return self


class OutputBodyFields(Input):
    """The body of an output, kept as a document (MongoDB or the embedded store), not in the SQL row."""

    transcript: Annotated[list[TranscriptMessage], Field(max_length=10_000)] | None = Field(
        default=None, description="The raw conversation that produced the output."
    )
    token_usage: TokenUsage | None = None
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"Any JSON object an integration sends (at most {METADATA_MAX_BYTES} bytes).",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        size = len(json.dumps(value, separators=(",", ":")).encode())
        if size > METADATA_MAX_BYTES:
            raise ValueError(f"is {size} bytes as JSON; at most {METADATA_MAX_BYTES} allowed")
        _check_metadata(value)
        return value

    def has_body(self) -> bool:
        return self.transcript is not None or self.token_usage is not None or self.metadata is not None


class OutputCreate(OutputBodyFields):
    id: uuid.UUID | None = None
    prompt_id: uuid.UUID
    content: NonEmptyLongText
    notes: ShortText = ""
    custom_gpt_id: uuid.UUID | None = None
    gpt_model_id: uuid.UUID | None = None
    accuracy_level_id: uuid.UUID | None = None
    knowledge_type_ids: IdList = Field(default_factory=list)
    tag_ids: IdList = Field(default_factory=list)
    produced_at: UtcDateTime | None = None


class OutputBodyRead(BaseModel):
    output_id: uuid.UUID
    content: str = Field(description="The output's content (kept in the SQL row, searchable and synced).")
    transcript: list[TranscriptMessage] | None
    token_usage: TokenUsage | None
    metadata: dict[str, Any] | None
    stored_in: str = Field(description="mongo or sql: the document store holding the body.")
    created_at: datetime


class OutputUpdate(Input):
    prompt_id: uuid.UUID | None = None
    content: NonEmptyLongText | None = None
    notes: ShortText | None = None
    custom_gpt_id: uuid.UUID | None = None
    gpt_model_id: uuid.UUID | None = None
    accuracy_level_id: uuid.UUID | None = None
    knowledge_type_ids: IdList | None = None
    tag_ids: IdList | None = None
    produced_at: UtcDateTime | None = None


class OutputRead(RowMeta):
    prompt_id: uuid.UUID
    content: str
    notes: str
    custom_gpt_id: uuid.UUID | None
    gpt_model_id: uuid.UUID | None
    accuracy_level_id: uuid.UUID | None
    knowledge_type_ids: list[uuid.UUID]
    tag_ids: list[uuid.UUID]
    produced_at: datetime | None


class OutputBulkCreate(Input):
    items: Annotated[list[OutputCreate], Field(min_length=1, max_length=1000)]


class OutputBulkResult(BaseModel):
    created: int
    items: list[OutputRead]


# --- audit log ----------------------------------------------------------------------------------------------


class AuditRecordRead(BaseModel):
    id: uuid.UUID = Field(description="The event id.")
    kind: str = Field(description="<entity>.<verb>, e.g. prompt.updated")
    entity: str
    entity_id: str
    actor: str = Field(description="user:<id>, apikey:<id> or system")
    source: str = Field(description="api, sync, import or system")
    device: str | None = Field(description="The replica an offline edit came from.")
    made_at: datetime | None = Field(description="When an offline edit was made on its device.")
    arrived_at: datetime = Field(description="When the server committed the change.")
    revision: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    merge: str | None = Field(description="For synced edits: the merge decision.")
    details: dict[str, Any]
