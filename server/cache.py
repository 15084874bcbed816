"""The read cache behind one interface: in-process by default, Redis when configured (issue 5).

Invalidation is by **generation**: every organization has a counter that each committed write bumps
(``Services`` does it after commit for every organization the unit of work touched); cache keys include the
generation, so a write makes every older entry of that organization unreachable at once, from any write path
(API, sync push, import). Entries also expire after their TTL.

The same cache also remembers who may do what (:class:`AccessCache`), under a generation of its own that
every committed change to users, logins, memberships or organizations bumps (:func:`install_access_tracking`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction, sessionmaker

from outputhub.common.roles import Role
from outputhub.server.security import AccessClaims

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
    """A bounded LRU in this process. Correct for one server process (the embedded default).

    ``sole_process=False``: other server processes may share the database (PostgreSQL: ``serve --workers``,
    several pods) and no process sees the others' writes, so the organizations' generations are unusable
    (-1): what is cached under them (first pages, analytics) is computed every time. Entries whose key says
    what they hold (the sync check's sums, keyed by revision) are still kept. A write through one worker left
    the others serving a listing as it was, for up to a minute (QA, 2026-11-28)."""

    def __init__(self, *, max_entries: int = 4096, sole_process: bool = True) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._generations: dict[uuid.UUID, int] = {}
        self._max = max_entries
        self._lock = threading.Lock()
        self.sole_process = sole_process

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
        if not self.sole_process:
            return -1
        with self._lock:
            return self._generations.get(org_id, 0)

    def bump(self, org_id: uuid.UUID) -> None:
        with self._lock:
            self._generations[org_id] = self._generations.get(org_id, 0) + 1

    def status(self) -> str:
        if not self.sole_process:
            return (
                "off: listings are not cached (server processes on one PostgreSQL database share no cache; "
                "set OUTPUTHUB_REDIS_URL)"
            )
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


ACCESS_SCOPE = uuid.UUID("00000000-0000-4000-8000-00000000acce")
"""Not an organization: the generation of every remembered access (:class:`AccessCache`)."""

_ACCESS_CHANGED = "outputhub.access_changed"
"""``session.info`` flag: this transaction changed who may do what (bump the access generation on commit)."""


class AccessCache:
    """A signed-in caller's role in an organization, remembered per (login, user, organization).

    Saves the login, account and membership lookup of every request. Correct because every committed unit of
    work that changes a user, a login (logout, refresh, reuse detection), a membership or an organization
    bumps one access generation (:func:`install_access_tracking`), which is part of every key: the next
    request of anyone then asks the database again. The generation is read *before* the database is asked,
    so an answer that a concurrent change made stale is stored under the old generation, unreachable.
    Entries also die with their login (``expires_at``) and their TTL.

    Only safe where every process sees every bump: one server process (embedded SQLite) or a shared Redis
    cache; the composition root does not build one otherwise (several PostgreSQL workers without Redis).
    """

    def __init__(self, cache: Cache, *, ttl_seconds: int) -> None:
        self._cache = cache
        self._ttl = ttl_seconds

    def generation(self) -> int:
        """The current access generation; negative: the cache is unusable right now (bypass it)."""
        return self._cache.generation(ACCESS_SCOPE)

    @staticmethod
    def _key(generation: int, claims: AccessClaims, org_id: uuid.UUID) -> str:
        # the login's rotation too: the first request with a renewed login's token must reach the database,
        # which notes the renewal as seen (a replaced refresh token coming back after that revokes the login);
        # a request with the previous token had filled the entry, and the renewed one never got there (QA)
        return f"oh:access:{generation}:{claims.session_id}:{claims.rotation}:{claims.user_id}:{org_id}"

    def lookup(
        self, generation: int, *, claims: AccessClaims, org_id: uuid.UUID, now: datetime
    ) -> Role | None:
        """The remembered role, or None (not remembered, or the login has ended since)."""
        if generation < 0 or self._ttl <= 0:
            return None
        raw = self._cache.get(self._key(generation, claims, org_id))
        if raw is None:
            return None
        role, _, until = raw.decode().partition(" ")
        if float(until) <= now.timestamp():
            return None
        return Role(role)

    def remember(
        self,
        generation: int,
        *,
        claims: AccessClaims,
        org_id: uuid.UUID,
        role: Role,
        session_expires_at: datetime,
    ) -> None:
        """Store what the database said, under the generation read before asking it."""
        if generation < 0:
            return
        value = f"{role.value} {session_expires_at.timestamp()!r}".encode()
        self._cache.set(self._key(generation, claims, org_id), value, ttl_seconds=self._ttl)

    def invalidate(self) -> None:
        self._cache.bump(ACCESS_SCOPE)


def install_access_tracking(
    factory: sessionmaker[Session], access: AccessCache, *, tables: tuple[type[Any], ...]
) -> None:
    """Bump the access generation after every committed transaction of ``factory`` that wrote a row of
    ``tables`` (ORM objects added, changed or deleted, or an INSERT / UPDATE / DELETE statement run through
    the session on one of them). A rolled-back transaction bumps nothing."""
    names = {table.__tablename__ for table in tables}

    @event.listens_for(factory, "after_flush")
    def _flushed(session: Session, _context: UOWTransaction) -> None:
        if not session.info.get(_ACCESS_CHANGED) and any(
            isinstance(obj, tables)
            for group in (session.new, session.dirty, session.deleted)
            for obj in group
        ):
            session.info[_ACCESS_CHANGED] = True

    @event.listens_for(factory, "do_orm_execute")
    def _statement(state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            table = getattr(state.statement, "table", None)
            if getattr(table, "name", None) in names:
                state.session.info[_ACCESS_CHANGED] = True

    @event.listens_for(factory, "after_commit")
    def _committed(session: Session) -> None:
        if session.info.pop(_ACCESS_CHANGED, False):
            access.invalidate()

    @event.listens_for(factory, "after_transaction_end")
    def _ended(session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:  # the outermost transaction: committed (bumped above) or rolled back
            session.info.pop(_ACCESS_CHANGED, None)
