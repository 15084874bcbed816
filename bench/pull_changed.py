"""Pulling records the replica holds, changed on the server: taken as the server has them, against merged.

    .venv/bin/python -m bench.pull_changed                  # 20,000 outputs; 5 prompts deleted with their
                                                            # outputs, 1,000 other outputs edited
    .venv/bin/python -m bench.pull_changed --rows 100000 --deleted-prompts 10 --edited 2000
    .venv/bin/python -m bench.pull_changed --backend postgres

The server is the real app under uvicorn in a subprocess (loopback HTTP), filled through the bulk API as in
``bench.sync`` (50 prompts, the outputs spread over them). A replica syncs everything; then, on the server,
``--deleted-prompts`` prompts are deleted with their outputs (``DELETE ...?cascade=true``: one tombstone per
output) and ``--edited`` other outputs get a new note (``PATCH``). Two copies of that replica then sync once
each:

- **taken** (``sync_taking_*``, the client since 2026-11-29): a pulled record with no local edit (synced,
  nothing in the outbox) is stored as the server has it;
- **baseline, merged** (``sync_merging_*``): the same client whose store merges every pulled record it holds
  field by field with its own copy, as every pull did before.

Both end with the check against the server's sums (asserted), and with the same rows. Each figure is the
wall time of ``SyncClient.sync()``; the ratio is the baseline's time over the new one's. The copies are
synced alternately, ``--trips`` times each (a fresh copy every time), and the medians reported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.api import (
    DEFAULT_CSV,
    backend_database,
    load_prompts,
    machine_info,
    running_server,
    set_up_org,
    wait_until_idle,
)
from bench.sync import PASSPHRASE, fill
from outputhub.desktop.storage import open_replica, tables
from outputhub.desktop.storage.sync_store import SPEC, ReplicaSyncStore, stored_state
from outputhub.sync.client import HttpRemote, SyncClient, SyncReport
from outputhub.sync.ports import ApplyResult, RemoteItem


class MergingStore(ReplicaSyncStore):
    """The store as it was before 2026-11-29: every pulled record it holds merged with its own copy (unless
    the two states are the same)."""

    def _merge_one(self, conn: Any, item: RemoteItem, result: ApplyResult, *, walking: bool = False) -> None:
        old = tables.get(conn, SPEC[item.entity], item.record_id)
        assert old is not None
        wire = stored_state(item.entity, old)
        if wire is not None and wire == item.state:
            self._same_state(conn, item, old, wire, result)
        else:
            self._merge_states(conn, item, old, result)


def sync_copy(source: Path, target: Path, remote: HttpRemote, store_kind: type[ReplicaSyncStore]) -> Any:
    shutil.copyfile(source, target)
    replica = open_replica(target, passphrase=PASSPHRASE)
    try:
        client = SyncClient(store_kind(replica), remote, pull_page=5000)
        start = time.perf_counter()
        report = client.sync()
        seconds = time.perf_counter() - start
        with replica.reading("compare") as conn:
            rows = conn.execute(
                "SELECT id, revision, deleted, notes, field_clocks FROM outputs ORDER BY id"
            ).fetchall()
        return seconds, report, rows
    finally:
        replica.close()
        target.unlink()


def run(
    backend: str, rows: int, deleted_prompts: int, edited: int, trips: int, workdir: Path
) -> dict[str, Any]:
    sources = load_prompts(DEFAULT_CSV)
    results: dict[str, Any] = {
        "backend": backend,
        "rows": rows,
        "deleted_prompts": deleted_prompts,
        "edited": edited,
    }
    with (
        backend_database(backend) as (url, version),
        running_server(database_url=url, workdir=workdir) as base,
    ):
        results["database_version"] = version
        lib = set_up_org(base, sources)
        t0 = time.perf_counter()
        fill(base, lib, rows, url=url)
        results["fill_seconds"] = round(time.perf_counter() - t0, 1)
        token = lib.headers["Authorization"].split(" ", 1)[1]
        with httpx.Client(timeout=300) as http:
            source = workdir / "up-to-date.ohr"
            replica = open_replica(source, passphrase=PASSPHRASE, create=True)
            store = ReplicaSyncStore(replica)
            store.attach(org_id=lib.org)
            first = SyncClient(
                store, HttpRemote(base, token=token, org_id=lib.org, client=http), pull_page=5000
            )
            results["initial_sync_records"] = first.sync().pulled
            replica.close()

            prompts = http.get(f"{base}{lib.base}/prompts", params={"limit": 200}, headers=lib.headers).json()
            doomed = [p["id"] for p in prompts["items"]][:deleted_prompts]
            for ident in doomed:
                answer = http.delete(
                    f"{base}{lib.base}/prompts/{ident}", params={"cascade": "true"}, headers=lib.headers
                )
                assert answer.status_code == 204, answer.text
            listed: list[str] = []
            cursor: str | None = None
            while len(listed) < edited:
                params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
                page = http.get(f"{base}{lib.base}/outputs", params=params, headers=lib.headers).json()
                listed += [item["id"] for item in page["items"] if item["prompt_id"] not in doomed]
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            for n, ident in enumerate(listed[:edited]):
                answer = http.patch(
                    f"{base}{lib.base}/outputs/{ident}", json={"notes": f"reviewed {n}"}, headers=lib.headers
                )
                assert answer.status_code == 200, answer.text
            results["settle_seconds"] = round(wait_until_idle(base), 1)

            timings: dict[str, list[float]] = {"taking": [], "merging": []}
            reports: dict[str, SyncReport] = {}
            ends: dict[str, Any] = {}
            for _ in range(trips):
                for name, kind in (("taking", ReplicaSyncStore), ("merging", MergingStore)):
                    remote = HttpRemote(base, token=token, org_id=lib.org, client=http)
                    seconds, report, ends[name] = sync_copy(source, workdir / f"{name}.ohr", remote, kind)
                    assert report.checksum_ok and not report.repaired, (name, report)
                    timings[name].append(seconds)
                    reports[name] = report
            assert ends["taking"] == ends["merging"], "the two stores must end with the same rows"
    for name in ("taking", "merging"):
        results[f"sync_{name}_seconds_p50"] = round(statistics.median(timings[name]), 3)
        results[f"sync_{name}_pulled"] = reports[name].pulled
        results[f"sync_{name}_records_per_s"] = round(reports[name].pulled / statistics.median(timings[name]))
    results["ratio_merging_vs_taking"] = round(
        results["sync_merging_seconds_p50"] / results["sync_taking_seconds_p50"], 2
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--deleted-prompts", type=int, default=5)
    parser.add_argument("--edited", type=int, default=1_000)
    parser.add_argument("--trips", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-pull-changed-") as tmp:
        results = run(args.backend, args.rows, args.deleted_prompts, args.edited, args.trips, Path(tmp))
    results["machine"] = machine_info()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
