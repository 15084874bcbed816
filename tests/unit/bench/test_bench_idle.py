"""bench.api.wait_until_idle: the benchmarks wait for a server's background work by its CPU use."""

from __future__ import annotations

import subprocess
import sys

from bench.api import SERVER_PIDS, wait_until_idle

BUSY_THEN_IDLE = "import time\nend = time.time() + 1.0\nwhile time.time() < end: pass\ntime.sleep(30)\n"


def test_waits_for_the_busy_spell_and_not_for_the_idle_one() -> None:
    proc = subprocess.Popen([sys.executable, "-c", BUSY_THEN_IDLE])
    SERVER_PIDS["http://busy"] = proc.pid
    try:
        busy_for = wait_until_idle("http://busy", quiet_s=0.5, timeout_s=20)
        assert 0.5 <= busy_for < 10  # the remaining busy second (minus start-up), not the 30 s sleep
        assert wait_until_idle("http://busy", quiet_s=0.5, timeout_s=20) < 0.3  # idle now
    finally:
        SERVER_PIDS.pop("http://busy", None)
        proc.kill()
        proc.wait()


def test_an_unknown_server_is_not_waited_for() -> None:
    assert wait_until_idle("http://nowhere", quiet_s=5) == 0.0
