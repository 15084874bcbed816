"""Sync benchmarks: initial sync of a large library into a fresh encrypted replica, and the edit round trip.

    .venv/bin/python -m bench.sync            # 100k outputs of about 2 KB (takes a few minutes)
    .venv/bin/python -m bench.sync --quick    # 10k outputs
    .venv/bin/python -m bench.sync --backend postgres

The server is the real app under uvicorn in a subprocess (loopback HTTP), filled through the bulk API (so
every record has its stored merge state, as in production); on PostgreSQL the planner statistics are
refreshed after the fill (``ANALYZE``, as autovacuum would; this machine runs it with autovacuum off). In the
same run, as baselines:
- **raw insert**: the same rows, ``executemany`` into one plain table of a fresh SQLCipher file with the
  replica's page size, 16 KiB (what an encrypted SQLite file can take at best, no indexes; the ratios are
  against it), and again with SQLCipher's default 4 KiB pages (``raw_insert_4k_pages_rows_per_s``: the
  baseline of the results recorded before 2026-11-26, when replicas had 4 KiB pages too);
- **replica bulk insert**: the same rows through the replica's own ``bulk_insert_outputs`` (typed rows, link
  tables, full-text index): the floor for storing them usefully.
- **pull only** (``pull_only_rows_per_s``): the same pull with nothing stored, each page fetched and decoded
  in turn (the server's reading and encoding, the transfer, decoding): the ceiling of the initial sync on this
  machine, whose storing shares the same two cores (``ratio_sync_vs_pull_only``).
Then the initial sync (pull everything, apply, verify) is timed end to end, the apply step alone
(``apply_rows_per_s``: ``apply_remote``) and the store step (``store_rows_per_s``: the transactions the pull
opens, commits included), the CPU time the server process and the client process used during it
(``initial_sync_server_cpu_seconds``, ``initial_sync_client_cpu_seconds``; the client's: all its threads)
and what they make the sync's ceiling on this machine: the records over their sum spread over every core
(``initial_sync_cpu_ceiling_rows_per_s``; no scheduling reaches it, the storing runs on one thread), in pages
of 5,000 and again (``initial_sync_page1000_*``) in the desktop's pages of
1,000. Pages of 500 or more new outputs are stored without indexing their text (the search backlog,
desktop/storage/migrations/0003): the sync then ends, and the catch-up the desktop and the CLI run next is
timed apart (``initial_sync_index_seconds``); ``initial_sync_then_indexed_rows_per_s`` is the records over
both, the time until everything is searchable too.
The sync client asks for compressed answers as the desktop does (zstd); ``OUTPUTHUB_COMPRESS_RESPONSES=false``
in the environment runs the server without.
Round trip: with the library present, edit one prompt, push it and pull it back as ``sync()`` does, the
push's answer carrying the changes (protocol 4, one request; p50/p95 over many runs), and again as two
requests, a push then a pull (``round_trip_two_requests_*``: what a protocol 3 server gets, with the push and
pull halves' medians beside), and the full ``sync()`` including the checksum verification. Its
baseline in the same run (``bare_request_pair_ms_p50``): a POST of a push-sized body and a GET to the bare
routes of the same server through the same client, the floor of two requests on this machine at this
minute (``ratio_round_trip_vs_bare_post``: the one-request round trip against the POST alone;
``ratio_two_requests_vs_bare_pair``: the two-request form against both; the machine's speed varies 2x from
hour to hour, the ratios much less).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.api import (
    DEFAULT_CSV,
    SERVER_PIDS,
    _cpu_seconds,
    _ok,
    analyze,
    backend_database,
    load_prompts,
    machine_info,
    output_content,
    running_server,
    set_up_org,
    wait_until_idle,
)
from bench.load import JSON_HEADERS
from bench.server import BARE_PATH
from outputhub.common.ids import new_id_text
from outputhub.desktop.storage import OutputRecord, open_replica
from outputhub.desktop.storage.cipher import LEGACY_PAGE_SIZE, PAGE_SIZE, connect, passphrase_bytes
from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from outputhub.sync.client import HttpRemote, LocalLibrary, SyncClient, SyncReport
from outputhub.sync.ports import ApplyResult, RemoteItem

PASSPHRASE = "bench passphrase, not secret"


def fill(base: str, lib: Any, rows: int, *, url: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """One prompt per source row, then ``rows`` outputs through the bulk endpoint (not timed). On PostgreSQL
    (``url``) the statistics are refreshed after the first 5,000 outputs and at the end, as autovacuum would
    (:func:`bench.api.analyze`)."""
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
                if len(items) == 5000:
                    analyze(url)
        if batch:
            _ok(c.post(f"{lib.base}/outputs/bulk", json={"items": batch}), 201)
            items.extend(batch)
    analyze(url)
    return prompt_ids[0], items


def raw_insert(path: Path, items: Sequence[dict[str, Any]], *, page_size: int = PAGE_SIZE) -> float:
    """rows/s of executemany into one plain table of a fresh encrypted file of ``page_size`` pages."""
    conn = connect(path, key=passphrase_bytes(PASSPHRASE), page_size=page_size)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE outputs (id TEXT PRIMARY KEY, prompt_id TEXT, content TEXT, custom_gpt_id TEXT, "
        "accuracy_level_id TEXT, meta TEXT)"
    )
    rows = [
        (
            new_id_text(),  # time-ordered like the ids the server gave the synced rows
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
            id=new_id_text(),
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
    """Times ``apply_remote`` (``apply_seconds``) and the transactions the pull opens, commits included
    (``store_seconds``: applying, the cursor and the commit; the pull never waits for the server in one)."""

    apply_seconds = 0.0
    store_seconds = 0.0

    def apply_remote(self, items: Sequence[RemoteItem]) -> ApplyResult:
        start = time.perf_counter()
        try:
            return super().apply_remote(items)
        finally:
            self.apply_seconds += time.perf_counter() - start

    @contextlib.contextmanager
    def replayable_transaction(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            with super().replayable_transaction():
                yield
        finally:
            self.store_seconds += time.perf_counter() - start


def initial_sync(
    base: str, lib: Any, path: Path, *, pull_page: int, http: httpx.Client
) -> tuple[dict[str, Any], TimedStore, SyncClient, HttpRemote]:
    """Push (nothing), pull everything into a fresh replica at ``path`` and verify, timed."""
    replica = open_replica(path, passphrase=PASSPHRASE, create=True)
    store = TimedStore(replica)
    store.attach(org_id=lib.org)
    token = lib.headers["Authorization"].split(" ", 1)[1]
    remote = HttpRemote(base, token=token, org_id=lib.org, client=http)
    client = SyncClient(store, remote, pull_page=pull_page)
    server_pid = SERVER_PIDS.get(base)
    server_cpu = _cpu_seconds(server_pid) if server_pid is not None else None
    client_cpu = time.process_time()
    start = time.perf_counter()
    report = SyncReport()
    client.push(report)
    client.pull(report)
    pulled_at = time.perf_counter()
    client.verify(report)
    elapsed = time.perf_counter() - start
    client_cpu = time.process_time() - client_cpu
    server_cpu_end = _cpu_seconds(server_pid) if server_pid is not None else None
    server_cpu = None if server_cpu is None or server_cpu_end is None else server_cpu_end - server_cpu
    total = report.pulled
    # what the desktop and the CLI do next: index the text the large pages left to the catch-up
    waiting = replica.search_backlog()
    indexing = time.perf_counter()
    replica.catch_up_search_index()
    searchable = time.perf_counter() - start
    figures = {
        "pull_seconds": round(pulled_at - start, 2),
        "verify_seconds": round(elapsed - (pulled_at - start), 2),
        "records": total,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(total / elapsed),
        "index_backlog_rows": waiting,
        "index_seconds": round(searchable - (indexing - start), 2),
        "searchable_rows_per_s": round(total / searchable),
        "apply_rows_per_s": round(total / store.apply_seconds),
        "store_rows_per_s": round(total / store.store_seconds),
        "checksum_ok": report.checksum_ok,
        "client_cpu_seconds": round(client_cpu, 2),
    }
    if server_cpu is not None:
        # the work of the whole sync in CPU seconds; spread perfectly over every core, the sync could not
        # be faster than this (it is a ceiling, not a prediction: the storing runs on one thread)
        cpu = client_cpu + server_cpu
        figures["server_cpu_seconds"] = round(server_cpu, 2)
        figures["cpu_ceiling_rows_per_s"] = round(total / (cpu / (os.cpu_count() or 1)))
    return figures, store, client, remote


def pull_only(base: str, lib: Any, *, page: int, http: httpx.Client) -> float:
    """records/s of the whole pull with nothing stored: each page fetched and decoded into the records the
    apply takes, one after the other, as the sync's prefetch thread does (the server's reading and encoding,
    the transfer, decompression and decoding). The initial sync cannot be faster than this on this machine:
    its storing runs beside it, on the same two cores."""
    token = lib.headers["Authorization"].split(" ", 1)[1]
    remote = HttpRemote(base, token=token, org_id=lib.org, client=http)
    client = SyncClient(None, remote, pull_page=page)  # type: ignore[arg-type]  # fetching reads no store
    since, total = 0, 0
    start = time.perf_counter()
    while True:
        fetched, items = client._fetch(since=since, walk=since > 0)
        total += len(items)
        if not fetched.get("has_more"):
            break
        since = int(fetched["next_since"])
    return total / (time.perf_counter() - start)


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
        prompt_id, items = fill(base, lib, rows, url=url)
        results["fill_seconds"] = round(time.perf_counter() - t0, 1)
        # the fill's event handlers and analytics run after the answers: let them finish before any figure
        results["fill_settle_seconds"] = round(wait_until_idle(base), 1)
        results["raw_insert_rows_per_s"] = round(raw_insert(workdir / "raw.db", items))
        # SQLCipher's default page size (and the replica's before 2026-11-26), for comparison
        results["raw_insert_4k_pages_rows_per_s"] = round(
            raw_insert(workdir / "raw-4k.db", items, page_size=LEGACY_PAGE_SIZE)
        )
        results["replica_bulk_insert_rows_per_s"] = round(
            replica_insert(workdir / "bulk.ohr", lib.org, items)
        )

        with httpx.Client(timeout=300) as http:
            results["pull_only_rows_per_s"] = round(pull_only(base, lib, page=5000, http=http))
            figures, store, client, remote = initial_sync(
                base, lib, workdir / "synced.ohr", pull_page=5000, http=http
            )
            replica = store.replica
            results["initial_sync_pull_seconds"] = figures["pull_seconds"]
            results["initial_sync_verify_seconds"] = figures["verify_seconds"]
            results["initial_sync_records"] = figures["records"]
            results["initial_sync_seconds"] = figures["seconds"]
            results["initial_sync_rows_per_s"] = figures["rows_per_s"]
            results["initial_sync_apply_rows_per_s"] = figures["apply_rows_per_s"]
            results["initial_sync_store_rows_per_s"] = figures["store_rows_per_s"]
            results["initial_sync_checksum_ok"] = figures["checksum_ok"]
            results["initial_sync_client_cpu_seconds"] = figures["client_cpu_seconds"]
            if "server_cpu_seconds" in figures:
                results["initial_sync_server_cpu_seconds"] = figures["server_cpu_seconds"]
                results["initial_sync_cpu_ceiling_rows_per_s"] = figures["cpu_ceiling_rows_per_s"]
            results["initial_sync_index_backlog_rows"] = figures["index_backlog_rows"]
            results["initial_sync_index_seconds"] = figures["index_seconds"]
            results["initial_sync_then_indexed_rows_per_s"] = figures["searchable_rows_per_s"]
            results["ratio_sync_then_indexed_vs_replica_bulk"] = round(
                figures["searchable_rows_per_s"] / results["replica_bulk_insert_rows_per_s"], 3
            )
            results["ratio_sync_vs_raw"] = round(
                results["initial_sync_rows_per_s"] / results["raw_insert_rows_per_s"], 3
            )
            results["ratio_sync_vs_replica_bulk"] = round(
                results["initial_sync_rows_per_s"] / results["replica_bulk_insert_rows_per_s"], 3
            )
            results["ratio_sync_vs_pull_only"] = round(
                results["initial_sync_rows_per_s"] / results["pull_only_rows_per_s"], 3
            )
            results["ratio_apply_vs_raw"] = round(
                results["initial_sync_apply_rows_per_s"] / results["raw_insert_rows_per_s"], 3
            )
            wait_until_idle(base)
            # again at the desktop's own page size (its sync worker pulls 1,000 records a page)
            small, small_store, _, small_remote = initial_sync(
                base, lib, workdir / "synced-1000.ohr", pull_page=1000, http=http
            )
            small_remote.close()
            small_store.replica.close()
            for key in (
                "rows_per_s",
                "apply_rows_per_s",
                "store_rows_per_s",
                "checksum_ok",
                "searchable_rows_per_s",
            ):
                results[f"initial_sync_page1000_{key}"] = small[key]

            wait_until_idle(base)
            library = LocalLibrary(store)
            trip: list[float] = []
            apart: list[float] = []
            pushes: list[float] = []
            pulls: list[float] = []
            full: list[float] = []
            for n in range(trips):
                # as sync() does it: the push carries the pull (protocol 4), one request
                library.edit("prompt", prompt_id, {"title": f"Edited {n}"})
                start = time.perf_counter()
                scratch = SyncReport()
                if not client.push(scratch, pull=True).caught_up:
                    raise RuntimeError("the push's answer did not bring the changes back")
                trip.append((time.perf_counter() - start) * 1000)
                # as two requests (what a protocol 3 server gets): push, then pull
                library.edit("prompt", prompt_id, {"title": f"Edited apart {n}"})
                start = time.perf_counter()
                client.push(scratch)
                pushed_at = time.perf_counter()
                client.pull(scratch)
                end = time.perf_counter()
                apart.append((end - start) * 1000)
                pushes.append((pushed_at - start) * 1000)
                pulls.append((end - pushed_at) * 1000)
            for n in range(max(3, trips // 10)):
                library.edit("prompt", prompt_id, {"title": f"Full {n}"})
                start = time.perf_counter()
                client.sync()
                full.append((time.perf_counter() - start) * 1000)
            # the floor in this run: the same requests (a POST of a push-sized body, a GET) to the bare
            # routes of the same server, through the same client (no database, no replica)
            body = orjson.dumps({"protocol": 4, "device": "bench", "changes": [{"op": "x" * 600}]})
            bare: list[float] = []
            bare_post: list[float] = []
            for _ in range(trips):
                start = time.perf_counter()
                _ok(http.post(f"{base}{BARE_PATH}", content=body, headers=JSON_HEADERS), 201)
                posted = time.perf_counter()
                _ok(http.get(f"{base}{BARE_PATH}"), 200)
                bare.append((time.perf_counter() - start) * 1000)
                bare_post.append((posted - start) * 1000)
            results["round_trip_ms_p50"] = round(statistics.median(trip), 1)
            results["round_trip_ms_p95"] = round(pct(trip, 0.95), 1)
            results["round_trip_two_requests_ms_p50"] = round(statistics.median(apart), 1)
            results["round_trip_two_requests_ms_p95"] = round(pct(apart, 0.95), 1)
            # its two halves (medians of each, so they need not add up to the trip's median exactly)
            results["round_trip_push_ms_p50"] = round(statistics.median(pushes), 1)
            results["round_trip_pull_ms_p50"] = round(statistics.median(pulls), 1)
            results["sync_with_verify_ms_p50"] = round(statistics.median(full), 1)
            results["bare_request_pair_ms_p50"] = round(statistics.median(bare), 2)
            results["bare_post_ms_p50"] = round(statistics.median(bare_post), 2)
            # the round trip against its own floor (one POST), the two-request form against a POST and a GET
            results["ratio_round_trip_vs_bare_post"] = round(
                statistics.median(trip) / statistics.median(bare_post), 1
            )
            results["ratio_two_requests_vs_bare_pair"] = round(
                statistics.median(apart) / statistics.median(bare), 1
            )
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
