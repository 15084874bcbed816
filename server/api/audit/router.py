"""/api/v1/orgs/{org_id}/audit: the audit log, for owners and admins. Read-only by design."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from outputhub.common.roles import Action
from outputhub.common.schemas import AuditRecordRead, Page, UtcDateTime
from outputhub.server.api.audit import service
from outputhub.server.api.base import Tenant
from outputhub.server.api.filters import Cursor, Limit
from outputhub.server.deps import ServicesDep, require

router = APIRouter(prefix="/orgs/{org_id}/audit", tags=["audit"])

AuditReader = Annotated[Tenant, Depends(require(Action.VIEW_AUDIT))]
Field = Annotated[str | None, Query(min_length=1, max_length=200)]


@router.get("")
def list_audit(
    tenant: AuditReader,
    services: ServicesDep,
    entity: Annotated[
        str | None, Query(min_length=1, max_length=64, description="e.g. prompt, output")
    ] = None,
    entity_id: Field = None,
    actor: Annotated[
        str | None, Query(min_length=1, max_length=200, description="user:<id>, apikey:<id>")
    ] = None,
    kind: Annotated[str | None, Query(min_length=1, max_length=64, description="e.g. prompt.updated")] = None,
    source: Annotated[str | None, Query(min_length=1, max_length=16, description="api, sync, ...")] = None,
    since: Annotated[
        UtcDateTime | None, Query(alias="from", description="Arrived at or after (inclusive; UTC if naive).")
    ] = None,
    until: Annotated[
        UtcDateTime | None, Query(alias="to", description="Arrived before (exclusive).")
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[AuditRecordRead]:
    """Who changed what and when, newest first: API edits and synced offline edits (device, when made,
    the merge decision), with the record before and after. Filters combine with AND."""
    items, next_cursor = service.list_page(
        services.documents,
        tenant=tenant,
        entity=entity,
        entity_id=entity_id,
        actor=actor,
        kind=kind,
        source=source,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return Page[AuditRecordRead](items=items, next_cursor=next_cursor)
