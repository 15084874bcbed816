"""Webhook delivery throughput: signed deliveries per second through the job queue and worker threads to a
loopback receiver, against the same receiver driven by direct signed POSTs (the floor), in the same run.

    .venv/bin/python -m bench.webhooks [--events 400] [--threads 4]

Variants: the embedded queue (in-process broker) and Redis (a redis-server of its own; dramatiq's Redis
broker, the worker threads in the same process). Each event fans out to one endpoint; the figure is events
published -> every delivery acknowledged by the receiver, including the job table writes per attempt.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from outputhub.server.api.webhooks import signing
from outputhub.server.events import DomainEvent
from tests.redis.support import build_app, receiver, redis_server, wait_for
from tests.support.client import new_org


def direct(url: str, events: int, threads: int) -> float:
    secret = signing.new_secret()
    body = b'{"type":"prompt.created","data":{"id":"x"}}'

    def post(n: int) -> None:
        headers = signing.headers_for([secret], msg_id=f"msg_{n}", timestamp=int(time.time()), body=body)
        client.post(url, content=body, headers=headers).raise_for_status()

    with httpx.Client() as client, ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        list(pool.map(post, range(events)))
        return events / (time.perf_counter() - started)


def through_worker(url: str, events: int, threads: int, **settings: object) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(
            "sqlite",
            tmp=Path(tmp),
            pg_url=None,
            jobs_worker_threads=threads,
            jobs_relay_seconds=0.2,
            rate_limit_enabled=False,
            **settings,
        )
        with TestClient(app) as client:
            org = new_org(client)
            assert org.owner.post(f"{org.base}/webhooks", json={"url": url}).status_code == 201
            services = app.state.services
            org_id = uuid.UUID(org.id)
            started = time.perf_counter()
            for n in range(events):
                services.publish(
                    [
                        DomainEvent(
                            org_id=org_id,
                            kind="prompt.created",
                            entity="prompt",
                            entity_id=str(n),
                            actor="system",
                            at=datetime.now(UTC),
                        )
                    ],
                    set(),
                )
            assert services.jobs.wait_idle(timeout=600)
            elapsed = time.perf_counter() - started
            failed = services.jobs.list_jobs(status="failed")
            assert not failed, failed[0].last_error
        app.state.services.engine.dispose()
    return events / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    with receiver() as sink, redis_server() as redis:
        results = {"direct signed POSTs (floor)": direct(sink.url, args.events, args.threads)}
        before = len(sink.received)
        results["worker, embedded queue"] = through_worker(sink.url, args.events, args.threads)
        results["worker, redis queue"] = through_worker(
            sink.url, args.events, args.threads, redis_url=redis.url, jobs_in_process=True
        )
        wait_for(lambda: len(sink.received) - before >= 2 * args.events, timeout=60)
    floor = results["direct signed POSTs (floor)"]
    print(f"{'variant':<30} {'deliveries/s':>12} {'x floor':>8}")
    for name, value in results.items():
        print(f"{name:<30} {value:12.1f} {value / floor:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
