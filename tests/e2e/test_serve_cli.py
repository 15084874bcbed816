"""`outputhub serve` on the embedded default, as a new user starts it: a real process on a real port."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.support.serve import OUTPUTHUB_EXE, clean_env, served


def test_serve_embedded_default_then_db_commands(tmp_path: Path):
    env = clean_env(OUTPUTHUB_DATA_DIR=str(tmp_path / "data"))
    with served(env) as (_, base):
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
    current = subprocess.run(
        [OUTPUTHUB_EXE, "db", "current"], env=env, capture_output=True, text=True, check=True
    )
    database, newest = (part.split(": ")[1].strip() for part in current.stdout.strip().split("  "))
    assert database == newest and database != "None", current.stdout
