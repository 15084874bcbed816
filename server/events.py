"""Domain events: what a committed unit of work changed, for the audit log, caches, webhooks, notifications.

Services call :func:`emit` inside their transaction; the request's unit of work hands the collected events to
the handlers the composition root registered (``Services.event_handlers``) only **after** the commit
succeeded, so a rolled-back request publishes nothing. :func:`touch_org` marks an organization whose data
changed (``allocate_revisions`` calls it for every replicated write): cache invalidation keys on that.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

_EVENTS_KEY = "outputhub.events"
_TOUCHED_KEY = "outputhub.touched_orgs"


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """One mutation, as the audit log and the webhooks describe it."""

    org_id: uuid.UUID
    kind: str
    """``<entity>.<verb>``, e.g. ``prompt.created``, ``output.updated``, ``conflict.created``."""
    entity: str
    entity_id: str
    actor: str
    """``user:<uuid>``, ``apikey:<uuid>`` or ``system``."""
    at: datetime
    """When the server committed it."""
    revision: int | None = None
    source: str = "api"
    """``api``, ``sync`` (a pushed offline edit), ``import`` or ``system``."""
    device: str | None = None
    """The replica (sync node id) an offline edit came from."""
    made_at: datetime | None = None
    """When an offline edit was made on its device (from its hybrid logical clock)."""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    merge: str | None = None
    """For synced edits: the merge decision (applied / merged / conflict / noop)."""
    details: dict[str, Any] = field(default_factory=dict)


EventHandler = Callable[[Sequence[DomainEvent]], None]
"""Called after commit with the events of one unit of work; must not raise (log instead)."""


def emit(session: Session, event: DomainEvent) -> None:
    session.info.setdefault(_EVENTS_KEY, []).append(event)


def touch_org(session: Session, org_id: uuid.UUID) -> None:
    touched: set[uuid.UUID] = session.info.setdefault(_TOUCHED_KEY, set())
    touched.add(org_id)


def take_events(session: Session) -> tuple[list[DomainEvent], set[uuid.UUID]]:
    """The events emitted and the organizations touched in this session (and forget them)."""
    events: list[DomainEvent] = session.info.pop(_EVENTS_KEY, [])
    touched: set[uuid.UUID] = session.info.pop(_TOUCHED_KEY, set())
    touched.update(e.org_id for e in events)
    return events, touched
