"""Organizations (the tenants), memberships, invitations and API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from outputhub.common.errors import (
    AuthenticationError,
    DuplicateError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from outputhub.common.ids import new_uuid
from outputhub.common.roles import ROLE_RANK, SCOPE_ROLE, Action, ApiKeyScope, Role, allows
from outputhub.common.schemas import ApiKeyCreate, InvitationCreate, OrgCreate
from outputhub.server.api.auth import service as auth_service
from outputhub.server.api.base import Tenant
from outputhub.server.api.lookups import service as lookups
from outputhub.server.events import emit_change, row_snapshot
from outputhub.server.security import API_KEY_KIND, INVITATION_KIND, TenantSecret, digest
from outputhub.server.storage.database import set_tenant
from outputhub.server.storage.tables import (
    SYNC_SUMS,
    ApiKey,
    AuthSession,
    Invitation,
    Membership,
    Organization,
    OrgRevision,
    User,
)

API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


def create_org(
    session: Session, *, user: User, data: OrgCreate, now: datetime
) -> tuple[Organization, Tenant]:
    org_id = data.id or new_uuid()
    if session.get(Organization, org_id) is not None:
        raise DuplicateError("body.id", str(org_id))
    org = Organization(
        id=org_id, name=data.name, created_at=now, updated_at=now, created_by=f"user:{user.id}"
    )
    session.add(org)
    session.flush()
    set_tenant(session, org_id=org_id, user_id=user.id)
    session.add(OrgRevision(org_id=org_id, revision=0))
    session.execute(insert(SYNC_SUMS).values(org_id=org_id))  # the sync check's figures, all 0
    session.add(
        Membership(
            id=new_uuid(), org_id=org_id, user_id=user.id, role=Role.OWNER, created_at=now, updated_at=now
        )
    )
    session.flush()
    tenant = Tenant(org_id=org_id, role=Role.OWNER, actor=f"user:{user.id}", user_id=user.id)
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="org.created",
        entity_id=org_id,
        at=now,
        after={"name": org.name, "seed_defaults": data.seed_defaults},
    )
    if data.seed_defaults:
        lookups.seed_defaults(session, tenant=tenant, now=now)
    return org, tenant


def list_user_orgs(session: Session, *, user: User) -> list[tuple[Organization, str]]:
    set_tenant(session, org_id=None, user_id=user.id)
    rows = session.execute(
        select(Organization, Membership.role)
        .join(Membership, Membership.org_id == Organization.id)
        .where(Membership.user_id == user.id)
        .order_by(Organization.name, Organization.id)
    ).all()
    return [(org, role) for org, role in rows]


def get_org(session: Session, *, tenant: Tenant) -> Organization:
    org = session.get(Organization, tenant.org_id)
    if org is None:
        raise NotFoundError("organization", tenant.org_id)
    return org


def rename_org(session: Session, *, tenant: Tenant, name: str, now: datetime) -> Organization:
    org = get_org(session, tenant=tenant)
    before = {"name": org.name}
    org.name = name
    org.updated_at = now
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="org.updated",
        entity_id=org.id,
        at=now,
        before=before,
        after={"name": name},
    )
    return org


def delete_org(session: Session, *, tenant: Tenant, now: datetime | None = None) -> None:
    org = get_org(session, tenant=tenant)
    session.delete(org)
    session.flush()
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="org.deleted",
        entity_id=org.id,
        at=now or datetime.now(UTC),
        before={"name": org.name},
    )


@dataclass(frozen=True)
class Access:
    """What a signed-in caller may do in one organization, as one query found it."""

    role: Role
    session_expires_at: datetime
    """The login's end: an answer remembered for longer than this is void."""


def resolve_access(
    session: Session,
    *,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    now: datetime,
    rotation: int | None = None,
) -> Access | None:
    """The caller's role in the organization, checking in one query what :func:`auth.active_user` and
    :func:`resolve_membership` check in three (the login is live, the account active, the membership there).
    Raises :class:`AuthenticationError` with the same reasons, in the same order; None: not a member.

    Scopes the transaction to the organization first (PostgreSQL row-level security)."""
    set_tenant(session, org_id=org_id, user_id=user_id)
    row = session.execute(
        select(
            AuthSession.user_id,
            AuthSession.revoked_at,
            AuthSession.expires_at,
            AuthSession.rotation,
            AuthSession.rotation_seen,
            User.is_active,
            Membership.role,
        )
        .select_from(AuthSession)
        .outerjoin(User, User.id == AuthSession.user_id)
        .outerjoin(Membership, (Membership.user_id == AuthSession.user_id) & (Membership.org_id == org_id))
        .where(AuthSession.id == session_id)
    ).one_or_none()
    if row is None or row.user_id != user_id or row.revoked_at is not None:
        raise AuthenticationError("session revoked; log in again")
    if row.expires_at <= now:
        raise AuthenticationError("session expired; log in again")
    if not row.is_active:  # None: no such user
        raise AuthenticationError("account disabled")
    auth_service.note_rotation_seen(
        session, session_id=session_id, claimed=rotation, stored=row.rotation, seen=row.rotation_seen
    )
    return Access(role=Role(row.role), session_expires_at=row.expires_at) if row.role else None


def resolve_membership(session: Session, *, org_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
    set_tenant(session, org_id=org_id, user_id=user_id)
    role = session.execute(
        select(Membership.role).where(Membership.org_id == org_id, Membership.user_id == user_id)
    ).scalar_one_or_none()
    return Role(role) if role else None


# --- members ------------------------------------------------------------------------------------------------


def list_members(session: Session, *, tenant: Tenant) -> list[tuple[Membership, User]]:
    rows = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == tenant.org_id)
        .order_by(User.email)
    ).all()
    return [(m, u) for m, u in rows]


def _membership(session: Session, *, tenant: Tenant, user_id: uuid.UUID) -> Membership:
    member = session.execute(
        select(Membership).where(Membership.org_id == tenant.org_id, Membership.user_id == user_id)
    ).scalar_one_or_none()
    if member is None:
        raise NotFoundError("member", user_id)
    return member


def _owner_count(session: Session, *, tenant: Tenant) -> int:
    return session.execute(
        select(func.count())
        .select_from(Membership)
        .where(Membership.org_id == tenant.org_id, Membership.role == Role.OWNER)
    ).scalar_one()


def _check_can_assign(
    tenant: Tenant, *, current: Role | None, new: Role | None, action: str = "grant or change the {role} role"
) -> None:
    """Admins manage editors and viewers; only owners grant, change or remove owner and admin roles (an
    invitation to one included)."""
    if tenant.role == Role.OWNER:
        return
    for role in (current, new):
        if role is not None and ROLE_RANK[role] >= ROLE_RANK[tenant.role]:
            raise PermissionDeniedError(f"only an owner can {action.format(role=role.value)}")


def change_role(
    session: Session, *, tenant: Tenant, user_id: uuid.UUID, role: Role, now: datetime
) -> Membership:
    member = _membership(session, tenant=tenant, user_id=user_id)
    current = Role(member.role)
    _check_can_assign(tenant, current=current, new=role)
    if current == Role.OWNER and role != Role.OWNER and _owner_count(session, tenant=tenant) == 1:
        raise InvalidInputError("body.role", "the organization's last owner cannot be demoted")
    member.role = role
    member.updated_at = now
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="member.updated",
        entity_id=user_id,
        at=now,
        before={"role": current.value},
        after={"role": Role(role).value},
    )
    return member


def remove_member(
    session: Session, *, tenant: Tenant, user_id: uuid.UUID, now: datetime | None = None
) -> None:
    """Remove a member. Any member may leave (remove their own membership); removing someone else takes the
    member-manager permission (and, for owners and admins, an owner). The last owner can do neither."""
    leaving = user_id == tenant.user_id
    if not leaving and not allows(tenant.role, Action.MANAGE_MEMBERS):
        raise PermissionDeniedError(f"{tenant.acting_as} may not manage members")
    member = _membership(session, tenant=tenant, user_id=user_id)
    current = Role(member.role)
    if not leaving:
        _check_can_assign(tenant, current=current, new=None)
    if current == Role.OWNER and _owner_count(session, tenant=tenant) == 1:
        raise InvalidInputError("path.user_id", "the organization's last owner cannot leave or be removed")
    session.delete(member)
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="member.removed",
        entity_id=user_id,
        at=now or datetime.now(UTC),
        before={"role": current.value},
        details={"left": leaving},
    )


# --- invitations --------------------------------------------------------------------------------------------


def invite(
    session: Session, *, tenant: Tenant, data: InvitationCreate, ttl: timedelta, now: datetime
) -> tuple[Invitation, str]:
    _check_can_assign(tenant, current=None, new=data.role)
    email = data.email.lower()
    already = session.execute(
        select(Membership.id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == tenant.org_id, User.email == email)
    ).first()
    if already:
        raise DuplicateError("body.email", email)
    token = TenantSecret.new(kind=INVITATION_KIND, org_id=tenant.org_id)
    invitation = Invitation(
        id=new_uuid(),
        org_id=tenant.org_id,
        email=email,
        role=data.role,
        token_hash=digest(str(token)),
        created_by=tenant.actor,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invitation)
    session.flush()
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="invitation.created",
        entity_id=invitation.id,
        at=now,
        after=row_snapshot(invitation, only=("email", "role", "expires_at")),
    )
    return invitation, str(token)


def list_invitations(session: Session, *, tenant: Tenant) -> list[Invitation]:
    return list(
        session.execute(
            select(Invitation)
            .where(Invitation.org_id == tenant.org_id)
            .order_by(Invitation.created_at.desc())
        ).scalars()
    )


def revoke_invitation(session: Session, *, tenant: Tenant, invitation_id: uuid.UUID, now: datetime) -> None:
    invitation = session.execute(
        select(Invitation).where(Invitation.org_id == tenant.org_id, Invitation.id == invitation_id)
    ).scalar_one_or_none()
    if invitation is None:
        raise NotFoundError("invitation", invitation_id)
    _check_can_assign(
        tenant, current=Role(invitation.role), new=None, action="revoke an invitation to the {role} role"
    )
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = now
        emit_change(
            session,
            org_id=tenant.org_id,
            actor=tenant.actor,
            kind="invitation.revoked",
            entity_id=invitation.id,
            at=now,
            before={"email": invitation.email, "role": invitation.role},
        )


def accept_invitation(
    session: Session, *, user: User, token: str, now: datetime
) -> tuple[Organization, Role]:
    parsed = TenantSecret.parse(token, kind=INVITATION_KIND)
    if parsed is None:
        raise InvalidInputError("body.token", "not an invitation token")
    set_tenant(session, org_id=parsed.org_id, user_id=user.id)
    invitation = session.execute(
        select(Invitation).where(Invitation.org_id == parsed.org_id, Invitation.token_hash == digest(token))
    ).scalar_one_or_none()
    if invitation is None or invitation.revoked_at is not None:
        raise NotFoundError("invitation", field_name="body.token")
    if invitation.accepted_at is not None:
        raise InvalidInputError("body.token", "this invitation was already accepted")
    if invitation.expires_at <= now:
        raise InvalidInputError("body.token", "this invitation has expired; ask for a new one")
    if invitation.email != user.email:
        raise PermissionDeniedError("this invitation was sent to another email address")
    org = session.get(Organization, parsed.org_id)
    if org is None:
        raise NotFoundError("organization", parsed.org_id)
    existing = session.execute(
        select(Membership).where(Membership.org_id == org.id, Membership.user_id == user.id)
    ).scalar_one_or_none()
    role = Role(invitation.role)
    if existing is None:
        session.add(
            Membership(
                id=new_uuid(), org_id=org.id, user_id=user.id, role=role, created_at=now, updated_at=now
            )
        )
    invitation.accepted_at = now
    session.flush()
    actor = f"user:{user.id}"
    emit_change(
        session,
        org_id=org.id,
        actor=actor,
        kind="invitation.accepted",
        entity_id=invitation.id,
        at=now,
        after={"email": user.email, "role": role.value},
    )
    if existing is None:
        emit_change(
            session,
            org_id=org.id,
            actor=actor,
            kind="member.added",
            entity_id=user.id,
            at=now,
            after={"email": user.email, "role": role.value},
            details={"invitation_id": invitation.id},
        )
    return org, Role(existing.role) if existing else role


# --- API keys -----------------------------------------------------------------------------------------------


def create_api_key(
    session: Session, *, tenant: Tenant, data: ApiKeyCreate, now: datetime
) -> tuple[ApiKey, str]:
    token = TenantSecret.new(kind=API_KEY_KIND, org_id=tenant.org_id)
    key = ApiKey(
        id=new_uuid(),
        org_id=tenant.org_id,
        name=data.name,
        scope=data.scope,
        key_hash=digest(str(token)),
        prefix=str(token)[:12] + "…" + token.secret[-4:],
        created_by=tenant.actor,
        created_at=now,
    )
    session.add(key)
    session.flush()
    emit_change(
        session,
        org_id=tenant.org_id,
        actor=tenant.actor,
        kind="api_key.created",
        entity_id=key.id,
        at=now,
        after=row_snapshot(key, only=("name", "scope", "prefix")),
    )
    return key, str(token)


def list_api_keys(session: Session, *, tenant: Tenant) -> list[ApiKey]:
    return list(
        session.execute(
            select(ApiKey).where(ApiKey.org_id == tenant.org_id).order_by(ApiKey.created_at.desc())
        ).scalars()
    )


def revoke_api_key(session: Session, *, tenant: Tenant, key_id: uuid.UUID, now: datetime) -> ApiKey:
    key = session.execute(
        select(ApiKey).where(ApiKey.org_id == tenant.org_id, ApiKey.id == key_id)
    ).scalar_one_or_none()
    if key is None:
        raise NotFoundError("API key", key_id)
    if key.revoked_at is None:
        key.revoked_at = now
        emit_change(
            session,
            org_id=tenant.org_id,
            actor=tenant.actor,
            kind="api_key.revoked",
            entity_id=key.id,
            at=now,
            before=row_snapshot(key, only=("name", "scope", "prefix")),
        )
    return key


def tenant_for_api_key(session: Session, *, org_id: uuid.UUID, token: str, now: datetime) -> Tenant:
    """Authenticate an API key for the organization in the URL. A key of another organization gets 404."""
    parsed = TenantSecret.parse(token, kind=API_KEY_KIND)
    if parsed is None:
        raise AuthenticationError("malformed API key")
    if parsed.org_id != org_id:
        raise NotFoundError("organization", org_id)
    set_tenant(session, org_id=org_id)
    key = session.execute(
        select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.key_hash == digest(token))
    ).scalar_one_or_none()
    if key is None or key.revoked_at is not None:
        raise AuthenticationError("API key unknown or revoked")
    if key.last_used_at is None or now - key.last_used_at > API_KEY_TOUCH_INTERVAL:
        key.last_used_at = now
    return Tenant(org_id=org_id, role=SCOPE_ROLE[ApiKeyScope(key.scope)], actor=f"apikey:{key.id}")
