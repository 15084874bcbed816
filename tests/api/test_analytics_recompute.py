"""After a write, the default analytics views are recomputed in the background and served from the cache."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient

from outputhub.server.api.analytics import service
from outputhub.server.cache import cache_key
from tests.redis.support import build_app
from tests.support.client import new_org, seed_library


@pytest.fixture(scope="module")
def recompute_client(backend, tmp_path_factory, request):  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    app = build_app(
        backend,
        tmp=tmp_path_factory.mktemp(f"recompute-{backend}"),
        pg_url=url,
        jobs_in_process=True,
        analytics_recompute_delay_seconds=0.0,
    )
    with TestClient(app) as client:
        yield client
    app.state.services.engine.dispose()


def _cached_overview(client: TestClient, org_id: str) -> bytes | None:
    cache = client.app.state.services.cache  # type: ignore[attr-defined]
    key = cache_key(
        cache,
        org_id=uuid.UUID(org_id),
        namespace="analytics.overview",
        params={"filters": service.AnalyticsFilters().cache_params(), "options": {}},
    )
    return cache.get(key)  # type: ignore[no-any-return]


def test_a_write_recomputes_the_default_views_in_the_background(recompute_client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(recompute_client, name="Recompute")
    ids = seed_library(org)
    deadline = time.monotonic() + 20
    while _cached_overview(recompute_client, org.id) is None:
        assert time.monotonic() < deadline, "the recompute job did not fill the cache"
        time.sleep(0.1)
    served = org.owner.get(f"{org.base}/analytics/overview").json()
    assert served["outputs"] == 1
    # another write: the old entry is unreachable at once, and the job fills the new generation
    org.owner.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "two"})
    deadline = time.monotonic() + 20
    while _cached_overview(recompute_client, org.id) is None:
        assert time.monotonic() < deadline, "the recompute job did not refill the cache"
        time.sleep(0.1)
    assert org.owner.get(f"{org.base}/analytics/overview").json()["outputs"] == 2


class _RecordingQueue:
    """Stands in for the job queue only (no storage): records what the handler schedules."""

    def __init__(self) -> None:
        self.scheduled: list[dict[str, object]] = []

    def enqueue(
        self, *, kind: str, payload: dict[str, object], org_id: uuid.UUID, delay_seconds: float
    ) -> None:
        self.scheduled.append(payload)


def test_a_recompute_waits_until_the_library_settles(client) -> None:  # type: ignore[no-untyped-def]
    """Queued, then written to again: the job re-queues itself instead of computing views the next write
    throws away; once nothing changed since it was queued, it fills the cache."""
    from outputhub.server.api.analytics.recompute import RECOMPUTE_JOB, AnalyticsRecompute
    from outputhub.server.cache import InProcessCache
    from outputhub.server.jobs.queue import JobContext

    org = new_org(client, name="Settle")
    seed_library(org)
    org_id = uuid.UUID(org.id)
    cache = InProcessCache()
    queue = _RecordingQueue()
    handler = AnalyticsRecompute(
        session_factory=client.app.state.services.session_factory,  # type: ignore[attr-defined]
        cache=cache,
        queue=queue,  # type: ignore[arg-type]
        delay_seconds=5.0,
    )

    def run(generation: int) -> None:
        handler.run(
            JobContext(
                job_id=uuid.uuid4(),
                kind=RECOMPUTE_JOB,
                org_id=org_id,
                payload={"org_id": org.id, "generation": generation},
                attempt=1,
                max_attempts=3,
            )
        )

    def cached() -> bytes | None:
        key = cache_key(
            cache,
            org_id=org_id,
            namespace="analytics.overview",
            params={"filters": service.AnalyticsFilters().cache_params(), "options": {}},
        )
        return cache.get(key)

    queued_at = cache.generation(org_id)
    cache.bump(org_id)  # a write after the job was queued
    run(queued_at)
    assert cached() is None
    assert queue.scheduled == [{"org_id": org.id, "generation": cache.generation(org_id)}]
    run(cache.generation(org_id))  # nothing written since: compute
    assert cached() is not None
    assert len(queue.scheduled) == 1
