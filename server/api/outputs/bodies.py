"""Output bodies: transcript, token usage and metadata, kept as documents beside the SQL row.

The write is ordered so that a crash never leaves a row pointing at a missing document:

1. :meth:`OutputBodies.stage` writes the body documents first (MongoDB: durably, marked ``pending``;
   the embedded store: inside the request's transaction), then the service inserts the output rows and
   their ``output_body_refs`` in the request's transaction.
2. After the commit, :meth:`OutputBodies.on_events` (an event handler) marks the documents committed.

A crash after 1 and before the commit leaves a pending document without a row: :func:`reconcile` deletes it.
A crash after the commit and before 2 leaves a pending document whose row exists: reconcile marks it
committed. Reads look the reference up in SQL first, so a pending document is never served without its row.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outputhub.common.errors import NotFoundError, StorageError
from outputhub.common.schemas import OutputBodyFields, OutputBodyRead
from outputhub.server.api.base import Tenant
from outputhub.server.events import DomainEvent
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.server.storage.documents import OUTPUT_BODIES, Document, DocumentStore
from outputhub.server.storage.documents.tables import OutputBodyRef
from outputhub.server.storage.tables import Organization, Output

log = logging.getLogger("outputhub.outputs.bodies")

CRASH_AFTER_STAGED = "after_body_staged"
CRASH_AFTER_COMMITTED = "after_row_committed"


def crash_here(point: str, *, configured: str | None) -> None:
    """The crash test's hook (``OUTPUTHUB_TEST_CRASH_AT``): die at once, as a killed process does."""
    if configured == point:
        log.warning("test hook: killing the process at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class OutputBodies:
    store: DocumentStore
    crash_at: str | None = None

    def stage(
        self,
        session: Session,
        *,
        tenant: Tenant,
        items: Sequence[tuple[uuid.UUID, OutputBodyFields]],
        now: datetime,
    ) -> dict[uuid.UUID, int]:
        """Phase one, before the output rows are inserted: write the documents; returns their sizes by id."""
        docs: list[Document] = []
        for output_id, fields in items:
            if not fields.has_body():
                continue
            data = {
                "output_id": str(output_id),
                "transcript": _dump(fields.transcript),
                "token_usage": fields.token_usage.model_dump() if fields.token_usage else None,
                "metadata": fields.metadata,
            }
            docs.append(Document(org_id=tenant.org_id, id=str(output_id), at=now, data=data))
        if not docs:
            return {}
        self.store.stage(OUTPUT_BODIES, docs, session=session)
        crash_here(CRASH_AFTER_STAGED, configured=self.crash_at)
        return {uuid.UUID(d.id): len(json.dumps(d.data, separators=(",", ":")).encode()) for d in docs}

    def discard(self, *, tenant: Tenant, ids: Sequence[uuid.UUID]) -> None:
        """The rows could not be written: remove the staged documents now (best effort)."""
        if self.store.kind == "sql":
            return  # rolled back with the transaction
        try:
            self.store.delete(OUTPUT_BODIES, org_id=tenant.org_id, ids=[str(i) for i in ids])
        except StorageError as exc:
            log.warning("could not discard %d staged bodies (reconcile will): %s", len(ids), exc)

    def add_refs(
        self, session: Session, *, tenant: Tenant, sizes: dict[uuid.UUID, int], now: datetime
    ) -> None:
        """Inside the transaction, after the output rows: the references from rows to documents."""
        if sizes:
            session.execute(
                OutputBodyRef.__table__.insert(),
                [
                    {
                        "output_id": output_id,
                        "org_id": tenant.org_id,
                        "store": self.store.kind,
                        "size_bytes": size,
                        "created_at": now,
                    }
                    for output_id, size in sizes.items()
                ],
            )

    def on_events(self, events: Sequence[DomainEvent]) -> None:
        """After commit: confirm the staged bodies; drop the bodies of a deleted organization."""
        staged: dict[uuid.UUID, list[str]] = defaultdict(list)
        for event in events:
            if event.kind == "output.created" and event.details.get("body"):
                staged[event.org_id].append(event.entity_id)
            elif event.kind == "org.deleted":
                self.store.purge_org(OUTPUT_BODIES, org_id=event.org_id)
        if not staged:
            return
        crash_here(CRASH_AFTER_COMMITTED, configured=self.crash_at)
        if self.store.kind == "sql":
            return  # written inside the transaction: committed already
        for org_id, ids in staged.items():
            self.store.confirm(OUTPUT_BODIES, org_id=org_id, ids=ids)


def read_body(
    session: Session, store: DocumentStore, *, tenant: Tenant, output_id: uuid.UUID
) -> OutputBodyRead:
    output = session.execute(
        select(Output.content).where(
            Output.org_id == tenant.org_id, Output.id == output_id, Output.deleted.is_(False)
        )
    ).first()
    if output is None:
        raise NotFoundError("output", output_id)
    ref = session.execute(
        select(OutputBodyRef).where(
            OutputBodyRef.org_id == tenant.org_id, OutputBodyRef.output_id == output_id
        )
    ).scalar_one_or_none()
    if ref is None:
        raise NotFoundError("output body", output_id)
    doc = store.get(OUTPUT_BODIES, org_id=tenant.org_id, doc_id=str(output_id))
    if doc is None:  # the ordering makes this impossible short of someone deleting documents by hand
        raise NotFoundError("output body", output_id)
    return OutputBodyRead(
        output_id=output_id,
        content=output.content,
        transcript=doc.data.get("transcript"),
        token_usage=doc.data.get("token_usage"),
        metadata=doc.data.get("metadata"),
        stored_in=ref.store,
        created_at=ref.created_at,
    )


@dataclass(frozen=True)
class ReconcileReport:
    confirmed: int = 0
    """Pending bodies whose row committed (the process died before confirming): now committed."""
    removed: int = 0
    """Pending bodies whose row never committed: deleted."""

    def __str__(self) -> str:
        return f"{self.confirmed} pending bodies confirmed, {self.removed} orphaned bodies removed"


def reconcile(
    store: DocumentStore,
    *,
    session_factory: sessionmaker[Session],
    grace: timedelta,
    now: datetime | None = None,
) -> ReconcileReport:
    """Repair what a crash between the two writes left: run at start-up, as a job, and by the CLI.

    Only bodies pending for longer than ``grace`` are looked at (younger ones may belong to a request
    still in flight).
    """
    cutoff = (now or datetime.now(UTC)) - grace
    confirmed = removed = 0
    while True:
        pending = store.pending_before(OUTPUT_BODIES, before=cutoff, limit=500)
        if not pending:
            break
        by_org: dict[uuid.UUID, list[str]] = defaultdict(list)
        for org_id, doc_id in pending:
            by_org[org_id].append(doc_id)
        for org_id, ids in by_org.items():
            referenced = _referenced(session_factory, org_id=org_id, ids=ids)
            confirmed += store.confirm(OUTPUT_BODIES, org_id=org_id, ids=[i for i in ids if i in referenced])
            removed += store.delete(OUTPUT_BODIES, org_id=org_id, ids=[i for i in ids if i not in referenced])
    return ReconcileReport(confirmed=confirmed, removed=removed)


def _referenced(session_factory: sessionmaker[Session], *, org_id: uuid.UUID, ids: list[str]) -> set[str]:
    wanted = []
    for i in ids:
        try:
            wanted.append(uuid.UUID(i))
        except ValueError:
            continue
    with unit_of_work(session_factory) as session:
        set_tenant(session, org_id=org_id)
        if session.get(Organization, org_id) is None:
            return set()
        found = session.execute(
            select(OutputBodyRef.output_id).where(
                OutputBodyRef.org_id == org_id, OutputBodyRef.output_id.in_(wanted)
            )
        ).scalars()
        return {str(i) for i in found}


def dangling_refs(store: DocumentStore, *, session_factory: sessionmaker[Session]) -> list[str]:
    """Diagnostics (the crash test, ``outputhub documents check``): references whose document is missing."""
    missing: list[str] = []
    with unit_of_work(session_factory) as session:
        orgs = list(session.execute(select(Organization.id)).scalars())
    for org_id in orgs:
        with unit_of_work(session_factory) as session:
            set_tenant(session, org_id=org_id)
            ids = list(
                session.execute(
                    select(OutputBodyRef.output_id).where(
                        OutputBodyRef.org_id == org_id, OutputBodyRef.store == store.kind
                    )
                ).scalars()
            )
        for output_id in ids:
            if store.get(OUTPUT_BODIES, org_id=org_id, doc_id=str(output_id)) is None:
                missing.append(f"{org_id}:{output_id}")
    return missing


def _dump(items: Any) -> Any:
    if items is None:
        return None
    return [i.model_dump(exclude_none=True) for i in items]
