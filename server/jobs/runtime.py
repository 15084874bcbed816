"""Builds the broker and runs the dramatiq worker threads (in the API process, or ``outputhub worker``)."""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Callbacks, Retries, ShutdownNotifications, TimeLimit

from outputhub.server.jobs.queue import QUEUE_NAME, JobQueue
from outputhub.server.settings import Settings
from outputhub.server.storage.redis_store import make_client

log = logging.getLogger("outputhub.jobs")


def make_broker(settings: Settings) -> dramatiq.Broker:
    """Redis when configured (shared by every process), else an in-memory broker for this process."""
    middleware = [AgeLimit(), TimeLimit(), ShutdownNotifications(), Callbacks(), Retries()]
    if settings.redis_url:
        client = make_client(settings.redis_url, timeout_seconds=max(2.0, settings.redis_timeout_seconds))
        broker: dramatiq.Broker = RedisBroker(
            client=client, namespace="outputhub-jobs", middleware=middleware
        )
    else:
        broker = StubBroker(middleware=middleware)
    broker.declare_queue(QUEUE_NAME)
    return broker


class JobWorker:
    """The relay thread plus dramatiq's consumer and worker threads, started and stopped together."""

    def __init__(self, queue: JobQueue, *, threads: int) -> None:
        self.queue = queue
        self.threads = threads
        self._worker: dramatiq.Worker | None = None

    def start(self) -> None:
        if self._worker is not None:
            return
        self._worker = dramatiq.Worker(self.queue.broker, worker_threads=self.threads, worker_timeout=100)
        self._worker.start()
        self.queue.start_relay()
        log.info("job worker started (%d threads, %s)", self.threads, type(self.queue.broker).__name__)

    def stop(self) -> None:
        self.queue.stop_relay()
        if self._worker is not None:
            self._worker.stop(timeout=10_000)
            self._worker = None

    @property
    def running(self) -> bool:
        return self._worker is not None
