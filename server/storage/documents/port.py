"""The document-store port: what services may ask of a document store, whichever database holds it.

Rules every adapter keeps (the contract suite in ``tests/documents`` checks them):

* Every document belongs to one organization; every read, write and delete names the organization and
  never sees another's documents (two organizations may even use the same document id).
* A document is JSON (``data``) plus three fields the store itself understands: ``id``, ``at`` (the time
  key that queries sort and filter on, descending) and ``state`` (``pending`` until confirmed).
* Driver exceptions never cross the port: failures are :class:`~outputhub.common.errors.StorageError`,
  an id taken is :class:`DocumentExistsError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from outputhub.common.errors import DuplicateError

OUTPUT_BODIES = "output_bodies"
AUDIT = "audit"
COLLECTIONS = (OUTPUT_BODIES, AUDIT)

PENDING = "pending"
COMMITTED = "committed"


class DocumentExistsError(DuplicateError):
    """A document with this id already exists in this organization's collection."""

    def __init__(self, doc_id: str) -> None:
        super().__init__("id", doc_id)
        self.doc_id = doc_id


@dataclass(frozen=True, kw_only=True)
class Document:
    org_id: uuid.UUID
    id: str
    at: datetime
    """UTC, kept to the millisecond; queries sort on (at, id) descending, filter ``since <= at < until``."""
    data: dict[str, Any] = field(default_factory=dict)
    """JSON only (str, numbers, bools, None, lists, dicts with str keys)."""
    state: str = COMMITTED


@dataclass(frozen=True)
class After:
    """A keyset position: return documents strictly after (older than) this one."""

    at: datetime
    id: str


class DocumentStore(Protocol):
    """Documents per (collection, organization). Collections: :data:`OUTPUT_BODIES`, :data:`AUDIT`."""

    kind: str
    """``mongo`` or ``sql``: recorded in references so an operator knows where a body lives."""

    def ensure_indexes(self) -> None:
        """Create indexes (and the audit TTL from the retention setting). Idempotent; runs at start-up."""
        ...

    def stage(self, collection: str, docs: Sequence[Document], *, session: Session) -> None:
        """Phase one of a two-store write, called inside the SQL unit of work before its rows are written.

        A store that can join the session's transaction (SQL) writes the documents there, committed with the
        rows or not at all. Another store (MongoDB) writes them now, durably, marked ``pending``;
        :meth:`confirm` marks them committed after the SQL commit, and reconcile repairs a crash between.
        Raises :class:`DocumentExistsError` if an id is taken by a committed document (a pending one left
        behind by a crashed attempt is replaced).
        """
        ...

    def confirm(self, collection: str, *, org_id: uuid.UUID, ids: Sequence[str]) -> int:
        """Mark staged documents committed; returns how many changed state."""
        ...

    def insert(self, collection: str, docs: Sequence[Document], *, skip_existing: bool = False) -> int:
        """Write documents in their own transaction; returns how many were written.

        ``skip_existing``: ids already present are left alone (idempotent redelivery), else
        :class:`DocumentExistsError`.
        """
        ...

    def get(self, collection: str, *, org_id: uuid.UUID, doc_id: str) -> Document | None: ...

    def find(
        self,
        collection: str,
        *,
        org_id: uuid.UUID,
        equals: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: After | None = None,
        limit: int = 50,
    ) -> list[Document]:
        """Newest first by (at, id); ``equals`` matches top-level string fields of ``data``."""
        ...

    def delete(self, collection: str, *, org_id: uuid.UUID, ids: Sequence[str]) -> int: ...

    def purge_org(self, collection: str, *, org_id: uuid.UUID) -> int:
        """Delete every document of one organization in the collection (the organization was deleted)."""
        ...

    def pending_before(
        self, collection: str, *, before: datetime, limit: int = 1000
    ) -> list[tuple[uuid.UUID, str]]:
        """Maintenance, across organizations: (org_id, id) of pending documents with ``at < before``."""
        ...

    def purge_expired(self, *, now: datetime) -> int:
        """Delete audit documents older than the retention (MongoDB's TTL monitor does this by itself)."""
        ...

    def status(self) -> str:
        """``ok`` or why not."""
        ...

    def close(self) -> None: ...


def retention_cutoff(now: datetime, retention: timedelta | None) -> datetime | None:
    return now - retention if retention else None


def truncate_ms(at: datetime) -> datetime:
    """Both stores keep ``at`` to the millisecond (BSON dates have no finer precision)."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)
