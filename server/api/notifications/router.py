"""/api/v1/orgs/{org_id}/notifications: the caller's notifications, read marks, a live stream (SSE), and the
organization's accuracy alert rule."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from outputhub.server.api.base import Tenant, utcnow
from outputhub.server.api.notifications import service
from outputhub.server.api.notifications.tables import AccuracyAlertRule, Notification
from outputhub.server.deps import NowDep, Reader, Services, ServicesDep, SessionDep, WebhookManager
from outputhub.server.storage.database import set_tenant, unit_of_work

router = APIRouter(prefix="/orgs/{org_id}/notifications", tags=["notifications"])


class NotificationRead(BaseModel):
    id: uuid.UUID
    kind: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class NotificationList(BaseModel):
    items: list[NotificationRead]
    unread: int


class MarkRead(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[uuid.UUID] | None = Field(default=None, max_length=1000, description="Omit to mark all read.")


class MarkedRead(BaseModel):
    marked: int


class AccuracyAlertRuleWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(gt=0, le=1, description="Share (0..1] of low-accuracy outputs that alerts.")
    low_score_max: int = Field(default=40, ge=0, le=100, description="Accuracy scores up to this are low.")
    window_days: int = Field(default=7, ge=1, le=365)
    min_outputs: int = Field(
        default=5, ge=1, le=100_000, description="Ignore subjects with fewer rated outputs."
    )
    enabled: bool = True


class AccuracyAlertRuleRead(AccuracyAlertRuleWrite):
    updated_at: datetime
    updated_by: str


def to_read(row: Notification, read_at: datetime | None) -> NotificationRead:
    return NotificationRead(
        id=row.id,
        kind=row.kind,
        title=row.title,
        body=row.body,
        data=json.loads(row.data or "{}"),
        created_at=row.created_at,
        read_at=read_at,
    )


def rule_read(rule: AccuracyAlertRule) -> AccuracyAlertRuleRead:
    return AccuracyAlertRuleRead.model_validate(rule, from_attributes=True)


@router.get("")
def list_notifications(
    tenant: Reader,
    session: SessionDep,
    unread: Annotated[bool, Query(description="Only those the caller has not read.")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> NotificationList:
    """The caller's notifications in this organization, newest first, with the unread count."""
    items = service.list_for(session, tenant=tenant, unread=unread, limit=limit)
    return NotificationList(
        items=[to_read(i.row, i.read_at) for i in items], unread=service.unread_count(session, tenant=tenant)
    )


@router.post("/read")
def mark_read(data: MarkRead, tenant: Reader, session: SessionDep, now: NowDep) -> MarkedRead:
    """Mark notifications read for the caller only (other members keep their own read state)."""
    return MarkedRead(marked=service.mark_read(session, tenant=tenant, ids=data.ids, now=now))


@router.post("/{notification_id}/read")
def mark_one_read(notification_id: uuid.UUID, tenant: Reader, session: SessionDep, now: NowDep) -> MarkedRead:
    return MarkedRead(marked=service.mark_read(session, tenant=tenant, ids=[notification_id], now=now))


def _poll(
    services: Services, tenant: Tenant, since: datetime, seen: set[uuid.UUID]
) -> list[NotificationRead]:
    with unit_of_work(services.session_factory, read_only=True) as session:
        set_tenant(session, org_id=tenant.org_id, user_id=tenant.user_id)
        items = service.list_for(session, tenant=tenant, after=since, limit=100)
    return [to_read(i.row, i.read_at) for i in items if i.row.id not in seen]


def _since(services: Services, tenant: Tenant, last_event_id: str | None) -> datetime:
    if last_event_id:
        try:
            ident = uuid.UUID(last_event_id)
        except ValueError:
            return utcnow()
        with unit_of_work(services.session_factory, read_only=True) as session:
            set_tenant(session, org_id=tenant.org_id, user_id=tenant.user_id)
            row = session.get(Notification, ident)
            if row is not None and row.org_id == tenant.org_id:
                return row.created_at
    return utcnow()


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."}},
)
async def stream(
    request: Request,
    tenant: Reader,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """New notifications as server-sent events (``event: notification``, ``id`` = notification id; send it
    back as ``Last-Event-ID`` to resume). A comment line every few seconds keeps proxies from closing it."""
    service.user_of(tenant)  # API keys are refused before the stream starts
    since = await run_in_threadpool(_since, services, tenant, last_event_id)
    poll_seconds = services.settings.sse_poll_seconds
    keepalive = services.settings.sse_keepalive_seconds

    async def events() -> AsyncIterator[str]:
        nonlocal since
        seen: set[uuid.UUID] = set()
        last_sent = time.monotonic()
        yield f"retry: {int(poll_seconds * 1000)}\n: connected\n\n"
        while not await request.is_disconnected():
            fresh = await run_in_threadpool(_poll, services, tenant, since, seen)
            for item in fresh:
                seen.add(item.id)
                since = max(since, item.created_at)
                yield f"id: {item.id}\nevent: notification\ndata: {item.model_dump_json()}\n\n"
                last_sent = time.monotonic()
            if time.monotonic() - last_sent >= keepalive:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(poll_seconds)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/accuracy-alert")
def get_accuracy_rule(tenant: WebhookManager, session: SessionDep) -> AccuracyAlertRuleRead | None:
    """The organization's accuracy alert rule (null when none is set)."""
    rule = service.get_rule(session, org_id=tenant.org_id)
    return rule_read(rule) if rule else None


@router.put("/accuracy-alert")
def put_accuracy_rule(
    data: AccuracyAlertRuleWrite, tenant: WebhookManager, session: SessionDep, now: NowDep
) -> AccuracyAlertRuleRead:
    """Set the rule: alert when a custom GPT's or GPT model's share of outputs scoring at most
    ``low_score_max`` over the last ``window_days`` reaches ``threshold`` (checked as outputs change)."""
    return rule_read(service.put_rule(session, tenant=tenant, data=data.model_dump(), now=now))
