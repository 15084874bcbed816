"""The project's own error types.

Driver and framework exceptions never cross a layer boundary: storage adapters and services raise these,
and the server maps them to RFC 9457 problem responses (see ``outputhub.server.problems``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROBLEM_TYPE_BASE = "https://outputhub.dev/problems/"
"""Where the server's problem types live (RFC 9457 ``type``): an answer whose type starts so is the server's
own error, not a missing route's or another server's."""


@dataclass(frozen=True)
class FieldError:
    """One problem with one input field; ``field`` is a dotted path such as ``body.tag_ids``."""

    field: str
    message: str


class OutputHubError(Exception):
    """Base class of every error the project raises on purpose."""

    status: int = 400
    title: str = "Bad request"
    type_slug: str = "bad-request"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors: list[FieldError] = errors or []


class InvalidInputError(OutputHubError):
    status = 422
    title = "Invalid input"
    type_slug = "invalid-input"

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}", errors=[FieldError(field_name, message)])
        self.field = field_name


class MalformedJsonError(OutputHubError):
    """The request body is not JSON: a syntax error, or bytes that are not UTF-8 (RFC 8259 section 8.1)."""

    status = 400
    title = "Malformed JSON"
    type_slug = "malformed-json"

    def __init__(self, message: str = "not valid JSON") -> None:
        super().__init__(f"the request body is {message}", errors=[FieldError("body", message)])


class UnsupportedMediaTypeError(OutputHubError):
    """A body of a media type the endpoint does not read (it takes JSON)."""

    status = 415
    title = "Unsupported media type"
    type_slug = "unsupported-media-type"

    def __init__(self, received: str, *, expected: str = "application/json") -> None:
        message = f"must be {expected}, not {received}" if received else f"missing: send {expected}"
        super().__init__(
            f"this endpoint reads {expected} (Content-Type: {received or 'none'})",
            errors=[FieldError("header.Content-Type", message)],
        )


class UnsupportedContentEncodingError(UnsupportedMediaTypeError):
    """A body sent with a ``Content-Encoding`` (gzip, ...): the server reads bodies as they are sent (RFC 9110
    section 15.5.16: 415). Without this check a gzipped body was a misleading "not UTF-8" and a plain one
    labelled gzip was taken (found by QA)."""

    def __init__(self, received: str) -> None:
        OutputHubError.__init__(
            self,
            f"request bodies are read as sent: send this one without Content-Encoding (got {received!r})",
            errors=[FieldError("header.Content-Encoding", "must be absent or identity")],
        )


class NotFoundError(OutputHubError):
    """The thing does not exist *for this caller* (also used for other tenants' rows)."""

    status = 404
    title = "Not found"
    type_slug = "not-found"

    def __init__(self, entity: str, ident: object | None = None, *, field_name: str | None = None) -> None:
        what = f"{entity} {ident}" if ident is not None else entity
        errors = [FieldError(field_name, f"no {entity} with this id")] if field_name else []
        super().__init__(f"{what} not found", errors=errors)
        self.entity = entity


class UnknownReferenceError(OutputHubError):
    """A request body names an id that does not exist in the caller's organization."""

    status = 422
    title = "Unknown reference"
    type_slug = "unknown-reference"

    def __init__(self, field_name: str, ident: object) -> None:
        super().__init__(
            f"{field_name}: no such id {ident}", errors=[FieldError(field_name, f"unknown id {ident}")]
        )


class DuplicateError(OutputHubError):
    status = 409
    title = "Already exists"
    type_slug = "duplicate"

    def __init__(self, field_name: str, value: object) -> None:
        super().__init__(
            f"{field_name} {value!r} is already taken",
            errors=[FieldError(field_name, f"{value!r} is already taken")],
        )


class PreconditionFailedError(OutputHubError):
    """If-Match did not match: the record changed since the caller read it."""

    status = 412
    title = "Precondition failed"
    type_slug = "precondition-failed"


class AuthenticationError(OutputHubError):
    status = 401
    title = "Not authenticated"
    type_slug = "unauthenticated"


class PermissionDeniedError(OutputHubError):
    status = 403
    title = "Forbidden"
    type_slug = "forbidden"


class StorageError(OutputHubError):
    """A store failed in a way the caller cannot fix (wrapped driver error)."""

    status = 503
    title = "Storage unavailable"
    type_slug = "storage-unavailable"


@dataclass
class Problem:
    """An RFC 9457 problem document."""

    status: int
    title: str
    detail: str
    type: str = "about:blank"
    instance: str | None = None
    errors: list[FieldError] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.instance:
            body["instance"] = self.instance
        if self.errors:
            body["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return body


class AlreadyResolvedError(InvalidInputError):
    """A sync conflict that was resolved already (by someone else, or by an edit that replicated)."""

    status = 409
    title = "Already resolved"
    type_slug = "already-resolved"


class InUseError(OutputHubError):
    """The operation would orphan other records (e.g. deleting a prompt that still has outputs)."""

    status = 409
    title = "In use"
    type_slug = "in-use"


class CursorExpiredError(OutputHubError):
    """A sync cursor is older than the tombstone retention: the client must resynchronize from zero."""

    status = 410
    title = "Sync cursor expired"
    type_slug = "cursor-expired"
