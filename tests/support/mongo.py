"""Find or start a real MongoDB wire-protocol server for the tests.

``OUTPUTHUB_TEST_MONGO_URL`` when set, else SecantusDB (PyPI ``secantusdb``, MongoDB-compatible on
WiredTiger) started on a free port and a temp dir: ``python -m secantus --host 127.0.0.1 --port N
--storage-path DIR``; stopped (SIGTERM, then SIGKILL) when the session ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

from tests.support.serve import free_port


def _wait_ready(url: str, proc: subprocess.Popen[bytes] | None, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"SecantusDB exited with {proc.returncode} before accepting connections")
        try:
            with pymongo.MongoClient(url, serverSelectionTimeoutMS=500) as client:
                client.admin.command("ping")
            return
        except PyMongoError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"MongoDB at {url} not ready after {timeout}s: {last}")


@contextlib.contextmanager
def mongo_server() -> Iterator[str]:
    url = os.environ.get("OUTPUTHUB_TEST_MONGO_URL")
    if url:
        _wait_ready(url, None, timeout=10)
        yield url
        return
    workdir = Path(tempfile.mkdtemp(prefix="outputhub-secantus-"))
    port = free_port()
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "secantus",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(workdir / "data"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"mongodb://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
