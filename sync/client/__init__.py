"""The sync client: local edits (``LocalLibrary``), the HTTP remote and one sync round (``SyncClient``)."""

from __future__ import annotations

from outputhub.sync.client.client import Progress, SyncClient, SyncReport
from outputhub.sync.client.errors import (
    AuthenticationFailedError,
    CursorExpiredError,
    LocalEditError,
    NotAttachedError,
    NotFoundOnServerError,
    ProtocolMismatchError,
    RequestTooLargeError,
    ServerUnreachableError,
    SyncError,
    SyncPermissionError,
)
from outputhub.sync.client.local import LocalLibrary, ResolutionChoice
from outputhub.sync.client.remote import HttpRemote, login, refresh_tokens
from outputhub.sync.engine import Merged

__all__ = [
    "AuthenticationFailedError",
    "CursorExpiredError",
    "HttpRemote",
    "LocalEditError",
    "LocalLibrary",
    "Merged",
    "NotAttachedError",
    "NotFoundOnServerError",
    "Progress",
    "ProtocolMismatchError",
    "RequestTooLargeError",
    "ResolutionChoice",
    "ServerUnreachableError",
    "SyncClient",
    "SyncError",
    "SyncPermissionError",
    "SyncReport",
    "login",
    "refresh_tokens",
]
