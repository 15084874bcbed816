"""Webhook API schemas (kept beside the feature; they move to common.schemas if a client needs them)."""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from outputhub.sync.engine.schema import DEFAULT_SCHEMA

EVENT_PATTERN = re.compile(r"^(\*|[a-z][a-z_]*\.(\*|[a-z][a-z_]*))$")
RECORD_ENTITIES = tuple(DEFAULT_SCHEMA.entities)
"""Replicated records: each is created, updated, deleted and restored (by the API or by a sync)."""
KNOWN_EVENTS = (
    *(
        f"{entity}.{verb}"
        for entity in RECORD_ENTITIES
        for verb in ("created", "updated", "deleted", "restored")
    ),
    "conflict.created",
    "import.finished",
    "org.created",
    "org.updated",
    "org.deleted",
    "member.added",
    "member.updated",
    "member.removed",
    "invitation.created",
    "invitation.accepted",
    "invitation.revoked",
    "api_key.created",
    "api_key.revoked",
)
"""Every event a webhook can be sent (``GET .../webhooks/event-types``); a filter must name one of them, an
``entity.*`` of a known entity, or ``*``: a typo would otherwise make an endpoint that never fires."""
_KNOWN_ENTITIES = frozenset(e.split(".", 1)[0] for e in KNOWN_EVENTS)


def check_url(value: str) -> str:
    value = value.strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; the signature authenticates the sender")
    if port == 0:
        raise ValueError("port 0 is not a valid port")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain whitespace")
    return value


def is_private_host(host: str) -> bool:
    if host in ("localhost",) or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved


def check_events(value: list[str]) -> list[str]:
    for item in value:
        if not EVENT_PATTERN.match(item):
            raise ValueError(
                f"{item!r} is not an event filter: use entity.verb (e.g. {', '.join(KNOWN_EVENTS[:3])}), "
                "entity.* or *"
            )
        entity, _, verb = item.partition(".")
        if item != "*" and (entity not in _KNOWN_ENTITIES or (verb != "*" and item not in KNOWN_EVENTS)):
            raise ValueError(f"{item!r} is no event this server sends: see GET .../webhooks/event-types")
    return list(dict.fromkeys(value))


WebhookUrl = Annotated[str, Field(max_length=2000), AfterValidator(check_url)]
EventFilters = Annotated[list[str], Field(max_length=50), AfterValidator(check_events)]


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: WebhookUrl
    event_types: EventFilters = Field(default_factory=list, description="Empty: every event.")
    description: str = Field(default="", max_length=2000)


class WebhookEndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: WebhookUrl | None = None
    event_types: EventFilters | None = None
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool | None = Field(default=None, description="Re-enable a disabled endpoint, or pause one.")


class WebhookEndpointRead(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpointRead):
    secret: str = Field(description="Shown once: verify the webhook-signature header with it.")


class WebhookSecretRotated(BaseModel):
    secret: str
    previous_secret_valid_until: datetime


class WebhookAttemptRead(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookDeliveryRead(BaseModel):
    id: uuid.UUID
    message_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[WebhookAttemptRead]
