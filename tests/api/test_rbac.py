"""Roles: each role can do exactly what docs/permissions.md says (the matrix in outputhub.common.roles)."""

from __future__ import annotations

import pytest

from outputhub.common.roles import PERMISSIONS, Action, Role
from tests.support.client import add_member, new_org, register, seed_library


def attempts(org, ids):
    """One request per action, each a fresh write so roles don't interfere (name -> (action, call, ok))."""
    b = org.base
    return {
        "list prompts": (Action.READ, lambda a: a.get(f"{b}/prompts"), 200),
        "read output": (Action.READ, lambda a: a.get(f"{b}/outputs/{ids['output']}"), 200),
        "read versions": (Action.READ, lambda a: a.get(f"{b}/prompts/{ids['prompt']}/versions"), 200),
        "list members": (Action.READ, lambda a: a.get(f"{b}/members"), 200),
        "create prompt": (
            Action.WRITE,
            lambda a: a.post(f"{b}/prompts", json={"title": "t", "body": "b"}),
            201,
        ),
        "edit prompt": (
            Action.WRITE,
            lambda a: a.patch(f"{b}/prompts/{ids['prompt']}", json={"body": "new"}),
            200,
        ),
        "create output": (
            Action.WRITE,
            lambda a: a.post(f"{b}/outputs", json={"prompt_id": ids["prompt"], "content": "c"}),
            201,
        ),
        "create tag": (Action.WRITE, lambda a: a.post(f"{b}/tags", json={"name": f"t-{a.email}"}), 201),
        "create custom GPT": (
            Action.WRITE,
            lambda a: a.post(f"{b}/custom-gpts", json={"name": f"g-{a.email}"}),
            201,
        ),
        "invite": (
            Action.MANAGE_MEMBERS,
            lambda a: a.post(f"{b}/invitations", json={"email": f"x-{a.email}", "role": "viewer"}),
            201,
        ),
        "list invitations": (Action.MANAGE_MEMBERS, lambda a: a.get(f"{b}/invitations"), 200),
        "list API keys": (Action.MANAGE_API_KEYS, lambda a: a.get(f"{b}/api-keys"), 200),
        "create API key": (
            Action.MANAGE_API_KEYS,
            lambda a: a.post(f"{b}/api-keys", json={"name": "k"}),
            201,
        ),
        "rename org": (Action.MANAGE_ORG, lambda a: a.patch(b, json={"name": "Renamed"}), 200),
    }


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_role_matrix(client, role):
    org = new_org(client)
    ids = seed_library(org)
    actor = org.owner if role == "owner" else add_member(org, role)
    for name, (action, call, ok) in attempts(org, ids).items():
        r = call(actor)
        allowed = action in PERMISSIONS[Role(role)]
        expected = ok if allowed else 403
        assert r.status_code == expected, f"{role} / {name}: {r.status_code} {r.text[:200]}"


def test_only_owner_deletes_org(client):
    org = new_org(client)
    admin = add_member(org, "admin")
    assert admin.delete(org.base).status_code == 403
    assert org.owner.delete(org.base).status_code == 204
    assert org.owner.get(org.base).status_code == 404
    assert org.owner.get("/api/v1/orgs").json() == []


def test_admin_limits_and_last_owner(client):
    org = new_org(client)
    admin = add_member(org, "admin")
    editor = add_member(org, "editor")
    # admins manage editors and viewers, not owners or admins
    assert admin.patch(f"{org.base}/members/{editor.user_id}", json={"role": "viewer"}).status_code == 200
    assert admin.patch(f"{org.base}/members/{editor.user_id}", json={"role": "owner"}).status_code == 403
    assert admin.patch(f"{org.base}/members/{org.owner.user_id}", json={"role": "viewer"}).status_code == 403
    assert (
        admin.post(f"{org.base}/invitations", json={"email": "boss@example.com", "role": "owner"}).status_code
        == 403
    )
    # the last owner cannot be demoted or removed
    r = org.owner.patch(f"{org.base}/members/{org.owner.user_id}", json={"role": "admin"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.role"
    assert org.owner.delete(f"{org.base}/members/{org.owner.user_id}").status_code == 422
    # promote a second owner; then the first can step down
    assert org.owner.patch(f"{org.base}/members/{admin.user_id}", json={"role": "owner"}).status_code == 200
    assert (
        org.owner.patch(f"{org.base}/members/{org.owner.user_id}", json={"role": "admin"}).status_code == 200
    )
    # removed members lose access at once
    assert admin.delete(f"{org.base}/members/{editor.user_id}").status_code == 204
    assert editor.get(f"{org.base}/prompts").status_code == 404


def test_invitation_rules(client):
    org = new_org(client)
    stranger = register(client, name="stranger")
    inv = org.owner.post(
        f"{org.base}/invitations", json={"email": "someone-else@example.com", "role": "editor"}
    )
    token = inv.json()["token"]
    assert stranger.post("/api/v1/invitations/accept", json={"token": token}).status_code == 403
    assert stranger.post("/api/v1/invitations/accept", json={"token": "ohi_nothex_secret"}).status_code == 422
    revoked = org.owner.post(
        f"{org.base}/invitations", json={"email": stranger.email, "role": "viewer"}
    ).json()
    assert org.owner.delete(f"{org.base}/invitations/{revoked['id']}").status_code == 204
    assert stranger.post("/api/v1/invitations/accept", json={"token": revoked["token"]}).status_code == 404
    assert stranger.get(f"{org.base}/prompts").status_code == 404
    member = add_member(org, "viewer")
    dup = org.owner.post(f"{org.base}/invitations", json={"email": member.email, "role": "viewer"})
    assert dup.status_code == 409 and dup.json()["errors"][0]["field"] == "body.email"


def test_only_an_owner_revokes_an_owner_or_admin_invitation(client):
    """docs/permissions.md: granting the owner or admin role takes an owner, and so does withdrawing such an
    invitation. An admin revoked an admin invitation the owner had made (found by QA)."""
    org = new_org(client)
    admin = add_member(org, "admin")

    def invite(role: str) -> str:
        r = org.owner.post(f"{org.base}/invitations", json={"email": f"{role}-new@example.com", "role": role})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def revoked(invitation_id: str) -> bool:
        rows = {i["id"]: i for i in org.owner.get(f"{org.base}/invitations").json()}
        return rows[invitation_id]["revoked_at"] is not None

    for role in ("admin", "owner"):
        invitation = invite(role)
        r = admin.delete(f"{org.base}/invitations/{invitation}")
        assert r.status_code == 403, f"{role}: {r.status_code} {r.text}"
        assert r.headers["content-type"] == "application/problem+json"
        assert f"the {role} role" in r.json()["detail"]
        assert not revoked(invitation)
        assert org.owner.delete(f"{org.base}/invitations/{invitation}").status_code == 204
        assert revoked(invitation)
    for role in ("editor", "viewer"):
        invitation = invite(role)
        assert admin.delete(f"{org.base}/invitations/{invitation}").status_code == 204
        assert revoked(invitation)


def test_any_member_may_leave_but_only_managers_remove_others(client):
    """docs/permissions.md: anyone may leave an organization except its last owner. Viewers and editors got
    403 "may not manage members" on their own membership (found by QA)."""
    org = new_org(client)
    viewer = add_member(org, "viewer")
    editor = add_member(org, "editor")
    other = add_member(org, "viewer")
    for actor in (viewer, editor):
        r = actor.delete(f"{org.base}/members/{other.user_id}")
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == "application/problem+json"
    assert other.get(f"{org.base}/prompts").status_code == 200
    for actor in (viewer, editor):
        assert actor.get(f"{org.base}/prompts").status_code == 200
        r = actor.delete(f"{org.base}/members/{actor.user_id}")
        assert r.status_code == 204, r.text
        assert actor.get(org.base).status_code == 404
        assert actor.get(f"{org.base}/prompts").status_code == 404
        assert actor.delete(f"{org.base}/members/{actor.user_id}").status_code == 404
    members = {m["user_id"] for m in org.owner.get(f"{org.base}/members").json()}
    assert members == {org.owner.user_id, other.user_id}
    # the last owner still cannot leave
    r = org.owner.delete(f"{org.base}/members/{org.owner.user_id}")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "path.user_id"
