"""What binding NULL parameters costs the replica's driver, with and without its adapter for ``None``.

    .venv/bin/python -m bench.binding            # 200,000 rows per variant
    .venv/bin/python -m bench.binding --rows 50000

The replica's writes bind NULL for every column without a value (a pulled output has three: ``base``,
``gpt_model_id``, ``produced_at``). ``sqlcipher3`` binds str, int, float and bytearray parameters as they
are and sends everything else, ``None`` included, through its adapter protocol, which for ``None`` finds
nothing registered and then fails two attribute lookups. ``desktop.storage.cipher.connect`` registers an
adapter that gives ``None`` back (one C call). Each variant inserts the same rows, eight columns of which
three are NULL, with ``executemany`` in one transaction into a fresh encrypted file opened by
``cipher.connect``:

- **baseline**: the three columns hold ``''`` instead (nothing to adapt);
- **NULLs as the replica binds them** (the adapter registered);
- **NULLs without the adapter** (removed from the driver's registry for that run).

Printed: rows/s of each and each against the baseline in the same run. Best of ``--repeats`` runs each,
the variants alternating.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.api import machine_info
from outputhub.common.ids import new_id_text
from outputhub.desktop.storage import cipher

KEY = b"bench passphrase, not secret"
SQL = "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def rows_per_s(path: Path, rows: list[tuple[object, ...]], *, adapter: bool) -> float:
    conn = cipher.connect(path, key=KEY)  # registers the adapter
    key = (type(None), cipher.driver.PrepareProtocol)
    saved = cipher.driver.adapters.pop(key) if not adapter else None
    try:
        conn.execute(
            "CREATE TABLE t (id TEXT PRIMARY KEY, org TEXT, rev INTEGER, a, b, c, status TEXT, body TEXT)"
        )
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(SQL, rows)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        if saved is not None:
            cipher.driver.adapters[key] = saved
        conn.close()
    return len(rows) / elapsed


def run(count: int, repeats: int, workdir: Path) -> dict[str, object]:
    org = new_id_text()
    ids = [new_id_text() for _ in range(count)]
    blank = [(i, org, n, "", "", "", "synced", "x" * 64) for n, i in enumerate(ids)]
    nulls = [(i, org, n, None, None, None, "synced", "x" * 64) for n, i in enumerate(ids)]
    best: dict[str, float] = {"baseline": 0.0, "nulls_adapted": 0.0, "nulls_unadapted": 0.0}
    n = 0
    for _ in range(repeats):
        for name, rows, adapter in (
            ("baseline", blank, True),
            ("nulls_adapted", nulls, True),
            ("nulls_unadapted", nulls, False),
        ):
            n += 1
            best[name] = max(best[name], rows_per_s(workdir / f"{n}.db", rows, adapter=adapter))
    return {
        "rows": count,
        **{f"{k}_rows_per_s": round(v) for k, v in best.items()},
        "ratio_nulls_adapted_vs_baseline": round(best["nulls_adapted"] / best["baseline"], 3),
        "ratio_nulls_unadapted_vs_baseline": round(best["nulls_unadapted"] / best["baseline"], 3),
        "us_per_null_unadapted": round((1 / best["nulls_unadapted"] - 1 / best["baseline"]) / 3 * 1e6, 2),
        "us_per_null_adapted": round((1 / best["nulls_adapted"] - 1 / best["baseline"]) / 3 * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-binding-") as tmp:
        results = run(args.rows, args.repeats, Path(tmp))
    results["machine"] = machine_info()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
