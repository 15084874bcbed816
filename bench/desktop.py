"""Desktop app benchmark: a big encrypted replica in the real PySide6 window (offscreen).

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m bench.desktop [--quick] [--outputs N] [--sync-rows N]

1. **Start to first painted list**: a replica holding ``--outputs`` outputs (200,000; ``bulk_insert_outputs``,
   ~1 KB each, the prompts of ``awesome-chatgpt-prompts.csv``) is unlocked (key derivation included), the
   main window built and the Outputs page shown; the clock stops at the first paint of its table with rows.
   Beside it, the deep paging cost: one page (200 rows) at offset 0, the middle and the end.
2. **Full-text search**: ``Replica.search`` p50/p95 over 300 queries (one, two and prefix words; goal p95 <
   20 ms) and the Outputs page's search-as-you-type call (``LibraryService.list_outputs(query=...)``: search
   plus rows with names resolved), against the baseline of a plain first page (no search).
3. **GUI stall during a sync**: a real server (``bench.server`` under uvicorn in a subprocess, SQLite) holds
   ``--sync-rows`` outputs (100,000); a fresh replica syncs them through the window's "Sync now" while a
   10 ms ``QTimer`` measures how late the event loop serves it. Reported: the longest and p99 lateness, next
   to the same probe on an idle window (the baseline), and the sync's duration and rows/s.

Results: a table on stdout and ``bench/results/desktop-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.api import (
    DEFAULT_CSV,
    PASSWORD,
    RESULTS_DIR,
    Library,
    load_prompts,
    machine_info,
    output_item,
    running_server,
    set_up_org,
)

PASSPHRASE = "bench horse battery staple"
LOCAL_BYTES = 1000
QUERIES = (
    "terminal",
    "english teacher",
    "story",
    "act as",
    "code review",
    "travel guide",
    "interview",
    "poem",
    "lang*",
    "excel sheet",
    "python",
    "debate",
    "recipe",
    "doctor",
    "motivation",
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# --- 1 and 2: a big local replica -------------------------------------------------------------------------


def build_replica(path: Path, count: int, sources: list[Any]) -> dict[str, Any]:
    from outputhub.desktop.storage import OutputRecord, open_replica
    from outputhub.desktop.storage.sync_store import ReplicaSyncStore
    from outputhub.sync.client import LocalLibrary

    replica = open_replica(path, passphrase=PASSPHRASE, create=True)
    lib = LocalLibrary(ReplicaSyncStore(replica))
    models = [
        lib.create("gpt_model", {"name": n, "position": i}) for i, n in enumerate(("GPT-4o", "o3", "GPT-5"))
    ]
    levels = [
        lib.create("accuracy_level", {"name": n, "position": i})
        for i, n in enumerate(("Accurate", "Partly", "Wrong"))
    ]
    kinds = [
        lib.create("knowledge_type", {"name": n, "position": i})
        for i, n in enumerate(("Code", "Prose", "Data"))
    ]
    tags = [lib.create("tag", {"name": n}) for n in ("backend", "frontend", "data", "ops", "writing", "fun")]
    prompts = [lib.create("prompt", {"title": s.act, "body": s.prompt}) for s in sources[:200]]
    t0 = datetime(2025, 1, 1, tzinfo=UTC)

    def rows() -> Iterator[OutputRecord]:
        for n in range(count):
            src = sources[n % 200]
            text = (f"Output {n} for '{src.act}'. " + f"{src.prompt} " * 8)[:LOCAL_BYTES]
            at = t0 + timedelta(seconds=n * 60)
            yield OutputRecord(
                id=str(uuid.UUID(int=n + 1, version=4)),
                org_id="local",
                prompt_id=prompts[n % len(prompts)],
                content=text,
                gpt_model_id=models[n % 3],
                accuracy_level_id=levels[n % 3],
                knowledge_type_ids=(kinds[n % 3],),
                tag_ids=(tags[n % len(tags)],),
                produced_at=at,
                created_at=at,
                updated_at=at,
            )

    started = time.perf_counter()
    replica.bulk_insert_outputs(rows())
    elapsed = time.perf_counter() - started
    replica.close()
    return {
        "outputs": count,
        "insert_s": round(elapsed, 1),
        "rows_per_s": round(count / elapsed),
        "file_mb": round(path.stat().st_size / 1e6),
    }


def first_paint(app: Any, path: Path) -> dict[str, Any]:
    from PySide6.QtCore import QEvent, QObject

    from outputhub.desktop.app import build_window
    from outputhub.desktop.jobs import JobRunner
    from outputhub.desktop.services import vault

    painted: dict[str, float] = {}

    class PaintProbe(QObject):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
            if event.type() == QEvent.Type.Paint and self.model.rowCount() and "t" not in painted:
                painted["t"] = time.perf_counter()
            return False

    start = time.perf_counter()
    replica = vault.unlock_replica(path=path, passphrase=PASSPHRASE)
    unlocked = time.perf_counter()
    runner = JobRunner(max_threads=3)
    session = build_window(replica=replica, runner=runner, sync_interval_ms=3_600_000)
    outputs = session.window.pages.outputs
    probe = PaintProbe(outputs.model)
    outputs.list.table.viewport().installEventFilter(probe)
    session.window.show()
    session.window.navigation.setCurrentRow(1)
    deadline = time.perf_counter() + 60
    while "t" not in painted and time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.001)
    result = {
        "unlock_ms": ms(unlocked - start),
        "window_to_paint_ms": ms(painted["t"] - unlocked),
        "start_to_first_paint_ms": ms(painted["t"] - start),
        "rows_shown": outputs.model.rowCount(),
    }
    from outputhub.desktop.services.library import OutputFilter

    library = session.library
    total = replica.count_live(table="outputs")
    for label, offset in (
        ("page_at_0_ms", 0),
        ("page_at_middle_ms", total // 2),
        ("page_at_end_ms", total - 200),
    ):
        t = time.perf_counter()
        library.list_outputs(filter=OutputFilter(), offset=offset, limit=200)
        result[label] = ms(time.perf_counter() - t)
    runner.wait_for_done()
    session.window.close()
    return {"result": result, "replica": replica, "library": library}


def search_figures(replica: Any, library: Any, *, rounds: int) -> dict[str, Any]:
    from outputhub.desktop.services.library import OutputFilter

    rng = random.Random(7)
    queries = [rng.choice(QUERIES) for _ in range(rounds)]
    replica.search("warm up", limit=20)
    fts: list[float] = []
    hits = 0
    for q in queries:
        t = time.perf_counter()
        hits += len(replica.search(q, limit=50, entities=("output",)))
        fts.append(time.perf_counter() - t)
    page: list[float] = []
    for q in queries[: rounds // 3]:
        t = time.perf_counter()
        library.list_outputs(filter=OutputFilter(query=q), limit=200)
        page.append(time.perf_counter() - t)
    base: list[float] = []
    for _ in range(rounds // 3):
        t = time.perf_counter()
        library.list_outputs(filter=OutputFilter(), limit=50)
        base.append(time.perf_counter() - t)
    return {
        "fts_p50_ms": ms(statistics.median(fts)),
        "fts_p95_ms": ms(percentile(fts, 0.95)),
        "fts_avg_hits": round(hits / rounds, 1),
        "search_page_p50_ms": ms(statistics.median(page)),
        "search_page_p95_ms": ms(percentile(page, 0.95)),
        "baseline_first_page_50_p50_ms": ms(statistics.median(base)),
    }


# --- 3: GUI stall during a sync -----------------------------------------------------------------------------


class LatenessProbe:
    """A 10 ms repeating timer; records how late each tick is served (the GUI thread's stalls)."""

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval = interval_ms / 1000
        self.late: list[float] = []
        self.last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.late.append(max(0.0, now - self.last - self.interval))
        self.last = now

    def run_until(self, app: Any, done: Callable[[], bool], timeout_s: float) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        self.late.clear()
        self.last = time.perf_counter()
        self.timer.start()
        loop = QEventLoop()
        check = QTimer()
        check.setInterval(50)
        deadline = time.perf_counter() + timeout_s
        check.timeout.connect(lambda: (done() or time.perf_counter() > deadline) and loop.quit())
        check.start()
        loop.exec()
        check.stop()
        self.timer.stop()

    def figures(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_max_stall_ms": ms(max(self.late, default=0)),
            f"{prefix}_p99_stall_ms": ms(percentile(self.late, 0.99) if self.late else 0),
            f"{prefix}_ticks": len(self.late),
        }


def seed_server(base: str, rows: int, sources: list[Any]) -> tuple[Library, str]:
    lib = set_up_org(base, sources)
    with httpx.Client(base_url=base, timeout=120, headers=lib.headers) as c:
        for s in sources[:50]:
            r = c.post(f"{lib.base}/prompts", json={"title": s.act, "body": s.prompt})
            r.raise_for_status()
            lib.prompt_ids.append(r.json()["id"])
        for start in range(0, rows, 500):
            items = [output_item(lib, n) for n in range(start, min(rows, start + 500))]
            c.post(f"{lib.base}/outputs/bulk", json={"items": items}).raise_for_status()
        me = c.get("/api/v1/auth/me").json()
    return lib, me["email"]


def sync_stall(app: Any, workdir: Path, rows: int, sources: list[Any]) -> dict[str, Any]:
    from outputhub.desktop.app import build_window
    from outputhub.desktop.jobs import JobRunner
    from outputhub.desktop.storage import open_replica

    with running_server(database_url=None, workdir=workdir) as base:
        t = time.perf_counter()
        _lib, email = seed_server(base, rows, sources)
        seeded = time.perf_counter() - t
        replica = open_replica(workdir / "sync.ohb", passphrase=PASSPHRASE, create=True)
        runner = JobRunner(max_threads=3)
        session = build_window(replica=replica, runner=runner, sync_interval_ms=3_600_000)
        session.window.show()
        session.window.navigation.setCurrentRow(1)
        session.sync.login(server_url=base, email=email, password=PASSWORD, auto_sync=False)
        probe = LatenessProbe()
        probe.run_until(app, lambda: runner.running == 0, 10)  # idle baseline (page loads settle first)
        probe.run_until(app, lambda: False, 3)
        idle = probe.figures("idle")
        statuses: list[str] = []
        session.controller.status_changed.connect(lambda s: statuses.append(s.text))
        t = time.perf_counter()
        session.controller.sync_now()
        probe.run_until(app, lambda: not session.controller.running, 1800)
        took = time.perf_counter() - t
        during = probe.figures("sync")
        pulled = replica.count_live(table="outputs")
        runner.wait_for_done()
        session.window.close()
        replica.close()
    return {
        "server_rows": rows,
        "server_seed_s": round(seeded, 1),
        "sync_s": round(took, 1),
        "synced_outputs": pulled,
        "sync_rows_per_s": round(pulled / took),
        **idle,
        **during,
        "status_updates": len(statuses),
        "final_status": statuses[-1] if statuses else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k local outputs, 10k synced rows")
    parser.add_argument("--outputs", type=int, default=None)
    parser.add_argument("--sync-rows", type=int, default=None)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    args = parser.parse_args(argv)
    outputs = args.outputs or (20_000 if args.quick else 200_000)
    sync_rows = args.sync_rows if args.sync_rows is not None else (10_000 if args.quick else 100_000)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    sources = load_prompts(args.csv)
    report: dict[str, Any] = {"machine": machine_info(), "at": datetime.now(UTC).isoformat()}
    with tempfile.TemporaryDirectory(prefix="bench-desktop-") as tmp:
        work = Path(tmp)
        print(f"building a replica with {outputs:,} outputs…", flush=True)
        report["replica"] = build_replica(work / "big.ohb", outputs, sources)
        print(json.dumps(report["replica"]), flush=True)
        shown = first_paint(app, work / "big.ohb")
        report["first_paint"] = shown["result"]
        print(json.dumps(report["first_paint"]), flush=True)
        report["search"] = search_figures(shown["replica"], shown["library"], rounds=300)
        print(json.dumps(report["search"]), flush=True)
        shown["replica"].close()
        if sync_rows:
            print(f"seeding a server with {sync_rows:,} outputs and syncing them in the window…", flush=True)
            report["sync"] = sync_stall(app, work, sync_rows, sources)
            print(json.dumps(report["sync"]), flush=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"desktop-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2))
    f, s = report["first_paint"], report["search"]
    print("\n| figure | value |\n| --- | --- |")
    print(f"| outputs in the replica | {outputs:,} ({report['replica']['file_mb']} MB) |")
    print(f"| unlock (KDF + open) | {f['unlock_ms']} ms |")
    print(f"| start to first painted list | {f['start_to_first_paint_ms']} ms |")
    print(
        f"| page of 200 at offset 0 / middle / end | {f['page_at_0_ms']} / {f['page_at_middle_ms']} / "
        f"{f['page_at_end_ms']} ms |"
    )
    print(f"| FTS search p50 / p95 (goal p95 < 20 ms) | {s['fts_p50_ms']} / {s['fts_p95_ms']} ms |")
    print(
        f"| search-as-you-type page p50 / p95 (baseline plain page {s['baseline_first_page_50_p50_ms']} ms)"
        f" | {s['search_page_p50_ms']} / {s['search_page_p95_ms']} ms |"
    )
    if "sync" in report:
        y = report["sync"]
        ratio = y["sync_max_stall_ms"] / max(y["idle_max_stall_ms"], 0.01)
        print(
            f"| sync of {y['synced_outputs']:,} outputs | {y['sync_s']} s ({y['sync_rows_per_s']:,} rows/s) |"
        )
        print(
            f"| longest GUI stall during sync (goal < 50 ms) | {y['sync_max_stall_ms']} ms (p99 "
            f"{y['sync_p99_stall_ms']} ms); idle baseline {y['idle_max_stall_ms']} ms, ratio {ratio:.1f}x |"
        )
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
