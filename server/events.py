"""Domain events: what a committed unit of work changed, for the audit log, caches, webhooks, notifications.

Services call :func:`emit` inside their transaction; the request's unit of work hands the collected events to
the handlers the composition root registered (``Services.event_handlers``) only **after** the commit
succeeded, so a rolled-back request publishes nothing. :func:`touch_org` marks an organization whose data
changed (``allocate_revisions`` calls it for every replicated write): cache invalidation keys on that.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from outputhub.common.ids import new_uuid

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
    id: uuid.UUID = field(default_factory=new_uuid)
    """Unique per event: handlers that may see an event twice (outbox redelivery) deduplicate on it."""


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


# --- added for the audit log and the outbox (issue 5) -------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` with uuids, datetimes, enums and sets turned into JSON types (for before/after payloads)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if hasattr(value, "value"):  # enums
        return jsonable(value.value)
    return str(value)


def row_snapshot(
    row: Any, *, only: Iterable[str] | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The mapped columns of an ORM row (or just ``only``) as a JSON-able dict, plus ``extra``."""
    names = list(only) if only is not None else [c.key for c in sa_inspect(row).mapper.column_attrs]
    snapshot = {name: jsonable(getattr(row, name)) for name in names}
    if extra:
        snapshot.update(jsonable(extra))
    return snapshot


def events_by_org(events: Sequence[DomainEvent]) -> dict[uuid.UUID, list[DomainEvent]]:
    """The events grouped by organization, in order (handlers work one organization's scope at a time)."""
    by_org: dict[uuid.UUID, list[DomainEvent]] = {}
    for event in events:
        by_org.setdefault(event.org_id, []).append(event)
    return by_org


_EVENT_FIELDS = tuple(f.name for f in fields(DomainEvent))
_EVENT_JSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _jsonable_default(value: Any) -> Any:
    """What orjson does not encode itself, encoded as :func:`jsonable` does."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    if hasattr(value, "value"):  # enums
        return value.value
    return str(value)


def event_json(event: DomainEvent) -> bytes:
    """The event as JSON text: what :func:`event_to_json` gives, encoded by orjson in one pass (a bulk push
    stages a thousand events; the Python walk of :func:`jsonable` over each took twice as long)."""
    return orjson.dumps(
        {name: getattr(event, name) for name in _EVENT_FIELDS},
        default=_jsonable_default,
        option=_EVENT_JSON_OPTIONS,
    )


def event_to_json(event: DomainEvent) -> dict[str, Any]:
    """The event as a JSON-able dict (the outbox payload); :func:`event_from_json` reverses it."""
    return orjson.loads(event_json(event))  # type: ignore[no-any-return]


def event_from_json(data: dict[str, Any]) -> DomainEvent:
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    return DomainEvent(
        id=uuid.UUID(data["id"]),
        org_id=uuid.UUID(data["org_id"]),
        kind=data["kind"],
        entity=data["entity"],
        entity_id=data["entity_id"],
        actor=data["actor"],
        at=datetime.fromisoformat(data["at"]),
        revision=data.get("revision"),
        source=data.get("source", "api"),
        device=data.get("device"),
        made_at=when(data.get("made_at")),
        before=data.get("before"),
        after=data.get("after"),
        merge=data.get("merge"),
        details=data.get("details") or {},
    )


def emit_change(
    session: Session,
    *,
    org_id: uuid.UUID,
    actor: str,
    kind: str,
    entity_id: object,
    at: datetime,
    revision: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """:func:`emit` an API mutation; the entity is the part of ``kind`` before the dot."""
    emit(
        session,
        DomainEvent(
            org_id=org_id,
            kind=kind,
            entity=kind.split(".", 1)[0],
            entity_id=str(entity_id),
            actor=actor,
            at=at,
            revision=revision,
            before=jsonable(before) if before is not None else None,
            after=jsonable(after) if after is not None else None,
            details=jsonable(details) if details else {},
        ),
    )
