"""Request dependencies, declared once as ``Annotated`` aliases: the unit of work, the caller, the tenant."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import BackgroundTasks, Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from outputhub.common.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
)
from outputhub.common.roles import Action, allows
from outputhub.server.api.auth import service as auth_service
from outputhub.server.api.auth.service import AuthPolicy
from outputhub.server.api.base import Tenant, lock_org_writes, utcnow
from outputhub.server.api.orgs import service as orgs_service
from outputhub.server.cache import AccessCache, Cache, InProcessCache
from outputhub.server.events import DomainEvent, EventHandler, take_events
from outputhub.server.jobs.queue import JobQueue
from outputhub.server.security import API_KEY_KIND, AccessClaims
from outputhub.server.settings import Settings
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.server.storage.documents import DocumentStore
from outputhub.server.storage.documents.outbox import EventOutbox, run_handlers
from outputhub.server.storage.tables import User


@dataclass(frozen=True)
class Services:
    """What the composition root (``create_app``) builds once and hands to every request."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    auth: AuthPolicy
    cache: Cache = field(default_factory=InProcessCache)
    event_handlers: list[EventHandler] = field(default_factory=list)
    jobs: JobQueue | None = None
    """The background job queue (built by the composition root; see server/jobs)."""
    documents: DocumentStore | None = None
    """Output bodies and the audit log (MongoDB or embedded; docs/documents-and-audit.md)."""
    outbox: EventOutbox | None = None
    """Events are written here inside the unit of work, so a crash after commit cannot lose them."""
    access_cache: AccessCache | None = None
    """Remembered roles of signed-in callers (None: ask the database every request; see AccessCache)."""

    def document_store(self) -> DocumentStore:
        if self.documents is None:
            raise StorageError("no document store configured")
        return self.documents

    def publish(self, events: list[DomainEvent], touched: set[uuid.UUID]) -> None:
        """After a commit: invalidate the touched organizations' cache entries, then run the handlers."""
        self.invalidate(touched)
        self.deliver(events)

    def invalidate(self, touched: set[uuid.UUID]) -> None:
        """Bump the touched organizations' cache generation (before the response: a read right after a
        write must not see the cache of before)."""
        for org_id in touched:
            self.cache.bump(org_id)

    def deliver(self, events: list[DomainEvent]) -> None:
        """Run the handlers (audit log, webhooks, notifications, analytics) on committed events; a failing
        handler is logged and its events stay in the outbox, to be redelivered."""
        if events:
            if self.outbox is None:
                run_handlers(self.event_handlers, events)
                return
            self.outbox.deliver(self.event_handlers, events)
            self.outbox.maybe_redeliver(self.event_handlers)


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in the thread pool,
# and each such hop costs a thread hand-off per request (measured 0.1-0.3 ms each on a quiet machine, more
# under load). Only the ones that touch the database (session, tenant, current user) stay ``def``.


async def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Requests that write nothing (a read-only transaction) and so do not take the organization's write lock."""


def get_session(request: Request, services: ServicesDep, background: BackgroundTasks) -> Iterator[Session]:
    """One transaction per request. Its events are staged in the outbox in the same transaction; once it
    has committed, cache entries are invalidated at once and the event handlers (audit log, webhooks,
    notifications, analytics) run right after the response is sent, so a write's answer does not wait for
    them (the outbox redelivers events whose handlers did not finish, e.g. after a crash)."""
    # API-key reads may record the key's last use, so only token-authenticated reads are read-only
    read_only = request.method in SAFE_METHODS and not request.headers.get("authorization", "").startswith(
        f"Bearer {API_KEY_KIND}_"
    )
    with unit_of_work(services.session_factory, read_only=read_only) as session:
        yield session
        events, touched = take_events(session)
        if events and services.outbox is not None:
            services.outbox.stage(session, events)  # same transaction as the change
    services.invalidate(touched)
    if events:
        background.add_task(services.deliver, events)


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
"""One transaction per request, committed when the endpoint returns (before the response is sent)."""


async def get_now() -> datetime:
    return utcnow()


NowDep = Annotated[datetime, Depends(get_now)]

oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    auto_error=False,
    description="Log in with email and password (the /docs Authorize button).",
)
api_key_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An organization API key (ohk_...) or an access token, as `Authorization: Bearer ...`.",
)


async def get_bearer(
    oauth_token: Annotated[str | None, Depends(oauth2_scheme)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)],
) -> str:
    token = oauth_token or (credentials.credentials if credentials else None)
    if not token:
        raise AuthenticationError("missing Authorization: Bearer token")
    return token


BearerDep = Annotated[str, Depends(get_bearer)]


def _claims(services: Services, token: str) -> AccessClaims:
    if token.startswith(API_KEY_KIND + "_"):
        raise AuthenticationError("this endpoint needs a user's access token, not an API key")
    return services.auth.signer.verify(token)


async def get_access_claims(services: ServicesDep, token: BearerDep) -> AccessClaims:
    return _claims(services, token)


ClaimsDep = Annotated[AccessClaims, Depends(get_access_claims)]


def get_current_user(session: SessionDep, claims: ClaimsDep, now: NowDep) -> User:
    return auth_service.active_user(
        session, user_id=claims.user_id, session_id=claims.session_id, now=now, rotation=claims.rotation
    )


CurrentUserDep = Annotated[User, Depends(get_current_user)]


def get_tenant(
    org_id: Annotated[uuid.UUID, Path(description="The organization (tenant) id.")],
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    token: BearerDep,
    now: NowDep,
) -> Tenant:
    """Who calls, inside the organization in the URL. Not a member (or another org's API key): 404.

    A signed-in user's access (live login, active account, role) is one query, remembered in the access
    cache when that is safe (see :class:`AccessCache`): a hit costs no query on SQLite and only the
    ``SET LOCAL`` of the tenant on PostgreSQL."""
    write = request.method not in SAFE_METHODS
    if token.startswith(API_KEY_KIND + "_"):
        # The key's last use is written at the next flush, which must come after the organization's lock: a
        # revoke of the key holds that lock and then locks the key's row (locked the other way round, the two
        # would wait for each other).
        with session.no_autoflush:
            tenant = orgs_service.tenant_for_api_key(session, org_id=org_id, token=token, now=now)
            if write:
                lock_org_writes(session, org_id=org_id)
        return tenant
    tenant = _user_tenant(org_id, session, services, token, now)
    if write:  # the organization's writes queue here, before any read
        lock_org_writes(session, org_id=org_id)
    return tenant


def _user_tenant(
    org_id: uuid.UUID, session: Session, services: Services, token: str, now: datetime
) -> Tenant:
    """A signed-in user's tenant (see :func:`get_tenant`)."""
    claims = _claims(services, token)
    cache = services.access_cache
    generation = cache.generation() if cache is not None else -1  # read before the database is asked
    role = cache.lookup(generation, claims=claims, org_id=org_id, now=now) if cache is not None else None
    if role is not None:
        set_tenant(session, org_id=org_id, user_id=claims.user_id)
    else:
        access = orgs_service.resolve_access(
            session,
            org_id=org_id,
            user_id=claims.user_id,
            session_id=claims.session_id,
            now=now,
            rotation=claims.rotation,
        )
        if access is None:
            raise NotFoundError("organization", org_id)
        if cache is not None:
            cache.remember(
                generation,
                claims=claims,
                org_id=org_id,
                role=access.role,
                session_expires_at=access.session_expires_at,
            )
        role = access.role
    return Tenant(org_id=org_id, role=role, actor=f"user:{claims.user_id}", user_id=claims.user_id)


def require(action: Action) -> Callable[[Tenant], Coroutine[Any, Any, Tenant]]:
    async def check(tenant: Annotated[Tenant, Depends(get_tenant)]) -> Tenant:
        if not allows(tenant.role, action):
            raise PermissionDeniedError(
                f"{tenant.acting_as} may not {action.value.replace('_', ' ')}"
            )
        return tenant

    check.__name__ = f"require_{action.value}"
    return check


Reader = Annotated[Tenant, Depends(require(Action.READ))]
Writer = Annotated[Tenant, Depends(require(Action.WRITE))]
MemberManager = Annotated[Tenant, Depends(require(Action.MANAGE_MEMBERS))]
KeyManager = Annotated[Tenant, Depends(require(Action.MANAGE_API_KEYS))]
OrgManager = Annotated[Tenant, Depends(require(Action.MANAGE_ORG))]
OrgDeleter = Annotated[Tenant, Depends(require(Action.DELETE_ORG))]
WebhookManager = Annotated[Tenant, Depends(require(Action.MANAGE_WEBHOOKS))]


async def get_if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match", description="The ETag (revision) you edited from; 412 if the record moved on."
        ),
    ] = None,
) -> frozenset[int] | None:
    """The revisions ``If-Match`` names: one entity tag or a comma-separated list (RFC 9110); ``*`` or none
    names no condition. ``If-Match`` compares strongly, so a weak tag (``W/"42"``) names no revision: a list
    of only weak tags is never met (412). A revision without its quotes is taken too; a quote left open is not
    (``"42`` and ``42"`` were read as 42; found by QA)."""
    if if_match is None or if_match.strip() == "*":
        return None
    revisions: set[int] = set()
    for tag in if_match.split(","):
        found = _ENTITY_TAG.fullmatch(tag.strip())
        if found is None:
            raise InvalidInputError("header.If-Match", 'must be an ETag such as "42", or a list: "41", "42"')
        digits = found["quoted"] or found["bare"]
        if not found["weak"] and digits == str(int(digits)):
            revisions.add(int(digits))
    return frozenset(revisions)


_ENTITY_TAG: Final = re.compile(r'(?P<weak>W/)?"(?P<quoted>[0-9]{1,19})"|(?P<bare>[0-9]{1,19})')
"""One entity tag of ``If-Match`` as this server writes them (a revision in quotes, maybe weak), or bare. Tags
compare strongly, character by character: ``"0102"`` is no tag this server gives (it matched revision 102;
QA), so it names no revision."""


IfMatchDep = Annotated[frozenset[int] | None, Depends(get_if_match)]


def etag(revision: int) -> str:
    return f'"{revision}"'
