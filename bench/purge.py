"""The sync after a tombstone purge: what an up-to-date replica pulls, with the purge log and without it.

    .venv/bin/python -m bench.purge                   # 20,000 outputs, 1,000 of them deleted and purged
    .venv/bin/python -m bench.purge --rows 100000 --deleted 5000
    .venv/bin/python -m bench.purge --backend postgres

The server is the real app under uvicorn in a subprocess (loopback HTTP), filled through the bulk API as in
``bench.sync``. Some outputs are deleted (REST ``DELETE``), a replica syncs (it now holds their
tombstones), and the server purges them (``outputhub sync purge-tombstones --older-than-days 0``, the
command an operator runs). Two copies of that replica then sync once each:

- **with the purge log** (``sync_after_purge_*``): the page names what the purge removed and the replica
  drops its copies; the check after it matches;
- **baseline, without it** (``sync_ignoring_purge_log_*``): the same client with ``purged`` stripped from
  every page, as a client of before 2026-11-29 saw it: the check does not match the server's sums (the
  replica still holds the purged tombstones), and the replica repairs itself by pulling everything again.

Each figure is the wall time of ``SyncClient.sync()`` and the records it pulled; the ratio is the baseline's
time over the new one's. The two copies are synced alternately, ``--trips`` times each (a fresh copy every
time), and the medians reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from bench.api import (
    DEFAULT_CSV,
    REPO,
    backend_database,
    load_prompts,
    machine_info,
    running_server,
    set_up_org,
    wait_until_idle,
)
from bench.sync import PASSPHRASE, fill
from outputhub.desktop.storage import open_replica
from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from outputhub.sync.client import HttpRemote, SyncClient, SyncReport


class WithoutPurgeLog(HttpRemote):
    """A remote whose pages lose ``purged``: what a client that predates the purge log acts on."""

    def pull(self, **kwargs: Any) -> Mapping[str, Any]:  # type: ignore[override]
        page = dict(super().pull(**kwargs))
        page.pop("purged", None)
        return page

    def push(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        answer = super().push(*args, **kwargs)
        changes = answer.get("changes") if isinstance(answer, Mapping) else None
        if isinstance(changes, Mapping):
            answer = {**answer, "changes": {k: v for k, v in changes.items() if k != "purged"}}
        return answer


def purge(workdir: Path, database_url: str | None) -> str:
    """The operator's command against the running server's database."""
    env = {**os.environ, "OUTPUTHUB_DATA_DIR": str(workdir / "data")}
    if database_url:
        env["OUTPUTHUB_DATABASE_URL"] = database_url
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from outputhub.server.cli import main; main()",
            "sync",
            "purge-tombstones",
            "--older-than-days",
            "0",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def sync_copy(source: Path, target: Path, remote: HttpRemote) -> tuple[float, SyncReport]:
    shutil.copyfile(source, target)
    replica = open_replica(target, passphrase=PASSPHRASE)
    try:
        client = SyncClient(ReplicaSyncStore(replica), remote, pull_page=5000)
        start = time.perf_counter()
        report = client.sync()
        return time.perf_counter() - start, report
    finally:
        replica.close()
        target.unlink()


def run(backend: str, rows: int, deleted: int, trips: int, workdir: Path) -> dict[str, Any]:
    sources = load_prompts(DEFAULT_CSV)
    results: dict[str, Any] = {"backend": backend, "rows": rows, "deleted": deleted}
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
            listed: list[str] = []
            cursor: str | None = None
            while len(listed) < deleted:
                params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
                page = http.get(f"{base}{lib.base}/outputs", params=params, headers=lib.headers).json()
                listed += [item["id"] for item in page["items"]]
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            for ident in listed[:deleted]:
                answer = http.delete(f"{base}{lib.base}/outputs/{ident}", headers=lib.headers)
                assert answer.status_code == 204, answer.text
            results["settle_seconds"] = round(wait_until_idle(base), 1)

            source = workdir / "up-to-date.ohr"
            replica = open_replica(source, passphrase=PASSPHRASE, create=True)
            store = ReplicaSyncStore(replica)
            store.attach(org_id=lib.org)
            first = SyncClient(
                store, HttpRemote(base, token=token, org_id=lib.org, client=http), pull_page=5000
            )
            results["initial_sync_records"] = first.sync().pulled
            replica.close()
            results["purge"] = purge(workdir, url)

            new, old = HttpRemote, WithoutPurgeLog
            timings: dict[str, list[float]] = {"new": [], "old": []}
            reports: dict[str, SyncReport] = {}
            for _ in range(trips):
                for name, kind in (("new", new), ("old", old)):
                    remote = kind(base, token=token, org_id=lib.org, client=http)
                    seconds, report = sync_copy(source, workdir / f"{name}.ohr", remote)
                    assert report.checksum_ok, (name, report)
                    timings[name].append(seconds)
                    reports[name] = report
    for name, label in (("new", "sync_after_purge"), ("old", "sync_ignoring_purge_log")):
        results[f"{label}_seconds_p50"] = round(statistics.median(timings[name]), 3)
        results[f"{label}_pulled"] = reports[name].pulled
        results[f"{label}_dropped"] = reports[name].purged
        results[f"{label}_repaired"] = reports[name].repaired
    results["ratio_without_vs_with_purge_log"] = round(
        results["sync_ignoring_purge_log_seconds_p50"] / results["sync_after_purge_seconds_p50"], 1
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--deleted", type=int, default=1_000)
    parser.add_argument("--trips", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-purge-") as tmp:
        results = run(args.backend, args.rows, args.deleted, args.trips, Path(tmp))
    results["machine"] = machine_info()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
