"""API schemas: one family per entity (XCreate / XUpdate / XRead / XPage).

Create schemas accept an optional client-generated ``id`` (offline creation depends on it). Update schemas
are partial: only the fields present in the request change; ``null`` clears an optional reference.
Unknown fields are rejected, so a typo is a 422 naming the field rather than a silent no-op.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from outputhub.common.roles import ApiKeyScope, Role

T = TypeVar("T")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
LongText = Annotated[str, StringConstraints(max_length=1_000_000)]
NonEmptyLongText = Annotated[str, StringConstraints(min_length=1, max_length=1_000_000)]
ShortText = Annotated[str, StringConstraints(max_length=20_000)]
Password = Annotated[str, StringConstraints(min_length=10, max_length=256)]
IdList = Annotated[list[uuid.UUID], Field(max_length=200)]


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
    name: Name
    description: ShortText = ""
    position: int | None = Field(default=None, ge=0, le=1_000_000, description="Order on ordered scales.")


class LookupUpdate(Input):
    name: Name | None = None
    description: ShortText | None = None
    position: int | None = Field(default=None, ge=0, le=1_000_000)


class LookupRead(RowMeta):
    name: str
    description: str
    position: int


class AccuracyLevelCreate(LookupCreate):
    score: int = Field(default=0, ge=0, le=100, description="0 = wrong .. 100 = fully accurate.")


class AccuracyLevelUpdate(LookupUpdate):
    score: int | None = Field(default=None, ge=0, le=100)


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


class OutputCreate(Input):
    id: uuid.UUID | None = None
    prompt_id: uuid.UUID
    content: NonEmptyLongText
    notes: ShortText = ""
    custom_gpt_id: uuid.UUID | None = None
    gpt_model_id: uuid.UUID | None = None
    accuracy_level_id: uuid.UUID | None = None
    knowledge_type_ids: IdList = Field(default_factory=list)
    tag_ids: IdList = Field(default_factory=list)
    produced_at: datetime | None = None


class OutputUpdate(Input):
    prompt_id: uuid.UUID | None = None
    content: NonEmptyLongText | None = None
    notes: ShortText | None = None
    custom_gpt_id: uuid.UUID | None = None
    gpt_model_id: uuid.UUID | None = None
    accuracy_level_id: uuid.UUID | None = None
    knowledge_type_ids: IdList | None = None
    tag_ids: IdList | None = None
    produced_at: datetime | None = None


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
