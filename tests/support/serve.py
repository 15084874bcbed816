"""``outputhub serve`` as a real process on a real port, for tests that need the whole server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

OUTPUTHUB_EXE = str(Path(sys.executable).with_name("outputhub"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any ``OUTPUTHUB_*`` variable, plus ``settings``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OUTPUTHUB_")}, **settings}


@contextmanager
def served(env: Mapping[str, str], *, workers: int = 1) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``outputhub serve`` (``workers`` processes) with ``env``, wait until ``/readyz`` answers 200, and
    yield the process and its base URL; stop it when the block ends (unless it has ended already)."""
    port = free_port()
    proc = subprocess.Popen(
        [OUTPUTHUB_EXE, "serve", "--port", str(port), "--workers", str(workers)],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "server exited"
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)
