"""SQL tables of the document feature (migration 0004): the embedded document store, the references from
outputs to their body documents, and the transactional outbox of domain events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from outputhub.server.storage.tables import TS, Base


class DocumentRow(Base):
    """One document of the embedded document store (used when no MongoDB is configured)."""

    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_collection_org_at", "collection", "org_id", "at", "id"),
        Index("ix_documents_collection_state_at", "collection", "state", "at"),
    )
    collection: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime] = mapped_column(TS)
    state: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class OutputBodyRef(Base):
    """An output has a body document (transcript, token usage, metadata) in the document store."""

    __tablename__ = "output_body_refs"
    output_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("outputs.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    store: Mapped[str] = mapped_column(String(16))
    """``mongo`` or ``sql``: where the document was written."""
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(TS)


class OutboxEvent(Base):
    """A domain event written in the transaction that caused it; deleted once its handlers ran."""

    __tablename__ = "event_outbox"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    created_at: Mapped[datetime] = mapped_column(TS, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


RLS_TABLES = ("documents", "output_body_refs", "event_outbox")
"""On PostgreSQL these are under row-level security; ``documents`` and ``event_outbox`` also admit the
explicit maintenance scope (``outputhub.maintenance = on``) that reconcile, TTL purge and outbox drain use."""
