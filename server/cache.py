"""The read cache behind one interface: in-process by default, Redis when configured (issue 5).

Invalidation is by **generation**: every organization has a counter that each committed write bumps
(``Services`` does it after commit for every organization the unit of work touched); cache keys include the
generation, so a write makes every older entry of that organization unreachable at once, from any write path
(API, sync push, import). Entries also expire after their TTL.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Cache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, *, ttl_seconds: int) -> None: ...

    def generation(self, org_id: uuid.UUID) -> int: ...

    def bump(self, org_id: uuid.UUID) -> None: ...

    def status(self) -> str:
        """``ok``, or why the cache is bypassed (``degraded: ...``)."""
        ...

    # ``generation`` may return a negative number: the cache is unusable right now; callers then bypass it.


class InProcessCache:
    """A bounded LRU in this process. Correct for one server process (the embedded default)."""

    def __init__(self, *, max_entries: int = 4096) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._generations: dict[uuid.UUID, int] = {}
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            expires, value = item
            if expires < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, *, ttl_seconds: int) -> None:
        if ttl_seconds <= 0:  # OUTPUTHUB_CACHE_TTL_SECONDS=0 turns caching off
            return
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl_seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def generation(self, org_id: uuid.UUID) -> int:
        with self._lock:
            return self._generations.get(org_id, 0)

    def bump(self, org_id: uuid.UUID) -> None:
        with self._lock:
            self._generations[org_id] = self._generations.get(org_id, 0) + 1

    def status(self) -> str:
        return "ok"


def cache_key(cache: Cache, *, org_id: uuid.UUID, namespace: str, params: Any) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f"oh:{org_id}:{cache.generation(org_id)}:{namespace}:{digest}"


def cached_bytes(
    cache: Cache,
    *,
    org_id: uuid.UUID,
    namespace: str,
    params: Any,
    ttl_seconds: int,
    compute: Callable[[], bytes],
) -> tuple[bytes, bool]:
    """The cached bytes for (org, namespace, params) and whether they came from the cache.

    A negative generation means the cache cannot be trusted right now (Redis is away): compute, store nothing.
    """
    generation = cache.generation(org_id)
    if generation < 0:
        return compute(), False
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:32]
    key = f"oh:{org_id}:{generation}:{namespace}:{digest}"
    hit = cache.get(key)
    if hit is not None:
        return hit, True
    value = compute()
    cache.set(key, value, ttl_seconds=ttl_seconds)
    return value, False


def cached_json(
    cache: Cache,
    *,
    org_id: uuid.UUID,
    namespace: str,
    params: Any,
    ttl_seconds: int,
    compute: Callable[[], T],
) -> T:
    """The cached JSON-able value for (org, namespace, params), computing and storing it on a miss."""
    key = cache_key(cache, org_id=org_id, namespace=namespace, params=params)
    if f":{org_id}:-" in key:  # negative generation: the cache is bypassed (Redis away)
        return compute()
    hit = cache.get(key)
    if hit is not None:
        return json.loads(hit)  # type: ignore[no-any-return]
    value = compute()
    cache.set(key, json.dumps(value, default=str).encode(), ttl_seconds=ttl_seconds)
    return value
