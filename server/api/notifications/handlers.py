"""Turns committed domain events into notifications, and runs the accuracy check job."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from outputhub.common.roles import Role
from outputhub.server.api.base import utcnow
from outputhub.server.api.notifications import service
from outputhub.server.events import DomainEvent, events_by_org
from outputhub.server.jobs.queue import JobContext, JobQueue
from outputhub.server.storage.database import set_background_scope, set_tenant, unit_of_work

log = logging.getLogger("outputhub.notifications")
ACCURACY_JOB = "notifications.accuracy_check"


def _user_of(actor: str) -> uuid.UUID | None:
    if actor.startswith("user:"):
        try:
            return uuid.UUID(actor.removeprefix("user:"))
        except ValueError:
            return None
    return None


def _relevant(events: Sequence[DomainEvent]) -> bool:
    return any(
        e.kind in ("conflict.created", "import.finished") or e.kind.startswith("output.") for e in events
    )


@dataclass
class NotificationHandler:
    session_factory: sessionmaker[Session]
    queue: JobQueue

    def __call__(self, events: Sequence[DomainEvent]) -> None:
        """An ``EventHandler``: each organization's notifications in a transaction of its own."""
        self.on_events(events)

    def on_events(self, events: Sequence[DomainEvent]) -> None:
        for org_id, org_events in events_by_org(events).items():
            if not _relevant(org_events):
                continue
            try:
                with unit_of_work(self.session_factory) as session:
                    set_tenant(session, org_id=org_id)
                    self._handle(session, org_id, org_events)
            except Exception:  # handlers must not raise: the request has committed
                log.exception("notification handler failed for organization %s", org_id)

    def join(self, session: Session, events: Sequence[DomainEvent]) -> None:
        """The same inside the shared after-commit transaction (``EventOutbox.deliver``)."""
        for org_id, org_events in events_by_org(events).items():
            if _relevant(org_events):
                set_background_scope(session, org_id=org_id)
                self._handle(session, org_id, org_events)

    def _handle(self, session: Session, org_id: uuid.UUID, events: list[DomainEvent]) -> None:
        """In ``session``, scoped to ``org_id`` by the caller."""
        now = utcnow()
        notable = [e for e in events if e.kind in ("conflict.created", "import.finished")]
        if notable:
            self._notify(session, org_id, notable, now=now)
        if any(e.kind.startswith("output.") for e in events):
            rule = service.get_rule(session, org_id=org_id)
            if rule and rule.enabled:
                self.queue.enqueue(kind=ACCURACY_JOB, payload={}, org_id=org_id, session=session)

    def _notify(
        self, session: Session, org_id: uuid.UUID, events: list[DomainEvent], *, now: datetime
    ) -> None:
        for event in events:
            if event.kind == "conflict.created":
                about = {**event.details, **(event.after or {})}
                entity = str(about.get("entity") or "record")
                record = str(about.get("record_id") or "")
                service.notify(
                    session,
                    org_id=org_id,
                    kind=service.CONFLICT,
                    title=f"A conflict on {entity} {record} needs resolving".replace("  ", " "),
                    body="Two edits of the same record crossed while offline; pick what to keep.",
                    data={
                        "conflict_id": event.entity_id,
                        "entity": entity,
                        "record_id": record,
                        "field": about.get("field"),
                        "device": event.device,
                    },
                    subject=f"conflict:{event.entity_id}",
                    min_role=Role.EDITOR,
                    now=now,
                )
            elif event.kind == "import.finished":
                service.notify(
                    session,
                    org_id=org_id,
                    kind=service.IMPORT_FINISHED,
                    title=str(event.details.get("title") or "Import finished"),
                    body=str(event.details.get("summary") or ""),
                    data={"import_id": event.entity_id, **event.details},
                    user_id=_user_of(event.actor),
                    min_role=Role.EDITOR,
                    now=now,
                )

    def run_accuracy_check(self, ctx: JobContext) -> None:
        assert ctx.org_id is not None
        with unit_of_work(self.session_factory) as session:
            set_tenant(session, org_id=ctx.org_id)
            service.check_accuracy(session, org_id=ctx.org_id, now=utcnow())
