"""Sync benchmarks: initial sync of a large library into a fresh encrypted replica, and the edit round trip.

    .venv/bin/python -m bench.sync            # 100k outputs of about 2 KB (takes a few minutes)
    .venv/bin/python -m bench.sync --quick    # 10k outputs
    .venv/bin/python -m bench.sync --backend postgres

The server is the real app under uvicorn in a subprocess (loopback HTTP), filled through the bulk API (so
every record has its stored merge state, as in production). In the same run, as baselines:
- **raw insert**: the same rows, ``executemany`` into one plain table of a fresh SQLCipher file (what an
  encrypted SQLite file can take at best, no indexes);
- **replica bulk insert**: the same rows through the replica's own ``bulk_insert_outputs`` (typed rows, link
  tables, full-text index): the floor for storing them usefully.
Then the initial sync (pull everything, apply, verify) is timed end to end, and the apply step alone.
Round trip: with the library present, edit one prompt, push and pull it (p50/p95 over many runs), and the
full ``sync()`` including the checksum verification.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.api import (
    DEFAULT_CSV,
    _ok,
    backend_database,
    load_prompts,
    machine_info,
    output_content,
    running_server,
    set_up_org,
    wait_until_idle,
)
from outputhub.desktop.storage import OutputRecord, open_replica
from outputhub.desktop.storage.cipher import connect, passphrase_bytes
from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from outputhub.sync.client import HttpRemote, LocalLibrary, SyncClient, SyncReport
from outputhub.sync.ports import ApplyResult, RemoteItem

PASSPHRASE = "bench passphrase, not secret"


def fill(base: str, lib: Any, rows: int) -> tuple[str, list[dict[str, Any]]]:
    """One prompt per source row, then ``rows`` outputs through the bulk endpoint (not timed)."""
    items: list[dict[str, Any]] = []
    with httpx.Client(base_url=base, headers=lib.headers, timeout=300) as c:
        prompt_ids = [
            _ok(c.post(f"{lib.base}/prompts", json={"title": s.act[:300], "body": s.prompt}), 201)["id"]
            for s in lib.sources[:50]
        ]
        batch: list[dict[str, Any]] = []
        for n in range(rows):
            src = lib.sources[n % 50]
            batch.append(
                {
                    "prompt_id": prompt_ids[n % 50],
                    "content": output_content(src, n),
                    "custom_gpt_id": lib.custom_gpts[n % len(lib.custom_gpts)],
                    "accuracy_level_id": lib.accuracy_levels[n % len(lib.accuracy_levels)],
                    "knowledge_type_ids": [lib.knowledge_types[n % len(lib.knowledge_types)]],
                    "tag_ids": [next(iter(lib.tags.values()))],
                }
            )
            if len(batch) == 1000:
                _ok(c.post(f"{lib.base}/outputs/bulk", json={"items": batch}), 201)
                items.extend(batch)
                batch = []
        if batch:
            _ok(c.post(f"{lib.base}/outputs/bulk", json={"items": batch}), 201)
            items.extend(batch)
    return prompt_ids[0], items


def raw_insert(path: Path, items: Sequence[dict[str, Any]]) -> float:
    """rows/s of executemany into one plain table of a fresh encrypted file."""
    conn = connect(path, key=passphrase_bytes(PASSPHRASE))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE outputs (id TEXT PRIMARY KEY, prompt_id TEXT, content TEXT, custom_gpt_id TEXT, "
        "accuracy_level_id TEXT, meta TEXT)"
    )
    rows = [
        (
            str(uuid.uuid4()),
            i["prompt_id"],
            i["content"],
            i["custom_gpt_id"],
            i["accuracy_level_id"],
            json.dumps({"k": i["knowledge_type_ids"], "t": i["tag_ids"]}),
        )
        for i in items
    ]
    start = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO outputs VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def replica_insert(path: Path, org: str, items: Sequence[dict[str, Any]]) -> float:
    replica = open_replica(path, passphrase=PASSPHRASE, create=True)
    records = [
        OutputRecord(
            id=str(uuid.uuid4()),
            org_id=org,
            prompt_id=i["prompt_id"],
            content=i["content"],
            custom_gpt_id=i["custom_gpt_id"],
            accuracy_level_id=i["accuracy_level_id"],
            knowledge_type_ids=tuple(i["knowledge_type_ids"]),
            tag_ids=tuple(i["tag_ids"]),
        )
        for i in items
    ]
    start = time.perf_counter()
    replica.bulk_insert_outputs(records)
    elapsed = time.perf_counter() - start
    replica.close()
    return len(records) / elapsed


class TimedStore(ReplicaSyncStore):
    apply_seconds = 0.0

    def apply_remote(self, items: Sequence[RemoteItem]) -> ApplyResult:
        start = time.perf_counter()
        try:
            return super().apply_remote(items)
        finally:
            self.apply_seconds += time.perf_counter() - start


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(backend: str, rows: int, trips: int, workdir: Path) -> dict[str, Any]:
    sources = load_prompts(DEFAULT_CSV)
    results: dict[str, Any] = {"backend": backend, "rows": rows}
    with (
        backend_database(backend) as (url, version),
        running_server(database_url=url, workdir=workdir) as base,
    ):
        results["database_version"] = version
        lib = set_up_org(base, sources)
        t0 = time.perf_counter()
        prompt_id, items = fill(base, lib, rows)
        results["fill_seconds"] = round(time.perf_counter() - t0, 1)
        # the fill's event handlers and analytics run after the answers: let them finish before any figure
        results["fill_settle_seconds"] = round(wait_until_idle(base), 1)
        results["raw_insert_rows_per_s"] = round(raw_insert(workdir / "raw.db", items))
        results["replica_bulk_insert_rows_per_s"] = round(
            replica_insert(workdir / "bulk.ohr", lib.org, items)
        )

        replica = open_replica(workdir / "synced.ohr", passphrase=PASSPHRASE, create=True)
        store = TimedStore(replica)
        store.attach(org_id=lib.org)
        token = lib.headers["Authorization"].split(" ", 1)[1]
        with httpx.Client(timeout=300) as http:
            remote = HttpRemote(base, token=token, org_id=lib.org, client=http)
            client = SyncClient(store, remote, pull_page=5000)
            start = time.perf_counter()
            report = SyncReport()
            client.push(report)
            client.pull(report)
            pulled_at = time.perf_counter()
            client.verify(report)
            elapsed = time.perf_counter() - start
            results["initial_sync_pull_seconds"] = round(pulled_at - start, 2)
            results["initial_sync_verify_seconds"] = round(elapsed - (pulled_at - start), 2)
            total = report.pulled
            results["initial_sync_records"] = total
            results["initial_sync_seconds"] = round(elapsed, 2)
            results["initial_sync_rows_per_s"] = round(total / elapsed)
            results["initial_sync_apply_rows_per_s"] = round(total / store.apply_seconds)
            results["initial_sync_checksum_ok"] = report.checksum_ok
            results["ratio_sync_vs_raw"] = round(
                results["initial_sync_rows_per_s"] / results["raw_insert_rows_per_s"], 3
            )
            results["ratio_sync_vs_replica_bulk"] = round(
                results["initial_sync_rows_per_s"] / results["replica_bulk_insert_rows_per_s"], 3
            )

            wait_until_idle(base)
            library = LocalLibrary(store)
            trip: list[float] = []
            full: list[float] = []
            for n in range(trips):
                library.edit("prompt", prompt_id, {"title": f"Edited {n}"})
                start = time.perf_counter()
                scratch = SyncReport()
                client.push(scratch)
                client.pull(scratch)
                trip.append((time.perf_counter() - start) * 1000)
            for n in range(max(3, trips // 10)):
                library.edit("prompt", prompt_id, {"title": f"Full {n}"})
                start = time.perf_counter()
                client.sync()
                full.append((time.perf_counter() - start) * 1000)
            results["round_trip_ms_p50"] = round(statistics.median(trip), 1)
            results["round_trip_ms_p95"] = round(pct(trip, 0.95), 1)
            results["sync_with_verify_ms_p50"] = round(statistics.median(full), 1)
            remote.close()
        replica.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trips", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="10k rows, 20 round trips")
    args = parser.parse_args(argv)
    rows, trips = (10_000, 20) if args.quick else (args.rows, args.trips)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        results = run(args.backend, rows, trips, Path(tmp))
    results["machine"] = machine_info()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
