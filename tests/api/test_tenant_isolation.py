"""Tenant isolation, twice: every route refuses other tenants (generated from the route table), and on
PostgreSQL row-level security hides other tenants' rows even from a query that forgot its filter."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, make_url, select, text

from outputhub.common.errors import StorageError
from outputhub.server.main import create_app
from outputhub.server.storage.database import set_tenant
from outputhub.server.storage.tables import TENANT_TABLES, Base, Output, Prompt
from tests.conftest import make_settings
from tests.support.client import add_member, new_org, seed_library
from tests.support.postgres import app_database

PARAM = re.compile(r"{(\w+)}")


def org_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) under an organization, from the app's own route table (its OpenAPI document)."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if "{org_id}" in path
        for method in operations
    ]


NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"


def fill(
    path: str,
    org_id: str,
    ids: dict[str, str],
    member_id: str,
    key_id: str,
    invitation_id: str,
    webhook_id: str = NO_SUCH_ID,
) -> str:
    """Point every path parameter at a real row of the victim organization."""
    by_segment = {
        "prompts": ids["prompt"],
        "outputs": ids["output"],
        "custom-gpts": ids["custom_gpt"],
        "tags": ids["tag"],
        "knowledge-types": ids["knowledge"],
        "accuracy-levels": ids["accuracy"],
        "development-stages": ids["stage"],
        "gpt-models": ids["gpt_model"],
        "agent-groups": ids["agent_group"],
        "members": member_id,
        "api-keys": key_id,
        "invitations": invitation_id,
        "webhooks": webhook_id,
        # a notification or job id of the victim's is not needed: every such route is tenant-scoped first
        "notifications": NO_SUCH_ID,
        "jobs": NO_SUCH_ID,
    }
    by_name = {
        # sync: one of the victim's records (its merge state), and a conflict id no one has
        "entity": "prompts",
        "record_id": ids["prompt"],
        "conflict_id": NO_SUCH_ID,
    }
    parts = path.split("/")
    for i, part in enumerate(parts):
        match = PARAM.fullmatch(part)
        if not match:
            continue
        name = match.group(1)
        if name == "org_id":
            parts[i] = org_id
        elif name == "version":
            parts[i] = "1"
        elif name in by_name:
            parts[i] = by_name[name]
        else:
            parts[i] = by_segment[parts[i - 1]]
    return "/".join(parts)


def snapshot(org) -> dict[str, object]:
    o = org.owner
    paths = [
        "prompts",
        "outputs",
        "custom-gpts",
        "tags",
        "knowledge-types",
        "accuracy-levels",
        "development-stages",
        "gpt-models",
        "agent-groups",
    ]
    state: dict[str, object] = {
        p: o.get(f"{org.base}/{p}", params={"limit": 500}).json()["items"] for p in paths
    }
    state["members"] = o.get(f"{org.base}/members").json()
    state["api-keys"] = o.get(f"{org.base}/api-keys").json()
    state["invitations"] = o.get(f"{org.base}/invitations").json()
    state["webhooks"] = o.get(f"{org.base}/webhooks").json()
    state["org"] = o.get(org.base).json()
    return state


def test_every_org_route_hides_other_tenants(client, app):
    victim = new_org(client, name="Victim")
    ids = seed_library(victim)
    member = add_member(victim, "editor")
    key = victim.owner.post(f"{victim.base}/api-keys", json={"name": "k", "scope": "write"}).json()
    invitation = victim.owner.post(f"{victim.base}/invitations", json={"email": "later@example.com"}).json()
    webhook = victim.owner.post(f"{victim.base}/webhooks", json={"url": "https://hooks.example.com/in"})
    assert webhook.status_code == 201, webhook.text
    before = snapshot(victim)

    attacker_org = new_org(client, name="Attacker")
    attacker_key = attacker_org.owner.post(
        f"{attacker_org.base}/api-keys", json={"name": "k", "scope": "write"}
    )
    attackers = {
        "owner of another org": attacker_org.owner,
        "write API key of another org": type(attacker_org.owner)(
            client=client, token=attacker_key.json()["key"], email="", user_id=""
        ),
    }
    routes = org_routes(app)
    assert len(routes) >= 40, "route table unexpectedly small"
    for label, attacker in attackers.items():
        for method, template in routes:
            path = fill(
                template, victim.id, ids, member.user_id, key["id"], invitation["id"], webhook.json()["id"]
            )
            params = {"from": 1, "to": 1} if path.endswith("/diff") else None
            body = None if method in ("GET", "DELETE") else {}
            r = attacker.request(method, path, json=body, params=params)
            assert r.status_code == 404, f"{label}: {method} {template} -> {r.status_code} {r.text[:200]}"
            assert r.headers["content-type"] == "application/problem+json"
            assert "Linux Terminal" not in r.text and "/home/user" not in r.text and "Victim" not in r.text
    assert snapshot(victim) == before


def test_member_of_both_sees_each_only_in_its_own_url(client):
    a = new_org(client, name="A")
    ids_a = seed_library(a)
    b = new_org(client, name="B", owner=a.owner)
    assert a.owner.get(f"{b.base}/prompts/{ids_a['prompt']}").status_code == 404
    assert a.owner.get(f"{b.base}/prompts").json()["items"] == []
    # referencing another tenant's row in a body is an unknown id, not a link across tenants
    r = a.owner.post(f"{b.base}/outputs", json={"prompt_id": ids_a["prompt"], "content": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.prompt_id"


@pytest.mark.postgres
def test_row_level_security_hides_rows_from_an_unfiltered_query(pg_url, tmp_path):
    """PostgreSQL only: SQLite has no row-level security and relies on the query filters alone."""
    app = create_app(make_settings("postgres", tmp=tmp_path, pg_url=pg_url))
    client = TestClient(app)
    a = new_org(client, name="RLS A")
    seed_library(a)
    b = new_org(client, name="RLS B")
    seed_library(b)
    factory = app.state.services.session_factory
    with factory() as session, session.begin():
        role = session.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
        assert not role.rolsuper and not role.rolbypassrls
        set_tenant(session, org_id=uuid.UUID(a.id))
        # the query "forgot" its tenant filter
        orgs_seen = set(session.execute(select(Prompt.org_id)).scalars()) | set(
            session.execute(select(Output.org_id)).scalars()
        )
        assert orgs_seen == {uuid.UUID(a.id)}
        for name in TENANT_TABLES:
            table = Base.metadata.tables[name]
            others = session.execute(
                select(func.count()).select_from(table).where(table.c.org_id != uuid.UUID(a.id))
            ).scalar_one()
            assert others == 0, name
        # writing a row into another tenant is refused by the policy's WITH CHECK
        with pytest.raises(Exception, match="row-level security"), session.begin_nested():
            session.execute(
                text("UPDATE org_revisions SET revision = revision WHERE org_id = :b"), {"b": b.id}
            )
            session.execute(
                text(
                    "INSERT INTO tags (id, org_id, revision, deleted, created_at, updated_at, created_by, "
                    "updated_by, name, name_key, description, position) "
                    "VALUES (:id, :b, 1, false, now(), now(), 'x', 'x', 'evil', 'evil', '', 0)"
                ),
                {"id": uuid.uuid4(), "b": b.id},
            )
    with factory() as session, session.begin():
        # no tenant set at all: nothing is visible
        assert session.execute(select(func.count()).select_from(Prompt)).scalar_one() == 0
    app.state.services.engine.dispose()


@pytest.mark.postgres
def test_a_superuser_is_refused_before_the_schema_is_made(pg_server, tmp_path):
    """The server refused to start as a superuser only after it had migrated as one: every table was then
    the superuser's, and the right role could not start either ("permission denied for table
    alembic_version"; QA). Nothing is made before the refusal now."""
    with app_database(pg_server) as app_url:
        as_admin = make_url(pg_server.admin_url).set(database=make_url(app_url).database)
        url = as_admin.render_as_string(hide_password=False)
        with pytest.raises(StorageError, match="refusing to start: the database role is a superuser"):
            create_app(make_settings("postgres", tmp=tmp_path / "admin", pg_url=url))
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                made = conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
                assert made.scalar_one() == 0
        finally:
            engine.dispose()
        app = create_app(make_settings("postgres", tmp=tmp_path / "app", pg_url=app_url))
        try:
            with TestClient(app) as client:
                assert client.get("/readyz").status_code == 200
        finally:
            app.state.services.engine.dispose()
