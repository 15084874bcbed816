"""Server processes started together on a fresh PostgreSQL database (``outputhub serve --workers 2``, several
pods) migrate it one after another: before, two of them created ``alembic_version`` at once and one crashed
with a unique violation (found by QA)."""

from __future__ import annotations

import threading
from pathlib import Path

from outputhub.server.settings import Settings
from outputhub.server.storage import migrate
from outputhub.server.storage.database import make_engine
from tests.support.postgres import PgServer, app_database


def test_workers_migrating_a_fresh_database_at_once_all_succeed(pg_server: PgServer, tmp_path: Path) -> None:
    with app_database(pg_server) as url:
        settings = Settings(database_url=url, data_dir=tmp_path)
        engines = [make_engine(settings) for _ in range(3)]
        start = threading.Barrier(len(engines))
        failures: list[BaseException] = []

        def run(engine: object) -> None:
            start.wait()
            try:
                migrate.upgrade(engine)  # type: ignore[arg-type]
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        try:
            assert failures == []
            assert migrate.current_revision(engines[0]) == migrate.head_revision()
        finally:
            for engine in engines:
                engine.dispose()
