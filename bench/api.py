"""API throughput benchmark: the real HTTP API against a bare FastAPI endpoint, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.api [--quick] [--backend sqlite|postgres|both] [--threads 4]

For each backend it starts the real app (``bench.server``: ``create_app`` plus ``/bench/bare`` routes)
under uvicorn in a subprocess on 127.0.0.1, seeds an organization with a library built from
``awesome-chatgpt-prompts.csv``, then measures, each beside its baseline in the same server:

1. creating outputs one at a time (``POST .../outputs``), against ``POST /bench/bare`` echoing the same body;
2. bulk creation (``POST .../outputs/bulk``, 500 items of ~2 KB), against the same echo with the same body;
3. listing prompts with filters (``GET .../prompts?tag_id&development_stage_id&q&limit=50``), against
   ``GET /bench/bare``.

Prompt creation (the seeding of the library) is reported as well. Results: a table on stdout and
``bench/results/api-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.load import Request, RunStats, drive
from bench.server import BARE_PATH

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CSV = Path("/work/shared/data/awesome-chatgpt-prompts.csv")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PASSWORD = "bench horse battery staple"
PROJECT_TAGS = ("backend", "frontend", "data", "ops", "writing", "education", "marketing", "fun")
SEARCH_WORDS = ("act", "code", "write", "english", "story", "teacher", "game", "help", "language", "data")
BULK_ITEMS = 500
OUTPUT_BYTES = 2048


@dataclass(frozen=True)
class Limits:
    """How much each scenario may do: a request count and a time limit (whichever comes first)."""

    prompts: int
    single_requests: int
    single_seconds: float
    bulk_requests: int
    bulk_seconds: float
    list_requests: int
    list_seconds: float
    baseline_requests: int
    baseline_seconds: float
    bulk_baseline_requests: int
    warmup: int


FULL = Limits(
    prompts=2000,
    single_requests=4000,
    single_seconds=15,
    bulk_requests=40,
    bulk_seconds=20,
    list_requests=4000,
    list_seconds=15,
    baseline_requests=6000,
    baseline_seconds=6,
    bulk_baseline_requests=200,
    warmup=20,
)
QUICK = Limits(
    prompts=300,
    single_requests=300,
    single_seconds=3,
    bulk_requests=4,
    bulk_seconds=4,
    list_requests=300,
    list_seconds=3,
    baseline_requests=500,
    baseline_seconds=1.5,
    bulk_baseline_requests=10,
    warmup=5,
)


@dataclass
class Row:
    backend: str
    scenario: str
    items_per_request: int
    measured: dict[str, Any]
    baseline: dict[str, Any] | None
    baseline_name: str | None
    request_bytes: int
    note: str = ""

    @property
    def ops(self) -> float:
        return float(self.measured["ops_per_s"])

    @property
    def ratio(self) -> float | None:
        if not self.baseline or not self.baseline["ops_per_s"]:
            return None
        return self.ops / float(self.baseline["ops_per_s"])


# --- the library --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourcePrompt:
    act: str
    prompt: str
    for_devs: bool
    kind: str


def load_prompts(path: Path) -> list[SourcePrompt]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            SourcePrompt(
                act=r["act"].strip(),
                prompt=r["prompt"].strip(),
                for_devs=r["for_devs"].strip().upper() == "TRUE",
                kind=r["type"].strip().upper() or "TEXT",
            )
            for r in csv.DictReader(fh)
            if r["act"].strip() and r["prompt"].strip()
        ]


def output_content(source: SourcePrompt, n: int) -> str:
    """About ``OUTPUT_BYTES`` of plausible text: an answer that quotes and elaborates on the prompt."""
    head = f"Output {n} for '{source.act}'.\n\n"
    filler = f"{source.prompt} " * (OUTPUT_BYTES // max(1, len(source.prompt)) + 1)
    return (head + filler)[:OUTPUT_BYTES]


# --- the server ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER_PIDS: dict[str, int] = {}
"""Base URL -> process id of the servers running in this benchmark process (for :func:`wait_until_idle`)."""


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the process has used, or None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def analyze(url: str | None) -> None:
    """Refresh PostgreSQL's planner statistics (``ANALYZE``) of the database at ``url`` (no-op on SQLite).

    A production server runs autovacuum, which analyzes a table once ~10 % of it has changed; this machine's
    PostgreSQL runs with ``autovacuum = off``. Without statistics the planner takes the organization's rows
    for 0.5 % of a table (its default guess for ``org_id = ...``) when they are all of it, and prefers
    reading every row of the organization through its index to looking up a page's or a batch's ids: each
    bulk write then costs more than the last (5,000 outputs 2.4 s at first, 13 s at 55,000) and the edit
    round trip ~30 % more. The benchmarks call this once the data they measure against is written, as
    autovacuum would have by then. The app's role owns its database, which may analyze every table in it."""
    if url is None:
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def wait_until_idle(base: str, *, quiet_s: float = 1.0, timeout_s: float = 600.0) -> float:
    """Wait until the server at ``base`` has used (almost) no CPU for ``quiet_s``: the background work a
    write leaves behind (event handlers, audit records, analytics) is done. Returns the seconds from the call
    until its last busy moment (0.0 when it was idle already, or unknown)."""
    pid = SERVER_PIDS.get(base)
    if pid is None or _cpu_seconds(pid) is None:
        return 0.0
    start = time.perf_counter()
    last_busy = start
    step = 0.1
    used = _cpu_seconds(pid) or 0.0
    while time.perf_counter() - start < timeout_s:
        time.sleep(step)
        now_used = _cpu_seconds(pid)
        if now_used is None:
            break
        if now_used - used > 0.1 * step:  # more than 10 % of a core
            last_busy = time.perf_counter()
        used = now_used
        if time.perf_counter() - last_busy >= quiet_s:
            break
    return max(0.0, last_busy - start)


@contextlib.contextmanager
def running_server(*, database_url: str | None, workdir: Path) -> Iterator[str]:
    """Start ``bench.server`` under uvicorn in a subprocess; yield its base URL; stop it afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "bench.server", "--port", str(port), "--data-dir", str(workdir / "data")]
    if database_url:
        cmd += ["--database-url", database_url]
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready after 60 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            SERVER_PIDS[base] = proc.pid
            yield base
        finally:
            SERVER_PIDS.pop(base, None)
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@contextlib.contextmanager
def backend_database(backend: str) -> Iterator[tuple[str | None, str]]:
    """(database_url, version) for a fresh, empty database of ``backend``."""
    if backend == "sqlite":
        yield None, sqlite3.sqlite_version
        return
    import psycopg

    from tests.support.postgres import app_database, postgres_server

    with postgres_server() as server, app_database(server) as url:
        with psycopg.connect(url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        yield url, str(row[0]) if row else "?"


# --- the API flow -------------------------------------------------------------------------------------------


@dataclass
class Library:
    base: str
    headers: dict[str, str]
    org: str
    tags: dict[str, str]
    stages: list[str]
    knowledge_types: list[str]
    accuracy_levels: list[str]
    custom_gpts: list[str]
    prompt_ids: list[str]
    sources: list[SourcePrompt]


def _ok(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:500]}"
        )
    return response.json()


def set_up_org(base: str, sources: list[SourcePrompt]) -> Library:
    """Register, log in, create an organization and its tags and custom GPTs (not timed)."""
    with httpx.Client(base_url=base, timeout=60) as c:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        _ok(
            c.post(
                "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Bench"}
            ),
            201,
        )
        token = _ok(c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}), 200)
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        c.headers.update(headers)
        org = _ok(c.post("/api/v1/orgs", json={"name": "Bench Org"}), 201)["id"]
        root = f"/api/v1/orgs/{org}"

        def lookup(slug: str) -> list[dict[str, Any]]:
            return list(_ok(c.get(f"{root}/{slug}", params={"limit": 500}), 200)["items"])

        tags = {
            name: _ok(c.post(f"{root}/tags", json={"name": name}), 201)["id"]
            for name in (*PROJECT_TAGS, "dev", "image")
        }
        models = lookup("gpt-models")
        groups = lookup("agent-groups")
        gpts = [
            _ok(
                c.post(
                    f"{root}/custom-gpts",
                    json={
                        "name": f"Assistant {i}",
                        "gpt_model_id": m["id"],
                        "agent_group_ids": [groups[0]["id"]],
                    },
                ),
                201,
            )["id"]
            for i, m in enumerate(models)
        ]
        return Library(
            base=root,
            headers=headers,
            org=org,
            tags=tags,
            stages=[s["id"] for s in lookup("development-stages")],
            knowledge_types=[k["id"] for k in lookup("knowledge-types")],
            accuracy_levels=[a["id"] for a in lookup("accuracy-levels")],
            custom_gpts=gpts,
            prompt_ids=[],
            sources=sources,
        )


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def prompt_requests(lib: Library, count: int) -> list[Request]:
    """``count`` prompts: the CSV rows repeated, a suffix on each repeat, tags and a stage spread evenly."""
    out: list[Request] = []
    for n in range(count):
        src = lib.sources[n % len(lib.sources)]
        round_ = n // len(lib.sources)
        tag_ids = [lib.tags[PROJECT_TAGS[n % len(PROJECT_TAGS)]]]
        if src.for_devs:
            tag_ids.append(lib.tags["dev"])
        if src.kind == "IMAGE":
            tag_ids.append(lib.tags["image"])
        ident = str(uuid.uuid4())
        lib.prompt_ids.append(ident)
        body = {
            "id": ident,
            "title": src.act if round_ == 0 else f"{src.act} ({round_ + 1})",
            "body": src.prompt if round_ == 0 else f"{src.prompt}\n\nVariant {round_ + 1}.",
            "description": f"From awesome-chatgpt-prompts, {src.kind.lower()} prompt.",
            "development_stage_id": lib.stages[n % len(lib.stages)],
            "tag_ids": tag_ids,
        }
        out.append(Request("POST", f"{lib.base}/prompts", body=encode(body), expect=201))
    return out


def output_item(lib: Library, n: int) -> dict[str, Any]:
    prompt_index = n % len(lib.prompt_ids)
    src = lib.sources[prompt_index % len(lib.sources)]
    return {
        "prompt_id": lib.prompt_ids[prompt_index],
        "content": output_content(src, n),
        "notes": "benchmark output",
        "custom_gpt_id": lib.custom_gpts[n % len(lib.custom_gpts)],
        "accuracy_level_id": lib.accuracy_levels[n % len(lib.accuracy_levels)],
        "knowledge_type_ids": [
            lib.knowledge_types[n % len(lib.knowledge_types)],
            lib.knowledge_types[(n + 2) % len(lib.knowledge_types)],
        ],
        "tag_ids": [lib.tags[PROJECT_TAGS[n % len(PROJECT_TAGS)]]],
    }


def single_output_requests(lib: Library, count: int, *, start: int) -> list[Request]:
    return [
        Request("POST", f"{lib.base}/outputs", body=encode(output_item(lib, start + i)), expect=201)
        for i in range(count)
    ]


def bulk_output_requests(lib: Library, count: int, *, start: int) -> list[Request]:
    return [
        Request(
            "POST",
            f"{lib.base}/outputs/bulk",
            body=encode({"items": [output_item(lib, start + r * BULK_ITEMS + i) for i in range(BULK_ITEMS)]}),
            expect=201,
        )
        for r in range(count)
    ]


def list_requests(lib: Library, count: int, *, seed: int = 7) -> list[Request]:
    """Filtered listings: one project tag, one stage, one search word, 50 per page (varied per request)."""
    rng = random.Random(seed)
    tag_ids = [lib.tags[name] for name in PROJECT_TAGS] + [lib.tags["dev"]]
    return [
        Request(
            "GET",
            f"{lib.base}/prompts",
            params=(
                ("tag_id", rng.choice(tag_ids)),
                ("development_stage_id", rng.choice(lib.stages)),
                ("q", rng.choice(SEARCH_WORDS)),
                ("limit", "50"),
            ),
        )
        for _ in range(count)
    ]


def echo_of(requests: Sequence[Request]) -> list[Request]:
    """The baseline twin of POST requests: the same bodies, sent to the bare echo route."""
    return [Request("POST", BARE_PATH, body=r.body, expect=201) for r in requests]


# --- running a backend --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runner:
    base_url: str
    headers: dict[str, str]
    threads: int
    warmup: int

    def run(
        self, requests: Sequence[Request], *, max_requests: int, seconds: float, warm: bool = True
    ) -> RunStats:
        if warm and self.warmup:
            drive(
                self.base_url,
                requests,
                headers=self.headers,
                threads=self.threads,
                max_requests=min(self.warmup, len(requests)),
                time_limit_s=seconds,
            )
        return drive(
            self.base_url,
            requests,
            headers=self.headers,
            threads=self.threads,
            max_requests=max_requests,
            time_limit_s=seconds,
        )


def checked(stats: RunStats, what: str) -> RunStats:
    if stats.errors:
        print(f"  ! {what}: {stats.errors} errors, first: {stats.first_error}", file=sys.stderr)
    if not stats.requests:
        raise RuntimeError(f"{what}: no successful request ({stats.first_error})")
    return stats


def avg_items(base_url: str, headers: dict[str, str], requests: Sequence[Request], sample: int = 40) -> float:
    """How many prompts a typical filtered page returns (a sanity figure for the listing scenario)."""
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as c:
        counts = [len(c.get(r.path, params=list(r.params)).json()["items"]) for r in requests[:sample]]
    return sum(counts) / len(counts) if counts else 0.0


def bench_backend(
    backend: str, *, limits: Limits, threads: int, sources: list[SourcePrompt]
) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix=f"outputhub-bench-{backend}-") as tmp,
        backend_database(backend) as (url, version),
        running_server(database_url=url, workdir=Path(tmp)) as base_url,
    ):
        print(f"[{backend}] server up at {base_url} (database {version})", flush=True)
        lib = set_up_org(base_url, sources)
        runner = Runner(base_url=base_url, headers=lib.headers, threads=threads, warmup=limits.warmup)

        def record(
            scenario: str,
            measured: RunStats,
            baseline: RunStats | None,
            baseline_name: str | None,
            reqs: Sequence[Request],
            items: int = 1,
            note: str = "",
        ) -> None:
            body_sizes = [len(r.body or b"") for r in reqs]
            row = Row(
                backend=backend,
                scenario=scenario,
                items_per_request=items,
                measured={**measured.summary(), "items_per_s": round(measured.ops_per_s * items, 1)},
                baseline=baseline.summary() if baseline else None,
                baseline_name=baseline_name,
                request_bytes=round(sum(body_sizes) / len(body_sizes)),
                note=note,
            )
            rows.append(row)
            ratio = f"{row.ratio:.3f}" if row.ratio is not None else "-"
            print(
                f"[{backend}] {scenario}: {row.ops:.1f} req/s, {row.ops * items:.0f} items/s, "
                f"p50 {measured.percentile(50):.1f} ms, ratio {ratio}",
                flush=True,
            )

        # Seeding: every prompt must be created (generous time limit), so no warm-up and no repeats.
        seed_reqs = prompt_requests(lib, limits.prompts)
        echo = checked(
            runner.run(
                echo_of(seed_reqs), max_requests=limits.baseline_requests, seconds=limits.baseline_seconds
            ),
            "baseline POST (prompt size)",
        )
        seeded = checked(
            drive(
                base_url,
                seed_reqs,
                headers=lib.headers,
                threads=threads,
                max_requests=len(seed_reqs),
                time_limit_s=180,
            ),
            "create prompts",
        )
        record(
            "create prompt (seeding)",
            seeded,
            echo,
            "POST /bench/bare (same body)",
            seed_reqs,
            note=f"{seeded.requests} prompts created",
        )
        lib.prompt_ids[:] = lib.prompt_ids[: seeded.requests]

        # 1. outputs one at a time.
        count = limits.single_requests + limits.warmup
        single_reqs = single_output_requests(lib, count, start=0)
        echo = checked(
            runner.run(
                echo_of(single_reqs), max_requests=limits.baseline_requests, seconds=limits.baseline_seconds
            ),
            "baseline POST (output size)",
        )
        single = checked(
            runner.run(single_reqs, max_requests=limits.single_requests, seconds=limits.single_seconds),
            "create output",
        )
        record("create output (single)", single, echo, "POST /bench/bare (same body)", single_reqs)

        # 2. outputs in bulk (warm-up: one request per thread).
        bulk_reqs = bulk_output_requests(lib, limits.bulk_requests + threads, start=count)
        bulk_runner = Runner(base_url=base_url, headers=lib.headers, threads=threads, warmup=threads)
        echo = checked(
            bulk_runner.run(
                echo_of(bulk_reqs),
                max_requests=limits.bulk_baseline_requests,
                seconds=limits.baseline_seconds,
            ),
            "baseline POST (bulk size)",
        )
        bulk = checked(
            bulk_runner.run(bulk_reqs, max_requests=limits.bulk_requests, seconds=limits.bulk_seconds),
            "create outputs in bulk",
        )
        record(
            f"create outputs (bulk {BULK_ITEMS})",
            bulk,
            echo,
            "POST /bench/bare (same body)",
            bulk_reqs,
            items=BULK_ITEMS,
        )

        # 3. filtered listing of the library.
        listing = list_requests(lib, 500)
        items = avg_items(base_url, lib.headers, listing)
        bare = checked(
            runner.run(
                [Request("GET", BARE_PATH)],
                max_requests=limits.baseline_requests,
                seconds=limits.baseline_seconds,
            ),
            "baseline GET",
        )
        listed = checked(
            runner.run(listing, max_requests=limits.list_requests, seconds=limits.list_seconds),
            "list prompts",
        )
        record(
            "list prompts (tag+stage+q, limit 50)",
            listed,
            bare,
            "GET /bench/bare (small dict)",
            listing,
            note=f"{items:.1f} prompts per page on average",
        )

        with httpx.Client(base_url=base_url, headers=lib.headers, timeout=60) as c:
            total_outputs = 0
            cursor: str | None = None
            while True:  # count through the API, 500 at a time, newest first
                params: dict[str, Any] = {"limit": 500}
                if cursor:
                    params["cursor"] = cursor
                page = c.get(f"{lib.base}/outputs", params=params).json()
                total_outputs += len(page["items"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        context = {"database_version": version, "prompts": len(lib.prompt_ids), "outputs": total_outputs}
        print(
            f"[{backend}] library at the end: {context['prompts']} prompts, {total_outputs} outputs",
            flush=True,
        )
    return rows, context


# --- reporting ----------------------------------------------------------------------------------------------


def cpu_reference_seconds(loops: int = 3) -> float:
    """Seconds for a pure-Python loop of 10M additions (best of ``loops``): the speed of one core as this
    run saw it, so runs on the same VM on different days can be compared (its CPU share varies 2x)."""
    best = float("inf")
    for _ in range(loops):
        start = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return round(best, 3)


def machine_info() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib: float | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    psql = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        psql = subprocess.run(["psql", "-V"], capture_output=True, text=True, timeout=10).stdout.strip()
    versions: dict[str, str] = {}
    for name in ("fastapi", "starlette", "uvicorn", "pydantic", "sqlalchemy", "psycopg", "httpx"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[name] = version(name)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "psql": psql,
        "packages": versions,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_reference_10M_loop_s": cpu_reference_seconds(),
    }


def table(rows: Sequence[Row]) -> str:
    header = (
        "backend",
        "scenario",
        "req/s",
        "outputs/s",
        "p50 ms",
        "p95 ms",
        "baseline req/s",
        "ratio",
        "errors",
    )
    lines = [header]
    for r in rows:
        m = r.measured
        lines.append(
            (
                r.backend,
                r.scenario,
                f"{r.ops:.1f}",
                f"{m['items_per_s']:.0f}" if r.scenario.startswith("create output") else "-",
                f"{m['p50_ms']:.1f}",
                f"{m['p95_ms']:.1f}",
                f"{r.baseline['ops_per_s']:.1f}" if r.baseline else "-",
                f"{r.ratio:.3f}" if r.ratio is not None else "-",
                str(m["errors"] + (r.baseline["errors"] if r.baseline else 0)),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("| " + " | ".join(cells) + " |")
        if n == 0:
            out.append(
                "|"
                + "|".join(("-" * (w + 2) if i < 2 else "-" * (w + 1) + ":") for i, w in enumerate(widths))
                + "|"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (well under a minute)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--threads", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="the prompts CSV (act,prompt,...)")
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON results file (default: bench/results)"
    )
    args = parser.parse_args(argv)

    limits = QUICK if args.quick else FULL
    sources = load_prompts(args.csv)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    rows: list[Row] = []
    contexts: dict[str, Any] = {}
    for backend in backends:
        backend_rows, context = bench_backend(backend, limits=limits, threads=args.threads, sources=sources)
        rows += backend_rows
        contexts[backend] = context
    duration = time.perf_counter() - t0

    print()
    print(table(rows))
    print(f"\n{len(sources)} source prompts; {args.threads} client threads; total {duration:.0f} s")
    result = {
        "benchmark": "api",
        "started_at": started.isoformat(),
        "duration_s": round(duration, 1),
        "mode": "quick" if args.quick else "full",
        "threads": args.threads,
        "limits": asdict(limits),
        "machine": machine_info(),
        "backends": contexts,
        "results": [{**asdict(r), "ratio": r.ratio} for r in rows],
    }
    path = args.output or RESULTS_DIR / f"api-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
