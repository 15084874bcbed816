"""Audit-log write overhead per mutation, for the embedded and the MongoDB (SecantusDB) document stores.

    .venv/bin/python -m bench.audit [--requests 300] [--rounds 3] [--stores embedded,mongo]

The real app (``create_app``, embedded SQLite as the SQL database) is driven in-process through
``TestClient``, one request at a time, creating outputs (``POST .../outputs``, ~1 KB of content). Three
configurations run in the same process, interleaved in rounds so that drift hits them alike:

* ``audit on``: the default: the event goes to the outbox table in the transaction, then to the audit log;
* ``audit off``: ``OUTPUTHUB_AUDIT_ENABLED=false``: the outbox row is still written and cleared;
* ``no outbox``: neither (the baseline: what the request costs without any event durability).

MongoDB: ``OUTPUTHUB_TEST_MONGO_URL`` or a SecantusDB started for the run. Prints a table (ms per request,
ratios against the baseline) and writes ``bench/results/audit-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from outputhub.server.main import create_app
from outputhub.server.settings import Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PASSWORD = "bench horse battery staple"
CONFIGS = ("audit on", "audit off", "no outbox")


def _client(
    stack: ExitStack, *, config: str, mongo_url: str | None
) -> tuple[TestClient, str, dict[str, str], str]:
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-audit-")))
    settings = Settings(
        data_dir=tmp,
        secret_key="bench-secret-key-long-enough-for-hs256-signing",
        mongo_url=mongo_url,
        mongo_database=f"bench_{uuid.uuid4().hex[:8]}",
        audit_enabled=config == "audit on",
        rate_limit_enabled=False,
    )
    app = create_app(settings)
    if config == "no outbox":
        app.state.services = dataclasses.replace(app.state.services, outbox=None)
    client = stack.enter_context(TestClient(app))
    email = f"bench-{uuid.uuid4().hex[:6]}@example.com"
    client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "B"})
    token = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()[
        "access_token"
    ]
    headers = {"Authorization": f"Bearer {token}"}
    org = client.post("/api/v1/orgs", json={"name": "Bench"}, headers=headers).json()["id"]
    prompt = client.post(
        f"/api/v1/orgs/{org}/prompts", json={"title": "P", "body": "b"}, headers=headers
    ).json()
    return client, org, headers, prompt["id"]


def _run(client: TestClient, org: str, headers: dict[str, str], prompt: str, n: int) -> float:
    content = "x" * 1024
    start = time.perf_counter()
    for _ in range(n):
        r = client.post(
            f"/api/v1/orgs/{org}/outputs", json={"prompt_id": prompt, "content": content}, headers=headers
        )
        assert r.status_code == 201, r.text
    return (time.perf_counter() - start) / n * 1000


def measure(store: str, *, mongo_url: str | None, requests: int, rounds: int) -> dict[str, object]:
    with ExitStack() as stack:
        clients = {c: _client(stack, config=c, mongo_url=mongo_url) for c in CONFIGS}
        for c in CONFIGS:  # warm-up
            _run(*clients[c], n=20)
        samples: dict[str, list[float]] = {c: [] for c in CONFIGS}
        for _ in range(rounds):
            for c in CONFIGS:
                samples[c].append(_run(*clients[c], n=requests))
    ms = {c: statistics.median(v) for c, v in samples.items()}
    base = ms["no outbox"]
    return {
        "store": store,
        "ms_per_request": ms,
        "samples": samples,
        "ratio_vs_no_outbox": {c: ms[c] / base for c in CONFIGS},
        "audit_overhead_ms": ms["audit on"] - ms["audit off"],
        "outbox_overhead_ms": ms["audit off"] - base,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=300, help="output creations per configuration and round"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stores", default="embedded,mongo")
    args = parser.parse_args(argv)
    results = []
    with ExitStack() as stack:
        for store in args.stores.split(","):
            mongo_url = None
            if store == "mongo":
                from tests.support.mongo import mongo_server

                mongo_url = stack.enter_context(mongo_server())
            results.append(measure(store, mongo_url=mongo_url, requests=args.requests, rounds=args.rounds))
    print(f"{'store':<10} {'config':<10} {'ms/request':>11} {'vs no outbox':>13}")
    for r in results:
        for c in CONFIGS:
            ms, ratio = r["ms_per_request"][c], r["ratio_vs_no_outbox"][c]
            print(f"{r['store']:<10} {c:<10} {ms:>11.2f} {ratio:>12.2f}x")
        print(
            f"{r['store']:<10} audit write: +{r['audit_overhead_ms']:.2f} ms/mutation, "
            f"outbox: +{r['outbox_overhead_ms']:.2f} ms/mutation"
        )
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"audit-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "python": platform.python_version(),
                "args": vars(args),
                "results": results,
            },
            indent=2,
        )
    )
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
