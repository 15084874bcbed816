"""A long run of writes (a large pull) has its write-ahead log copied back into the file by a thread of its
own (``Replica.checkpoints_apart``), not by the commits; afterwards the commits checkpoint again, and nothing
written is lost or damaged."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from replica_support import PASSPHRASE, output, prompt

from outputhub.desktop.storage import open_replica
from outputhub.desktop.storage.replica import WAL_AUTOCHECKPOINT_PAGES, Replica

ROWS = 1000
TEXT = "A long pulled answer about tides and the moon. " * 45  # ~2 KB, as outputs are


def _autocheckpoint(replica: Replica) -> int:
    with replica.reading("read the setting") as conn:
        return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def _checkpoint_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "outputhub-checkpoint" and t.is_alive())


def _wait_for(condition: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_the_log_is_copied_back_by_a_thread_while_the_writes_go_on(tmp_path: Path) -> None:
    path = tmp_path / "replica.ohr"
    replica = open_replica(path, passphrase=PASSPHRASE, create=True)
    try:
        parent = prompt()
        replica.upsert_prompt(record=parent)
        before = path.stat().st_size
        with replica.checkpoints_apart():
            assert _autocheckpoint(replica) == 0  # the commits no longer checkpoint
            assert _checkpoint_threads() == 1
            with replica.checkpoints_apart():  # nested: no second thread
                assert _checkpoint_threads() == 1
            assert _autocheckpoint(replica) == 0
            for _ in range(4):  # ~2 MB, under the 1,000 pages at which a commit would checkpoint itself
                replica.bulk_insert_outputs([output(parent.id, content=TEXT) for _ in range(ROWS // 4)])
            # the pages reach the file itself (in WAL mode only a checkpoint writes it) while still inside
            assert _wait_for(lambda: path.stat().st_size >= before + ROWS * len(TEXT))
        assert _checkpoint_threads() == 0
        assert _autocheckpoint(replica) == WAL_AUTOCHECKPOINT_PAGES
    finally:
        replica.close()

    reopened = open_replica(path, passphrase=PASSPHRASE)
    try:
        assert reopened.count_live(table="outputs") == ROWS
        assert reopened.verify_integrity() == []
    finally:
        reopened.close()
