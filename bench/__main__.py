"""``python -m bench`` runs the API throughput benchmark (``bench.api``)."""

from __future__ import annotations

from bench.api import main

if __name__ == "__main__":
    raise SystemExit(main())
