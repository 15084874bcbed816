"""A thin test client that speaks the API as a user or an integration would."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"


def cursor(payload: object) -> str:
    """A pagination cursor as the server makes them (base64url JSON), holding whatever it is given."""
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@dataclass
class Actor:
    client: TestClient
    token: str
    email: str
    user_id: str
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.client.post(path, headers=self.headers, **kw)

    def patch(self, path: str, **kw: Any) -> Any:
        return self.client.patch(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        return self.client.request(method, path, headers=self.headers, **kw)


def register(client: TestClient, *, name: str = "user") -> Actor:
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    r = client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": name}
    )
    assert r.status_code == 201, r.text
    login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Actor(client=client, token=login.json()["access_token"], email=email, user_id=r.json()["id"])


def api_key_actor(client: TestClient, key: str) -> Actor:
    return Actor(client=client, token=key, email="", user_id="")


@dataclass
class Org:
    id: str
    owner: Actor

    @property
    def base(self) -> str:
        return f"/api/v1/orgs/{self.id}"

    def lookup(self, slug: str, name: str) -> str:
        items = self.owner.get(f"{self.base}/{slug}", params={"limit": 500}).json()["items"]
        return next(i["id"] for i in items if i["name"] == name)


def new_org(client: TestClient, *, name: str = "Acme", owner: Actor | None = None) -> Org:
    owner = owner or register(client, name="owner")
    r = owner.post("/api/v1/orgs", json={"name": name})
    assert r.status_code == 201, r.text
    return Org(id=r.json()["id"], owner=owner)


def add_member(org: Org, role: str) -> Actor:
    """Invite a new user with ``role`` and have them accept: the real flow."""
    member = register(org.owner.client, name=role)
    inv = org.owner.post(f"{org.base}/invitations", json={"email": member.email, "role": role})
    assert inv.status_code == 201, inv.text
    accepted = member.post("/api/v1/invitations/accept", json={"token": inv.json()["token"]})
    assert accepted.status_code == 200, accepted.text
    return member


def seed_library(org: Org) -> dict[str, str]:
    """One of everything in ``org``; returns the ids by name."""
    o = org.owner
    ids: dict[str, str] = {}
    ids["tag"] = o.post(f"{org.base}/tags", json={"name": "python"}).json()["id"]
    ids["agent_group"] = org.lookup("agent-groups", "General")
    ids["gpt_model"] = org.lookup("gpt-models", "GPT-4o")
    ids["stage"] = org.lookup("development-stages", "Draft")
    ids["accuracy"] = org.lookup("accuracy-levels", "Accurate")
    ids["knowledge"] = org.lookup("knowledge-types", "Code")
    gpt = o.post(
        f"{org.base}/custom-gpts",
        json={"name": "Coder", "gpt_model_id": ids["gpt_model"], "agent_group_ids": [ids["agent_group"]]},
    )
    assert gpt.status_code == 201, gpt.text
    ids["custom_gpt"] = gpt.json()["id"]
    prompt = o.post(
        f"{org.base}/prompts",
        json={
            "title": "Linux Terminal",
            "body": "act as a terminal",
            "development_stage_id": ids["stage"],
            "tag_ids": [ids["tag"]],
        },
    )
    assert prompt.status_code == 201, prompt.text
    ids["prompt"] = prompt.json()["id"]
    out = o.post(
        f"{org.base}/outputs",
        json={
            "prompt_id": ids["prompt"],
            "content": "/home/user",
            "custom_gpt_id": ids["custom_gpt"],
            "accuracy_level_id": ids["accuracy"],
            "knowledge_type_ids": [ids["knowledge"]],
            "tag_ids": [ids["tag"]],
        },
    )
    assert out.status_code == 201, out.text
    ids["output"] = out.json()["id"]
    return ids
