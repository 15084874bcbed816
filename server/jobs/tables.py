"""The job table: every background job, from enqueue to done or failed (the dead letters stay here)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from outputhub.server.storage.tables import TS, Base


class JobStatus:
    PENDING = "pending"
    """Written, not yet handed to the queue (the outbox)."""
    QUEUED = "queued"
    """Handed to the queue, to run at ``run_at``."""
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    """Failed for good after ``max_attempts``: kept (the dead letter) until retried or purged."""


class Job(Base):
    """A system table (no row-level security): the worker reads across organizations; the admin API
    filters by ``org_id`` itself."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_run_at", "status", "run_at"),
        Index("ix_jobs_org_status", "org_id", "status"),
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[str] = mapped_column(String(100))
    org_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_at: Mapped[datetime] = mapped_column(TS)
    locked_until: Mapped[datetime | None] = mapped_column(TS)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)
    finished_at: Mapped[datetime | None] = mapped_column(TS)
