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
    if "%" in parts.hostname:
        raise ValueError("must not percent-encode its host")
    host_address(parts.hostname)  # a host of numbers that is no IPv4 address: ValueError
    return value


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NUMBER = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def normalize_host(host: str) -> str:
    """The host as a client looks it up: lower case, without IPv6 brackets or the trailing dots of a fully
    qualified name (``localhost.`` is ``localhost``)."""
    return host.strip().strip("[]").lower().rstrip(".")


def _ipv4_numbers(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host written in numbers names, read as ``inet_aton`` (which ``getaddrinfo`` and so
    every HTTP client uses) and the URL standard read it: one to four parts, each decimal, ``0x`` hex or
    ``0`` octal, the last filling the remaining bytes (``2130706433``, ``0x7f.1``, ``0177.0.0.1`` and
    ``127.1`` are all 127.0.0.1). None for a name (its last label is not a number); ValueError for numbers
    that are no IPv4 address (``1.2.3.4.5``, ``256.1.1.1``)."""
    labels = host.split(".")
    if not _NUMBER.match(labels[-1]):
        return None
    if len(labels) > 4 or not all(_NUMBER.match(label) for label in labels):
        raise ValueError("not a valid IPv4 address")
    numbers: list[int] = []
    for label in labels:
        if label.startswith("0x"):
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if not set(label) <= set("01234567"):
                raise ValueError("not a valid IPv4 address")  # "08": inet_aton refuses it too
            numbers.append(int(label[1:], 8))
        else:
            numbers.append(int(label))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        raise ValueError("not a valid IPv4 address")
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def host_address(host: str) -> IpAddress | None:
    """The IP address a URL's host names (in any form a client accepts), or None for a DNS name; ValueError
    for a host of numbers that is no address."""
    name = normalize_host(host)
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])  # an IPv6 zone ("fe80::1%eth0") is no part of it
    except ValueError:
        return _ipv4_numbers(name)


def is_private_address(ip: IpAddress) -> bool:
    """Loopback, private, link-local, reserved, unspecified (0.0.0.0 reaches this host) or multicast, also
    as IPv4 inside an IPv6 address (mapped, 6to4, NAT64)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(inner is not None and is_private_address(inner) for inner in embedded):
            return True
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
        or ip.is_multicast
    )


def is_private_host(host: str) -> bool:
    """Whether a URL's host is a loopback or private target, read as an HTTP client reads it (see
    :func:`host_address`). A DNS name other than ``localhost`` is not judged here: the delivery checks the
    addresses it resolves to."""
    name = normalize_host(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ip = host_address(name)
    except ValueError:
        return True  # no address a client could reach (``check_url`` refuses it first)
    return ip is not None and is_private_address(ip)


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
