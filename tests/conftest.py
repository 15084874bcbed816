"""Shared fixtures: the app on each storage backend (embedded SQLite and a real PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings

from outputhub.server.main import create_app
from outputhub.server.settings import Settings
from tests.support.mongo import mongo_server
from tests.support.postgres import PgServer, app_database, postgres_server

hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
hypothesis_settings.register_profile("long", max_examples=1000, deadline=None)
hypothesis_settings.load_profile(os.environ.get("OUTPUTHUB_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> Iterator[str]:
    with app_database(pg_server) as url:
        yield url


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """A real MongoDB wire-protocol server: OUTPUTHUB_TEST_MONGO_URL, else SecantusDB started here."""
    with mongo_server() as url:
        yield url


def make_settings(backend: str, *, tmp: Path, pg_url: str | None) -> Settings:
    return Settings(
        data_dir=tmp,
        database_url=pg_url if backend == "postgres" else None,
        secret_key="test-secret-key-with-enough-length-for-hs256",
        max_body_bytes=1024 * 1024,
        max_push_bytes=1024 * 1024,  # pushes too: tests/sync/test_push_size.py
        # the shared test apps serve thousands of requests from one address; rate limits have their own tests
        rate_limit_enabled=False,
        # background analytics recomputes would keep the shared job queue busy (tests that wait for it to be
        # idle); tests/api/test_analytics_recompute.py enables them on its own app
        analytics_recompute_delay_seconds=-1,
    )


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def app(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[FastAPI]:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    application = create_app(
        make_settings(backend, tmp=tmp_path_factory.mktemp(f"data-{backend}"), pg_url=url)
    )
    yield application
    application.state.services.engine.dispose()


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@contextlib.contextmanager
def app_client(settings: Settings) -> Iterator[TestClient]:
    """A client of a new app with ``settings``, its database connections closed after."""
    application = create_app(settings)
    with TestClient(application) as test_client:
        yield test_client
    application.state.services.engine.dispose()


@pytest.fixture(scope="session")
def mongo_client(
    backend: str, mongo_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[TestClient]:
    """The app on ``backend`` with its document store in MongoDB (``client`` uses the embedded one)."""
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    settings = make_settings(backend, tmp=tmp_path_factory.mktemp(f"data-{backend}-mongo"), pg_url=url)
    settings = settings.model_copy(update={"mongo_url": mongo_url, "mongo_database": f"api_{backend}"})
    with app_client(settings) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def module_client(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[TestClient]:
    """The app on ``backend`` for one test module alone, with a database of its own (so a job queue of its
    own: the queue's relay serves every job in its database). For tests that wait for their jobs: on the
    shared app, other files' jobs (webhook deliveries to addresses that never answer, each holding a worker
    for its timeout, and their retries) can keep the queue busy past any wait."""
    with contextlib.ExitStack() as stack:
        url = None
        if backend == "postgres":
            url = stack.enter_context(app_database(request.getfixturevalue("pg_server")))
        tmp = tmp_path_factory.mktemp(f"data-{backend}-module")
        yield stack.enter_context(app_client(make_settings(backend, tmp=tmp, pg_url=url)))
