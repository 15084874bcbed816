"""Checks every request gets before its route validates it, installed once as an app-wide dependency
(``create_app``), so no endpoint and no schema can forget them:

- a route that reads a JSON body gets JSON: another media type is a 415 naming ``header.Content-Type``, and
  bytes that are not UTF-8 (UTF-16, Latin-1) are the 400 ``malformed-json`` problem;
- no text may hold a NUL character (U+0000), which PostgreSQL text and JSON columns cannot store, or a lone
  UTF-16 surrogate (a JSON escape such as ``"\\udc00"`` that is half of no pair), which is not Unicode text
  and cannot be written as UTF-8 at all: such a character in a path parameter, a query parameter, a form
  field or anywhere in a JSON body (object keys included) is a 422 naming where it is. A route whose body
  carries values it checks on its own names them with ``nul_checked_elsewhere`` (the sync push refuses such
  a value for its op alone).
"""

from __future__ import annotations

import email.message
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.params import Form
from fastapi.routing import APIRoute

from outputhub.common.errors import MalformedJsonError, UnsupportedMediaTypeError

NUL = "\x00"
NUL_MESSAGE = "must not contain a NUL character (U+0000)"
SURROGATE_MESSAGE = "must be Unicode text: it holds a lone surrogate (half of a UTF-16 pair, U+D800-U+DFFF)"
_ESCAPED_NUL = b"\\u0000"  # the only way a JSON text can carry a NUL (a raw one is not JSON)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


def _may_hold_surrogate(body: bytes) -> bool:
    """Whether ``body`` may hold a surrogate: an escape (a pair is fine, a lone one is not: the strings
    tell), or one encoded raw (the JSON parser decodes UTF-8 with surrogates passed through). The substring
    tests first: a regular expression over a 2 MB push costs 15 ms, ``in`` 1 ms, and most bodies hold
    neither ``\\u`` (orjson writes text as UTF-8) nor the byte 0xED."""
    return (b"\\u" in body and _SURROGATE_ESCAPE.search(body) is not None) or (
        b"\xed" in body and _RAW_SURROGATE.search(body) is not None
    )


_MAX_REPORTED = 20
_EXEMPT_ATTRIBUTE = "__nul_checked_elsewhere__"
_ANY = "*"

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
Loc = tuple[str | int, ...]


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (a NUL character, a lone surrogate), or None."""
    if NUL in text:
        return NUL_MESSAGE
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def unstorable_text(value: Any) -> str | None:
    """Why ``value`` (text, or JSON-like containers of it) cannot be stored (a NUL character or a lone
    surrogate anywhere), or None."""
    found = next(nul_locations(value), None)
    return found[1] if found is not None else None


def nul_locations(
    value: Any, loc: Loc = (), *, exempt: tuple[tuple[str, ...], ...] = ()
) -> Iterator[tuple[Loc, str]]:
    """(where, message) of each NUL character in ``value``: a string holding one, or a key holding one (then
    named at its object). Walked without recursion (a JSON body may nest as deep as the parser allows);
    subtrees matching an ``exempt`` pattern (``("changes", "*", "values")``) are skipped."""
    stack: list[tuple[Loc, Any]] = [(loc, value)]
    while stack:
        where, item = stack.pop()
        if exempt and any(_matches(pattern, where[len(loc) :]) for pattern in exempt):
            continue
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                yield where, problem
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                problem = text_problem(key) if isinstance(key, str) else None
                if problem is not None:
                    yield where, f"key {key!r} {problem}"
                stack.append(((*where, key), child))
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(((*where, index), child) for index, child in reversed(list(enumerate(item))))


def _matches(pattern: tuple[str, ...], where: Loc) -> bool:
    return len(pattern) == len(where) and all(
        p in (_ANY, str(w)) for p, w in zip(pattern, where, strict=True)
    )


def nul_checked_elsewhere(*paths: str) -> Callable[[Endpoint], Endpoint]:
    """Mark parts of an endpoint's JSON body (dotted paths, ``*`` for any item or key) whose NUL characters
    the endpoint refuses on its own terms, so the request-wide check leaves them alone."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _EXEMPT_ATTRIBUTE, tuple(tuple(path.split(".")) for path in paths))
        return endpoint

    return mark


def _is_json(content_type: str) -> bool:
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _undecodable_query(raw: bytes) -> list[tuple[Loc, str]]:
    """The query parameters whose percent-encoded bytes are not UTF-8 (``?q=%FF%FE``, a lone surrogate
    ``%ED%A0%80``): the framework read them with replacement characters, and a search for them answered 200
    with nothing found (QA)."""
    if b"%" not in raw:
        return []
    found: list[tuple[Loc, str]] = []
    for part in raw.split(b"&"):
        name, _, value = part.partition(b"=")
        try:
            urllib.parse.unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            label = urllib.parse.unquote_to_bytes(name).decode("utf-8", "replace")
            found.append((("query", label), "must be UTF-8 text (its percent-encoded bytes are not UTF-8)"))
    return found


async def check_request(request: Request) -> None:
    """The app-wide dependency: see the module's description."""
    errors: list[tuple[Loc, str]] = []
    for name, value in request.path_params.items():
        if isinstance(value, str) and NUL in value:
            errors.append((("path", name), NUL_MESSAGE))
    errors.extend(_undecodable_query(request.scope.get("query_string", b"")))
    for name, value in request.query_params.multi_items():
        if NUL in name:
            errors.append((("query",), f"parameter name {name!r} {NUL_MESSAGE}"))
        elif NUL in value:
            errors.append((("query", name), NUL_MESSAGE))
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None) if isinstance(route, APIRoute) else None
    if body_field is not None and isinstance(body_field.field_info, Form):
        for name, value in (await request.form()).multi_items():
            if isinstance(value, str) and NUL in value:
                errors.append((("body", name), NUL_MESSAGE))
    elif body_field is not None:
        body = await request.body()
        if body:
            content_type = request.headers.get("content-type", "")
            if not _is_json(content_type):
                raise UnsupportedMediaTypeError(content_type)
            if b"\x00" in body:  # UTF-16 or UTF-32 (a JSON text in UTF-8 holds no zero byte)
                raise MalformedJsonError("not UTF-8")
            if _ESCAPED_NUL in body or _may_hold_surrogate(body):
                exempt = getattr(getattr(route, "endpoint", None), _EXEMPT_ATTRIBUTE, ())
                errors.extend(nul_locations(json.loads(body), ("body",), exempt=exempt))
    if errors:
        raise RequestValidationError(
            [
                {"type": "nul_character", "loc": loc, "msg": message, "input": None}
                for loc, message in errors[:_MAX_REPORTED]
            ]
        )
