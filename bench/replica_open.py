"""What opening the encrypted replica costs, and what deriving its key once per open saves.

    .venv/bin/python -m bench.replica_open                # 9 runs of each, medians
    .venv/bin/python -m bench.replica_open --repeats 21

SQLCipher derives a key from a passphrase at every connection (PBKDF2-HMAC-SHA512, 256,000 iterations,
about 0.1 s on purpose). An open can make several connections, and the desktop's sync process opens the
replica at every sync, so where an open makes two connections ``open_replica`` derives the key once
(``cipher.derive_key``) and keys both with the raw key, and the sync process is handed that key
(``Replica.key_material``). Timed, each in the same run:

- **baseline**: one connection keyed with the passphrase, SQLCipher deriving it (what one derivation costs
  here; the floor of any open by passphrase);
- **derive_key alone**: the derivation ``open_replica`` does (hashlib);
- **create**: ``open_replica(create=True)`` of a new replica (schema included);
- **open**: ``open_replica`` by passphrase of a closed replica (SQLCipher derives the key);
- **open with a log**: the same while another connection holds the file open (a ``-wal`` to look at
  read-only first, as the desktop's sync process finds the app's replica);
- **open with the shared key**: ``open_replica(key=Replica.key_material())``, as that process opens it now.

Printed: the median of each in ms, each against the baseline, and how many derivations each made before
2026-11-29 (one per connection) and now.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.api import machine_info
from outputhub.desktop.storage import cipher, open_replica

PASSPHRASE = "bench passphrase, not secret"


def median_ms(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


def run(repeats: int, workdir: Path) -> dict[str, object]:
    path = workdir / "replica.ohr"
    open_replica(path, passphrase=PASSPHRASE, create=True).close()
    salt = cipher.file_salt(path)
    secret = cipher.passphrase_bytes(PASSPHRASE)
    made = iter(range(10**6))

    def sqlcipher_derives() -> None:
        conn = cipher.connect(path, key=secret)
        try:
            cipher.unlock(conn, path=path)
        finally:
            conn.close()

    def create() -> None:
        open_replica(workdir / f"new-{next(made)}.ohr", passphrase=PASSPHRASE, create=True).close()

    figures: dict[str, float] = {
        "baseline_one_sqlcipher_derivation_ms": median_ms(sqlcipher_derives, repeats),
        "derive_key_ms": median_ms(lambda: cipher.derive_key(secret, salt), repeats),
        "create_ms": median_ms(create, repeats),
        "open_ms": median_ms(lambda: open_replica(path, passphrase=PASSPHRASE).close(), repeats),
    }
    held = open_replica(path, passphrase=PASSPHRASE)
    try:
        held.set_setting(key="bench", value="leaves a log")
        assert cipher.has_log(path)
        figures["open_with_a_log_ms"] = median_ms(
            lambda: open_replica(path, passphrase=PASSPHRASE).close(), repeats
        )
        key = held.key_material()
        shared = median_ms(lambda: open_replica(path, key=key).close(), repeats)
        figures["open_with_the_shared_key_ms"] = shared
    finally:
        held.close()
    base = figures["baseline_one_sqlcipher_derivation_ms"]
    return {
        "repeats": repeats,
        **figures,
        **{
            f"ratio_{name[:-3]}_vs_baseline": round(value / base, 2)
            for name, value in figures.items()
            if not name.startswith("baseline")
        },
        "derivations_before_2026_11_29": {"create": 2, "open": 1, "open_with_a_log": 2, "sync_process": 2},
        "derivations_now": {"create": 1, "open": 1, "open_with_a_log": 1, "sync_process": 0},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-open-") as tmp:
        results = run(args.repeats, Path(tmp))
    results["machine"] = machine_info()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
