"""Rate limits per user, per API key and per address: 429 problem responses with Retry-After."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from tests.redis.support import build_app, redis_server
from tests.support.client import api_key_actor, new_org, register

LIMITS = {
    "rate_limit_enabled": True,
    # windows are fixed: a test's requests straddling a window's end (1 in ~60 runs with 60 s windows, seen
    # in CI) would start counting again; an hour makes that ~1 in 3,600
    "rate_limit_window_seconds": 3600,
    "rate_limit_per_user": 8,
    "rate_limit_per_api_key": 5,
    "rate_limit_anonymous": 6,
}


@pytest.fixture(scope="module", params=["in-process", "redis"])
def limited(request, tmp_path_factory):
    with redis_server() as server:
        apps = []

        def make() -> TestClient:
            extra = {"redis_url": server.url} if request.param == "redis" else {}
            app = build_app("sqlite", tmp=tmp_path_factory.mktemp("rl"), pg_url=None, **LIMITS, **extra)
            apps.append(app)
            return TestClient(app, client=(f"client-{uuid.uuid4().hex[:8]}", 50000))  # own address

        yield request.param, make
        for app in apps:
            app.state.services.engine.dispose()


def test_user_over_the_limit_gets_429_with_retry_after(limited):
    _, make = limited
    with make() as client:
        org = new_org(client)  # register + login + create: anonymous 2, user 1
        statuses = [org.owner.get(f"{org.base}/prompts").status_code for _ in range(10)]
        assert statuses.count(200) == 7 and statuses[-1] == 429, statuses
        r = org.owner.get(f"{org.base}/prompts")
        assert r.status_code == 429
        assert r.headers["content-type"].startswith("application/problem+json")
        assert 1 <= int(r.headers["Retry-After"]) <= 3600
        assert r.json()["status"] == 429
        # another user has a budget of their own, and health checks are never limited
        assert register(client).get("/api/v1/orgs").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_api_keys_are_limited_per_key(limited):
    _, make = limited
    with make() as client:
        org = new_org(client)
        keys = [
            org.owner.post(f"{org.base}/api-keys", json={"name": f"k{i}", "scope": "read"}).json()["key"]
            for i in range(2)
        ]
        first, second = (api_key_actor(client, k) for k in keys)
        assert [first.get(f"{org.base}/prompts").status_code for _ in range(6)][-1] == 429
        assert second.get(f"{org.base}/prompts").status_code == 200
        assert first.get(f"{org.base}/prompts").headers["Retry-After"]


def test_unauthenticated_callers_are_limited_per_address(limited):
    _, make = limited
    with make() as client:
        codes = [
            client.post(
                "/api/v1/auth/login", json={"email": "x@example.com", "password": "wrong"}
            ).status_code
            for _ in range(8)
        ]
        assert 429 in codes and codes.index(429) == 6, codes


def test_with_redis_the_limit_is_shared_by_every_server_process(limited):
    kind, make = limited
    if kind != "redis":
        return  # in-process counters are per process by design
    with make() as one, make() as two:
        org = new_org(one)
        other_process = api_key_actor(two, org.owner.token)
        codes = [org.owner.get(f"{org.base}/prompts").status_code for _ in range(4)]
        codes += [other_process.get(f"{org.base}/prompts").status_code for _ in range(4)]
        assert codes.count(429) == 1 and codes[-1] == 429, codes
