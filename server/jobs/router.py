"""/api/v1/orgs/{org_id}/jobs: the organization's background jobs for owners and admins; failed ones can be
retried. (``outputhub jobs failed`` lists them across organizations.)"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from outputhub.common.errors import StorageError
from outputhub.server.deps import Services, ServicesDep, SessionDep, WebhookManager
from outputhub.server.jobs.queue import JobQueue, JobView

router = APIRouter(prefix="/orgs/{org_id}/jobs", tags=["jobs"])


class JobRead(BaseModel):
    id: uuid.UUID
    kind: str
    status: str
    attempts: int
    max_attempts: int
    payload: dict[str, Any]
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    run_at: datetime
    finished_at: datetime | None


def _queue(services: Services) -> JobQueue:
    if services.jobs is None:
        raise StorageError("background jobs are not configured")
    return services.jobs


def to_read(view: JobView) -> JobRead:
    return JobRead(**{k: getattr(view, k) for k in JobRead.model_fields})


@router.get("")
def list_jobs(
    tenant: WebhookManager,
    services: ServicesDep,
    status: Annotated[
        str | None, Query(pattern="^(pending|queued|running|done|failed)$", description="Only these.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[JobRead]:
    """Newest first. ``status=failed`` lists the dead letters: jobs that used every attempt."""
    return [to_read(v) for v in _queue(services).list_jobs(status=status, org_id=tenant.org_id, limit=limit)]


@router.post("/{job_id}/retry")
def retry_job(
    job_id: uuid.UUID, tenant: WebhookManager, services: ServicesDep, session: SessionDep
) -> JobRead:
    """Run a failed job again, with a fresh set of attempts."""
    return to_read(_queue(services).retry(job_id, org_id=tenant.org_id, session=session))
