"""Webhook endpoints (CRUD, secret rotation), the fan-out of domain events and the delivery job."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outputhub.common.errors import InvalidInputError, NotFoundError
from outputhub.common.ids import new_uuid
from outputhub.common.roles import Role
from outputhub.server.api.base import Tenant, utcnow
from outputhub.server.api.notifications import service as notifications
from outputhub.server.api.webhooks import signing
from outputhub.server.api.webhooks.schemas import (
    WebhookEndpointCreate,
    host_address,
    is_private_address,
    is_private_host,
)
from outputhub.server.api.webhooks.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from outputhub.server.events import DomainEvent, emit_change, events_by_org
from outputhub.server.jobs.queue import JobContext, JobQueue
from outputhub.server.storage.database import set_background_scope, set_tenant, unit_of_work

log = logging.getLogger("outputhub.webhooks")
DELIVER_JOB = "webhook.deliver"
USER_AGENT = "OutputHub-Webhooks/1"


def event_types(row: WebhookEndpoint) -> list[str]:
    return list(json.loads(row.event_types or "[]"))


def matches(filters: Sequence[str], kind: str) -> bool:
    if not filters:
        return True
    entity = kind.split(".", 1)[0]
    return any(f in ("*", kind, f"{entity}.*") for f in filters)


AUDIT_ONLY_ENTITY = "webhook"
"""``webhook.*`` events (an endpoint created, changed, deleted, its secret rotated) go to the audit log only:
an endpoint is never sent another endpoint's URL."""
_SNAPSHOT = ("url", "description", "event_types", "enabled")


def _snapshot(row: WebhookEndpoint) -> dict[str, Any]:
    """What the audit log keeps of an endpoint (never its secrets)."""
    return {
        "url": row.url,
        "description": row.description,
        "event_types": event_types(row),
        "enabled": row.enabled,
    }


def _audit(
    session: Session, *, tenant: Tenant, kind: str, row: WebhookEndpoint, now: datetime, **kw: Any
) -> None:
    emit_change(session, org_id=tenant.org_id, actor=tenant.actor, kind=kind, entity_id=row.id, at=now, **kw)


def _check_target(url: str, *, allow_private: bool) -> None:
    host = urlsplit(url).hostname or ""
    if not allow_private and is_private_host(host):
        raise InvalidInputError("body.url", "must not point at a loopback or private address")


# --- endpoints --------------------------------------------------------------------------------------------


def create_endpoint(
    session: Session, *, tenant: Tenant, data: WebhookEndpointCreate, now: datetime, allow_private: bool
) -> WebhookEndpoint:
    _check_target(data.url, allow_private=allow_private)
    row = WebhookEndpoint(
        id=new_uuid(),
        org_id=tenant.org_id,
        url=data.url,
        description=data.description,
        event_types=json.dumps(data.event_types),
        secret=signing.new_secret(),
        enabled=True,
        created_by=tenant.actor,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    _audit(session, tenant=tenant, kind="webhook.created", row=row, now=now, after=_snapshot(row))
    return row


def list_endpoints(session: Session, *, tenant: Tenant) -> list[WebhookEndpoint]:
    return list(
        session.execute(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.org_id == tenant.org_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        ).scalars()
    )


def get_endpoint(session: Session, *, tenant: Tenant, ident: uuid.UUID) -> WebhookEndpoint:
    row = session.execute(
        select(WebhookEndpoint).where(WebhookEndpoint.org_id == tenant.org_id, WebhookEndpoint.id == ident)
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError("webhook endpoint", ident)
    return row


def update_endpoint(
    session: Session,
    *,
    tenant: Tenant,
    ident: uuid.UUID,
    data: dict[str, Any],
    now: datetime,
    allow_private: bool,
) -> WebhookEndpoint:
    row = get_endpoint(session, tenant=tenant, ident=ident)
    before = _snapshot(row)
    for name in ("url", "description", "enabled"):
        if name in data and data[name] is None:
            raise InvalidInputError(f"body.{name}", "may not be null")
    if "url" in data:
        _check_target(data["url"], allow_private=allow_private)
        row.url = data["url"]
    if "description" in data:
        row.description = data["description"]
    if data.get("event_types") is not None:
        row.event_types = json.dumps(data["event_types"])
    if "enabled" in data:
        row.enabled = data["enabled"]
        if row.enabled:
            row.disabled_reason = None
            row.failing_since = None
        else:
            row.disabled_reason = f"paused by {tenant.actor}"
    row.updated_at = now
    session.flush()
    after = _snapshot(row)
    changed = [n for n in _SNAPSHOT if before[n] != after[n]]
    if changed:
        _audit(
            session,
            tenant=tenant,
            kind="webhook.updated",
            row=row,
            now=now,
            before={n: before[n] for n in changed},
            after={n: after[n] for n in changed},
        )
    return row


def delete_endpoint(session: Session, *, tenant: Tenant, ident: uuid.UUID, now: datetime) -> None:
    row = get_endpoint(session, tenant=tenant, ident=ident)
    _audit(session, tenant=tenant, kind="webhook.deleted", row=row, now=now, before=_snapshot(row))
    session.delete(row)
    session.flush()


def rotate_secret(
    session: Session, *, tenant: Tenant, ident: uuid.UUID, now: datetime, grace: timedelta
) -> tuple[str, datetime]:
    """A new secret; the current one keeps signing (a second signature) until ``now + grace``."""
    row = get_endpoint(session, tenant=tenant, ident=ident)
    row.previous_secret = row.secret
    row.previous_secret_expires_at = now + grace
    row.secret = signing.new_secret()
    row.updated_at = now
    session.flush()
    _audit(
        session,
        tenant=tenant,
        kind="webhook.secret_rotated",
        row=row,
        now=now,
        details={"previous_secret_valid_until": row.previous_secret_expires_at},
    )
    return row.secret, row.previous_secret_expires_at


def list_deliveries(
    session: Session, *, tenant: Tenant, ident: uuid.UUID, status: str | None, limit: int
) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    get_endpoint(session, tenant=tenant, ident=ident)
    stmt = select(WebhookDelivery).where(
        WebhookDelivery.org_id == tenant.org_id, WebhookDelivery.endpoint_id == ident
    )
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    deliveries = list(
        session.execute(
            stmt.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit)
        ).scalars()
    )
    attempts: dict[uuid.UUID, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for a in session.execute(
            select(WebhookAttempt)
            .where(WebhookAttempt.org_id == tenant.org_id, WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.attempt)
        ).scalars():
            attempts[a.delivery_id].append(a)
    return [(d, attempts[d.id]) for d in deliveries]


# --- fan-out and delivery -----------------------------------------------------------------------------------


def event_body(event: DomainEvent, *, message_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "organization_id": str(event.org_id),
        "entity": event.entity,
        "id": event.entity_id,
        "revision": event.revision,
        "actor": event.actor,
        "source": event.source,
    }
    if event.device:
        data["device"] = event.device
    if event.after is not None:
        data["object"] = event.after
    if event.details:
        data["details"] = event.details
    return {"type": event.kind, "timestamp": event.at.isoformat(), "id": message_id, "data": data}


@dataclass
class WebhookDispatcher:
    """Turns committed domain events into delivery jobs, and runs those jobs."""

    session_factory: sessionmaker[Session]
    queue: JobQueue
    timeout_seconds: float
    disable_after: timedelta
    allow_private: bool = True
    """``webhook_allow_private_targets``: when off, a delivery is refused if the endpoint's host resolves to
    a loopback or private address (an endpoint stored before the setting was turned off, a name whose DNS
    answer points inside)."""

    def __post_init__(self) -> None:
        self._client = httpx.Client(timeout=self.timeout_seconds, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def __call__(self, events: Sequence[DomainEvent]) -> None:
        """An ``EventHandler``: a delivery and a job per matching endpoint, one transaction per org."""
        self.on_events(events)

    def on_events(self, events: Sequence[DomainEvent]) -> None:
        for org_id, org_events in events_by_org(events).items():
            try:
                with unit_of_work(self.session_factory) as session:
                    set_tenant(session, org_id=org_id)
                    self._fan_out(session, org_id, org_events)
            except Exception:  # handlers must not raise (the request has committed already)
                log.exception("webhook fan-out failed for organization %s", org_id)

    def join(self, session: Session, events: Sequence[DomainEvent]) -> None:
        """The fan-out inside the shared after-commit transaction (``EventOutbox.deliver``)."""
        for org_id, org_events in events_by_org(events).items():
            set_background_scope(session, org_id=org_id)
            self._fan_out(session, org_id, org_events)

    def _fan_out(self, session: Session, org_id: uuid.UUID, events: list[DomainEvent]) -> None:
        """In ``session``, scoped to ``org_id`` by the caller."""
        now = utcnow()
        endpoints = session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
                WebhookEndpoint.org_id == org_id, WebhookEndpoint.enabled.is_(True)
            )
        ).all()
        targets = [
            (event, endpoint_id)
            for event in events
            for endpoint_id, filters in endpoints
            if event.entity != AUDIT_ONLY_ENTITY and matches(json.loads(filters or "[]"), event.kind)
        ]
        for event, endpoint_id in targets:
            message_id = f"msg_{uuid.uuid4().hex}"
            delivery = WebhookDelivery(
                id=new_uuid(),
                org_id=org_id,
                endpoint_id=endpoint_id,
                message_id=message_id,
                event_type=event.kind,
                payload=json.dumps(event_body(event, message_id=message_id), default=str),
                status="pending",
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            session.add(delivery)
            self.queue.enqueue(
                kind=DELIVER_JOB,
                payload={"delivery_id": str(delivery.id)},
                org_id=org_id,
                session=session,
            )

    def deliver(self, ctx: JobContext) -> None:
        """One attempt. Raises on failure (the queue schedules the next attempt with backoff)."""
        assert ctx.org_id is not None
        delivery_id = uuid.UUID(ctx.payload["delivery_id"])
        now = utcnow()
        with unit_of_work(self.session_factory, read_only=True) as session:
            set_tenant(session, org_id=ctx.org_id)
            delivery = session.get(WebhookDelivery, delivery_id)
            endpoint = session.get(WebhookEndpoint, delivery.endpoint_id) if delivery else None
            # a failed one is sent again when an admin retries its job (the retried job ended "done" having
            # sent nothing, and the delivery stayed failed; QA)
            if delivery is None or delivery.status not in ("pending", "failed"):
                return
            if endpoint is None or not endpoint.enabled:
                skip = True
            else:
                skip = False
                secrets_ = [endpoint.secret]
                if endpoint.previous_secret and (endpoint.previous_secret_expires_at or now) > now:
                    secrets_.append(endpoint.previous_secret)
                url, body, msg_id = endpoint.url, delivery.payload.encode(), delivery.message_id
        if skip:
            self._record(ctx, delivery_id, status="skipped", code=None, error="endpoint disabled", ms=0)
            return
        refused = None if self.allow_private else private_target(url)
        if refused is not None:  # not retried: the target is one this server does not deliver to
            self._record(ctx, delivery_id, status="failed", code=None, error=refused, ms=0)
            log.warning("webhook delivery %s refused: %s", delivery_id, refused)
            return
        headers = signing.headers_for(secrets_, msg_id=msg_id, timestamp=int(now.timestamp()), body=body)
        headers["user-agent"] = USER_AGENT
        started = time.monotonic()
        code: int | None = None
        error: str | None = None
        try:
            response = self._client.post(url, content=body, headers=headers)
            code = response.status_code
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except httpx.TimeoutException:
            error = f"timed out after {self.timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            error = f"{exc.__class__.__name__}: {exc}"[:500]
        ms = int((time.monotonic() - started) * 1000)
        if error is None:
            self._record(ctx, delivery_id, status="succeeded", code=code, error=None, ms=ms)
            return
        final = ctx.is_last_attempt
        self._record(ctx, delivery_id, status="failed" if final else "pending", code=code, error=error, ms=ms)
        raise DeliveryFailedError(error)

    def _record(
        self,
        ctx: JobContext,
        delivery_id: uuid.UUID,
        *,
        status: str,
        code: int | None,
        error: str | None,
        ms: int,
    ) -> None:
        assert ctx.org_id is not None
        now = utcnow()
        with unit_of_work(self.session_factory) as session:
            set_tenant(session, org_id=ctx.org_id)
            endpoint_id = session.scalar(
                select(WebhookDelivery.endpoint_id).where(WebhookDelivery.id == delivery_id)
            )
            if endpoint_id is None:
                return
            # locked in the order an endpoint's delete takes them (its row, then its deliveries by the
            # foreign key's cascade): a delete committed while this attempt ran leaves nothing to record.
            # Unlocked, this wrote an attempt of a delivery deleted meanwhile (a foreign-key violation on
            # PostgreSQL), and the job was retried minutes later for a delivery that had succeeded
            endpoint = session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
            delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
            if endpoint is None or delivery is None:
                return
            delivery.status = status
            delivery.updated_at = now
            if status == "skipped":
                delivery.last_error = error
                return
            delivery.attempts += 1
            delivery.last_status_code = code
            delivery.last_error = error
            session.add(
                WebhookAttempt(
                    id=new_uuid(),
                    org_id=ctx.org_id,
                    delivery_id=delivery_id,
                    attempt=delivery.attempts,
                    at=now,
                    status_code=code,
                    error=error,
                    duration_ms=ms,
                )
            )
            if error is None:
                delivery.delivered_at = now
                endpoint.failing_since = None
                return
            endpoint.failing_since = endpoint.failing_since or now
            if endpoint.enabled and now - endpoint.failing_since >= self.disable_after:
                self._disable(session, endpoint, now=now, error=error)

    def _disable(self, session: Session, endpoint: WebhookEndpoint, *, now: datetime, error: str) -> None:
        endpoint.enabled = False
        endpoint.disabled_reason = (
            f"every delivery failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC (last: {error})"
        )
        endpoint.updated_at = now
        creator = endpoint.created_by
        user_id = uuid.UUID(creator.removeprefix("user:")) if creator.startswith("user:") else None
        payload = {"endpoint_id": str(endpoint.id), "url": endpoint.url, "reason": endpoint.disabled_reason}
        title = f"Webhook endpoint disabled: {endpoint.url}"
        body = "Deliveries kept failing, so the endpoint was disabled. Fix the receiver, then re-enable it."
        notifications.notify(
            session,
            org_id=endpoint.org_id,
            kind=notifications.WEBHOOK_DISABLED,
            title=title,
            body=body,
            data=payload,
            subject=f"webhook_endpoint:{endpoint.id}",
            user_id=user_id,  # the endpoint's owner; without one (an API key made it), the admins
            min_role=Role.ADMIN,
            now=now,
        )
        log.warning("webhook endpoint %s disabled: %s", endpoint.id, endpoint.disabled_reason)

    def on_final_failure(self, ctx: JobContext, error: str) -> None:
        """The delivery has used every attempt (already marked failed by the last attempt)."""
        log.info("webhook delivery %s failed for good: %s", ctx.payload.get("delivery_id"), error)


class DeliveryFailedError(Exception):
    pass


def private_target(url: str) -> str | None:
    """Why a delivery to ``url`` must not be made when private targets are disallowed, or None: its host is
    ``localhost`` or a private address in any form, or resolves (as the HTTP client will resolve it) to at
    least one loopback or private address. A name that does not resolve is left to the client, which fails
    and retries as for any unreachable receiver.

    Known gap: the client resolves the name again when it connects, so a DNS answer that changes between
    the two lookups (DNS rebinding with a zero TTL) is not caught; closing it needs the connection pinned to
    the checked address."""
    target = httpx.URL(url)
    host = target.host
    if is_private_host(host):
        return f"refused: {host} is a loopback or private address"
    if host_address(host) is not None:
        return None  # a public address: nothing to resolve
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue
        if is_private_address(ip):
            return f"refused: {host} resolves to {ip}, a loopback or private address"
    return None
