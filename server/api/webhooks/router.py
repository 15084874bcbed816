"""/api/v1/orgs/{org_id}/webhooks: endpoints (owners and admins), secret rotation, the delivery log."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, status

from outputhub.server.api.webhooks import service
from outputhub.server.api.webhooks.schemas import (
    KNOWN_EVENTS,
    WebhookAttemptRead,
    WebhookDeliveryRead,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
    WebhookSecretRotated,
)
from outputhub.server.api.webhooks.tables import WebhookEndpoint
from outputhub.server.deps import NowDep, ServicesDep, SessionDep, WebhookManager

router = APIRouter(prefix="/orgs/{org_id}/webhooks", tags=["webhooks"])


def to_read(row: WebhookEndpoint) -> WebhookEndpointRead:
    return WebhookEndpointRead(
        id=row.id,
        url=row.url,
        event_types=service.event_types(row),
        description=row.description,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.get("/event-types")
def list_event_types(tenant: WebhookManager) -> list[str]:
    """Event types endpoints can filter on (``entity.*`` and ``*`` match several)."""
    return list(KNOWN_EVENTS)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_endpoint(
    data: WebhookEndpointCreate,
    tenant: WebhookManager,
    session: SessionDep,
    now: NowDep,
    services: ServicesDep,
) -> WebhookEndpointCreated:
    """Register an endpoint. The response carries its signing secret (``whsec_...``), shown only here."""
    row = service.create_endpoint(
        session,
        tenant=tenant,
        data=data,
        now=now,
        allow_private=services.settings.webhook_allow_private_targets,
    )
    return WebhookEndpointCreated(**to_read(row).model_dump(), secret=row.secret)


@router.get("")
def list_endpoints(tenant: WebhookManager, session: SessionDep) -> list[WebhookEndpointRead]:
    return [to_read(r) for r in service.list_endpoints(session, tenant=tenant)]


@router.get("/{endpoint_id}")
def get_endpoint(endpoint_id: uuid.UUID, tenant: WebhookManager, session: SessionDep) -> WebhookEndpointRead:
    return to_read(service.get_endpoint(session, tenant=tenant, ident=endpoint_id))


@router.patch("/{endpoint_id}")
def update_endpoint(
    endpoint_id: uuid.UUID,
    data: WebhookEndpointUpdate,
    tenant: WebhookManager,
    session: SessionDep,
    now: NowDep,
    services: ServicesDep,
) -> WebhookEndpointRead:
    row = service.update_endpoint(
        session,
        tenant=tenant,
        ident=endpoint_id,
        data=data.model_dump(exclude_unset=True),
        now=now,
        allow_private=services.settings.webhook_allow_private_targets,
    )
    return to_read(row)


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_endpoint(endpoint_id: uuid.UUID, tenant: WebhookManager, session: SessionDep, now: NowDep) -> None:
    service.delete_endpoint(session, tenant=tenant, ident=endpoint_id, now=now)


@router.post("/{endpoint_id}/rotate-secret")
def rotate_secret(
    endpoint_id: uuid.UUID, tenant: WebhookManager, session: SessionDep, now: NowDep, services: ServicesDep
) -> WebhookSecretRotated:
    """A new secret. Until ``previous_secret_valid_until`` every message carries two signatures (old and new),
    so receivers can switch over without dropping messages."""
    secret, until = service.rotate_secret(
        session,
        tenant=tenant,
        ident=endpoint_id,
        now=now,
        grace=timedelta(hours=services.settings.webhook_secret_grace_hours),
    )
    return WebhookSecretRotated(secret=secret, previous_secret_valid_until=until)


@router.get("/{endpoint_id}/deliveries")
def list_deliveries(
    endpoint_id: uuid.UUID,
    tenant: WebhookManager,
    session: SessionDep,
    delivery_status: Annotated[
        str | None,
        Query(alias="status", pattern="^(pending|succeeded|failed|skipped)$", description="Only these."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[WebhookDeliveryRead]:
    """The delivery log, newest first, each with its attempts."""
    rows = service.list_deliveries(
        session, tenant=tenant, ident=endpoint_id, status=delivery_status, limit=limit
    )
    return [
        WebhookDeliveryRead(
            id=d.id,
            message_id=d.message_id,
            event_type=d.event_type,
            status=d.status,
            attempts=d.attempts,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            attempt_log=[
                WebhookAttemptRead(
                    attempt=a.attempt,
                    at=a.at,
                    status_code=a.status_code,
                    error=a.error,
                    duration_ms=a.duration_ms,
                )
                for a in attempts
            ],
        )
        for d, attempts in rows
    ]
