"""Every error as an RFC 9457 ``application/problem+json`` response that names the offending field."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outputhub.common.errors import (
    PROBLEM_TYPE_BASE,
    AuthenticationError,
    FieldError,
    MalformedJsonError,
    OutputHubError,
    Problem,
    UnsupportedContentEncodingError,
)

log = logging.getLogger("outputhub.server")
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = PROBLEM_TYPE_BASE


def problem_response(problem: Problem, *, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.to_json(), status_code=problem.status, media_type=PROBLEM_JSON, headers=headers
    )


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _problem(exc: OutputHubError, *, instance: str | None) -> Problem:
    """The problem document of a domain error."""
    return Problem(
        status=exc.status,
        title=exc.title,
        detail=exc.detail,
        type=TYPE_BASE + exc.type_slug,
        instance=instance,
        errors=exc.errors,
    )


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OutputHubError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else None
    return problem_response(_problem(exc, instance=request.url.path), headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [FieldError(_loc(e.get("loc", ())), e.get("msg", "invalid")) for e in exc.errors()]
    malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
    if malformed:
        return await _domain_error(request, MalformedJsonError())
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return problem_response(
        Problem(
            status=422,
            title="Invalid input",
            detail=detail,
            type=TYPE_BASE + "invalid-input",
            instance=request.url.path,
            errors=errors,
        )
    )


_UNREADABLE_BODY: dict[type[BaseException], str] = {
    UnicodeDecodeError: "not UTF-8",
    RecursionError: "nested too deeply",
    # Python reads integers of at most 4,300 digits (a longer one was an unnamed 400; QA)
    ValueError: "holding a number of more digits than can be read (4,300 at most)",
}
"""Why the framework could not parse a JSON body (its 400 "There was an error parsing the body" is caused by
one of these), as the malformed-json problem says it."""


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    unreadable = next((m for t, m in _UNREADABLE_BODY.items() if isinstance(exc.__cause__, t)), None)
    if exc.status_code == 400 and unreadable:
        return await _domain_error(request, MalformedJsonError(unreadable))
    return problem_response(
        Problem(
            status=exc.status_code, title=str(exc.detail), detail=str(exc.detail), instance=request.url.path
        ),
        headers=dict(exc.headers) if exc.headers else None,
    )


CONSTRAINT_FIELDS = {"pk_": "body.id", "_org_name": "body.name", "uq_users_email": "body.email"}


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    message = str(getattr(exc, "orig", exc))
    field = next((f for marker, f in CONSTRAINT_FIELDS.items() if marker in message), None)
    if field is None and "UNIQUE constraint failed" in message and ".id" in message:
        field = "body.id"
    errors = [FieldError(field, "conflicts with an existing record")] if field else []
    return problem_response(
        Problem(
            status=409,
            title="Conflict",
            detail="the change conflicts with existing data" + (f" ({field})" if field else ""),
            type=TYPE_BASE + "conflict",
            instance=request.url.path,
            errors=errors,
        )
    )


async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
    """A number too large for where it goes (a driver's ``OverflowError``). Parameters and bodies are bounded
    before they reach a driver; this is the net behind them. Answered here rather than by the catch-all,
    which re-raises to the server and so closes the client's keep-alive connection."""
    log.warning("number out of range on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        Problem(
            status=422,
            title="Invalid input",
            detail="a number in the request is out of range",
            type=TYPE_BASE + "invalid-input",
            instance=request.url.path,
        )
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        Problem(
            status=500,
            title="Internal error",
            detail="an unexpected error occurred",
            instance=request.url.path,
        )
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OutputHubError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(Exception, _unexpected)


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not Content-Length is declared, and
    bodies sent with a ``Content-Encoding`` with 415 (:class:`UnsupportedContentEncodingError`: bodies are
    read as sent; the framework would otherwise parse gzip as JSON before any route check runs)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, push_max_bytes: int = 0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.push_max_bytes = max(max_bytes, push_max_bytes)
        """A sync push's bodies may be larger: one edit of a text at its length limit carries the text and the
        base it was made on (up to 4 bytes a character each, more where JSON escapes them); under the
        general limit such a text could be made but never edited from a replica (QA)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.push_max_bytes if str(scope.get("path", "")).endswith("/sync/push") else self.max_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        encoding = headers.get(b"content-encoding", b"").strip().decode("latin-1")
        has_body = (declared is not None and declared != b"0") or b"transfer-encoding" in headers
        if encoding and encoding.lower() != "identity" and has_body:
            refused = _problem(UnsupportedContentEncodingError(encoding), instance=scope.get("path"))
            await problem_response(refused)(scope, _noop_receive, send)
            return
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, send, limit)
            return
        seen = 0
        too_big = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal seen, too_big
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_big = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            # The framework turns the receive error into its own error response: replace it with a 413.
            nonlocal replaced
            if too_big:
                if not replaced:
                    replaced = True
                    await self._reject(scope, send, limit)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLargeError:
            if not replaced:
                await self._reject(scope, send, limit)

    async def _reject(self, scope: Scope, send: Send, limit: int) -> None:
        response = problem_response(
            Problem(
                status=413,
                title="Request body too large",
                detail=f"the request body exceeds {limit} bytes",
                type=TYPE_BASE + "too-large",
                instance=scope.get("path"),
                errors=[FieldError("body", f"larger than {limit} bytes")],
            )
        )
        await response(scope, _noop_receive, send)


class _BodyTooLargeError(Exception):
    pass


async def _noop_receive() -> Message:
    return {"type": "http.disconnect"}
