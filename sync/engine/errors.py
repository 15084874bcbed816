"""Errors raised by the pure sync engine."""

from __future__ import annotations

from outputhub.common.errors import OutputHubError


class InvalidChangeError(OutputHubError):
    """A change, record state or resolution is malformed or does not fit the schema."""

    status = 422
    title = "Invalid change"
    type_slug = "invalid-change"
