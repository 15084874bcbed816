"""Heavy analytics recomputed in the background after writes, so readers find them cached.

Every committed write bumps its organization's cache generation, which makes the next reader of each
analytics view pay the full aggregate (about a second on 200k outputs). This handler answers writes by
queueing one ``analytics.recompute`` job per organization (debounced: at most one per
``delay_seconds``); the job computes the default views (what the portal's analytics page and a plain API call
ask for) and stores them in the shared cache under the new generation.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

from sqlalchemy.orm import Session, sessionmaker

from outputhub.common.roles import Role
from outputhub.server.api.analytics import service
from outputhub.server.api.base import Tenant
from outputhub.server.cache import Cache
from outputhub.server.events import DomainEvent
from outputhub.server.jobs.queue import JobContext, JobQueue
from outputhub.server.storage.database import set_tenant, unit_of_work

RECOMPUTE_JOB: Final = "analytics.recompute"
RELEVANT: Final = frozenset(
    {
        "output",
        "prompt",
        "custom_gpt",
        "tag",
        "knowledge_type",
        "accuracy_level",
        "development_stage",
        "gpt_model",
        "agent_group",
    }
)
log = logging.getLogger("outputhub.analytics")

View = tuple[str, dict[str, Any], Callable[[Session, Tenant, service.AnalyticsFilters], dict[str, Any]]]


def default_views() -> list[View]:
    """The views as the API computes them with default parameters (same names and options as the router)."""
    views: list[View] = [
        ("overview", {}, lambda s, t, f: service.overview(s, tenant=t, filters=f)),
        ("stage_funnel", {}, lambda s, t, f: service.stage_funnel(s, tenant=t, filters=f)),
        ("tags", {"limit": 20}, lambda s, t, f: service.tag_usage(s, tenant=t, filters=f, limit=20)),
        (
            "knowledge_types",
            {"bucket": "week"},
            lambda s, t, f: service.knowledge_over_time(s, tenant=t, filters=f, bucket="week"),
        ),
    ]
    for by in service.DIMENSIONS:
        views.append(
            ("accuracy", {"by": by}, lambda s, t, f, by=by: service.accuracy(s, tenant=t, filters=f, by=by))
        )
    for order in ("best", "worst"):
        options = {"order": order, "limit": 10, "min_outputs": 1}
        views.append(
            (
                "prompt_ranking",
                options,
                lambda s, t, f, order=order: service.prompt_ranking(
                    s,
                    tenant=t,
                    filters=f,
                    order=order,
                    limit=10,
                    min_outputs=1,  # type: ignore[arg-type]
                ),
            )
        )
    return views


class AnalyticsRecompute:
    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        cache: Cache,
        queue: JobQueue,
        delay_seconds: float,
    ) -> None:
        self.session_factory = session_factory
        self.cache = cache
        self.queue = queue
        self.delay_seconds = delay_seconds
        self._last: dict[uuid.UUID, float] = {}
        self._lock = threading.Lock()

    def on_events(self, events: Sequence[DomainEvent]) -> None:
        """After a commit: queue a recompute for each organization whose library changed (debounced)."""
        orgs = {e.org_id for e in events if e.entity in RELEVANT}
        now = time.monotonic()
        for org_id in orgs:
            with self._lock:
                last = self._last.get(org_id)
                if last is not None and now - last < self.delay_seconds:
                    continue
                self._last[org_id] = now
            try:
                self._schedule(org_id)
            except Exception:  # a handler must not fail the request that already committed
                log.exception("could not queue the analytics recompute for %s", org_id)

    def _schedule(self, org_id: uuid.UUID) -> None:
        self.queue.enqueue(
            kind=RECOMPUTE_JOB,
            payload={"org_id": str(org_id), "generation": self.cache.generation(org_id)},
            org_id=org_id,
            delay_seconds=self.delay_seconds,
        )

    def run(self, ctx: JobContext) -> None:
        """Compute the default views and store them in the cache (under the organization's generation)."""
        assert ctx.org_id is not None
        org_id = ctx.org_id
        seen = ctx.payload.get("generation")
        if seen is not None and seen != self.cache.generation(org_id):
            # written to since this was queued: wait until the library settles (a recompute now would be
            # thrown away by the next write; under a stream of writes it would take a core to itself)
            self._schedule(org_id)
            return
        tenant = Tenant(org_id=org_id, role=Role.OWNER, actor="system:analytics")
        filters = service.AnalyticsFilters()
        with unit_of_work(self.session_factory, read_only=True) as session:
            set_tenant(session, org_id=org_id)
            for name, options, compute in default_views():
                service.cached(
                    self.cache,
                    tenant=tenant,
                    name=name,
                    filters=filters,
                    options=options,
                    compute=lambda compute=compute: compute(session, tenant, filters),  # type: ignore[misc]
                )
