"""The transactional outbox of domain events.

The request's unit of work writes its events into ``event_outbox`` in the same transaction as the change,
so a committed change always has its events on disk. After the commit the handlers run (the audit log,
webhooks, ...) and the rows are deleted; rows left by a process that died in between, or whose handlers
failed (MongoDB unreachable), are handed to the handlers again at start-up and then periodically. Delivery
is therefore at least once: handlers deduplicate on ``DomainEvent.id`` (the audit log does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from outputhub.common.errors import StorageError
from outputhub.server.events import DomainEvent, EventHandler, event_from_json, event_to_json
from outputhub.server.storage.documents.sql import scope
from outputhub.server.storage.documents.tables import OutboxEvent

log = logging.getLogger("outputhub.outbox")


class EventOutbox:
    def __init__(self, *, engine: Engine, redeliver_after: timedelta = timedelta(seconds=60)) -> None:
        self._engine = engine
        self._redeliver_after = redeliver_after
        self._last_sweep = time.monotonic()
        self._sweeping = threading.Lock()

    def stage(self, session: Session, events: Sequence[DomainEvent]) -> None:
        """Inside the unit of work, just before it commits."""
        if events:
            session.execute(
                OutboxEvent.__table__.insert(),
                [
                    {"id": e.id, "org_id": e.org_id, "created_at": e.at, "payload": event_to_json(e)}
                    for e in events
                ],
            )

    def done(self, events: Sequence[DomainEvent]) -> None:
        """After the handlers ran: forget the events (a failure here only means a harmless redelivery)."""
        if not events:
            return
        try:
            with self._engine.begin() as conn:
                scope(conn, org_id=None)
                conn.execute(delete(OutboxEvent).where(OutboxEvent.id.in_([e.id for e in events])))
        except SQLAlchemyError as exc:
            log.warning("could not clear %d delivered outbox events: %s", len(events), exc)

    def undelivered(self, *, older_than: datetime, limit: int = 500) -> list[DomainEvent]:
        try:
            with self._engine.begin() as conn:
                scope(conn, org_id=None)
                rows = conn.execute(
                    select(OutboxEvent.payload)
                    .where(OutboxEvent.created_at <= older_than)
                    .order_by(OutboxEvent.created_at, OutboxEvent.id)
                    .limit(limit)
                ).all()
        except SQLAlchemyError as exc:
            raise StorageError(f"outbox unavailable ({exc.__class__.__name__})") from exc
        return [event_from_json(r[0]) for r in rows]

    def drain(self, handlers: Sequence[EventHandler], *, min_age: timedelta = timedelta(0)) -> int:
        """Hand undelivered events older than ``min_age`` to the handlers; returns how many were delivered."""
        delivered = 0
        cutoff = datetime.now(UTC) - min_age
        while True:
            events = self.undelivered(older_than=cutoff)
            if not events:
                return delivered
            if not run_handlers(handlers, events):
                return delivered
            self.done(events)
            delivered += len(events)

    def maybe_redeliver(self, handlers: Sequence[EventHandler]) -> None:
        """Called after every publish: at most once per ``redeliver_after``, drain events that old."""
        now = time.monotonic()
        if now - self._last_sweep < self._redeliver_after.total_seconds():
            return
        if not self._sweeping.acquire(blocking=False):
            return
        try:
            self._last_sweep = now
            self.drain(handlers, min_age=self._redeliver_after)
        except StorageError as exc:
            log.warning("outbox redelivery failed: %s", exc)
        finally:
            self._sweeping.release()


def run_handlers(handlers: Sequence[EventHandler], events: Sequence[DomainEvent]) -> bool:
    """Run every handler; a handler that raises is logged. True if all succeeded."""
    ok = True
    for handler in handlers:
        try:
            handler(events)
        except Exception:  # a handler must never break the request that already committed
            log.exception(
                "event handler %r failed on %d events; they stay in the outbox", handler, len(events)
            )
            ok = False
    return ok
