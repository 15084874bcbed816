"""Cache benchmark: the prompt list's first page, cached vs uncached, in the same run, in-process and Redis.

    .venv/bin/python -m bench.cache [--seconds 8] [--threads 4] [--prompts 300]

Starts the real server (``bench.server`` under uvicorn, embedded SQLite) three times: caching off
(``OUTPUTHUB_CACHE_TTL_SECONDS=0``, the baseline), the in-process cache, and Redis (a redis-server of its own
on a free port). Each gets the same library; then ``GET .../prompts?limit=50`` (and a tag-filtered variant)
is driven for a fixed time. Prints requests/s per variant and the ratio to the uncached baseline.
Rate limiting is switched off for the run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.api import running_server
from bench.load import Request, drive
from tests.redis.support import redis_server


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def seed(base: str, prompts: int) -> tuple[dict[str, str], str, str]:
    with httpx.Client(base_url=base, timeout=60) as c:
        c.post(
            "/api/v1/auth/register",
            json={"email": "b@example.com", "password": "bench password!", "display_name": "b"},
        )
        token = c.post(
            "/api/v1/auth/login", json={"email": "b@example.com", "password": "bench password!"}
        ).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        org = c.post("/api/v1/orgs", json={"name": "bench"}, headers=headers).json()["id"]
        tag = c.post(f"/api/v1/orgs/{org}/tags", json={"name": "hot"}, headers=headers).json()["id"]
        for n in range(prompts):
            body = {
                "title": f"prompt {n}",
                "body": "act as a linux terminal " * 20,
                "tag_ids": [tag] if n % 3 else [],
            }
            r = c.post(f"/api/v1/orgs/{org}/prompts", json=body, headers=headers)
            r.raise_for_status()
        return headers, org, tag


def measure(base: str, *, prompts: int, seconds: float, threads: int) -> float:
    headers, org, tag = seed(base, prompts)
    path = f"/api/v1/orgs/{org}/prompts"
    requests = [
        Request("GET", path, (("limit", "50"),)),
        Request("GET", path, (("limit", "50"), ("tag_id", tag))),
    ]
    drive(base, requests, headers=headers, threads=threads, max_requests=50, time_limit_s=5)  # warm up
    stats = drive(base, requests, headers=headers, threads=threads, max_requests=10**7, time_limit_s=seconds)
    if stats.errors:
        raise RuntimeError(f"errors: {stats.first_error}")
    return stats.ops_per_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=300)
    args = parser.parse_args(argv)
    results: dict[str, float] = {}
    with redis_server() as redis:
        variants = {
            "uncached (baseline)": {"OUTPUTHUB_CACHE_TTL_SECONDS": "0"},
            "in-process cache": {},
            "redis cache": {"OUTPUTHUB_REDIS_URL": redis.url, "OUTPUTHUB_JOBS_IN_PROCESS": "true"},
        }
        for name, extra in variants.items():
            with (
                tempfile.TemporaryDirectory() as tmp,
                env(OUTPUTHUB_RATE_LIMIT_ENABLED="false", **extra),
                running_server(database_url=None, workdir=Path(tmp)) as base,
            ):
                results[name] = measure(
                    base, prompts=args.prompts, seconds=args.seconds, threads=args.threads
                )
            print(f"{name:<22} {results[name]:8.1f} req/s", flush=True)
    baseline = results["uncached (baseline)"]
    print()
    print(f"{'variant':<22} {'req/s':>8} {'x uncached':>11}")
    for name, value in results.items():
        print(f"{name:<22} {value:8.1f} {value / baseline:10.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
