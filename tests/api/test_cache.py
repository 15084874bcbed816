"""The read cache never serves a stale list after a write, from any write path, in-process and on Redis."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from tests.redis.support import build_app, redis_server
from tests.support.client import Org, api_key_actor, new_org
from tests.sync.support import make_device


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as server:
        yield server.url


@pytest.fixture(scope="module")
def redis_client(backend, tmp_path_factory, request, redis_url):
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    app = build_app(
        backend,
        tmp=tmp_path_factory.mktemp(f"cache-{backend}"),
        pg_url=url,
        redis_url=redis_url,
        redis_retry_seconds=0.5,
        jobs_in_process=True,
    )
    with TestClient(app) as client:
        yield client
    app.state.services.engine.dispose()


def titles(org: Org, expect_cache: str | None = None) -> list[str]:
    r = org.owner.get(f"{org.base}/prompts")
    assert r.status_code == 200, r.text
    if expect_cache:
        assert r.headers["X-Cache"] == expect_cache
    return sorted(p["title"] for p in r.json()["items"])


def tag_names(org: Org) -> list[str]:
    r = org.owner.get(f"{org.base}/tags")
    assert r.status_code == 200, r.text
    return sorted(t["name"] for t in r.json()["items"])


def exercise_every_write_path(org: Org) -> None:
    o = org.owner
    hit = "hit"
    assert titles(org) == []
    assert titles(org, hit) == []
    created = o.post(f"{org.base}/prompts", json={"title": "first", "body": "b"}).json()
    assert titles(org, "miss") == ["first"]
    assert titles(org, hit) == ["first"]
    assert o.patch(f"{org.base}/prompts/{created['id']}", json={"title": "renamed"}).status_code == 200
    assert titles(org) == ["renamed"]
    # an API key is another write path (another actor, same organization)
    key = o.post(f"{org.base}/api-keys", json={"name": "w", "scope": "write"}).json()["key"]
    writer = api_key_actor(o.client, key)
    assert writer.post(f"{org.base}/prompts", json={"title": "by key", "body": "b"}).status_code == 201
    assert titles(org) == ["by key", "renamed"]
    assert o.delete(f"{org.base}/prompts/{created['id']}").status_code == 204
    assert titles(org) == ["by key"]
    # offline edits arriving through sync push are a write path too
    with tempfile.TemporaryDirectory() as tmp:
        device = make_device(Path(tmp), "laptop", http=o.client, base_url="", token=o.token, org_id=org.id)
        try:
            device.sync()
            by_key = next(
                p["id"] for p in o.get(f"{org.base}/prompts").json()["items"] if p["title"] == "by key"
            )
            assert titles(org, hit) == ["by key"]
            device.library.edit("prompt", by_key, {"title": "synced"})
            device.library.create("prompt", {"title": "made offline", "body": "b"})
            device.sync()
            assert titles(org) == ["made offline", "synced"]
        finally:
            device.replica.close()
    # lookups
    assert tag_names(org) == []
    assert tag_names(org) == []
    tag = o.post(f"{org.base}/tags", json={"name": "alpha"}).json()
    assert tag_names(org) == ["alpha"]
    assert o.patch(f"{org.base}/tags/{tag['id']}", json={"name": "beta"}).status_code == 200
    assert tag_names(org) == ["beta"]
    assert o.delete(f"{org.base}/tags/{tag['id']}").status_code == 204
    assert tag_names(org) == []


@pytest.fixture(scope="module")
def local_client(backend, tmp_path_factory, request):
    """An app of this module's own (the API keys made here would confuse other modules' shared app)."""
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    app = build_app(backend, tmp=tmp_path_factory.mktemp(f"cache-local-{backend}"), pg_url=url)
    with TestClient(app) as client:
        yield client
    app.state.services.engine.dispose()


def test_no_stale_read_after_a_write_in_process(local_client):
    exercise_every_write_path(new_org(local_client, name="cache"))


def test_no_stale_read_after_a_write_on_redis(redis_client):
    exercise_every_write_path(new_org(redis_client, name="cache"))


def test_organizations_do_not_share_entries(redis_client):
    a, b = new_org(redis_client, name="a"), new_org(redis_client, name="b")
    a.owner.post(f"{a.base}/prompts", json={"title": "only in a", "body": "b"})
    assert titles(a) == ["only in a"] and titles(b) == []
    assert titles(b, "hit") == []


def test_redis_outage_bypasses_the_cache_and_recovery_serves_nothing_stale(redis_client, redis_url):
    org = new_org(redis_client, name="outage")
    org.owner.post(f"{org.base}/prompts", json={"title": "before", "body": "b"})
    assert titles(org) == ["before"] and titles(org, "hit") == ["before"]
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # Redis hangs (keeps its data): timeouts
    started = time.monotonic()
    assert titles(org) == ["before"]  # served, from the database
    ready = redis_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["cache"].startswith("degraded"), ready.json()
    # a write while Redis cannot be told about it
    assert org.owner.post(f"{org.base}/prompts", json={"title": "during", "body": "b"}).status_code == 201
    assert titles(org) == ["before", "during"]
    time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
    time.sleep(0.6)  # past the circuit's retry delay
    # Redis is back with the old entry still stored: it must not be served
    assert titles(org) == ["before", "during"]
    assert titles(org) == ["before", "during"]
    assert redis_client.get("/readyz").json()["checks"]["cache"] == "ok"


@pytest.mark.postgres
def test_two_server_processes_on_postgresql_without_redis_serve_no_stale_listing(pg_url, tmp_path):
    """``outputhub serve --workers 3`` without Redis: each worker kept its own cache and its own write
    counter, so a write through one left the others serving the listing as it was, for a minute (QA). Two
    apps on one database stand for two workers (``serve`` tells them how many there are): without a cache
    they all see, listings are not cached."""
    apps = [build_app("postgres", tmp=tmp_path, pg_url=pg_url, server_processes=2) for _ in range(2)]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        org = new_org(first, name="workers")
        through_second = Org(org.id, dataclasses.replace(org.owner, client=second))
        made = org.owner.post(f"{org.base}/prompts", json={"title": "before", "body": "b"})
        assert made.status_code == 201, made.text
        assert titles(through_second, "miss") == ["before"]
        assert titles(through_second, "miss") == ["before"]
        renamed = org.owner.patch(f"{org.base}/prompts/{made.json()['id']}", json={"title": "after"})
        assert renamed.status_code == 200, renamed.text
        assert titles(through_second) == ["after"]
        assert second.get("/readyz").json()["checks"]["cache"].startswith("off")
    for app in apps:
        app.state.services.engine.dispose()


def test_serve_tells_its_workers_how_many_there_are(monkeypatch, tmp_path):
    """Each worker reads its settings from the environment: ``serve --workers 3`` puts the count there."""
    import uvicorn
    from typer.testing import CliRunner

    from outputhub.server.cli import app
    from outputhub.server.settings import Settings

    seen: list[int] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: seen.append(Settings().server_processes))
    monkeypatch.setenv("OUTPUTHUB_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("OUTPUTHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OUTPUTHUB_SERVER_PROCESSES", "1")  # so that what serve sets is undone afterwards
    assert CliRunner().invoke(app, ["serve", "--workers", "3"]).exit_code == 0
    assert seen == [3]
