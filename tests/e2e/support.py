"""A real ``outputhub serve`` process on PostgreSQL for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.serve import clean_env, served


@contextmanager
def serving(pg_url: str, data_dir: Path, *, workers: int = 1) -> Iterator[str]:
    """Run ``outputhub serve`` (``workers`` processes) on ``pg_url`` until the block ends; yields its URL."""
    env = clean_env(
        OUTPUTHUB_DATA_DIR=str(data_dir),
        OUTPUTHUB_DATABASE_URL=pg_url,
        OUTPUTHUB_SECRET_KEY="replica-cli-test-secret-with-enough-length",
        OUTPUTHUB_RATE_LIMIT_ENABLED="false",  # many clients from one address
    )
    with served(env, workers=workers) as (_, base):
        yield base


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
