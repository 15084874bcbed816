"""Rate limiting per API key, per signed-in user and (unauthenticated) per client address.

A fixed window counter: ``INCR`` + ``EXPIRE`` of ``rl:<who>:<window start>`` in Redis when configured (shared
by every server process), else a counter in this process. If Redis goes away the in-process counters take
over (each process then limits on its own: a looser but still bounded limit). Over the limit: 429 with
``Retry-After`` (seconds until the window ends) as an RFC 9457 problem document.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis
from starlette.types import ASGIApp, Receive, Scope, Send

from outputhub.common.errors import FieldError, OutputHubError, Problem
from outputhub.server.problems import TYPE_BASE, problem_response
from outputhub.server.security import API_KEY_KIND
from outputhub.server.storage.redis_store import Circuit


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int


class Counter(Protocol):
    def hit(self, key: str, *, window_seconds: int, now: float) -> int:
        """Count one request in the current window of ``key``; returns the count so far."""
        ...


class InProcessCounter:
    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, *, window_seconds: int, now: float) -> int:
        window = int(now // window_seconds)
        with self._lock:
            seen_window, count = self._counts.get(key, (window, 0))
            count = count + 1 if seen_window == window else 1
            self._counts[key] = (window, count)
            if len(self._counts) > 100_000:  # forget finished windows
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
            return count


class RedisCounter:
    """Fixed windows in Redis; falls back to an in-process counter while Redis is unreachable."""

    def __init__(self, client: redis.Redis, *, retry_seconds: float) -> None:
        self._client = client
        self._fallback = InProcessCounter()
        self.circuit = Circuit(retry_seconds=retry_seconds, name="rate limit")

    def hit(self, key: str, *, window_seconds: int, now: float) -> int:
        window = int(now // window_seconds)
        redis_key = f"oh:rl:{key}:{window}"

        def incr() -> int:
            pipe = self._client.pipeline()
            pipe.incr(redis_key)
            pipe.expire(redis_key, window_seconds + 1)
            count, _ = pipe.execute()
            return int(count)

        count = self.circuit.call(incr, -1)
        if count < 0:
            return self._fallback.hit(key, window_seconds=window_seconds, now=now)
        return count


@dataclass(frozen=True)
class Limits:
    window_seconds: int
    per_user: int
    per_api_key: int
    anonymous: int


class RateLimiter:
    def __init__(
        self,
        *,
        counter: Counter,
        limits: Limits,
        user_of_token: Callable[[str], str | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counter = counter
        self.limits = limits
        self._user_of_token = user_of_token
        self._clock = clock

    def who(self, authorization: str, client_host: str) -> tuple[str, int]:
        """The bucket a request counts against and its limit."""
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
        if token.startswith(API_KEY_KIND + "_"):
            return "key:" + hashlib.sha256(token.encode()).hexdigest()[:24], self.limits.per_api_key
        if token:
            user = self._user_of_token(token)
            if user:
                return "user:" + user, self.limits.per_user
        return "ip:" + client_host, self.limits.anonymous

    def check(self, authorization: str, client_host: str) -> Verdict:
        bucket, limit = self.who(authorization, client_host)
        now = self._clock()
        window = self.limits.window_seconds
        count = self.counter.hit(bucket, window_seconds=window, now=now)
        retry_after = max(1, math.ceil(window - (now % window)))
        return Verdict(
            allowed=count <= limit, limit=limit, remaining=max(0, limit - count), retry_after=retry_after
        )


class TooManyRequestsError(OutputHubError):
    status = 429
    title = "Too many requests"
    type_slug = "rate-limited"


EXEMPT_PATHS = ("/healthz", "/readyz", "/docs", "/openapi.json")


class RateLimitMiddleware:
    """Counts every API request before routing; refuses with 429 + ``Retry-After`` over the limit."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(EXEMPT_PATHS):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        client = scope.get("client") or ("unknown", 0)
        verdict = self.limiter.check(authorization, str(client[0]))
        if not verdict.allowed:
            response = problem_response(
                Problem(
                    status=429,
                    title=TooManyRequestsError.title,
                    detail=f"more than {verdict.limit} requests in {self.limiter.limits.window_seconds} s; "
                    f"retry in {verdict.retry_after} s",
                    type=TYPE_BASE + TooManyRequestsError.type_slug,
                    instance=scope.get("path"),
                    errors=[FieldError("header.Authorization", "rate limit exceeded for this caller")],
                ),
                headers={
                    "Retry-After": str(verdict.retry_after),
                    "RateLimit-Limit": str(verdict.limit),
                    "RateLimit-Remaining": "0",
                },
            )
            await response(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:  # type: ignore[type-arg]
            if message["type"] == "http.response.start":
                extra = [
                    (b"ratelimit-limit", str(verdict.limit).encode()),
                    (b"ratelimit-remaining", str(verdict.remaining).encode()),
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
