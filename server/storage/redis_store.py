"""Redis adapters: the shared read cache and the rate-limit counters (redis-py).

Redis is an accelerator, never the system of record: every call is wrapped so that a Redis outage degrades
the service instead of failing requests. A failed call opens a circuit for ``retry_seconds`` (calls bypass
Redis meanwhile, so requests do not each wait for a socket timeout), then the next call tries again.
Driver exceptions never leave this module.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.exceptions import RedisError

log = logging.getLogger("outputhub.redis")
T = TypeVar("T")

EPOCH_KEY = "oh:cache:epoch"


def make_client(url: str, *, timeout_seconds: float) -> redis.Redis:
    """A client with short timeouts and no retry loop of its own (the circuit below decides)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry_on_timeout=False,
        health_check_interval=30,
    )


class Circuit:
    """Remembers the last Redis failure; while open, callers skip Redis and use their fallback."""

    def __init__(self, *, retry_seconds: float, name: str) -> None:
        self.retry_seconds = retry_seconds
        self.name = name
        self._open_until = 0.0
        self._last_error: str | None = None
        self._lock = threading.Lock()
        self.recovered_hooks: list[Callable[[], None]] = []

    def call(self, fn: Callable[[], T], fallback: T) -> T:
        if self._open_until and time.monotonic() < self._open_until:
            return fallback
        try:
            value = fn()
        except (RedisError, OSError) as exc:
            with self._lock:
                first = not self._open_until
                self._open_until = time.monotonic() + self.retry_seconds
                self._last_error = f"{exc.__class__.__name__}: {exc}"[:200]
            if first:
                log.warning("%s: Redis unavailable, bypassing it (%s)", self.name, self._last_error)
            return fallback
        if self._open_until:
            with self._lock:
                was_open = bool(self._open_until)
                self._open_until = 0.0
            if was_open:
                log.warning("%s: Redis is back", self.name)
                for hook in self.recovered_hooks:
                    hook()
        return value

    @property
    def is_open(self) -> bool:
        return bool(self._open_until)

    def status(self) -> str:
        if self._open_until:
            return f"degraded: redis unreachable ({self._last_error}); bypassed"
        return "ok"


class RedisCache:
    """The :class:`outputhub.server.cache.Cache` protocol on Redis, shared by every server process.

    Generations are Redis counters (``INCR``), entries are ``SET ... EX ttl``. A bump that failed while
    Redis was away cannot be replayed reliably (this process may not be the only writer), so after an
    outage the first successful call increments a global epoch that is part of every generation: every
    entry written before the outage becomes unreachable at once. Entries also expire after their TTL.
    """

    def __init__(self, client: redis.Redis, *, retry_seconds: float = 5.0, prefix: str = "oh:cache") -> None:
        self._client = client
        self._prefix = prefix
        self._missed_bump = False
        self.circuit = Circuit(retry_seconds=retry_seconds, name="cache")

    def _gen_key(self, org_id: uuid.UUID) -> str:
        return f"{self._prefix}:gen:{org_id}"

    def _flush_epoch_if_needed(self) -> None:
        if self._missed_bump:
            self._client.incr(EPOCH_KEY)
            self._missed_bump = False

    def get(self, key: str) -> bytes | None:
        def read() -> bytes | None:
            self._flush_epoch_if_needed()
            return self._client.get(f"{self._prefix}:{key}")  # type: ignore[return-value]

        return self.circuit.call(read, None)

    def set(self, key: str, value: bytes, *, ttl_seconds: int) -> None:
        if self._missed_bump or ttl_seconds <= 0:
            return  # never store under a generation that may predate a lost bump; ttl 0 disables caching
        self.circuit.call(lambda: self._client.set(f"{self._prefix}:{key}", value, ex=ttl_seconds), None)

    def generation(self, org_id: uuid.UUID) -> int:
        """``epoch << 32 | counter``; -1 while Redis is away (entries are then neither read nor written)."""

        def read() -> int:
            self._flush_epoch_if_needed()
            epoch, gen = self._client.mget([EPOCH_KEY, self._gen_key(org_id)])  # type: ignore[misc]
            return (int(epoch or 0) << 32) | int(gen or 0)

        return self.circuit.call(read, -1)

    def bump(self, org_id: uuid.UUID) -> None:
        def incr() -> bool:
            self._client.incr(self._gen_key(org_id))
            return True

        if not self.circuit.call(incr, False):
            self._missed_bump = True

    def status(self) -> str:
        if self._missed_bump and not self.circuit.is_open:
            return "degraded: invalidations pending"
        return self.circuit.status()

    def ping(self) -> bool:
        return self.circuit.call(lambda: bool(self._client.ping()), False)
