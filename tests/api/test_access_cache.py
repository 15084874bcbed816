"""The remembered access of signed-in callers (server/cache.py ``AccessCache``) never outlives a change:
a demoted, removed, logged-out or deleted-organization caller is refused on the very next request, on
every backend, with the in-process cache and with Redis (and on PostgreSQL without Redis, where nothing is
remembered, the same answers come from the database every time)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from outputhub.common.clock import HLC
from outputhub.common.roles import Role
from outputhub.server.cache import ACCESS_SCOPE, AccessCache, InProcessCache
from outputhub.server.security import AccessClaims
from outputhub.sync.engine import DEFAULT_SCHEMA, make_create
from outputhub.sync.protocol import change_to_wire
from tests.redis.support import build_app, redis_server
from tests.support.client import Org, add_member, new_org

NODE = "access-device"


def _push_prompt(actor: Any, org: Org, title: str) -> dict[str, Any]:
    change = make_create(
        "prompt",
        str(uuid.uuid4()),
        {"title": title, "body": "b"},
        schema=DEFAULT_SCHEMA,
        node=NODE,
        hlc=HLC(int(time.time() * 1000) - 1000, 0, NODE),
        op_id=f"op-{uuid.uuid4()}",
    )
    r = actor.post(
        f"{org.base}/sync/push", json={"protocol": 1, "device": NODE, "changes": [change_to_wire(change)]}
    )
    assert r.status_code == 200, r.text
    return r.json()["results"][0]  # type: ignore[no-any-return]


def _generation(client: TestClient) -> int:
    return client.app.state.services.cache.generation(ACCESS_SCOPE)  # type: ignore[attr-defined]


def _remembers(client: TestClient) -> bool:
    """Whether the app remembers access: one SQLite process, or a Redis cache shared by every process."""
    services = client.app.state.services  # type: ignore[attr-defined]
    expected = bool(services.settings.redis_url) or not services.settings.is_postgres
    assert (services.access_cache is not None) is expected
    return expected


def exercise(client: TestClient) -> None:
    org = new_org(client, name="Access")
    editor = add_member(org, "editor")
    remembers = _remembers(client)

    # remembered: the same answers again without a change in between
    assert _push_prompt(editor, org, "first")["status"] == "applied"
    before = _generation(client)
    assert _push_prompt(editor, org, "second")["status"] == "applied"
    assert editor.get(f"{org.base}/sync/changes", params={"protocol": 1}).status_code == 200
    assert _generation(client) == before, "a sync push or pull does not invalidate remembered access"

    # demoted: the very next op is refused as a viewer's
    r = org.owner.patch(f"{org.base}/members/{editor.user_id}", json={"role": "viewer"})
    assert r.status_code == 200, r.text
    if remembers:
        assert _generation(client) > before, "a committed role change bumps the access generation"
    refused = _push_prompt(editor, org, "third")
    assert refused["status"] == "refused" and refused["error"]["code"] == "permission-denied"
    assert editor.post(f"{org.base}/prompts", json={"title": "t", "body": "b"}).status_code == 403

    # promoted again: writes at once
    r = org.owner.patch(f"{org.base}/members/{editor.user_id}", json={"role": "editor"})
    assert r.status_code == 200, r.text
    assert _push_prompt(editor, org, "fourth")["status"] == "applied"

    # removed: the organization is gone for them (404, not 403)
    assert org.owner.delete(f"{org.base}/members/{editor.user_id}").status_code == 204
    assert editor.get(f"{org.base}/sync/changes", params={"protocol": 1}).status_code == 404

    # logged out: the access token stops working at once, even where access was remembered
    assert org.owner.get(f"{org.base}/sync/changes", params={"protocol": 1}).status_code == 200
    assert org.owner.post("/api/v1/auth/logout").status_code == 204
    assert org.owner.get(f"{org.base}/sync/changes", params={"protocol": 1}).status_code == 401


def test_access_changes_apply_on_the_next_request(client: TestClient) -> None:
    exercise(client)


def test_deleted_org_is_gone_at_once(client: TestClient) -> None:
    org = new_org(client, name="Doomed")
    assert org.owner.get(f"{org.base}/sync/changes", params={"protocol": 1}).status_code == 200
    assert org.owner.delete(org.base).status_code == 204
    assert org.owner.get(f"{org.base}/sync/changes", params={"protocol": 1}).status_code == 404


def test_a_rolled_back_change_does_not_invalidate(client: TestClient) -> None:
    org = new_org(client, name="Rollback")
    editor = add_member(org, "editor")
    before = _generation(client)
    # an editor may not change roles: the request fails before anything is written
    r = editor.patch(f"{org.base}/members/{org.owner.user_id}", json={"role": "viewer"})
    assert r.status_code == 403
    assert _generation(client) == before


@pytest.fixture(scope="module")
def redis_app_client(backend, tmp_path_factory, request):  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    with redis_server() as server:
        app = build_app(
            backend,
            tmp=tmp_path_factory.mktemp(f"access-{backend}"),
            pg_url=url,
            redis_url=server.url,
            redis_retry_seconds=0.5,
            jobs_in_process=True,
        )
        with TestClient(app) as client:
            yield client
        app.state.services.engine.dispose()


def test_access_changes_apply_on_the_next_request_with_redis(redis_app_client: TestClient) -> None:
    exercise(redis_app_client)


def _claims() -> AccessClaims:
    return AccessClaims(user_id=uuid.uuid4(), session_id=uuid.uuid4(), expires_at=datetime.now(UTC))


def test_remembered_access_ends_with_the_login_and_the_generation() -> None:
    access = AccessCache(InProcessCache(), ttl_seconds=60)
    claims, org_id, now = _claims(), uuid.uuid4(), datetime.now(UTC)
    until = now + timedelta(hours=1)
    generation = access.generation()
    access.remember(generation, claims=claims, org_id=org_id, role=Role.EDITOR, session_expires_at=until)
    assert access.lookup(generation, claims=claims, org_id=org_id, now=now) is Role.EDITOR
    assert access.lookup(generation, claims=_claims(), org_id=org_id, now=now) is None  # another login
    assert access.lookup(generation, claims=claims, org_id=uuid.uuid4(), now=now) is None  # another org
    assert access.lookup(generation, claims=claims, org_id=org_id, now=now + timedelta(hours=2)) is None
    access.invalidate()
    assert access.lookup(access.generation(), claims=claims, org_id=org_id, now=now) is None
    # stored under a generation read before a concurrent change: unreachable afterwards
    stale = access.generation()
    access.invalidate()
    access.remember(stale, claims=claims, org_id=org_id, role=Role.OWNER, session_expires_at=until)
    assert access.lookup(access.generation(), claims=claims, org_id=org_id, now=now) is None
    # caching off (TTL 0): nothing is remembered
    off = AccessCache(InProcessCache(), ttl_seconds=0)
    off.remember(0, claims=claims, org_id=org_id, role=Role.EDITOR, session_expires_at=until)
    assert off.lookup(0, claims=claims, org_id=org_id, now=now) is None
