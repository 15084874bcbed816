"""The job queue on a real Redis: nothing is lost when Redis stops mid-run; failed jobs stay visible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from outputhub.server.events import DomainEvent
from tests.redis.support import build_app, receiver, redis_server, wait_for
from tests.support.client import new_org

FAST = {
    "jobs_in_process": True,
    "jobs_relay_seconds": 0.2,
    "jobs_stale_seconds": 2.0,
    "redis_retry_seconds": 0.5,
    "webhook_retry_base_seconds": 0.2,
    "webhook_retry_max_seconds": 0.5,
    "webhook_timeout_seconds": 2.0,
}


def event(org_id: str, n: int) -> DomainEvent:
    return DomainEvent(
        org_id=uuid.UUID(org_id),
        kind="prompt.created",
        entity="prompt",
        entity_id=f"p{n}",
        actor="system",
        at=datetime.now(UTC),
    )


def test_redis_stopped_mid_run_loses_no_delivery(tmp_path: Path):
    with redis_server() as server, receiver() as sink:
        app = build_app("sqlite", tmp=tmp_path, pg_url=None, redis_url=server.url, **FAST)
        with TestClient(app) as client:
            services = app.state.services
            org = new_org(client)
            assert org.owner.post(f"{org.base}/webhooks", json={"url": sink.url}).status_code == 201

            def delivered() -> set[str]:
                return {json.loads(r.body)["data"]["id"] for r in sink.received}

            for n in range(5):
                services.publish([event(org.id, n)], set())
            wait_for(lambda: {f"p{n}" for n in range(5)} <= delivered())

            server.stop()  # SIGKILL, no persistence: whatever Redis held is gone
            for n in range(5, 15):
                services.publish([event(org.id, n)], set())
            # the API keeps serving, and says what is degraded
            assert org.owner.get(f"{org.base}/prompts").status_code == 200
            checks = client.get("/readyz").json()["checks"]
            assert checks["database"] == "ok" and checks["jobs"].startswith("degraded"), checks
            assert org.owner.post(f"{org.base}/prompts", json={"title": "t", "body": "b"}).status_code == 201

            server.start()  # an empty Redis on the same port
            expected = {f"p{n}" for n in range(15)}
            wait_for(lambda: expected <= delivered(), timeout=30)  # (+ the prompt created meanwhile)
            assert services.jobs.wait_idle(timeout=15)
            assert services.jobs.list_jobs(status="failed") == []
        app.state.services.engine.dispose()


def test_failed_jobs_are_kept_and_listed_by_the_cli(tmp_path: Path):
    app = build_app(
        "sqlite",
        tmp=tmp_path,
        pg_url=None,
        jobs_retry_base_seconds=0.05,
        jobs_max_attempts=3,
        jobs_relay_seconds=0.2,
    )
    with TestClient(app):
        queue = app.state.services.jobs
        calls: list[int] = []

        def always_fails(ctx) -> None:
            calls.append(ctx.attempt)
            raise RuntimeError(f"boom {ctx.attempt}")

        def works(ctx) -> None:
            calls.append(-ctx.attempt)

        queue.registry.register("test.fails", always_fails)
        queue.registry.register("test.works", works)
        failing = queue.enqueue(kind="test.fails", payload={"n": 1})
        ok = queue.enqueue(kind="test.works", payload={})
        assert queue.wait_idle(timeout=20)
        assert sorted(calls) == [-1, 1, 2, 3]  # OUTPUTHUB_JOBS_MAX_ATTEMPTS=3
        view = queue.get(failing)
        assert view.status == "failed" and view.attempts == 3 and "boom 3" in view.last_error
        assert queue.get(ok).status == "done"
    app.state.services.engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPUTHUB_")}
    env["OUTPUTHUB_DATA_DIR"] = str(tmp_path)
    exe = str(Path(sys.executable).with_name("outputhub"))
    out = subprocess.run(
        [exe, "jobs", "failed", "--json"], env=env, capture_output=True, text=True, check=True
    )
    listed = [json.loads(line) for line in out.stdout.splitlines()]
    assert [j["id"] for j in listed] == [str(failing)]
    assert listed[0]["kind"] == "test.fails" and listed[0]["payload"] == {"n": 1}
