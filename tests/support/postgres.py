"""Find or start a real PostgreSQL for the tests.

Order: ``OUTPUTHUB_TEST_DATABASE_URL`` (an admin URL), else the server this machine runs on 127.0.0.1:5432,
else a throwaway cluster started from the installed binaries (``initdb`` + ``pg_ctl`` on a temp dir and a
free port). Each test session gets its own database, owned by a role without SUPERUSER/BYPASSRLS, so
row-level security really applies to the app.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.serve import free_port

APP_ROLE = "outputhub_test_app"
APP_PASSWORD = "outputhub-test"


@dataclass(frozen=True)
class PgServer:
    admin_url: str
    host: str
    port: int


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise RuntimeError(
            f"PostgreSQL binary {name!r} not found: install postgresql (packaging/dev.sh does)"
        )
    return found


@contextlib.contextmanager
def _throwaway_cluster() -> Iterator[PgServer]:
    workdir = Path(tempfile.mkdtemp(prefix="outputhub-pg-"))
    port = free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(workdir, user="postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data = workdir / "data"
    subprocess.run(
        [*prefix, _binary("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            _binary("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(workdir / "log"),
            "-w",
            "-o",
            f"-p {port} -k {workdir} -h 127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield PgServer(
            admin_url=f"postgresql://postgres@127.0.0.1:{port}/postgres", host="127.0.0.1", port=port
        )
    finally:
        subprocess.run(
            [*prefix, _binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PgServer]:
    url = os.environ.get("OUTPUTHUB_TEST_DATABASE_URL")
    if url:
        info = psycopg.conninfo.conninfo_to_dict(url)
        yield PgServer(
            admin_url=url, host=str(info.get("host", "127.0.0.1")), port=int(info.get("port", 5432))
        )
        return
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    if _reachable(local):
        yield PgServer(admin_url=local, host="127.0.0.1", port=5432)
        return
    with _throwaway_cluster() as server:
        yield server


@contextlib.contextmanager
def app_database(server: PgServer) -> Iterator[str]:
    """A fresh database owned by a plain role (no SUPERUSER, no BYPASSRLS); yields the app's URL."""
    name = f"outputhub_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
        if not exists:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOBYPASSRLS").format(
                    sql.Identifier(APP_ROLE), sql.Literal(APP_PASSWORD)
                )
            )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(APP_ROLE))
        )
    try:
        yield f"postgresql://{APP_ROLE}:{APP_PASSWORD}@{server.host}:{server.port}/{name}"
    finally:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
