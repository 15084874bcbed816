"""The audit log: every domain event, as an append-only document in the ``audit`` collection.

Written by :class:`AuditLog` (an event handler, after commit, fed from the transactional outbox so a
crash cannot lose a committed change's record); read by owners and admins through ``GET .../audit``.
There is no update or delete: records leave only by the retention TTL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from outputhub.common.errors import InvalidInputError
from outputhub.common.schemas import AuditRecordRead, to_utc
from outputhub.server.api.base import Tenant
from outputhub.server.events import DomainEvent
from outputhub.server.security import b64url, b64url_decode
from outputhub.server.storage.documents import AUDIT, Document, DocumentStore
from outputhub.server.storage.documents.port import After
from outputhub.server.storage.documents.sql import SqlDocumentStore


def to_document(event: DomainEvent) -> Document:
    return Document(
        org_id=event.org_id,
        id=str(event.id),
        at=event.at,
        data={
            "kind": event.kind,
            "entity": event.entity,
            "entity_id": event.entity_id,
            "actor": event.actor,
            "source": event.source,
            "device": event.device,
            "made_at": event.made_at.isoformat() if event.made_at else None,
            "revision": event.revision,
            "before": event.before,
            "after": event.after,
            "merge": event.merge,
            "details": event.details,
        },
    )


@dataclass(frozen=True)
class AuditLog:
    """The event handler: one audit document per event; a redelivered event is written once."""

    store: DocumentStore

    def __call__(self, events: Sequence[DomainEvent]) -> None:
        self.store.insert(AUDIT, [to_document(e) for e in events], skip_existing=True)


@dataclass(frozen=True)
class SqlAuditLog(AuditLog):
    """The audit log kept in the server's own database (the embedded document store): it can also write
    its documents inside the shared after-commit transaction (a ``JoinableHandler``)."""

    store: SqlDocumentStore

    def join(self, session: Session, events: Sequence[DomainEvent]) -> None:
        self.store.insert_joined(session, AUDIT, [to_document(e) for e in events])


def to_read(doc: Document) -> AuditRecordRead:
    d = doc.data
    return AuditRecordRead(
        id=uuid.UUID(doc.id),
        kind=d["kind"],
        entity=d["entity"],
        entity_id=d["entity_id"],
        actor=d["actor"],
        source=d.get("source") or "api",
        device=d.get("device"),
        made_at=d.get("made_at"),
        arrived_at=doc.at,
        revision=d.get("revision"),
        before=d.get("before"),
        after=d.get("after"),
        merge=d.get("merge"),
        details=d.get("details") or {},
    )


def _encode_cursor(doc: Document) -> str:
    return b64url(json.dumps({"at": doc.at.isoformat(), "id": doc.id}, separators=(",", ":")).encode())


def _decode_cursor(cursor: str) -> After:
    try:
        payload = json.loads(b64url_decode(cursor))
        at, ident = payload["at"], payload["id"]
        if not isinstance(at, str) or not isinstance(ident, str):
            raise TypeError("the cursor's at and id are strings")
        return After(at=to_utc(datetime.fromisoformat(at)), id=str(uuid.UUID(ident)))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(
            "query.cursor", "invalid cursor (use next_cursor of the previous page)"
        ) from exc


def list_page(
    store: DocumentStore,
    *,
    tenant: Tenant,
    entity: str | None,
    entity_id: str | None,
    actor: str | None,
    kind: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[AuditRecordRead], str | None]:
    """Newest first; every filter given must match."""
    if since and until and since >= until:
        raise InvalidInputError("query.from", "must be before `to`")
    equals = {
        k: v
        for k, v in {
            "entity": entity,
            "entity_id": entity_id,
            "actor": actor,
            "kind": kind,
            "source": source,
        }.items()
        if v
    }
    docs = store.find(
        AUDIT,
        org_id=tenant.org_id,
        equals=equals,
        since=since,
        until=until,
        after=_decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = docs[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(docs) > limit and page else None
    return [to_read(d) for d in page], next_cursor
