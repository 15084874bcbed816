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
