"""/api/v1/orgs: organizations, members, invitations and API keys."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, status

from outputhub.common.roles import Role
from outputhub.common.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    InvitationAccept,
    InvitationCreate,
    InvitationCreated,
    InvitationRead,
    MemberRead,
    MemberUpdate,
    OrgCreate,
    OrgRead,
    OrgUpdate,
)
from outputhub.server.api.orgs import service
from outputhub.server.deps import (
    CurrentUserDep,
    KeyManager,
    MemberManager,
    NowDep,
    OrgDeleter,
    OrgManager,
    Reader,
    ServicesDep,
    SessionDep,
)

router = APIRouter(tags=["organizations"])


def _org(org: object, role: str) -> OrgRead:
    return OrgRead(id=org.id, name=org.name, role=Role(role), created_at=org.created_at)  # type: ignore[attr-defined]


@router.post("/orgs", status_code=status.HTTP_201_CREATED)
def create_org(data: OrgCreate, user: CurrentUserDep, session: SessionDep, now: NowDep) -> OrgRead:
    """Create an organization; you become its owner. Default lookups are seeded unless seed_defaults=false."""
    org, _ = service.create_org(session, user=user, data=data, now=now)
    return _org(org, Role.OWNER)


@router.get("/orgs")
def list_orgs(user: CurrentUserDep, session: SessionDep) -> list[OrgRead]:
    return [_org(org, role) for org, role in service.list_user_orgs(session, user=user)]


@router.get("/orgs/{org_id}")
def get_org(tenant: Reader, session: SessionDep) -> OrgRead:
    return _org(service.get_org(session, tenant=tenant), tenant.role)


@router.patch("/orgs/{org_id}")
def rename_org(data: OrgUpdate, tenant: OrgManager, session: SessionDep, now: NowDep) -> OrgRead:
    return _org(service.rename_org(session, tenant=tenant, name=data.name, now=now), tenant.role)


@router.delete("/orgs/{org_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_org(tenant: OrgDeleter, session: SessionDep) -> None:
    """Delete the organization and everything in it (owners only)."""
    service.delete_org(session, tenant=tenant)


# --- members ------------------------------------------------------------------------------------------------


def _member(m: object, u: object) -> MemberRead:
    return MemberRead(
        user_id=u.id,  # type: ignore[attr-defined]
        email=u.email,  # type: ignore[attr-defined]
        display_name=u.display_name,  # type: ignore[attr-defined]
        role=Role(m.role),  # type: ignore[attr-defined]
        created_at=m.created_at,  # type: ignore[attr-defined]
    )


@router.get("/orgs/{org_id}/members")
def list_members(tenant: Reader, session: SessionDep) -> list[MemberRead]:
    return [_member(m, u) for m, u in service.list_members(session, tenant=tenant)]


@router.patch("/orgs/{org_id}/members/{user_id}")
def change_role(
    user_id: uuid.UUID, data: MemberUpdate, tenant: MemberManager, session: SessionDep, now: NowDep
) -> MemberRead:
    service.change_role(session, tenant=tenant, user_id=user_id, role=data.role, now=now)
    return next(_member(m, u) for m, u in service.list_members(session, tenant=tenant) if u.id == user_id)


@router.delete("/orgs/{org_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(user_id: uuid.UUID, tenant: Reader, session: SessionDep) -> None:
    """Remove a member. Anyone may leave (their own user id) except the last owner; removing someone else
    takes the manage-members permission (the service checks it: the dependency cannot tell the two apart)."""
    service.remove_member(session, tenant=tenant, user_id=user_id)


# --- invitations --------------------------------------------------------------------------------------------


@router.post("/orgs/{org_id}/invitations", status_code=status.HTTP_201_CREATED)
def invite(
    data: InvitationCreate, tenant: MemberManager, session: SessionDep, services: ServicesDep, now: NowDep
) -> InvitationCreated:
    """Invite someone by email with a role. The response carries the one-time token to pass on."""
    ttl = timedelta(days=services.settings.invitation_days)
    invitation, token = service.invite(session, tenant=tenant, data=data, ttl=ttl, now=now)
    return InvitationCreated(
        **InvitationRead.model_validate(invitation, from_attributes=True).model_dump(), token=token
    )


@router.get("/orgs/{org_id}/invitations")
def list_invitations(tenant: MemberManager, session: SessionDep) -> list[InvitationRead]:
    return [
        InvitationRead.model_validate(i, from_attributes=True)
        for i in service.list_invitations(session, tenant=tenant)
    ]


@router.delete("/orgs/{org_id}/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_invitation(
    invitation_id: uuid.UUID, tenant: MemberManager, session: SessionDep, now: NowDep
) -> None:
    service.revoke_invitation(session, tenant=tenant, invitation_id=invitation_id, now=now)


@router.post("/invitations/accept")
def accept_invitation(
    data: InvitationAccept, user: CurrentUserDep, session: SessionDep, now: NowDep
) -> OrgRead:
    """Join the organization an invitation (sent to your email) is for."""
    org, role = service.accept_invitation(session, user=user, token=data.token, now=now)
    return _org(org, role)


# --- API keys -----------------------------------------------------------------------------------------------


@router.post("/orgs/{org_id}/api-keys", status_code=status.HTTP_201_CREATED)
def create_api_key(data: ApiKeyCreate, tenant: KeyManager, session: SessionDep, now: NowDep) -> ApiKeyCreated:
    """Create an API key for integrations. The key is shown once; only its hash is kept."""
    key, secret = service.create_api_key(session, tenant=tenant, data=data, now=now)
    return ApiKeyCreated(**ApiKeyRead.model_validate(key, from_attributes=True).model_dump(), key=secret)


@router.get("/orgs/{org_id}/api-keys")
def list_api_keys(tenant: KeyManager, session: SessionDep) -> list[ApiKeyRead]:
    return [
        ApiKeyRead.model_validate(k, from_attributes=True)
        for k in service.list_api_keys(session, tenant=tenant)
    ]


@router.delete("/orgs/{org_id}/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_api_key(key_id: uuid.UUID, tenant: KeyManager, session: SessionDep, now: NowDep) -> None:
    service.revoke_api_key(session, tenant=tenant, key_id=key_id, now=now)
