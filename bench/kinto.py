"""Our sync server against Kinto (memory and PostgreSQL backends), same machine, same run.

    .venv/bin/python -m bench.kinto                  # 20,000 outputs of ~2 KB per side (a few minutes)
    .venv/bin/python -m bench.kinto --quick          # 5,000
    .venv/bin/python -m bench.kinto --records 50000 --targets ours-postgres,kinto-postgresql

Kinto (PyPI ``kinto``, a Python sync/storage server: Pyramid, waitress) is not one of our dependencies: the
first run creates its own virtualenv (``~/.cache/outputhub/kinto-venv``, ``python -m venv`` + ``pip install
"kinto[postgresql]"``) and later runs reuse it. Every server is a real HTTP server in a subprocess on a free
loopback port, started one after the other:

- **ours** (``bench.server``: ``create_app`` under uvicorn, as in ``bench.api``) on a fresh PostgreSQL
  database (found like the tests find one, owned by a role under row-level security) and on the embedded
  SQLite default;
- **Kinto** 26 (``kinto migrate`` then ``kinto start``: pserve + waitress, as Kinto documents) with the
  memory backend, and with the PostgreSQL backend on a dedicated database ``kinto_bench`` on the same
  PostgreSQL (created and dropped by the run); basic auth (``multiauth.policies = basicauth``), memory cache,
  logging at WARNING (our server runs without an access log too), ``kinto.batch_max_requests`` raised to our
  push batch size.

The same records go to every server: N outputs (``output_content``: ~2 KB of text from the prompt collection
in /work/shared/data, a prompt, a custom GPT, an accuracy level, two knowledge types, a tag). One
``httpx.Client`` per server, one request at a time, answers uncompressed (``Accept-Encoding: identity``:
Kinto does not compress; ours would, with zstd); request bodies are encoded before the clock starts and
every answer is decoded with orjson on both sides (pull pages with the cyclic GC paused, as our sync client
does: see ``decode``). Measured:

1. **bulk write**: ours ``POST /api/v1/orgs/{org}/sync/push`` with ``--batch`` creates per request (each a
   sync-engine change: op id, HLC, values), against Kinto's ``POST /v1/batch`` with the same number of
   sub-requests, each a safe create ``PUT /buckets/b/collections/c/records/{id}`` with ``If-None-Match: *``
   (one transaction per batch in Kinto, one per push in ours);
2. **full pull**: everything from cursor 0, ``--page`` records per request: ours
   ``GET .../sync/changes?since=`` (``next_since`` / ``has_more``), against Kinto's documented polling for
   changes, ``GET .../records?_since=0&_sort=last_modified&_limit=`` following the ``Next-Page`` header
   (``--pull-repeats`` full pulls; the median is reported);
3. **incremental pull**: ``--increment`` new records written (not timed, our server's background work for
   them included), then the changes since the cursor
   the previous pull ended at (ours: ``next_since``; Kinto: the newest ``last_modified`` seen), ``--rounds``
   times; the median is reported.
4. **the pull's ceiling** (``--no-ceiling`` skips it): each side's biggest pull page, its exact answer bytes,
   served again by a bare route of an idle server of ours (``bench.server``'s ``/bench/page``) as many
   times as a full pull has pages and decoded (what a server that answers in no time would reach through
   this HTTP stack and client), and decoded alone (what nothing that sends these bytes to this client
   beats); printed as a second table, each against Kinto on PostgreSQL's full pull.

Both PostgreSQL databases get an ``ANALYZE`` (not timed) whenever autovacuum's default rule would run one
(50 rows + 10 % of the table written since the last) and after the bulk write: the development machines'
PostgreSQL runs with ``autovacuum = off``, and with the statistics of empty tables the planner picks plans
that cost O(library) per request (our pull was 20x slower at 20,000 outputs, Kinto's writes slowed too).

Results: a table on stdout (rows/s and ours/Kinto ratios) and ``bench/results/kinto-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
import orjson

from bench.api import (
    DEFAULT_CSV,
    RESULTS_DIR,
    SourcePrompt,
    _ok,
    backend_database,
    free_port,
    load_prompts,
    machine_info,
    output_content,
    running_server,
    set_up_org,
    wait_until_idle,
)
from bench.load import JSON_HEADERS
from bench.server import PAGE_PATH
from outputhub.common.clock import HLC, tick
from outputhub.common.sync import PROTOCOL_VERSION
from outputhub.sync.engine import DEFAULT_SCHEMA, make_create
from outputhub.sync.protocol import change_to_wire

T = TypeVar("T")

KINTO_REQUIREMENT: Final = "kinto[postgresql]>=26,<27"
DEFAULT_KINTO_VENV: Final = Path.home() / ".cache" / "outputhub" / "kinto-venv"
KINTO_DATABASE: Final = "kinto_bench"
KINTO_AUTH: Final = ("bench", "bench horse battery staple")
BUCKET: Final = "bench"
COLLECTION: Final = "outputs"
RECORDS_PATH: Final = f"/buckets/{BUCKET}/collections/{COLLECTION}/records"
NODE: Final = "kintobench01"
PUSH_MAX: Final = 1000  # PushRequest.changes max_length: our biggest push
UNCOMPRESSED: Final = {"Accept-Encoding": "identity"}
"""Both servers' answers as they make them: ours compresses for clients that accept it, Kinto (waitress)
does not; on loopback compressing only costs CPU, and the comparison is of the servers' own work."""
PULL_MAX: Final = 5000  # the pull's ``limit`` maximum

OURS: Final = ("ours-sqlite", "ours-postgres")
KINTOS: Final = ("kinto-memory", "kinto-postgresql")
TARGETS: Final = (*OURS, *KINTOS)
LABELS: Final = {
    "ours-sqlite": "ours, SQLite",
    "ours-postgres": "ours, PostgreSQL",
    "kinto-memory": "Kinto, memory",
    "kinto-postgresql": "Kinto, PostgreSQL",
}
SHORT: Final = {
    "ours-sqlite": "ours SQLite",
    "ours-postgres": "ours PG",
    "kinto-memory": "Kinto mem",
    "kinto-postgresql": "Kinto PG",
}
MEASURES: Final = (
    ("write_rows_per_s", "bulk write"),
    ("pull_rows_per_s", "full pull"),
    ("incremental_rows_per_s", "incremental pull"),
)


# --- the records ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refs:
    """The records an output refers to, on one server (ours checks them; Kinto stores them as strings)."""

    prompt_ids: tuple[str, ...]
    custom_gpts: tuple[str, ...]
    accuracy_levels: tuple[str, ...]
    knowledge_types: tuple[str, ...]
    tags: tuple[str, ...]

    @classmethod
    def synthetic(cls, *, prompts: int = 50) -> Refs:
        """Ids of the same shape for Kinto, which has no relations to check."""

        def ids(n: int) -> tuple[str, ...]:
            return tuple(str(uuid.uuid4()) for _ in range(n))

        return cls(ids(prompts), ids(4), ids(4), ids(5), ids(10))


@dataclass(frozen=True)
class Record:
    id: str
    n: int
    content: str


def make_records(sources: Sequence[SourcePrompt], count: int, *, start: int = 0) -> list[Record]:
    """``count`` outputs of ~2 KB (their ids and text are the same on every server)."""
    return [
        Record(id=str(uuid.uuid4()), n=n, content=output_content(sources[n % len(sources)], n))
        for n in range(start, start + count)
    ]


def output_values(record: Record, refs: Refs) -> dict[str, Any]:
    n = record.n
    return {
        "prompt_id": refs.prompt_ids[n % len(refs.prompt_ids)],
        "content": record.content,
        "notes": "benchmark output",
        "custom_gpt_id": refs.custom_gpts[n % len(refs.custom_gpts)],
        "accuracy_level_id": refs.accuracy_levels[n % len(refs.accuracy_levels)],
        "knowledge_type_ids": sorted(
            {
                refs.knowledge_types[n % len(refs.knowledge_types)],
                refs.knowledge_types[(n + 2) % len(refs.knowledge_types)],
            }
        ),
        "tag_ids": [refs.tags[n % len(refs.tags)]],
    }


def decode(body: bytes) -> Any:
    """A pull page, decoded with the cyclic GC paused (both sides alike).

    Decoding a few MB of JSON makes hundreds of thousands of containers; with the collector on, a full
    collection over them (and the previous page, still referenced) landed inside some decodes and tripled
    their time (45 -> 200 ms), more for ours (every record carries its merge state as nested lists) than
    for Kinto's flat records. Our sync client pauses the collector while it decodes and applies pages."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return orjson.loads(body)
    finally:
        if enabled:
            gc.enable()


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    if size < 1:
        raise ValueError("size must be at least 1")
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- request bodies ---------------------------------------------------------------------------------------


@dataclass
class PushEncoder:
    """Builds our push bodies: one sync-engine create per record, HLCs ticking on one node."""

    node: str = NODE
    now_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    last: HLC | None = None

    def body(self, records: Sequence[Record], refs: Refs) -> bytes:
        changes = []
        for record in records:
            self.last = tick(self.last, now_ms=self.now_ms(), node=self.node)
            change = make_create(
                "output",
                record.id,
                output_values(record, refs),
                schema=DEFAULT_SCHEMA,
                node=self.node,
                hlc=self.last,
                op_id=str(uuid.uuid4()),
            )
            changes.append(change_to_wire(change))
        return orjson.dumps({"protocol": PROTOCOL_VERSION, "device": self.node, "changes": changes})


def kinto_batch_body(records: Sequence[Record], refs: Refs) -> bytes:
    """Kinto's ``POST /v1/batch``: one safe create per record (``PUT`` of the id, ``If-None-Match: *``)."""
    return orjson.dumps(
        {
            "defaults": {"method": "PUT", "headers": {"If-None-Match": "*"}},
            "requests": [
                {"path": f"{RECORDS_PATH}/{r.id}", "body": {"data": output_values(r, refs)}} for r in records
            ],
        }
    )


def check_push_answer(answer: dict[str, Any], expected: int) -> None:
    results = answer.get("results") or []
    bad = [r for r in results if r.get("status") != "applied"]
    if len(results) != expected or bad:
        raise RuntimeError(f"push: {len(results)} answers for {expected} changes; first refused: {bad[:1]}")


def check_batch_answer(answer: dict[str, Any], expected: int) -> None:
    responses = answer.get("responses") or []
    bad = [r for r in responses if r.get("status") != 201]
    if len(responses) != expected or bad:
        first = bad[0] if bad else None
        raise RuntimeError(f"Kinto batch: {len(responses)} answers for {expected}; first failure: {first}")


# --- Kinto ------------------------------------------------------------------------------------------------


def kinto_ini(*, storage_url: str | None, batch_max_requests: int, secret: str) -> str:
    """A Kinto configuration: memory backend when ``storage_url`` is None, else PostgreSQL storage and
    permissions at that URL. Cache in memory, basic auth, logging at WARNING."""
    if storage_url:
        storage = (
            "kinto.storage_backend = kinto.core.storage.postgresql\n"
            f"kinto.storage_url = {storage_url}\n"
            "kinto.permission_backend = kinto.core.permission.postgresql\n"
            f"kinto.permission_url = {storage_url}\n"
        )
    else:
        storage = (
            "kinto.storage_backend = kinto.core.storage.memory\n"
            "kinto.storage_url =\n"
            "kinto.permission_backend = kinto.core.permission.memory\n"
            "kinto.permission_url =\n"
        )
    return f"""\
[server:main]
use = egg:waitress#main
host = 127.0.0.1
port = %(http_port)s

[app:main]
use = egg:kinto
kinto.includes = kinto.plugins.default_bucket
kinto.batch_max_requests = {batch_max_requests}
{storage}kinto.cache_backend = kinto.core.cache.memory
kinto.cache_url =
kinto.userid_hmac_secret = {secret}
multiauth.policies = basicauth
kinto.bucket_create_principals = system.Authenticated

[loggers]
keys = root, kinto

[handlers]
keys = console

[formatters]
keys = plain

[logger_root]
level = WARNING
handlers = console

[logger_kinto]
level = WARNING
handlers = console
qualname = kinto
propagate = 0

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = plain

[formatter_plain]
format = %(asctime)s %(levelname)s %(name)s %(message)s
"""


@dataclass(frozen=True)
class KintoInstall:
    kinto: Path
    version: str


def ensure_kinto(venv: Path) -> KintoInstall:
    """Kinto in its own virtualenv (it pins Pyramid and friends, so never in ours): create it once, reuse."""
    python = venv / "bin" / "python"
    kinto = venv / "bin" / "kinto"
    if not kinto.exists():
        print(f"installing {KINTO_REQUIREMENT} into {venv} (once)", flush=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                KINTO_REQUIREMENT,
            ],
            check=True,
        )
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('kinto'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return KintoInstall(kinto=kinto, version=version)


@contextlib.contextmanager
def kinto_database() -> Iterator[tuple[str, str]]:
    """A fresh ``kinto_bench`` database on the PostgreSQL the tests use; yields (SQLAlchemy URL, version)."""
    import psycopg
    from psycopg import sql

    from tests.support.postgres import postgres_server

    with postgres_server() as server:
        info = psycopg.conninfo.conninfo_to_dict(server.admin_url)
        user = str(info.get("user") or "postgres")
        password = f":{info['password']}" if info.get("password") else ""
        url = f"postgresql://{user}{password}@{server.host}:{server.port}/{KINTO_DATABASE}"
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(KINTO_DATABASE))
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute(drop)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(KINTO_DATABASE)))
            row = conn.execute("SHOW server_version").fetchone()
        try:
            yield url, str(row[0]) if row else "?"
        finally:
            with psycopg.connect(server.admin_url, autocommit=True) as conn:
                conn.execute(drop)


@contextlib.contextmanager
def running_kinto(
    install: KintoInstall, *, storage_url: str | None, batch: int, workdir: Path
) -> Iterator[str]:
    """``kinto migrate`` (PostgreSQL) and ``kinto start`` on a free loopback port; yield the ``/v1`` URL."""
    name = "postgresql" if storage_url else "memory"
    ini = workdir / f"kinto-{name}.ini"
    ini.write_text(kinto_ini(storage_url=storage_url, batch_max_requests=batch, secret=uuid.uuid4().hex))
    env = {**os.environ, "KINTO_INI": str(ini)}
    log_path = workdir / f"kinto-{name}.log"
    with log_path.open("wb") as log:
        if storage_url:
            subprocess.run(
                [str(install.kinto), "migrate", "--ini", str(ini)],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )
        port = free_port()
        proc = subprocess.Popen(
            [str(install.kinto), "start", "--ini", str(ini), "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"kinto exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/__heartbeat__", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kinto not ready after 60 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


# --- the two sides behind one interface --------------------------------------------------------------------


@dataclass
class Pulled:
    records: int
    seconds: float
    requests: int
    response_bytes: int


class Side:
    """One server: write a batch, pull everything after a cursor."""

    client: httpx.Client
    refs: Refs
    database_url: str | None = None
    """A PostgreSQL database to ``ANALYZE`` after the bulk write (None: nothing to do)."""
    sample: bytes = b""
    """The answer's bytes of the biggest pull page seen (for the pull's ceiling, see :func:`ceilings`)."""
    sample_records: int = 0

    def keep_sample(self, body: bytes, records: int) -> None:
        if records > self.sample_records:
            self.sample, self.sample_records = body, records

    def write_body(self, records: Sequence[Record]) -> bytes:
        raise NotImplementedError

    def write(self, body: bytes, expected: int) -> int:
        """Send one prepared batch; return the answer's size in bytes."""
        raise NotImplementedError

    def pull(self, page: int) -> Pulled:
        """Every change after the side's cursor, ``page`` per request; advances the cursor."""
        raise NotImplementedError

    def rewind(self) -> None:
        """Back to the beginning: the next pull is a full one."""
        raise NotImplementedError

    def settle(self) -> float:
        """Wait until the server's background work after the writes is done; the seconds it took."""
        return 0.0


class OurSide(Side):
    def __init__(
        self, client: httpx.Client, *, org: str, refs: Refs, database_url: str | None = None
    ) -> None:
        self.client = client
        self.refs = refs
        self.database_url = database_url
        self.root = f"/api/v1/orgs/{org}/sync"
        self.base = str(client.base_url).rstrip("/")
        self.encoder = PushEncoder()
        self.cursor = 0

    def write_body(self, records: Sequence[Record]) -> bytes:
        return self.encoder.body(records, self.refs)

    def write(self, body: bytes, expected: int) -> int:
        response = self.client.post(f"{self.root}/push", content=body, headers=JSON_HEADERS)
        if response.status_code != 200:
            raise RuntimeError(f"push: {response.status_code} {response.text[:500]}")
        check_push_answer(orjson.loads(response.content), expected)
        return len(response.content)

    def pull(self, page: int) -> Pulled:
        count = requests = size = 0
        start = time.perf_counter()
        while True:
            params = {"protocol": PROTOCOL_VERSION, "since": self.cursor, "limit": page}
            response = self.client.get(f"{self.root}/changes", params=params)
            if response.status_code != 200:
                raise RuntimeError(f"pull: {response.status_code} {response.text[:500]}")
            data = decode(response.content)
            requests += 1
            size += len(response.content)
            count += len(data["records"])
            self.keep_sample(response.content, len(data["records"]))
            self.cursor = int(data["next_since"])
            if not data["has_more"]:
                break
        return Pulled(count, time.perf_counter() - start, requests, size)

    def rewind(self) -> None:
        self.cursor = 0

    def settle(self) -> float:
        return wait_until_idle(self.base)


class KintoSide(Side):
    def __init__(self, client: httpx.Client, *, refs: Refs, database_url: str | None = None) -> None:
        self.client = client
        self.refs = refs
        self.database_url = database_url
        self.since = 0

    def write_body(self, records: Sequence[Record]) -> bytes:
        return kinto_batch_body(records, self.refs)

    def write(self, body: bytes, expected: int) -> int:
        response = self.client.post("/batch", content=body, headers=JSON_HEADERS)
        if response.status_code != 200:
            raise RuntimeError(f"Kinto batch: {response.status_code} {response.text[:500]}")
        check_batch_answer(orjson.loads(response.content), expected)
        return len(response.content)

    def pull(self, page: int) -> Pulled:
        count = requests = size = 0
        start = time.perf_counter()
        url: str | None = f"{RECORDS_PATH}?_since={self.since}&_sort=last_modified&_limit={page}"
        while url:
            response = self.client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"Kinto pull: {response.status_code} {response.text[:500]}")
            data = decode(response.content)["data"]
            requests += 1
            size += len(response.content)
            count += len(data)
            self.keep_sample(response.content, len(data))
            if data:
                self.since = max(self.since, max(int(r["last_modified"]) for r in data))
            url = response.headers.get("Next-Page")
        return Pulled(count, time.perf_counter() - start, requests, size)

    def rewind(self) -> None:
        self.since = 0


# --- the measurements -------------------------------------------------------------------------------------


def needs_analyze(*, written: int, analyzed: int) -> bool:
    """Autovacuum's default rule: analyze a table once 50 rows + 10 % of it changed since the last time."""
    return written - analyzed > 50 + 0.1 * analyzed


def analyze(database_url: str) -> float:
    """``ANALYZE`` the whole database (what autovacuum does on its own); returns seconds.

    The local PostgreSQL of the development machines runs with ``autovacuum = off``: without this, the
    planner keeps the statistics of empty tables and picks plans that cost O(library) per request."""
    import psycopg

    start = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return time.perf_counter() - start


@dataclass(frozen=True)
class Plan:
    records: int
    batch: int
    page: int
    increment: int
    rounds: int
    pull_repeats: int = 3
    analyze: bool = True


def measure(side: Side, dataset: Sequence[Record], extra: Sequence[Record], plan: Plan) -> dict[str, Any]:
    """Warm up, bulk write ``dataset``, pull everything, then ``rounds`` x (write ``increment``, pull)."""
    warm = extra[:10]
    side.write(side.write_body(warm), len(warm))
    side.pull(10)  # the first requests pay for lazy imports and caches on both servers

    bodies = [(side.write_body(part), len(part)) for part in chunks(dataset, plan.batch)]
    request_bytes = sum(len(b) for b, _ in bodies)
    database_url = side.database_url if plan.analyze else None
    answer_bytes = written = analyzed = 0
    batch_s: list[float] = []
    analyze_s: list[float] = []
    for body, count in bodies:
        start = time.perf_counter()
        answer_bytes += side.write(body, count)
        batch_s.append(time.perf_counter() - start)
        written += count
        if database_url and needs_analyze(written=written, analyzed=analyzed):
            analyze_s.append(analyze(database_url))  # not timed: autovacuum works in the background
            analyzed = written
    # the write is done when the server is: our event handlers (audit log, webhooks, analytics) run after
    # the answer is sent, so the time until the server is idle again counts as writing
    settle_s = side.settle()
    write_s = sum(batch_s) + settle_s
    if database_url and analyzed < written:
        analyze_s.append(analyze(database_url))

    fulls: list[Pulled] = []
    for _ in range(plan.pull_repeats):
        side.rewind()
        fulls.append(side.pull(plan.page))
        if fulls[-1].records < len(dataset):
            raise RuntimeError(f"full pull: {fulls[-1].records} records, {len(dataset)} written")
    full = sorted(fulls, key=lambda p: p.seconds)[len(fulls) // 2]

    rest = extra[len(warm) :]
    times: list[float] = []
    pulled: list[int] = []
    for part in chunks(rest, plan.increment)[: plan.rounds]:
        side.write(side.write_body(part), len(part))
        side.settle()  # the write (not timed) is done when its background work is: it must not slow the pull
        got = side.pull(plan.page)
        if got.records != len(part):
            raise RuntimeError(f"incremental pull: {got.records} records for {len(part)} new ones")
        times.append(got.seconds)
        pulled.append(got.records)
    inc_s = statistics.median(times)
    return {
        "write_rows": len(dataset),
        "write_requests": len(bodies),
        "write_seconds": round(write_s, 3),
        "write_rows_per_s": round(len(dataset) / write_s, 1),
        "write_batch_seconds": [round(t, 2) for t in batch_s],
        "write_settle_seconds": round(settle_s, 3),
        "analyze_seconds": [round(t, 2) for t in analyze_s],
        "write_request_bytes_per_row": round(request_bytes / len(dataset)),
        "write_answer_bytes_per_row": round(answer_bytes / len(dataset)),
        "pull_records": full.records,
        "pull_requests": full.requests,
        "pull_seconds": round(full.seconds, 3),
        "pull_seconds_all": [round(p.seconds, 3) for p in fulls],
        "pull_rows_per_s": round(full.records / full.seconds, 1),
        "pull_bytes_per_row": round(full.response_bytes / full.records),
        "incremental_records": plan.increment,
        "incremental_ms_median": round(inc_s * 1000, 1),
        "incremental_ms_all": [round(t * 1000, 1) for t in times],
        "incremental_rows_per_s": round(plan.increment / inc_s, 1),
    }


def extra_count(plan: Plan) -> int:
    return 10 + plan.increment * plan.rounds


def bench_ours(
    backend: str, plan: Plan, dataset: Sequence[Record], extra: Sequence[Record], sources: list[SourcePrompt]
) -> tuple[dict[str, Any], Side]:
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-kinto-ours-{backend}-") as tmp,
        backend_database(backend) as (url, version),
        running_server(database_url=url, workdir=Path(tmp)) as base,
    ):
        lib = set_up_org(base, sources)
        with httpx.Client(base_url=base, headers={**lib.headers, **UNCOMPRESSED}, timeout=600) as c:
            prompt_ids = tuple(
                _ok(c.post(f"{lib.base}/prompts", json={"title": s.act[:300], "body": s.prompt}), 201)["id"]
                for s in sources[:50]
            )
            refs = Refs(
                prompt_ids=prompt_ids,
                custom_gpts=tuple(lib.custom_gpts),
                accuracy_levels=tuple(lib.accuracy_levels),
                knowledge_types=tuple(lib.knowledge_types),
                tags=tuple(lib.tags.values()),
            )
            ours = OurSide(c, org=lib.org, refs=refs, database_url=url)
            result = measure(ours, dataset, extra, plan)
        return {"server": f"outputhub ({backend})", "database_version": version, **result}, ours


def bench_kinto(
    install: KintoInstall, backend: str, plan: Plan, dataset: Sequence[Record], extra: Sequence[Record]
) -> tuple[dict[str, Any], Side]:
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-kinto-{backend}-")))
        storage_url: str | None = None
        version = "-"
        if backend == "postgresql":
            storage_url, version = stack.enter_context(kinto_database())
        base = stack.enter_context(
            running_kinto(install, storage_url=storage_url, batch=plan.batch, workdir=tmp)
        )
        with httpx.Client(base_url=base, auth=KINTO_AUTH, headers=UNCOMPRESSED, timeout=600) as c:
            _ok(c.put(f"/buckets/{BUCKET}", json={"data": {}}), 201)
            _ok(c.put(f"/buckets/{BUCKET}/collections/{COLLECTION}", json={"data": {}}), 201)
            side = KintoSide(c, refs=Refs.synthetic(), database_url=storage_url)
            result = measure(side, dataset, extra, plan)
        return {"server": f"kinto {install.version} ({backend})", "database_version": version, **result}, side


# --- the pull's ceiling ------------------------------------------------------------------------------------


def decode_seconds(body: bytes, *, repeats: int = 30) -> float:
    """The median time to decode ``body`` as :func:`decode` does (the client's share of a pull page)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decode(body)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bare_pull_seconds(client: httpx.Client, *, pages: int, repeats: int = 3) -> float:
    """The median time to GET the stored page ``pages`` times and decode each: a full pull of that many
    pages from a server whose own work takes no time (the page is already bytes in memory)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(pages):
            response = client.get(PAGE_PATH)
            if response.status_code != 200:
                raise RuntimeError(f"bare page: {response.status_code}")
            decode(response.content)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ceilings(sides: dict[str, Side], plan: Plan) -> dict[str, dict[str, float]]:
    """What a full pull could reach at best, for each side's own page format, in this run.

    Each side's biggest pull page (its exact answer bytes) is served again by a bare route of an idle server
    of ours (``bench.server``'s ``/bench/page``: no database, no encoding, the same uvicorn and middleware,
    the same client) as many times as a full pull has pages, and decoded as the pull decodes it
    (``ceiling_http_rows_per_s``), and decoded alone (``ceiling_decode_rows_per_s``: no server and no
    transfer at all). A server that answers in no time reaches the first; nothing that sends these bytes to
    this client beats the second."""
    out: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-kinto-ceiling-") as tmp,
        running_server(database_url=None, workdir=Path(tmp)) as base,
        httpx.Client(base_url=base, headers=UNCOMPRESSED, timeout=600) as client,
    ):
        pages = -(-plan.records // plan.page)  # a full pull's
        for target, side in sides.items():
            if not side.sample_records:
                continue
            stored = client.put(PAGE_PATH, content=side.sample, headers=JSON_HEADERS)
            if stored.status_code != 204:
                raise RuntimeError(f"bare page: {stored.status_code} {stored.text[:300]}")
            bare_pull_seconds(client, pages=1, repeats=2)  # warm up
            http_s = bare_pull_seconds(client, pages=pages, repeats=plan.pull_repeats)
            out[target] = {
                "ceiling_page_records": side.sample_records,
                "ceiling_page_bytes": len(side.sample),
                "ceiling_http_rows_per_s": round(side.sample_records * pages / http_s, 1),
                "ceiling_decode_rows_per_s": round(side.sample_records / decode_seconds(side.sample), 1),
            }
    return out


def ceiling_table(results: dict[str, dict[str, Any]]) -> str:
    """Each side's full pull beside its ceilings, and each against Kinto on PostgreSQL's full pull."""
    kinto = results.get("kinto-postgresql", {}).get("pull_rows_per_s")
    lines = [
        "| pull, rows/s | full pull | its page from a bare route | decoding its page alone |",
        "|---|--:|--:|--:|",
    ]
    for target in TARGETS:
        r = results.get(target)
        if not r or "ceiling_http_rows_per_s" not in r:
            continue
        cells = [r["pull_rows_per_s"], r["ceiling_http_rows_per_s"], r["ceiling_decode_rows_per_s"]]
        text = [f"{c:,.0f}" + (f" ({c / kinto:.1f}x Kinto PG)" if kinto else "") for c in cells]
        lines.append(f"| {LABELS[target]} | " + " | ".join(text) + " |")
    return "\n".join(lines)


# --- reporting --------------------------------------------------------------------------------------------


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{"ours-postgres/kinto-postgresql": {"write_rows_per_s": 1.7, ...}, ...}`` for every pair measured."""
    out: dict[str, dict[str, float]] = {}
    for ours in OURS:
        for kinto in KINTOS:
            if ours in results and kinto in results:
                out[f"{ours}/{kinto}"] = {
                    key: round(float(results[ours][key]) / float(results[kinto][key]), 2)
                    for key, _ in MEASURES
                    if results[kinto].get(key)
                }
    return out


def ratio_label(pair: str) -> str:
    ours, kinto = pair.split("/")
    return f"{SHORT[ours]} / {SHORT[kinto]}"


def table(results: dict[str, dict[str, Any]], plan: Plan) -> str:
    targets = [t for t in TARGETS if t in results]
    pairs = ratios(results)
    header = ["rows/s", *(LABELS[t] for t in targets), *(ratio_label(p) for p in pairs)]
    what = {
        "write_rows_per_s": f"bulk write ({plan.batch} per request)",
        "pull_rows_per_s": f"full pull ({plan.page} per page, median of {plan.pull_repeats})",
        "incremental_rows_per_s": f"pull of {plan.increment} new (median of {plan.rounds})",
    }
    lines = [header]
    for key, _ in MEASURES:
        lines.append(
            [
                what[key],
                *(f"{results[t][key]:,.0f}" for t in targets),
                *(f"{pairs[p][key]:.2f}x" if key in pairs[p] else "-" for p in pairs),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("| " + " | ".join(cells) + " |")
        if n == 0:
            out.append(
                "|"
                + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths))
                + "|"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.kinto",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="5,000 records instead of 20,000")
    parser.add_argument("--records", type=int, default=None, help="outputs written to each server")
    parser.add_argument(
        "--batch", type=int, default=PUSH_MAX, help=f"records per write request (max {PUSH_MAX})"
    )
    parser.add_argument("--page", type=int, default=1000, help=f"records per pull request (max {PULL_MAX})")
    parser.add_argument("--increment", type=int, default=100, help="new records before each incremental pull")
    parser.add_argument("--rounds", type=int, default=5, help="incremental pulls (the median is reported)")
    parser.add_argument("--pull-repeats", type=int, default=3, help="full pulls (the median is reported)")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"comma-separated subset of {', '.join(TARGETS)}"
    )
    parser.add_argument(
        "--no-analyze", action="store_true", help="never ANALYZE (stale planner statistics, autovacuum off)"
    )
    parser.add_argument(
        "--no-ceiling",
        action="store_true",
        help="skip the pull's ceiling (each side's page from a bare route)",
    )
    parser.add_argument("--kinto-venv", type=Path, default=DEFAULT_KINTO_VENV)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="the prompts CSV (act,prompt,...)")
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON results file (default: bench/results)"
    )
    args = parser.parse_args(argv)

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    if not 1 <= args.batch <= PUSH_MAX or not 1 <= args.page <= PULL_MAX:
        parser.error(f"--batch must be 1..{PUSH_MAX} and --page 1..{PULL_MAX}")
    records = args.records or (5_000 if args.quick else 20_000)
    plan = Plan(
        records=records,
        batch=args.batch,
        page=args.page,
        increment=args.increment,
        rounds=args.rounds,
        pull_repeats=max(1, args.pull_repeats),
        analyze=not args.no_analyze,
    )

    # our server signs 15-minute access tokens; a slow bulk write must not outlive its token
    os.environ.setdefault("OUTPUTHUB_ACCESS_TOKEN_MINUTES", "600")
    sources = load_prompts(args.csv)
    dataset = make_records(sources, plan.records)
    extra = make_records(sources, extra_count(plan), start=plan.records)
    install = ensure_kinto(args.kinto_venv) if any(t in KINTOS for t in targets) else None

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    sides: dict[str, Side] = {}
    for target in TARGETS:
        if target not in targets:
            continue
        print(f"[{target}] {plan.records} records ...", flush=True)
        if target in OURS:
            results[target], sides[target] = bench_ours(
                target.split("-", 1)[1], plan, dataset, extra, sources
            )
        else:
            assert install is not None
            results[target], sides[target] = bench_kinto(
                install, target.split("-", 1)[1], plan, dataset, extra
            )
        r = results[target]
        print(
            f"[{target}] write {r['write_rows_per_s']:,.0f} rows/s, pull {r['pull_rows_per_s']:,.0f} rows/s "
            f"({r['pull_bytes_per_row']} B/row), "
            f"pull of {plan.increment} new {r['incremental_ms_median']} ms",
            flush=True,
        )
    if not args.no_ceiling:
        print("[ceiling] each side's pull page again from a bare route ...", flush=True)
        for target, figures in ceilings(sides, plan).items():
            results[target].update(figures)
    duration = time.perf_counter() - t0

    print()
    print(table(results, plan))
    if not args.no_ceiling:
        print()
        print(ceiling_table(results))
    print(f"\n{plan.records} outputs of ~2 KB per server; total {duration:.0f} s")
    result = {
        "benchmark": "kinto",
        "started_at": started.isoformat(),
        "duration_s": round(duration, 1),
        "mode": "quick" if args.quick else "full",
        "plan": asdict(plan),
        "kinto_version": install.version if install else None,
        "machine": machine_info(),
        "results": results,
        "ratios": ratios(results),
    }
    path = args.output or RESULTS_DIR / f"kinto-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
