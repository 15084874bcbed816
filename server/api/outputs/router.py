"""/api/v1/orgs/{org_id}/outputs: prompt outputs, single and in bulk."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from outputhub.common.schemas import (
    OutputBodyRead,
    OutputBulkCreate,
    OutputBulkResult,
    OutputCreate,
    OutputRead,
    OutputUpdate,
    Page,
    UtcDateTime,
)
from outputhub.server.api.filters import (
    AccuracyFilter,
    AgentGroupFilter,
    Cursor,
    CustomGptFilter,
    GptModelFilter,
    KnowledgeFilter,
    Limit,
    PromptFilter,
    StageFilter,
    TagFilter,
    Text,
)
from outputhub.server.api.outputs import service
from outputhub.server.api.outputs.bodies import OutputBodies, read_body
from outputhub.server.deps import IfMatchDep, NowDep, Reader, ServicesDep, SessionDep, Writer, etag

router = APIRouter(prefix="/orgs/{org_id}/outputs", tags=["outputs"])


@router.get("")
def list_outputs(
    tenant: Reader,
    session: SessionDep,
    q: Text = None,
    prompt_id: PromptFilter = None,
    tag_id: TagFilter = None,
    knowledge_type_id: KnowledgeFilter = None,
    accuracy_level_id: AccuracyFilter = None,
    custom_gpt_id: CustomGptFilter = None,
    gpt_model_id: GptModelFilter = None,
    agent_group_id: AgentGroupFilter = None,
    development_stage_id: StageFilter = None,
    created_after: Annotated[
        UtcDateTime | None, Query(description="Created at or after (UTC if naive).")
    ] = None,
    created_before: Annotated[UtcDateTime | None, Query(description="Created before (exclusive).")] = None,
    sort: Annotated[str, Query(description="created_at, updated_at; - to reverse")] = "-created_at",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[OutputRead]:
    """Outputs matching every filter given (development stage: of the output's prompt)."""
    rows, next_cursor = service.list_page(
        session,
        tenant=tenant,
        q=q,
        prompt_ids=prompt_id or [],
        tag_ids=tag_id or [],
        knowledge_type_ids=knowledge_type_id or [],
        accuracy_level_ids=accuracy_level_id or [],
        custom_gpt_ids=custom_gpt_id or [],
        gpt_model_ids=gpt_model_id or [],
        agent_group_ids=agent_group_id or [],
        development_stage_ids=development_stage_id or [],
        created_after=created_after,
        created_before=created_before,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return Page[OutputRead](items=service.to_read(session, tenant=tenant, rows=rows), next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_output(
    data: OutputCreate,
    tenant: Writer,
    session: SessionDep,
    now: NowDep,
    response: Response,
    services: ServicesDep,
) -> OutputRead:
    """Record an output. Naming a custom GPT without a GPT model records the custom GPT's model.

    `transcript`, `token_usage` and `metadata` are kept as the output's body document: read them back
    with `GET .../outputs/{id}/body`."""
    row = service.create_many(
        session, tenant=tenant, data=[data], now=now, bulk=False, bodies=_bodies(services)
    )[0]
    response.headers["ETag"] = etag(row.revision)
    return service.to_read(session, tenant=tenant, rows=[row])[0]


@router.post("/bulk", status_code=status.HTTP_201_CREATED)
def create_outputs_bulk(
    data: OutputBulkCreate, tenant: Writer, session: SessionDep, now: NowDep, services: ServicesDep
) -> OutputBulkResult:
    """Create up to 1000 outputs at once: all or none. An error names the item (`body.items.N.field`)."""
    rows = service.create_many(
        session, tenant=tenant, data=data.items, now=now, bulk=True, bodies=_bodies(services)
    )
    return OutputBulkResult(created=len(rows), items=service.to_read(session, tenant=tenant, rows=rows))


@router.get("/{output_id}")
def get_output(output_id: uuid.UUID, tenant: Reader, session: SessionDep, response: Response) -> OutputRead:
    row = service.get(session, tenant=tenant, ident=output_id)
    response.headers["ETag"] = etag(row.revision)
    return service.to_read(session, tenant=tenant, rows=[row])[0]


@router.get("/{output_id}/body")
def get_output_body(
    output_id: uuid.UUID, tenant: Reader, session: SessionDep, services: ServicesDep
) -> OutputBodyRead:
    """The output's body document: transcript, token usage, metadata (404 if it was created without one)."""
    return read_body(session, services.documents, tenant=tenant, output_id=output_id)


@router.patch("/{output_id}")
def update_output(
    output_id: uuid.UUID,
    data: OutputUpdate,
    tenant: Writer,
    session: SessionDep,
    now: NowDep,
    if_match: IfMatchDep,
    response: Response,
) -> OutputRead:
    row = service.update_one(
        session,
        tenant=tenant,
        ident=output_id,
        data=data.model_dump(exclude_unset=True),
        now=now,
        if_match=if_match,
    )
    response.headers["ETag"] = etag(row.revision)
    return service.to_read(session, tenant=tenant, rows=[row])[0]


@router.delete("/{output_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_output(
    output_id: uuid.UUID, tenant: Writer, session: SessionDep, now: NowDep, if_match: IfMatchDep
) -> None:
    service.delete_one(session, tenant=tenant, ident=output_id, now=now, if_match=if_match)


def _bodies(services: ServicesDep) -> OutputBodies:
    return OutputBodies(store=services.documents, crash_at=services.settings.test_crash_at)
