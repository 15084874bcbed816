"""Pooled PostgreSQL connections: a dead one is never handed out, a healthy one is not pinged every time.

``install_liveness_check`` replaced ``pool_pre_ping`` (a ``SELECT 1`` round trip per checkout). These tests
kill the app's backends for real (``pg_terminate_backend``, what a server shutdown or restart does to them)
and check that the very next request succeeds on a fresh connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

from outputhub.server.main import create_app
from outputhub.server.storage import database
from outputhub.server.storage.database import make_engine
from tests.conftest import make_settings
from tests.support.client import new_org, register
from tests.support.postgres import PgServer

pytestmark = pytest.mark.postgres


def _terminate_backends(admin_url: str, db_url: str) -> int:
    """Kill every backend of the app's database (as a restart would) and wait until they are gone."""
    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(*) FROM pg_stat_activity s, pg_terminate_backend(s.pid) "
            "WHERE s.datname = %s AND s.pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchone()
            if left and left[0] == 0:
                break
            time.sleep(0.02)
    return int(killed[0]) if killed else 0


@pytest.fixture()
def engine(pg_url: str, tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(make_settings("postgres", tmp=tmp_path, pg_url=pg_url))
    yield eng
    eng.dispose()


def _count_pings(engine: Engine) -> list[str]:
    pings: list[str] = []
    original = engine.dialect.do_ping

    def counting(dbapi_connection: object) -> bool:
        pings.append("ping")
        return original(dbapi_connection)

    engine.dialect.do_ping = counting  # type: ignore[method-assign]
    return pings


def test_a_recently_used_healthy_connection_is_not_pinged(engine: Engine) -> None:
    pings = _count_pings(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    for _ in range(5):
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 41 + 1")).scalar() == 42
    assert pings == []
    assert statements == ["SELECT 41 + 1"] * 5


def test_a_connection_idle_too_long_is_pinged(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    pings = _count_pings(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
    time.sleep(0.01)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 2")).scalar() == 2
    assert pings == ["ping"]


def test_connections_killed_while_pooled_are_replaced(
    engine: Engine, pg_server: PgServer, pg_url: str
) -> None:
    # several connections in the pool, all idle
    conns = [engine.connect() for _ in range(3)]
    before = {int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in conns}
    for c in conns:
        c.close()
    assert _terminate_backends(pg_server.admin_url, pg_url) >= 3
    # no error: the dead connections are noticed at checkout (the server's farewell on the socket)
    for _ in range(5):
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            assert pid not in before


def test_requests_succeed_right_after_the_database_dropped_every_connection(
    pg_server: PgServer, pg_url: str, tmp_path: Path
) -> None:
    app = create_app(make_settings("postgres", tmp=tmp_path, pg_url=pg_url))
    try:
        with TestClient(app) as client:
            org = new_org(client, owner=register(client, name="liveness"))
            for _ in range(3):
                r = org.owner.post(f"/api/v1/orgs/{org.id}/tags", json={"name": f"t-{time.monotonic_ns()}"})
                assert r.status_code == 201, r.text
            assert _terminate_backends(pg_server.admin_url, pg_url) >= 1
            r = org.owner.post(f"/api/v1/orgs/{org.id}/tags", json={"name": "after the restart"})
            assert r.status_code == 201, r.text
            listed = org.owner.get(f"/api/v1/orgs/{org.id}/tags")
            assert listed.status_code == 200
            assert "after the restart" in {t["name"] for t in listed.json()["items"]}
    finally:
        app.state.services.engine.dispose()
