"""Composition helpers for the document store: the event handlers it feeds and its start-up work."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from outputhub.server.api.audit.service import AuditLog, SqlAuditLog
from outputhub.server.api.outputs.bodies import OutputBodies, reconcile
from outputhub.server.events import EventHandler
from outputhub.server.settings import Settings
from outputhub.server.storage.documents import DocumentStore
from outputhub.server.storage.documents.sql import SqlDocumentStore

if TYPE_CHECKING:
    from outputhub.server.deps import Services

log = logging.getLogger("outputhub.documents")


def document_handlers(settings: Settings, store: DocumentStore) -> list[EventHandler]:
    """Confirm staged output bodies first (shortest pending window), then the audit log."""
    handlers: list[EventHandler] = [OutputBodies(store=store, crash_at=settings.test_crash_at).on_events]
    if settings.audit_enabled:
        # in the server's own database, the audit records join the shared after-commit transaction
        audit = SqlAuditLog(store=store) if isinstance(store, SqlDocumentStore) else AuditLog(store=store)
        handlers.append(audit)
    return handlers


def prepare_documents(services: Services) -> None:
    """At start-up, after migrations: indexes (idempotent), crash repair, undelivered events."""
    store = services.document_store()
    store.ensure_indexes()
    report = reconcile(
        store,
        session_factory=services.session_factory,
        grace=timedelta(seconds=services.settings.documents_pending_grace_seconds),
    )
    if report.confirmed or report.removed:
        log.warning("document reconcile at start-up: %s", report)
    if services.outbox is not None:
        delivered = services.outbox.drain(services.event_handlers)
        if delivered:
            log.warning("delivered %d events left in the outbox by a previous process", delivered)
