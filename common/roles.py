"""Roles, scopes and the permission matrix (documented in docs/permissions.md)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"


class ApiKeyScope(StrEnum):
    READ = "read"
    WRITE = "write"


class Action(StrEnum):
    READ = "read"  # read the library: prompts, outputs, custom GPTs, taxonomy, versions
    WRITE = "write"  # create, edit, delete prompts, outputs, custom GPTs and taxonomy
    MANAGE_MEMBERS = "manage_members"  # invite, change roles, remove members
    MANAGE_API_KEYS = "manage_api_keys"
    MANAGE_ORG = "manage_org"  # rename the organization
    MANAGE_WEBHOOKS = "manage_webhooks"  # webhook endpoints, their secrets and delivery logs; failed jobs
    DELETE_ORG = "delete_org"
    VIEW_AUDIT = "view_audit"  # read the audit log


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.EDITOR: frozenset({Action.READ, Action.WRITE}),
    Role.ADMIN: frozenset(
        {
            Action.READ,
            Action.WRITE,
            Action.MANAGE_MEMBERS,
            Action.MANAGE_API_KEYS,
            Action.MANAGE_ORG,
            Action.MANAGE_WEBHOOKS,
            Action.VIEW_AUDIT,
        }
    ),
    Role.OWNER: frozenset(Action),
}

SCOPE_ROLE: dict[ApiKeyScope, Role] = {ApiKeyScope.READ: Role.VIEWER, ApiKeyScope.WRITE: Role.EDITOR}
"""An API key acts with the rights of this role in its organization."""

ROLE_RANK: dict[Role, int] = {Role.VIEWER: 0, Role.EDITOR: 1, Role.ADMIN: 2, Role.OWNER: 3}


def allows(role: Role, action: Action) -> bool:
    return action in PERMISSIONS[role]
