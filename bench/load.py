"""A small closed-loop load driver: N client threads, each with its own keep-alive ``httpx.Client``.

Every run is bounded twice: by a request count and by a time limit (no new request starts after the
deadline; a request in flight is allowed to finish, and each has an HTTP timeout), so it always stops.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Request:
    """One prepared request: the body is encoded up front so the client spends no time building it."""

    method: str
    path: str
    params: Sequence[tuple[str, str]] = ()
    body: bytes | None = None
    expect: int = 200


@dataclass
class RunStats:
    requests: int
    errors: int
    elapsed_s: float
    latencies_ms: list[float] = field(repr=False)
    first_error: str | None = None
    stopped_by: str = "count"

    @property
    def ops_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        rank = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[rank]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "ops_per_s": round(self.ops_per_s, 2),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies_ms), 2) if self.latencies_ms else None,
            "stopped_by": self.stopped_by,
            "first_error": self.first_error,
        }


def drive(
    base_url: str,
    requests: Sequence[Request],
    *,
    headers: dict[str, str],
    threads: int,
    max_requests: int,
    time_limit_s: float,
    timeout_s: float = 120.0,
) -> RunStats:
    """Send up to ``max_requests`` requests (cycling through ``requests``) from ``threads`` threads."""
    if not requests:
        raise ValueError("no requests to send")
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    hit_deadline = threading.Event()
    start_gate = threading.Barrier(threads + 1)
    deadline = 0.0

    def worker() -> None:
        local: list[float] = []
        local_errors: list[str] = []
        with httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s) as client:
            start_gate.wait()
            while True:
                index = next(counter)
                if index >= max_requests:
                    break
                if time.perf_counter() >= deadline:
                    hit_deadline.set()
                    break
                req = requests[index % len(requests)]
                began = time.perf_counter()
                try:
                    response = client.request(
                        req.method,
                        req.path,
                        params=list(req.params) or None,
                        content=req.body,
                        headers=JSON_HEADERS if req.body is not None else None,
                    )
                    response.read()
                    status_ok = response.status_code == req.expect
                    detail = f"{response.status_code} {response.text[:300]}"
                except httpx.HTTPError as exc:
                    status_ok = False
                    detail = f"{exc.__class__.__name__}: {exc}"
                took = (time.perf_counter() - began) * 1000
                if status_ok:
                    local.append(took)
                else:
                    local_errors.append(f"{req.method} {req.path}: {detail}")
        with lock:
            latencies.extend(local)
            errors.extend(local_errors)

    pool = [threading.Thread(target=worker, name=f"bench-client-{i}", daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    deadline = time.perf_counter() + time_limit_s
    started = time.perf_counter()
    start_gate.wait()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    return RunStats(
        requests=len(latencies),
        errors=len(errors),
        elapsed_s=elapsed,
        latencies_ms=latencies,
        first_error=errors[0] if errors else None,
        stopped_by="time" if hit_deadline.is_set() else "count",
    )
