"""The composition root: ``create_app(settings)`` builds every long-lived object once and wires the routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from outputhub.common.errors import StorageError
from outputhub.server.api.auth.router import router as auth_router
from outputhub.server.api.auth.service import AuthPolicy
from outputhub.server.api.custom_gpts.router import router as custom_gpts_router
from outputhub.server.api.lookups.router import build_routers as lookup_routers
from outputhub.server.api.orgs.router import router as orgs_router
from outputhub.server.api.outputs.router import router as outputs_router
from outputhub.server.api.prompts.router import router as prompts_router
from outputhub.server.api.sync.records import install_state_tracking
from outputhub.server.api.sync.router import router as sync_router
from outputhub.server.deps import Services
from outputhub.server.problems import BodySizeLimit, install_problem_handlers
from outputhub.server.security import TokenSigner
from outputhub.server.settings import Settings
from outputhub.server.storage import migrate
from outputhub.server.storage.database import check_rls_enforced, make_engine, make_session_factory

log = logging.getLogger("outputhub.server")
API_PREFIX = "/api/v1"
VERSION = "0.1.0"


def build_services(settings: Settings) -> Services:
    engine = make_engine(settings)
    session_factory = make_session_factory(engine)
    install_state_tracking(session_factory)
    return Services(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        auth=AuthPolicy(
            signer=TokenSigner(
                secret=settings.token_secret(), ttl=timedelta(minutes=settings.access_token_minutes)
            ),
            refresh_ttl=timedelta(days=settings.refresh_token_days),
        ),
    )


def prepare_database(services: Services) -> None:
    """Migrate to the newest schema and refuse a PostgreSQL role that would bypass row-level security."""
    if services.settings.auto_migrate:
        migrate.upgrade(services.engine)
    problem = check_rls_enforced(services.engine)
    if problem:
        if not services.settings.allow_rls_bypass:
            raise StorageError(
                f"refusing to start: {problem}. Connect as a role without BYPASSRLS "
                "(see docs/deployment.md), or set OUTPUTHUB_ALLOW_RLS_BYPASS=true to accept the risk."
            )
        log.warning("row-level security is bypassed: %s", problem)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    services = build_services(settings)
    prepare_database(services)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        services.engine.dispose()

    app = FastAPI(
        title="Output Hub",
        version=VERSION,
        summary="Curate LLM prompts and the outputs they produce, as a team.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        lifespan=lifespan,
    )
    app.state.services = services
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    for router in (
        auth_router,
        orgs_router,
        custom_gpts_router,
        prompts_router,
        outputs_router,
        sync_router,
        *lookup_routers(),
    ):
        app.include_router(router, prefix=API_PREFIX)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """The stores are reachable."""
        checks: dict[str, str] = {}
        try:
            with services.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any driver failure means not ready
            checks["database"] = f"unreachable: {exc.__class__.__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {
                "status": "ready" if ready else "unavailable",
                "checks": checks,
                "backend": services.engine.dialect.name,
            },
            status_code=200 if ready else 503,
        )

    return app
