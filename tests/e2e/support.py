"""A real ``outputhub serve`` process on PostgreSQL for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.test_serve_cli import free_port


@contextmanager
def serving(pg_url: str, data_dir: Path, *, workers: int = 1) -> Iterator[str]:
    """Run ``outputhub serve`` (``workers`` processes) on ``pg_url`` until the block ends; yields its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPUTHUB_")}
    env["OUTPUTHUB_DATA_DIR"] = str(data_dir)
    env["OUTPUTHUB_DATABASE_URL"] = pg_url
    env["OUTPUTHUB_SECRET_KEY"] = "replica-cli-test-secret-with-enough-length"
    env["OUTPUTHUB_RATE_LIMIT_ENABLED"] = "false"  # many clients from one address
    exe = str(Path(sys.executable).with_name("outputhub"))
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
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
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@dataclass(frozen=True)
class Account:
    """A registered user who owns one organization on a served instance."""

    email: str
    password: str
    token: str
    org_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def new_account(server: str, *, email: str, password: str, org_name: str) -> Account:
    """Register ``email``, log in and create an organization it owns, through the real API."""
    httpx.post(
        f"{server}/api/v1/auth/register", json={"email": email, "password": password, "display_name": email}
    ).raise_for_status()
    token = httpx.post(f"{server}/api/v1/auth/token", data={"username": email, "password": password}).json()[
        "access_token"
    ]
    made = httpx.post(
        f"{server}/api/v1/orgs", json={"name": org_name}, headers={"Authorization": f"Bearer {token}"}
    )
    made.raise_for_status()
    return Account(email, password, token, made.json()["id"])
