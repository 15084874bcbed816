"""The composition root: ``create_app(settings)`` builds every long-lived object once and wires the routes."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette_compress import CompressMiddleware

from outputhub.common.errors import StorageError
from outputhub.server.api.analytics.recompute import RECOMPUTE_JOB, AnalyticsRecompute
from outputhub.server.api.analytics.router import router as analytics_router
from outputhub.server.api.audit.router import router as audit_router
from outputhub.server.api.audit.wiring import document_handlers, prepare_documents
from outputhub.server.api.auth.router import router as auth_router
from outputhub.server.api.auth.service import AuthPolicy
from outputhub.server.api.custom_gpts.router import router as custom_gpts_router
from outputhub.server.api.lookups.router import build_routers as lookup_routers
from outputhub.server.api.notifications.router import router as notifications_router
from outputhub.server.api.orgs.router import router as orgs_router
from outputhub.server.api.outputs.router import router as outputs_router
from outputhub.server.api.prompts.router import router as prompts_router
from outputhub.server.api.sync.records import install_state_tracking
from outputhub.server.api.sync.router import router as sync_router
from outputhub.server.api.webhooks.router import router as webhooks_router
from outputhub.server.cache import AccessCache, install_access_tracking
from outputhub.server.deps import Services
from outputhub.server.jobs.router import router as jobs_router
from outputhub.server.jobs.setup import Background, build_background, make_cache, make_rate_limiter
from outputhub.server.portal.web import install_portal
from outputhub.server.problems import BodySizeLimit, install_problem_handlers
from outputhub.server.ratelimit import RateLimitMiddleware
from outputhub.server.request_guard import check_request
from outputhub.server.security import TokenSigner
from outputhub.server.settings import Settings
from outputhub.server.storage import migrate
from outputhub.server.storage.database import check_rls_enforced, make_engine, make_session_factory
from outputhub.server.storage.documents.factory import build_document_store
from outputhub.server.storage.documents.outbox import EventOutbox
from outputhub.server.storage.tables import AuthSession, Membership, Organization, User

log = logging.getLogger("outputhub.server")
API_PREFIX = "/api/v1"
VERSION = "0.1.0"

COMPRESS_MIN_BYTES = 1024
"""Smaller answers go as they are (compressing them saves less than the header costs)."""


def build_services(settings: Settings) -> Services:
    return build_services_and_background(settings)[0]


def build_services_and_background(settings: Settings) -> tuple[Services, Background]:
    """The services plus the background machinery (job queue, worker, webhook and notification handlers)."""
    engine = make_engine(settings)
    session_factory = make_session_factory(engine)
    install_state_tracking(session_factory)
    background = build_background(settings=settings, session_factory=session_factory)
    documents = build_document_store(settings, engine=engine)
    cache = make_cache(settings)
    handlers = [*document_handlers(settings, documents), *background.handlers]
    # else nothing would keep what the recompute computes
    if settings.analytics_recompute_delay_seconds >= 0 and settings.cache_sees_every_write:
        recompute = AnalyticsRecompute(
            session_factory=session_factory,
            cache=cache,
            queue=background.queue,
            delay_seconds=settings.analytics_recompute_delay_seconds,
        )
        background.queue.registry.register(RECOMPUTE_JOB, recompute.run)
        handlers.append(recompute.on_events)
    # who may do what, remembered between requests: only where every process sees every invalidation (one
    # process on SQLite, or a Redis cache shared by all); PostgreSQL workers without Redis ask each time
    access_cache = (
        AccessCache(cache, ttl_seconds=settings.cache_ttl_seconds)
        if settings.redis_url or not settings.is_postgres
        else None
    )
    if access_cache is not None:
        install_access_tracking(
            session_factory, access_cache, tables=(User, AuthSession, Membership, Organization)
        )
    services = Services(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        cache=cache,
        event_handlers=handlers,
        documents=documents,
        outbox=EventOutbox(engine=engine, session_factory=session_factory),
        jobs=background.queue,
        access_cache=access_cache,
        auth=AuthPolicy(
            signer=TokenSigner(
                secret=settings.token_secret(), ttl=timedelta(minutes=settings.access_token_minutes)
            ),
            refresh_ttl=timedelta(days=settings.refresh_token_days),
            refresh_retry=timedelta(seconds=settings.refresh_retry_seconds),
        ),
    )
    return services, background


def prepare_database(services: Services) -> None:
    """Refuse a PostgreSQL role that would bypass row-level security, then migrate to the newest schema.
    In that order: a refusal after the migration had left every table owned by the refused role, and the
    right role could not start either (QA)."""
    problem = check_rls_enforced(services.engine)
    if problem:
        if not services.settings.allow_rls_bypass:
            raise StorageError(
                f"refusing to start: {problem}. Connect as a role without BYPASSRLS "
                "(see docs/deployment.md), or set OUTPUTHUB_ALLOW_RLS_BYPASS=true to accept the risk."
            )
        log.warning("row-level security is bypassed: %s", problem)
    if services.settings.auto_migrate:
        migrate.upgrade(services.engine)
    prepare_documents(services)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    services, background = build_services_and_background(settings)
    prepare_database(services)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        background.start()
        # Everything built so far lives as long as the process: keep it out of the cyclic collector's full
        # passes, which otherwise walk it again and again while big pull pages are built.
        gc.freeze()
        try:
            yield
        finally:
            background.stop()
            services.document_store().close()
            services.engine.dispose()

    app = FastAPI(
        title="Output Hub",
        version=VERSION,
        summary="Curate LLM prompts and the outputs they produce, as a team.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        lifespan=lifespan,
        # every route: a JSON body really is JSON, and no text holds a NUL character (server/request_guard.py)
        dependencies=[Depends(check_request)],
    )
    app.state.services = services
    app.state.background = background
    install_problem_handlers(app)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, push_max_bytes=settings.max_push_bytes
    )
    if settings.rate_limit_enabled:
        limiter = make_rate_limiter(settings, signer=services.auth.signer)
        app.add_middleware(RateLimitMiddleware, limiter=limiter)
    if settings.compress_responses:
        # outermost: every answer (problems and refusals included) is compressed alike. A pull page of 1,000
        # outputs is 3.3 MB of JSON; zstd at level 3 costs about 3-8 ms of it and it travels 4-50x smaller
        # (docs/benchmarks.md)
        app.add_middleware(
            CompressMiddleware, minimum_size=COMPRESS_MIN_BYTES, zstd_level=3, brotli_quality=4, gzip_level=4
        )

    for router in (
        auth_router,
        orgs_router,
        custom_gpts_router,
        prompts_router,
        outputs_router,
        audit_router,
        sync_router,
        analytics_router,
        webhooks_router,
        notifications_router,
        jobs_router,
        *lookup_routers(),
    ):
        app.include_router(router, prefix=API_PREFIX)
    install_portal(app)

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
        checks["documents"] = services.document_store().status()
        ready = all(v == "ok" for v in checks.values())
        # Redis is an accelerator: a degraded cache or queue is reported, but the API still serves (200)
        checks["cache"] = services.cache.status()
        if services.jobs is not None:
            checks["jobs"] = services.jobs.status()
        return JSONResponse(
            {
                "status": "ready" if ready else "unavailable",
                "checks": checks,
                "backend": services.engine.dialect.name,
            },
            status_code=200 if ready else 503,
        )

    return app
