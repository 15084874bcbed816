"""/api/v1/orgs/{org_id}/custom-gpts"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from outputhub.common.schemas import CustomGptCreate, CustomGptRead, CustomGptUpdate, Page
from outputhub.server.api.custom_gpts import service
from outputhub.server.api.filters import AgentGroupFilter, Cursor, GptModelFilter, Limit, Text
from outputhub.server.deps import IfMatchDep, NowDep, Reader, SessionDep, Writer, etag

router = APIRouter(prefix="/orgs/{org_id}/custom-gpts", tags=["custom GPTs"])


@router.get("")
def list_custom_gpts(
    tenant: Reader,
    session: SessionDep,
    q: Text = None,
    gpt_model_id: GptModelFilter = None,
    agent_group_id: AgentGroupFilter = None,
    sort: Annotated[str, Query(description="name, created_at, updated_at; - to reverse")] = "name",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[CustomGptRead]:
    rows, next_cursor = service.list_page(
        session,
        tenant=tenant,
        q=q,
        gpt_model_ids=gpt_model_id or [],
        agent_group_ids=agent_group_id or [],
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return Page[CustomGptRead](
        items=service.to_read(session, tenant=tenant, rows=rows), next_cursor=next_cursor
    )


@router.post("", status_code=status.HTTP_201_CREATED)
def create_custom_gpt(
    data: CustomGptCreate, tenant: Writer, session: SessionDep, now: NowDep, response: Response
) -> CustomGptRead:
    row = service.create(session, tenant=tenant, data=data, now=now)
    response.headers["ETag"] = etag(row.revision)
    return service.to_read(session, tenant=tenant, rows=[row])[0]


@router.get("/{custom_gpt_id}")
def get_custom_gpt(
    custom_gpt_id: uuid.UUID, tenant: Reader, session: SessionDep, response: Response
) -> CustomGptRead:
    row = service.get(session, tenant=tenant, ident=custom_gpt_id)
    response.headers["ETag"] = etag(row.revision)
    return service.to_read(session, tenant=tenant, rows=[row])[0]


@router.patch("/{custom_gpt_id}")
def update_custom_gpt(
    custom_gpt_id: uuid.UUID,
    data: CustomGptUpdate,
    tenant: Writer,
    session: SessionDep,
    now: NowDep,
    if_match: IfMatchDep,
    response: Response,
) -> CustomGptRead:
    row = service.update_one(
        session,
        tenant=tenant,
        ident=custom_gpt_id,
        data=data.model_dump(exclude_unset=True),
        now=now,
        if_match=if_match,
    )
    response.headers["ETag"] = etag(row.revision)
    return service.to_read(session, tenant=tenant, rows=[row])[0]


@router.delete("/{custom_gpt_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_custom_gpt(
    custom_gpt_id: uuid.UUID, tenant: Writer, session: SessionDep, now: NowDep, if_match: IfMatchDep
) -> None:
    service.delete_one(session, tenant=tenant, ident=custom_gpt_id, now=now, if_match=if_match)
