"""/api/v1/orgs/{org_id}/prompts: the prompt library, its versions and diffs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from outputhub.common.schemas import (
    Page,
    PromptCreate,
    PromptDiff,
    PromptRead,
    PromptUpdate,
    PromptVersionRead,
)
from outputhub.server.api.filters import (
    DB_INT4_MAX,
    AccuracyFilter,
    AgentGroupFilter,
    Cursor,
    CustomGptFilter,
    GptModelFilter,
    KnowledgeFilter,
    Limit,
    StageFilter,
    TagFilter,
    Text,
)
from outputhub.server.api.prompts import service
from outputhub.server.cache import cached_bytes
from outputhub.server.deps import IfMatchDep, NowDep, Reader, ServicesDep, SessionDep, Writer, etag

router = APIRouter(prefix="/orgs/{org_id}/prompts", tags=["prompts"])


@router.get("", response_model=Page[PromptRead])
def list_prompts(
    tenant: Reader,
    session: SessionDep,
    services: ServicesDep,
    q: Text = None,
    tag_id: TagFilter = None,
    development_stage_id: StageFilter = None,
    accuracy_level_id: AccuracyFilter = None,
    knowledge_type_id: KnowledgeFilter = None,
    custom_gpt_id: CustomGptFilter = None,
    gpt_model_id: GptModelFilter = None,
    agent_group_id: AgentGroupFilter = None,
    sort: Annotated[str, Query(description="created_at, updated_at, title; - to reverse")] = "-created_at",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Response:
    """Prompts matching every filter given. Repeat a parameter for several values. Output-side filters
    (accuracy level, knowledge type, custom GPT, GPT model, agent group) find prompts with such an output.
    First pages are cached per organization until its next write (``X-Cache: hit`` / ``miss``)."""
    filters = {
        "q": q,
        "tag_ids": tag_id or [],
        "development_stage_ids": development_stage_id or [],
        "accuracy_level_ids": accuracy_level_id or [],
        "knowledge_type_ids": knowledge_type_id or [],
        "custom_gpt_ids": custom_gpt_id or [],
        "gpt_model_ids": gpt_model_id or [],
        "agent_group_ids": agent_group_id or [],
    }

    def compute() -> bytes:
        rows, next_cursor = service.list_page(
            session, tenant=tenant, **filters, sort=sort, cursor=cursor, limit=limit
        )
        page = Page[PromptRead](
            items=service.to_read(session, tenant=tenant, rows=rows), next_cursor=next_cursor
        )
        return page.model_dump_json().encode()

    if cursor is not None:
        return Response(compute(), media_type="application/json", headers={"X-Cache": "bypass"})
    body, hit = cached_bytes(
        services.cache,
        org_id=tenant.org_id,
        namespace="prompts.list",
        params={**filters, "sort": sort, "limit": limit},
        ttl_seconds=services.settings.cache_ttl_seconds,
        compute=compute,
    )
    return Response(body, media_type="application/json", headers={"X-Cache": "hit" if hit else "miss"})


@router.post("", status_code=status.HTTP_201_CREATED)
def create_prompt(
    data: PromptCreate, tenant: Writer, session: SessionDep, now: NowDep, response: Response
) -> PromptRead:
    row = service.create(session, tenant=tenant, data=data, now=now)
    response.headers["ETag"] = etag(row.revision)
    return service.to_read(session, tenant=tenant, rows=[row])[0]


@router.get("/{prompt_id}")
def get_prompt(prompt_id: uuid.UUID, tenant: Reader, session: SessionDep, response: Response) -> PromptRead:
    row = service.get(session, tenant=tenant, ident=prompt_id)
    response.headers["ETag"] = etag(row.revision)
    return service.to_read(session, tenant=tenant, rows=[row])[0]


@router.patch("/{prompt_id}")
def update_prompt(
    prompt_id: uuid.UUID,
    data: PromptUpdate,
    tenant: Writer,
    session: SessionDep,
    now: NowDep,
    if_match: IfMatchDep,
    response: Response,
) -> PromptRead:
    """Change the fields given. A new title or text adds an immutable version."""
    row = service.update_one(
        session,
        tenant=tenant,
        ident=prompt_id,
        data=data.model_dump(exclude_unset=True),
        now=now,
        if_match=if_match,
    )
    response.headers["ETag"] = etag(row.revision)
    return service.to_read(session, tenant=tenant, rows=[row])[0]


@router.delete("/{prompt_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_prompt(
    prompt_id: uuid.UUID,
    tenant: Writer,
    session: SessionDep,
    now: NowDep,
    if_match: IfMatchDep,
    cascade: Annotated[bool, Query(description="Also delete the prompt's outputs.")] = False,
) -> None:
    service.delete_one(session, tenant=tenant, ident=prompt_id, cascade=cascade, now=now, if_match=if_match)


@router.get("/{prompt_id}/versions")
def list_versions(prompt_id: uuid.UUID, tenant: Reader, session: SessionDep) -> list[PromptVersionRead]:
    rows = service.list_versions(session, tenant=tenant, ident=prompt_id)
    return [PromptVersionRead.model_validate(v, from_attributes=True) for v in rows]


@router.get("/{prompt_id}/versions/{version}")
def get_version(
    prompt_id: uuid.UUID,
    version: Annotated[int, Path(ge=1, le=DB_INT4_MAX)],
    tenant: Reader,
    session: SessionDep,
) -> PromptVersionRead:
    row = service.get_version(session, tenant=tenant, ident=prompt_id, version=version)
    return PromptVersionRead.model_validate(row, from_attributes=True)


@router.get("/{prompt_id}/diff")
def diff_versions(
    prompt_id: uuid.UUID,
    tenant: Reader,
    session: SessionDep,
    from_version: Annotated[
        int, Query(alias="from", ge=1, le=DB_INT4_MAX, description="Older version number.")
    ],
    to_version: Annotated[
        int, Query(alias="to", ge=1, le=DB_INT4_MAX, description="Newer version number.")
    ],
) -> PromptDiff:
    return service.diff(
        session, tenant=tenant, ident=prompt_id, from_version=from_version, to_version=to_version
    )
