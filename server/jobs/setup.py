"""Wires the cache, the job queue, its job kinds and the event handlers (called by the composition root)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from outputhub.server.api.notifications.handlers import ACCURACY_JOB, NotificationHandler
from outputhub.server.api.webhooks.service import DELIVER_JOB, WebhookDispatcher
from outputhub.server.cache import Cache, InProcessCache
from outputhub.server.events import EventHandler
from outputhub.server.jobs.queue import JobQueue, JobRegistry, RetryPolicy
from outputhub.server.jobs.runtime import JobWorker, make_broker
from outputhub.server.ratelimit import InProcessCounter, Limits, RateLimiter, RedisCounter
from outputhub.server.security import TokenSigner
from outputhub.server.settings import Settings
from outputhub.server.storage.redis_store import RedisCache, make_client

log = logging.getLogger("outputhub.jobs")


def make_cache(settings: Settings) -> Cache:
    if not settings.redis_url:
        # several processes (serve --workers N) each see only their own writes: no listing is cached then
        return InProcessCache(sole_process=settings.cache_sees_every_write)
    client = make_client(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)
    return RedisCache(client, retry_seconds=settings.redis_retry_seconds)


def make_rate_limiter(settings: Settings, *, signer: TokenSigner) -> RateLimiter:
    def user_of_token(token: str) -> str | None:
        try:
            return str(signer.verify(token).user_id)
        except Exception:  # an invalid token is refused by the endpoint; count it by address
            return None

    counter = (
        RedisCounter(
            make_client(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds),
            retry_seconds=settings.redis_retry_seconds,
        )
        if settings.redis_url
        else InProcessCounter()
    )
    return RateLimiter(
        counter=counter,
        limits=Limits(
            window_seconds=settings.rate_limit_window_seconds,
            per_user=settings.rate_limit_per_user,
            per_api_key=settings.rate_limit_per_api_key,
            anonymous=settings.rate_limit_anonymous,
        ),
        user_of_token=user_of_token,
    )


@dataclass
class Background:
    """The job queue with its worker, and the handlers that feed it."""

    queue: JobQueue
    worker: JobWorker
    dispatcher: WebhookDispatcher
    notifications: NotificationHandler
    in_process: bool
    handlers: list[EventHandler] = field(default_factory=list)

    def start(self) -> None:
        """In the API process: the relay always (the outbox must drain), the worker when in-process."""
        if self.in_process:
            self.worker.start()
        else:
            self.queue.start_relay()

    def stop(self) -> None:
        self.worker.stop()
        self.queue.stop_relay()
        self.dispatcher.close()


def build_background(*, settings: Settings, session_factory: sessionmaker[Session]) -> Background:
    registry = JobRegistry(
        default_policy=RetryPolicy(
            max_attempts=settings.jobs_max_attempts, base_seconds=settings.jobs_retry_base_seconds
        )
    )
    queue = JobQueue(
        session_factory=session_factory,
        registry=registry,
        broker=make_broker(settings),
        relay_seconds=settings.jobs_relay_seconds,
        stale_seconds=settings.jobs_stale_seconds,
        keep_done_days=settings.jobs_keep_done_days,
    )
    dispatcher = WebhookDispatcher(
        session_factory=session_factory,
        queue=queue,
        timeout_seconds=settings.webhook_timeout_seconds,
        disable_after=timedelta(hours=settings.webhook_disable_after_hours),
        allow_private=settings.webhook_allow_private_targets,
    )
    notifications = NotificationHandler(session_factory=session_factory, queue=queue)
    registry.register(
        DELIVER_JOB,
        dispatcher.deliver,
        policy=RetryPolicy(
            max_attempts=settings.webhook_max_attempts,
            base_seconds=settings.webhook_retry_base_seconds,
            max_seconds=settings.webhook_retry_max_seconds,
            jitter=0.2,
        ),
        on_failed=dispatcher.on_final_failure,
        timeout_seconds=settings.webhook_timeout_seconds + 30,
    )
    registry.register(
        ACCURACY_JOB,
        notifications.run_accuracy_check,
        policy=RetryPolicy(
            max_attempts=settings.jobs_max_attempts, base_seconds=settings.jobs_retry_base_seconds
        ),
    )
    in_process = settings.jobs_in_process if settings.jobs_in_process is not None else not settings.redis_url
    return Background(
        queue=queue,
        worker=JobWorker(queue, threads=settings.jobs_worker_threads),
        dispatcher=dispatcher,
        notifications=notifications,
        in_process=in_process,
        handlers=[dispatcher, notifications],
    )
