"""Desktop app benchmark: a big encrypted replica in the real PySide6 window (offscreen).

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m bench.desktop [--quick] [--outputs N] [--sync-rows N]
        [--only local|search|stall|refresh] [--sync-modes thread,process] [--replica PATH]
        [--refresh-rounds N]

1. **Start to first painted list**: a replica holding ``--outputs`` outputs (200,000; ``bulk_insert_outputs``,
   ~1 KB each, the prompts of ``awesome-chatgpt-prompts.csv``) is unlocked (key derivation included), the
   main window built and the Outputs page shown; the clock stops at the first paint of its table with rows.
   Beside it, the deep paging cost: one page (200 rows) at offset 0, the middle and the end.
2. **Full-text search**: ``Replica.search`` p50/p95 over 300 queries (one, two and prefix words; goal p95 <
   20 ms), overall and per kind of query, and the Outputs page's search-as-you-type call
   (``LibraryService.list_outputs(query=...)``, a page of 200: search plus rows with names resolved) and its
   capped match count, against the baseline of a plain first page (no search). Two more kinds are measured
   beside the 300 (not in the overall figure): a rare word with a very common one, and 2-3 letter prefixes.
   ``--only search`` runs this part alone; with ``--replica PATH`` the big replica is built there once and
   reused by later runs (the same file for before/after comparisons).
3. **GUI stall during a sync**: a real server (``bench.server`` under uvicorn in a subprocess, SQLite) holds
   ``--sync-rows`` outputs (100,000); a fresh replica syncs them through the window's "Sync now" while a
   10 ms ``QTimer`` measures how late the event loop serves it. Reported: the longest and p99 lateness, next
   to the same probe on an idle window (the baseline), and the sync's duration and rows/s. Per
   ``--sync-modes``, on the same server in the same run: ``thread`` (the sync on a job-runner thread of the
   GUI process, as before issue 4's fix) and ``process`` (the app's sync process, ``desktop/sync_worker.py``).
   After each sync the probe runs on while the lists refresh with what was pulled (``refresh_*``: at least
   a second, and until the refresh's jobs are done).
4. **The lists' refresh after a sync, alone** (``--only refresh``): the window over the replica of part 1
   (``--outputs``, or ``--replica``) on the Outputs page, refreshed ``--refresh-rounds`` times as when a
   sync has finished (``MainWindow.data_changed``), each probed for a second, with no server nor sync
   competing for the CPU. Every probe also reports the most CPU the GUI thread used between two ticks
   (its own work, against the waits for a CPU or the interpreter lock).

Results: a table on stdout and ``bench/results/desktop-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
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


QUERY_KINDS: dict[str, tuple[str, ...]] = {
    "one word": tuple(q for q in QUERIES if " " not in q and not q.endswith("*")),
    "two words": tuple(q for q in QUERIES if " " in q),
    "prefix": tuple(q for q in QUERIES if q.endswith("*")),
}
EXTRA_KINDS: dict[str, tuple[str, ...]] = {  # measured beside the 300 queries, not part of the overall figure
    "rare + very common word": ("act interview", "as recipe", "you debate"),
    "2-3 letter prefix": ("te*", "co*", "pro*"),
}


def open_for_search(path: Path) -> tuple[Any, Any]:
    """The replica (unlocked as the app does) and the Outputs page's service, without a window."""
    from outputhub.desktop.services import vault
    from outputhub.desktop.services.editing import make_editor
    from outputhub.desktop.services.library import LibraryService

    replica = vault.unlock_replica(path=path, passphrase=PASSPHRASE)
    return replica, LibraryService(replica=replica, editor=make_editor(replica))


def _p50_p95(values: list[float]) -> dict[str, float]:
    return {"p50_ms": ms(statistics.median(values)), "p95_ms": ms(percentile(values, 0.95))}


def search_figures(replica: Any, library: Any, *, rounds: int) -> dict[str, Any]:
    from outputhub.desktop.services.library import OutputFilter

    rng = random.Random(7)
    queries = [rng.choice(QUERIES) for _ in range(rounds)]
    kind_of = {q: kind for kind, qs in (QUERY_KINDS | EXTRA_KINDS).items() for q in qs}
    counting = hasattr(library, "count_output_matches")  # (absent before the capped counts)
    replica.search("warm up", limit=20)
    fts: list[float] = []
    by_kind: dict[str, dict[str, list[float]]] = {}
    hits = 0

    def timed(kind: str, what: str, call: Callable[[], Any]) -> Any:
        t, cpu = time.perf_counter(), time.thread_time()
        result = call()
        took, cpu = time.perf_counter() - t, time.thread_time() - cpu
        by_kind.setdefault(kind, {}).setdefault(what, []).append(took)
        by_kind[kind].setdefault(f"{what}_cpu", []).append(cpu)  # this thread's CPU: less load-dependent
        return result, took

    for q in queries:
        found, took = timed(kind_of[q], "fts", lambda q=q: replica.search(q, limit=50, entities=("output",)))
        hits += len(found)
        fts.append(took)
    extra = [q for qs in EXTRA_KINDS.values() for q in qs] * max(1, rounds // 30)
    for q in extra:
        timed(kind_of[q], "fts", lambda q=q: replica.search(q, limit=50, entities=("output",)))
    page: list[float] = []
    counts: list[float] = []
    for q in queries[: rounds // 3] + extra[: len(extra) // 3]:
        flt = OutputFilter(query=q)
        _rows, took = timed(kind_of[q], "page", lambda flt=flt: library.list_outputs(filter=flt, limit=200))
        if kind_of[q] not in EXTRA_KINDS:
            page.append(took)
        if counting:
            _n, took = timed(kind_of[q], "count", lambda flt=flt: library.count_output_matches(filter=flt))
            if kind_of[q] not in EXTRA_KINDS:
                counts.append(took)
    base: list[float] = []
    base200: list[float] = []
    for _ in range(rounds // 3):
        t = time.perf_counter()
        library.list_outputs(filter=OutputFilter(), limit=50)
        base.append(time.perf_counter() - t)
        t = time.perf_counter()
        library.list_outputs(filter=OutputFilter(), limit=200)
        base200.append(time.perf_counter() - t)
    result: dict[str, Any] = {
        "fts_p50_ms": ms(statistics.median(fts)),
        "fts_p95_ms": ms(percentile(fts, 0.95)),
        "fts_avg_hits": round(hits / rounds, 1),
        "fts_cpu": _p50_p95([v for k in QUERY_KINDS for v in by_kind.get(k, {}).get("fts_cpu", [])]),
        "search_page_p50_ms": ms(statistics.median(page)),
        "search_page_p95_ms": ms(percentile(page, 0.95)),
        "baseline_first_page_50_p50_ms": ms(statistics.median(base)),
        "baseline_first_page_200": _p50_p95(base200),
        "kinds": {
            kind: {what: {"n": len(v), **_p50_p95(v)} for what, v in figures.items()}
            for kind, figures in by_kind.items()
        },
    }
    if counts:
        result["count"] = _p50_p95(counts)
    return result


def print_search_table(s: dict[str, Any]) -> None:
    print(
        "\n| query kind | `Replica.search` p50 / p95 (CPU p95) | search page of 200 p50 / p95 (CPU p95) "
        "| count p50 / p95 (CPU p95) |"
    )
    print("| --- | --- | --- | --- |")
    for kind, figures in s["kinds"].items():
        cells = [
            f"{figures[w]['p50_ms']} / {figures[w]['p95_ms']} ms ({figures[w + '_cpu']['p95_ms']})"
            if w in figures
            else "-"
            for w in ("fts", "page", "count")
        ]
        print(f"| {kind} (n={figures['fts']['n']}) | {' | '.join(cells)} |")
    b = s["baseline_first_page_200"]
    print(f"| baseline: plain first page of 200 | | {b['p50_ms']} / {b['p95_ms']} ms | |")


# --- 3: GUI stall during a sync -----------------------------------------------------------------------------


def run_queue_wait_s() -> float | None:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux schedstat), else None."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class LatenessProbe:
    """A 10 ms repeating timer; records how late each tick is served (the GUI thread's stalls).

    On Linux each tick also records how long the GUI thread waited for a CPU since the previous tick (the
    scheduler's run queue: other processes had the cores). Lateness beyond that wait is the GUI thread's
    own: waiting for the interpreter lock, or work on it. Full garbage collections in this process (any
    thread; they hold the interpreter lock) are counted and timed too."""

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval = interval_ms / 1000
        self.late: list[float] = []
        self.cpu_wait: list[float] = []
        self.gui_cpu: list[float] = []  # CPU time the GUI thread used between two ticks (its own work)
        self.last = time.perf_counter()
        self.last_wait = run_queue_wait_s()
        self.last_cpu = time.thread_time()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.full_gc: list[float] = []
        self._gc_started = 0.0

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.full_gc.append(time.perf_counter() - self._gc_started)

    def _tick(self) -> None:
        now, wait, cpu = time.perf_counter(), run_queue_wait_s(), time.thread_time()
        self.late.append(max(0.0, now - self.last - self.interval))
        if wait is not None and self.last_wait is not None:
            self.cpu_wait.append(wait - self.last_wait)
        self.gui_cpu.append(cpu - self.last_cpu)
        self.last, self.last_wait, self.last_cpu = now, wait, cpu

    def run_until(self, app: Any, done: Callable[[], bool], timeout_s: float) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        self.late.clear()
        self.cpu_wait.clear()
        self.gui_cpu.clear()
        self.full_gc.clear()
        self.last, self.last_wait, self.last_cpu = time.perf_counter(), run_queue_wait_s(), time.thread_time()
        gc.callbacks.append(self._gc)
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
        gc.callbacks.remove(self._gc)

    def figures(self, prefix: str) -> dict[str, float]:
        out = {
            f"{prefix}_max_stall_ms": ms(max(self.late, default=0)),
            f"{prefix}_p99_stall_ms": ms(percentile(self.late, 0.99) if self.late else 0),
            f"{prefix}_ticks": len(self.late),
            f"{prefix}_stalls_over_30ms": sum(late > 0.03 for late in self.late),
            f"{prefix}_full_gcs": len(self.full_gc),
            f"{prefix}_full_gc_max_ms": ms(max(self.full_gc, default=0)),
            f"{prefix}_max_gui_cpu_per_tick_ms": ms(max(self.gui_cpu, default=0)),
        }
        if len(self.cpu_wait) == len(self.late) and self.late:
            own = [max(0.0, late - wait) for late, wait in zip(self.late, self.cpu_wait, strict=True)]
            out[f"{prefix}_max_stall_beyond_cpu_wait_ms"] = ms(max(own))
            out[f"{prefix}_p99_stall_beyond_cpu_wait_ms"] = ms(percentile(own, 0.99))
        return out


def seed_server(base: str, rows: int, sources: list[Any]) -> tuple[Library, str]:
    lib = set_up_org(base, sources)
    with httpx.Client(base_url=base, timeout=120, headers=lib.headers) as c:
        email = c.get("/api/v1/auth/me").raise_for_status().json()["email"]

        def post(path: str, body: dict[str, Any]) -> httpx.Response:
            r = c.post(path, json=body)
            if r.status_code == 401:  # a long seed on a slow machine outlives the 15-minute access token
                login = c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                c.headers["Authorization"] = f"Bearer {login.raise_for_status().json()['access_token']}"
                r = c.post(path, json=body)
            return r.raise_for_status()

        for s in sources[:50]:
            created = post(f"{lib.base}/prompts", {"title": s.act, "body": s.prompt})
            lib.prompt_ids.append(created.json()["id"])
        for start in range(0, rows, 500):
            items = [output_item(lib, n) for n in range(start, min(rows, start + 500))]
            post(f"{lib.base}/outputs/bulk", {"items": items})
    return lib, email


def sync_stall(app: Any, workdir: Path, rows: int, sources: list[Any], modes: list[str]) -> dict[str, Any]:
    """Seed the server once, then per mode (``thread``: the sync on a job-runner thread of the GUI process;
    ``process``: the app's sync process) sync a fresh replica through the window and probe the GUI thread."""
    with running_server(database_url=None, workdir=workdir) as base:
        t = time.perf_counter()
        _lib, email = seed_server(base, rows, sources)
        out: dict[str, Any] = {"server_rows": rows, "server_seed_s": round(time.perf_counter() - t, 1)}
        for mode in modes:
            print(f"  syncing in mode {mode}…", flush=True)
            out[mode] = sync_in_window(app, workdir / f"sync-{mode}.ohb", base, email, mode=mode)
            print(f"  {json.dumps(out[mode])}", flush=True)
    return out


def sync_in_window(app: Any, path: Path, base: str, email: str, *, mode: str) -> dict[str, Any]:
    from outputhub.desktop.app import build_window, settle_startup_objects
    from outputhub.desktop.jobs import JobRunner
    from outputhub.desktop.jobs.sync_process import WORKER_PULL_PAGE
    from outputhub.desktop.services.sync import PULL_PAGE
    from outputhub.desktop.storage import open_replica

    replica = open_replica(path, passphrase=PASSPHRASE, create=True)
    runner = JobRunner(max_threads=3)
    session = build_window(
        replica=replica, runner=runner, sync_interval_ms=3_600_000, sync_in_process=mode == "thread"
    )
    session.window.show()
    settle_startup_objects()  # as ``outputhub.desktop.app.run`` does
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
    ended = time.perf_counter()  # the lists refresh with what was pulled: probed until their jobs are done
    probe.run_until(app, lambda: runner.running == 0 and time.perf_counter() - ended > 1, 60)  # and painted
    refresh = probe.figures("refresh")
    pulled = replica.count_live(table="outputs")
    session.shutdown()
    session.window.close()
    replica.close()
    return {
        "mode": mode,
        "pull_page": PULL_PAGE if mode == "thread" else WORKER_PULL_PAGE,
        "sync_s": round(took, 1),
        "synced_outputs": pulled,
        "sync_rows_per_s": round(pulled / took),
        **idle,
        **during,
        **{k: v for k, v in refresh.items() if not k.endswith("_ticks")},
        "status_updates": len(statuses),
        "final_status": statuses[-1] if statuses else "",
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }


# --- 4: the lists' refresh after a sync, alone ----------------------------------------------------------


def refresh_stall(app: Any, path: Path, *, rounds: int) -> dict[str, Any]:
    """The window over the replica at ``path``, on the Outputs page, refreshed ``rounds`` times the way it
    is when a sync has finished (``MainWindow.data_changed({"*"})``), each time probed for at least a second
    and until the refresh's jobs are done: no server, no sync, so the figure is the refresh's alone."""
    from outputhub.desktop.app import build_window, settle_startup_objects
    from outputhub.desktop.jobs import JobRunner
    from outputhub.desktop.services import vault

    replica = vault.unlock_replica(path=path, passphrase=PASSPHRASE)
    runner = JobRunner(max_threads=3)
    session = build_window(replica=replica, runner=runner, sync_interval_ms=3_600_000)
    window = session.window
    window.show()
    settle_startup_objects()
    window.navigation.setCurrentRow(1)
    probe = LatenessProbe()
    probe.run_until(app, lambda: runner.running == 0, 30)  # the first page
    probe.run_until(app, lambda: False, 2)
    out: dict[str, Any] = {"outputs": replica.count_live(table="outputs"), "rounds": rounds}
    out.update(probe.figures("idle"))
    late: list[float] = []
    waits: list[float] = []
    cpus: list[float] = []
    round_max: list[float] = []
    for _ in range(rounds):
        settled_at = time.perf_counter() + 1
        window.data_changed(frozenset({"*"}))
        probe.run_until(app, lambda at=settled_at: runner.running == 0 and time.perf_counter() > at, 30)
        late += probe.late
        waits += probe.cpu_wait
        cpus += probe.gui_cpu
        round_max.append(ms(max(probe.late, default=0)))
    probe.late, probe.cpu_wait, probe.gui_cpu = late, waits, cpus
    out.update(probe.figures("refresh"))
    out["refresh_max_stall_per_round_ms"] = round_max
    out["rows_shown"] = window.pages.outputs.model.rowCount()
    out["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    runner.wait_for_done()
    session.shutdown()
    window.close()
    replica.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k local outputs, 10k synced rows")
    parser.add_argument("--outputs", type=int, default=None)
    parser.add_argument("--sync-rows", type=int, default=None)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument(
        "--only",
        choices=("local", "search", "stall", "refresh"),
        default=None,
        help="local: parts 1 and 2; search: part 2; stall: part 3; refresh: part 4",
    )
    parser.add_argument(
        "--refresh-rounds", type=int, default=10, help="part 4: how many refreshes to probe (10)"
    )
    parser.add_argument(
        "--replica",
        type=Path,
        default=None,
        help="parts 1, 2 and 4: keep the big replica at PATH (built when missing, reused when present)",
    )
    parser.add_argument(
        "--sync-modes",
        default="thread,process",
        help="part 3: where the sync runs, comma-separated (thread: in the GUI process, the old way; "
        "process: the app's sync process)",
    )
    args = parser.parse_args(argv)
    modes = [m for m in args.sync_modes.split(",") if m]
    if not modes or set(modes) - {"thread", "process"}:
        parser.error("--sync-modes: thread and/or process")
    outputs = args.outputs or (20_000 if args.quick else 200_000)
    sync_rows = args.sync_rows if args.sync_rows is not None else (10_000 if args.quick else 100_000)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    sources = load_prompts(args.csv)
    report: dict[str, Any] = {"machine": machine_info(), "at": datetime.now(UTC).isoformat()}
    with tempfile.TemporaryDirectory(prefix="bench-desktop-") as tmp:
        work = Path(tmp)
        if args.only not in ("stall", "refresh"):
            big = args.replica or work / "big.ohb"
            if big.exists():
                print(f"reusing the replica {big}", flush=True)
                report["replica"] = {
                    "outputs": outputs,
                    "reused": str(big),
                    "file_mb": big.stat().st_size // 10**6,
                }
            else:
                print(f"building a replica with {outputs:,} outputs…", flush=True)
                report["replica"] = build_replica(big, outputs, sources)
            print(json.dumps(report["replica"]), flush=True)
            if args.only == "search":
                replica, library = open_for_search(big)
                shown = {"replica": replica, "library": library}
            else:
                shown = first_paint(app, big)
                report["first_paint"] = shown["result"]
                print(json.dumps(report["first_paint"]), flush=True)
            report["load_avg_1m_before_search"] = round(os.getloadavg()[0], 2)
            report["search"] = search_figures(shown["replica"], shown["library"], rounds=300)
            print(json.dumps(report["search"]), flush=True)
            shown["replica"].close()
        if args.only in (None, "refresh"):
            big = args.replica or work / "big.ohb"
            if not big.exists():
                print(f"building a replica with {outputs:,} outputs…", flush=True)
                report["replica"] = build_replica(big, outputs, sources)
            print(f"refreshing the Outputs list {args.refresh_rounds} times…", flush=True)
            report["refresh"] = refresh_stall(app, big, rounds=args.refresh_rounds)
            print(json.dumps(report["refresh"]), flush=True)
        if sync_rows and args.only not in ("local", "search", "refresh"):
            print(f"seeding a server with {sync_rows:,} outputs and syncing them in the window…", flush=True)
            report["sync"] = sync_stall(app, work, sync_rows, sources, modes)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"desktop-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2))
    if "search" in report:
        print_search_table(report["search"])
    print("\n| figure | value |\n| --- | --- |")
    if "search" in report:
        s = report["search"]
        print(
            f"| FTS search p50 / p95 (goal p95 < 20 ms) | {s['fts_p50_ms']} / {s['fts_p95_ms']} ms "
            f"(CPU {s['fts_cpu']['p50_ms']} / {s['fts_cpu']['p95_ms']} ms) |"
        )
        print(
            f"| search-as-you-type page p50 / p95 (baseline plain page "
            f"{s['baseline_first_page_50_p50_ms']} ms) | {s['search_page_p50_ms']} / "
            f"{s['search_page_p95_ms']} ms |"
        )
    if "first_paint" in report:
        f = report["first_paint"]
        print(f"| outputs in the replica | {outputs:,} ({report['replica']['file_mb']} MB) |")
        print(f"| unlock (KDF + open) | {f['unlock_ms']} ms |")
        print(f"| start to first painted list | {f['start_to_first_paint_ms']} ms |")
        print(
            f"| page of 200 at offset 0 / middle / end | {f['page_at_0_ms']} / {f['page_at_middle_ms']} / "
            f"{f['page_at_end_ms']} ms |"
        )
    for mode in modes if "sync" in report else ():
        y = report["sync"][mode]
        ratio = y["sync_max_stall_ms"] / max(y["idle_max_stall_ms"], 0.01)
        print(
            f"| {mode}: sync of {y['synced_outputs']:,} outputs (pull pages of {y['pull_page']}) | "
            f"{y['sync_s']} s ({y['sync_rows_per_s']:,} rows/s) |"
        )
        print(
            f"| {mode}: longest GUI stall during sync (goal < 50 ms) | {y['sync_max_stall_ms']} ms (p99 "
            f"{y['sync_p99_stall_ms']} ms, {y['sync_stalls_over_30ms']} over 30 ms); idle baseline "
            f"{y['idle_max_stall_ms']} ms (p99 {y['idle_p99_stall_ms']} ms), ratio {ratio:.1f}x |"
        )
        if "sync_max_stall_beyond_cpu_wait_ms" in y:
            print(
                f"| {mode}: the same minus the GUI thread's wait for a CPU | "
                f"{y['sync_max_stall_beyond_cpu_wait_ms']} ms "
                f"(p99 {y['sync_p99_stall_beyond_cpu_wait_ms']} ms) |"
            )
        print(
            f"| {mode}: full GCs in the GUI process during the sync / then the lists' refresh | "
            f"{y['sync_full_gcs']} / longest refresh stall {y['refresh_max_stall_ms']} ms "
            f"(p99 {y.get('refresh_p99_stall_ms', '-')} ms, beyond the wait for a CPU "
            f"{y.get('refresh_max_stall_beyond_cpu_wait_ms', '-')} ms; full GCs {y['refresh_full_gcs']}, "
            f"longest {y['refresh_full_gc_max_ms']} ms) |"
        )
    if "refresh" in report:
        r = report["refresh"]
        print(
            f"| the lists' refresh after a sync, alone ({r['outputs']:,} outputs, {r['rounds']} refreshes): "
            f"longest GUI stall / p99 | {r['refresh_max_stall_ms']} / {r['refresh_p99_stall_ms']} ms (beyond "
            f"the wait for a CPU: {r.get('refresh_max_stall_beyond_cpu_wait_ms', '-')} / "
            f"{r.get('refresh_p99_stall_beyond_cpu_wait_ms', '-')} ms; most GUI CPU between two ticks "
            f"{r['refresh_max_gui_cpu_per_tick_ms']} ms); idle {r['idle_max_stall_ms']} / "
            f"{r['idle_p99_stall_ms']} ms |"
        )
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
