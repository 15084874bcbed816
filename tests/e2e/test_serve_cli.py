"""`outputhub serve` on the embedded default, as a new user starts it: a real process on a real port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_embedded_default_then_db_commands(tmp_path: Path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPUTHUB_")}
    env["OUTPUTHUB_DATA_DIR"] = str(tmp_path / "data")
    exe = str(Path(sys.executable).with_name("outputhub"))
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
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
        assert (tmp_path / "data" / "outputhub.sqlite3").exists()
        r = httpx.post(
            f"{base}/api/v1/auth/register",
            json={"email": "new@example.com", "password": "a long password", "display_name": "New"},
        )
        assert r.status_code == 201
        token = httpx.post(
            f"{base}/api/v1/auth/token", data={"username": "new@example.com", "password": "a long password"}
        ).json()
        org = httpx.post(
            f"{base}/api/v1/orgs",
            json={"name": "Mine"},
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        assert org.status_code == 201 and org.json()["role"] == "owner"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    current = subprocess.run([exe, "db", "current"], env=env, capture_output=True, text=True, check=True)
    database, newest = (part.split(": ")[1].strip() for part in current.stdout.strip().split("  "))
    assert database == newest and database != "None", current.stdout
