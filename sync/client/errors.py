"""Errors the sync client raises, each with a message a user can act on."""

from __future__ import annotations


class SyncError(Exception):
    """Sync failed; the message says why in words. Local edits are kept and retried next time."""


class ServerUnreachableError(SyncError):
    pass


class NoSuchAddressError(ServerUnreachableError):
    """The address answers 404 with no Output Hub problem: no server route there (a --server address with a
    path, another web server, a proxy rewriting paths). Not the organization's or the login's fault."""


class AuthenticationFailedError(SyncError):
    pass


class SyncPermissionError(SyncError):
    pass


class ProtocolMismatchError(SyncError):
    pass


class NotFoundOnServerError(SyncError):
    """The server has no such organization or record (or it belongs to another organization)."""


class RequestTooLargeError(SyncError):
    """The server refused a request body as too large (413): a push sends fewer changes at a time."""


class CursorExpiredError(SyncError):
    """The server purged tombstones newer than this replica's cursor: pull again from zero."""


class NotAttachedError(SyncError):
    pass


class LocalEditError(ValueError):
    """A local edit is not possible (unknown record, deleted record, bad value)."""
