"""Qt tests: one session QApplication (pytest-qt's ``qapp``) on the offscreen platform, a fresh encrypted
replica per test, the real services, and a real server (uvicorn in a thread) for the sync flows."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from outputhub.desktop.storage import Replica, open_replica
from tests.support.serve import free_port

PASSPHRASE = "correct horse battery staple"


def pytest_configure(config: pytest.Config) -> None:
    # before pytest-qt creates the QApplication; a developer's display is never used by the tests
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    with open_replica(tmp_path / "library.ohb", passphrase=PASSPHRASE, create=True) as opened:
        yield opened


@pytest.fixture
def session(qtbot: Any, replica: Replica) -> Iterator[Any]:
    """The main window over ``replica`` with every service real; jobs drained before the replica closes."""
    from outputhub.desktop.app import build_window
    from outputhub.desktop.jobs import JobRunner

    runner = JobRunner(max_threads=2)
    built = build_window(replica=replica, runner=runner, sync_interval_ms=3_600_000)
    qtbot.addWidget(built.window)
    built.window.show()
    qtbot.waitExposed(built.window)
    yield built
    assert built.shutdown(wait_ms=30_000)  # a sync process still running is stopped first


def wait_idle(qtbot: Any, runner: Any, timeout: int = 10_000) -> None:
    """Until every background job has finished and its results have been delivered."""
    qtbot.waitUntil(lambda: runner.running == 0, timeout=timeout)
    qtbot.wait(20)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real API on embedded SQLite, served by uvicorn on a free port in a thread."""
    import uvicorn

    from outputhub.server.main import create_app
    from outputhub.server.settings import Settings

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("desktop-server"),
        secret_key="test-secret-key-with-enough-length-for-hs256",
    )
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:  # pragma: no cover - start failure
        raise RuntimeError("the test server did not start")
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def api(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client
