"""The server under test: the real app from ``create_app`` plus bare baseline routes, served by uvicorn.

Run as a subprocess by ``bench.api`` (``python -m bench.server --port N --data-dir D [--database-url U]``).
The baseline routes are added to the SAME app object, so they pass through the same middleware (body size
limit, problem handlers), the same uvicorn loop and the same threadpool (they are plain ``def`` endpoints,
like the real routes) and differ from the measured routes only by what the endpoint itself does.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Body, FastAPI, Request, Response

from outputhub.server.main import create_app
from outputhub.server.settings import Settings

BARE_PATH = "/bench/bare"
PAGE_PATH = "/bench/page"
"""A stored answer served as is (``PUT`` its bytes, then ``GET`` them): a pull page with no server work."""


def add_baseline_routes(app: FastAPI) -> None:
    @app.get(BARE_PATH, include_in_schema=False)
    def bare_get() -> dict[str, Any]:
        """A small JSON document: the floor cost of one request through this stack."""
        return {"status": "ok", "items": [], "next_cursor": None}

    @app.post(BARE_PATH, status_code=201, include_in_schema=False)
    def bare_post(payload: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """Parse a JSON body and send it back: the floor cost of a request and response of that size."""
        return payload

    stored: dict[str, bytes] = {"page": b"{}"}

    @app.put(PAGE_PATH, status_code=204, include_in_schema=False)
    async def put_page(request: Request) -> Response:
        stored["page"] = await request.body()
        return Response(status_code=204)

    @app.get(PAGE_PATH, include_in_schema=False)
    def get_page() -> Response:
        """The stored bytes as a JSON answer: what a pull page costs the stack and the client when the
        server's own work (database, encoding) takes no time at all."""
        return Response(content=stored["page"], media_type="application/json")


BENCH_RATE_LIMIT = 10**9
"""Requests per window for every caller: the limiter still counts each request (its cost is part of every
figure, as in production), but a benchmark, one user sending thousands of requests a minute, is never
refused (with the default 1,200 per user, ``bench.api`` got 429 from its first output on)."""


def build_app(*, data_dir: Path, database_url: str | None, secret_key: str) -> FastAPI:
    app = create_app(
        Settings(
            data_dir=data_dir,
            database_url=database_url,
            secret_key=secret_key,
            rate_limit_per_user=BENCH_RATE_LIMIT,
            rate_limit_per_api_key=BENCH_RATE_LIMIT,
            rate_limit_anonymous=BENCH_RATE_LIMIT,
        )
    )
    add_baseline_routes(app)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--secret-key", default="bench-secret-key-not-for-production-use-0123456789")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    app = build_app(data_dir=args.data_dir, database_url=args.database_url, secret_key=args.secret_key)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
