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
from typing import Protocol, runtime_checkable

import orjson
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from outputhub.common.errors import StorageError
from outputhub.server.events import DomainEvent, EventHandler, event_from_json, event_json
from outputhub.server.storage.database import set_background_scope, unit_of_work
from outputhub.server.storage.documents.sql import scope
from outputhub.server.storage.documents.tables import OutboxEvent

log = logging.getLogger("outputhub.outbox")


@runtime_checkable
class JoinableHandler(Protocol):
    """An event handler whose work is SQL in the server's own database and nothing else (the audit log in
    the embedded document store, the webhook fan-out, notifications). Called, it does its work in
    transactions of its own; ``join`` does the same work inside a transaction shared with the other such
    handlers and the outbox clean-up (:meth:`EventOutbox.deliver`), scoping each step with
    ``set_background_scope`` and letting any error propagate (the shared transaction is then rolled back
    and every handler runs again on its own)."""

    def __call__(self, events: Sequence[DomainEvent]) -> None: ...

    def join(self, session: Session, events: Sequence[DomainEvent]) -> None: ...


class EventOutbox:
    def __init__(
        self,
        *,
        engine: Engine,
        session_factory: sessionmaker[Session] | None = None,
        redeliver_after: timedelta = timedelta(seconds=60),
    ) -> None:
        self._engine = engine
        self._session_factory = session_factory
        self._redeliver_after = redeliver_after
        self._last_sweep = time.monotonic()
        self._sweeping = threading.Lock()

    def stage(self, session: Session, events: Sequence[DomainEvent]) -> None:
        """Inside the unit of work, just before it commits. The payload is handed to the JSON column
        already encoded (an ``orjson.Fragment``: the column's orjson serializer copies it as it is)."""
        if events:
            session.execute(
                OutboxEvent.__table__.insert(),
                [
                    {
                        "id": e.id,
                        "org_id": e.org_id,
                        "created_at": e.at,
                        "payload": orjson.Fragment(event_json(e)),
                    }
                    for e in events
                ],
            )

    def deliver(self, handlers: Sequence[EventHandler], events: Sequence[DomainEvent]) -> bool:
        """Hand committed events to every handler, then forget them; True if every handler succeeded.

        Handlers that only write SQL (:class:`JoinableHandler`) do their work in **one** transaction,
        together with the deletion of the events' outbox rows, instead of a transaction each plus one for
        the deletion (on PostgreSQL a transaction costs a pool checkout, BEGIN, the scope and COMMIT: about
        as much as the work itself). The others (output bodies in MongoDB, the analytics debounce) run
        first, alone. The rows are deleted only if every handler succeeded, and in the same transaction as
        the joined handlers' writes, so those are never redelivered once committed. If the shared
        transaction fails, nothing of it is kept and each joined handler runs again on its own, as
        :func:`run_handlers` does (one failing handler does not hold the others back).
        """
        if not events:
            return True
        joinable = [h for h in handlers if isinstance(h, JoinableHandler)]
        alone = [h for h in handlers if not isinstance(h, JoinableHandler)]
        ok = run_handlers(alone, events)
        if self._session_factory is not None and joinable:
            try:
                with unit_of_work(self._session_factory) as session:
                    for handler in joinable:
                        handler.join(session, events)
                    if ok:
                        set_background_scope(session, org_id=None)
                        session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_([e.id for e in events])))
                return ok
            except Exception:  # nothing of the shared transaction was kept: each handler on its own
                log.warning("shared event delivery failed; running its handlers one by one", exc_info=True)
        ok = run_handlers(joinable, events) and ok
        if ok:
            self.done(events)
        return ok

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
            if not self.deliver(handlers, events):
                return delivered
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
