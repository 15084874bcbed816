"""The user journey of the issue, end to end through the API, on each backend."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from outputhub.server.deps import get_now
from tests.support.client import add_member, new_org, register, seed_library


def test_health_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    spec = client.get("/openapi.json").json()
    assert "/api/v1/orgs/{org_id}/prompts" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_register_org_prompt_versions_outputs_filters_and_viewer(client):
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner

    # a prompt edit that changes its text creates a version; diff any two
    r = o.patch(f"{org.base}/prompts/{ids['prompt']}", json={"body": "act as a terminal\nshow only output"})
    assert r.status_code == 200 and r.json()["version"] == 2
    r = o.patch(f"{org.base}/prompts/{ids['prompt']}", json={"description": "no text change"})
    assert r.json()["version"] == 2
    versions = o.get(f"{org.base}/prompts/{ids['prompt']}/versions").json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["body"] == "act as a terminal"
    diff = o.get(f"{org.base}/prompts/{ids['prompt']}/diff", params={"from": 1, "to": 2}).json()
    assert "+show only output" in diff["unified"]
    assert [h["op"] for h in diff["hunks"]] == ["equal", "insert"]

    # the output inherited the custom GPT's model
    out = o.get(f"{org.base}/outputs/{ids['output']}").json()
    assert out["gpt_model_id"] == ids["gpt_model"]
    assert out["knowledge_type_ids"] == [ids["knowledge"]]

    # filters by each relation
    other = o.post(f"{org.base}/prompts", json={"title": "Other", "body": "unrelated"}).json()
    o.post(f"{org.base}/outputs", json={"prompt_id": other["id"], "content": "plain"})

    def prompt_titles(**params):
        return {p["title"] for p in o.get(f"{org.base}/prompts", params=params).json()["items"]}

    assert prompt_titles() == {"Linux Terminal", "Other"}
    for key in ("tag", "stage", "accuracy", "knowledge", "custom_gpt", "gpt_model", "agent_group"):
        param = {
            "tag": "tag_id",
            "stage": "development_stage_id",
            "accuracy": "accuracy_level_id",
            "knowledge": "knowledge_type_id",
            "custom_gpt": "custom_gpt_id",
            "gpt_model": "gpt_model_id",
            "agent_group": "agent_group_id",
        }[key]
        assert prompt_titles(**{param: ids[key]}) == {"Linux Terminal"}, key
        outputs = o.get(f"{org.base}/outputs", params={param: ids[key]}).json()["items"]
        assert [x["id"] for x in outputs] == [ids["output"]], key
    assert prompt_titles(q="TERMINAL") == {"Linux Terminal"}
    assert prompt_titles(q="nothing-like-this") == set()

    # a viewer can read but not write
    viewer = add_member(org, "viewer")
    assert viewer.get(f"{org.base}/prompts").status_code == 200
    denied = viewer.post(f"{org.base}/prompts", json={"title": "x", "body": "y"})
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert len(o.get(f"{org.base}/prompts").json()["items"]) == 2


def test_cursor_pagination_visits_every_row_once(client):
    org = new_org(client)
    o = org.owner
    created = {
        o.post(f"{org.base}/prompts", json={"title": f"P{i:02d}", "body": "b"}).json()["id"]
        for i in range(23)
    }
    for sort in ("-created_at", "created_at", "title", "-title", "updated_at"):
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 5, "sort": sort, **({"cursor": cursor} if cursor else {})}
            page = o.get(f"{org.base}/prompts", params=params).json()
            seen += [p["id"] for p in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == len(set(seen)) == 23 and set(seen) == created, sort
    titles = [
        p["title"] for p in o.get(f"{org.base}/prompts", params={"sort": "title", "limit": 3}).json()["items"]
    ]
    assert titles == ["P00", "P01", "P02"]


def test_bulk_outputs_all_or_nothing(client):
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    good = [{"prompt_id": ids["prompt"], "content": f"out {i}", "tag_ids": [ids["tag"]]} for i in range(50)]
    r = o.post(f"{org.base}/outputs/bulk", json={"items": good})
    assert r.status_code == 201 and r.json()["created"] == 50
    assert all(item["tag_ids"] == [ids["tag"]] for item in r.json()["items"])
    before = len(o.get(f"{org.base}/outputs", params={"limit": 500}).json()["items"])
    bad = [*good[:3], {"prompt_id": ids["prompt"], "content": "x", "accuracy_level_id": ids["tag"]}]
    r = o.post(f"{org.base}/outputs/bulk", json={"items": bad})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.items.3.accuracy_level_id"
    assert len(o.get(f"{org.base}/outputs", params={"limit": 500}).json()["items"]) == before


def test_client_generated_ids_and_etags(client):
    import uuid

    org = new_org(client)
    o = org.owner
    pid = str(uuid.uuid4())
    r = o.post(f"{org.base}/prompts", json={"id": pid, "title": "Offline", "body": "made offline"})
    assert r.status_code == 201 and r.json()["id"] == pid
    etag = r.headers["etag"]
    assert o.post(f"{org.base}/prompts", json={"id": pid, "title": "Again", "body": "b"}).status_code == 409
    moved = o.patch(f"{org.base}/prompts/{pid}", json={"title": "Edited"}, headers={"If-Match": etag})
    assert moved.status_code == 200
    stale = o.patch(f"{org.base}/prompts/{pid}", json={"title": "Stale"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert o.get(f"{org.base}/prompts/{pid}").json()["title"] == "Edited"
    assert int(moved.headers["etag"].strip('"')) > int(etag.strip('"'))
    # the same precondition guards deletes, on every kind of record
    tag = o.post(f"{org.base}/tags", json={"name": "guarded"})
    o.patch(f"{org.base}/tags/{tag.json()['id']}", json={"description": "moved on"})
    stale_delete = o.delete(f"{org.base}/tags/{tag.json()['id']}", headers={"If-Match": tag.headers["etag"]})
    assert stale_delete.status_code == 412
    assert o.get(f"{org.base}/tags/{tag.json()['id']}").status_code == 200


def test_deleting_lookup_detaches_it_and_prompt_delete_guard(client):
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    before = o.get(f"{org.base}/prompts/{ids['prompt']}").json()
    assert o.delete(f"{org.base}/tags/{ids['tag']}").status_code == 204
    after = o.get(f"{org.base}/prompts/{ids['prompt']}").json()
    assert after["tag_ids"] == [] and after["revision"] > before["revision"]
    assert o.get(f"{org.base}/outputs/{ids['output']}").json()["tag_ids"] == []
    # the name is free again
    assert o.post(f"{org.base}/tags", json={"name": "python"}).status_code == 201
    # a prompt with outputs is not deleted by accident
    r = o.delete(f"{org.base}/prompts/{ids['prompt']}")
    assert r.status_code == 409
    assert o.delete(f"{org.base}/prompts/{ids['prompt']}", params={"cascade": "true"}).status_code == 204
    assert o.get(f"{org.base}/outputs/{ids['output']}").status_code == 404


def test_sessions_refresh_rotation_and_logout(client):
    user = register(client, name="sess")
    login = client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": "correct horse battery"}
    ).json()
    access, refresh = login["access_token"], login["refresh_token"]
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert rotated.status_code == 200
    assert (
        client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {rotated.json()['access_token']}"}
        ).status_code
        == 200
    )
    # reusing a rotated refresh token, once its successor is in use and after the retry window, revokes
    # the whole session
    later = datetime.now(UTC) + timedelta(minutes=10)
    client.app.dependency_overrides[get_now] = lambda: later  # type: ignore[attr-defined]
    try:
        assert client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401
    finally:
        client.app.dependency_overrides.pop(get_now)  # type: ignore[attr-defined]
    assert (
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
        ).status_code
        == 401
    )
    assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access}"}).status_code == 401
    # logout revokes at once
    fresh = client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": "correct horse battery"}
    ).json()
    h = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert client.get("/api/v1/auth/me", headers=h).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=h).status_code == 204
    assert client.get("/api/v1/auth/me", headers=h).status_code == 401
    assert (
        client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": "wrong password!"}
        ).status_code
        == 401
    )


def test_api_keys_scoped_hashed_revocable(client, app):
    from sqlalchemy import select

    from outputhub.server.storage.tables import ApiKey

    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    read = o.post(f"{org.base}/api-keys", json={"name": "dashboard", "scope": "read"}).json()
    write = o.post(f"{org.base}/api-keys", json={"name": "ingest", "scope": "write"}).json()
    r_h = {"Authorization": f"Bearer {read['key']}"}
    w_h = {"Authorization": f"Bearer {write['key']}"}
    assert client.get(f"{org.base}/prompts", headers=r_h).status_code == 200
    assert (
        client.post(f"{org.base}/prompts", headers=r_h, json={"title": "t", "body": "b"}).status_code == 403
    )
    made = client.post(
        f"{org.base}/outputs", headers=w_h, json={"prompt_id": ids["prompt"], "content": "via key"}
    )
    assert made.status_code == 201 and made.json()["created_by"] == f"apikey:{write['id']}"
    listed = o.get(f"{org.base}/api-keys").json()
    assert all("key" not in k for k in listed)
    assert next(k for k in listed if k["id"] == write["id"])["last_used_at"] is not None
    # only the hash is stored
    with app.state.services.session_factory() as s, s.begin():
        from outputhub.server.storage.database import set_tenant

        set_tenant(s, org_id=__import__("uuid").UUID(org.id))
        org_uuid = __import__("uuid").UUID(org.id)
        stored = s.execute(select(ApiKey.key_hash).where(ApiKey.org_id == org_uuid)).scalars().all()
    assert write["key"] not in stored and len(stored) == 2
    assert o.delete(f"{org.base}/api-keys/{write['id']}").status_code == 204
    assert client.get(f"{org.base}/prompts", headers=w_h).status_code == 401
    # an API key cannot manage the org's users
    assert client.get(f"{org.base}/members", headers=r_h).status_code == 200
    assert (
        client.post(f"{org.base}/invitations", headers=r_h, json={"email": "x@example.com"}).status_code
        == 403
    )


def test_records_made_one_after_another_get_ids_in_that_order(client) -> None:
    """Server-made ids are time-ordered (UUIDv7): one bulk write's outputs, in the order sent."""
    org = new_org(client)
    ids = seed_library(org)
    made = org.owner.post(
        f"{org.base}/outputs/bulk",
        json={"items": [{"prompt_id": ids["prompt"], "content": f"output {n}"} for n in range(50)]},
    )
    assert made.status_code == 201, made.text
    created = [uuid.UUID(item["id"]) for item in made.json()["items"]]
    assert all(i.version == 7 for i in created)
    assert created == sorted(created)
    later = uuid.UUID(org.owner.post(f"{org.base}/tags", json={"name": "later"}).json()["id"])
    assert later > created[-1]


def test_a_bulk_item_reusing_a_taken_id_is_named_by_its_index(client) -> None:
    """In a bulk write, an item whose id is taken is named ``body.items.N.id`` (it said ``body.id``: in a
    batch of 1,000 nobody could tell which row collided); nothing of the batch is written (found by QA)."""
    org = new_org(client)
    ids = seed_library(org)
    items = [{"prompt_id": ids["prompt"], "content": f"o{n}", "id": str(uuid.uuid4())} for n in range(4)]
    items[3]["id"] = ids["output"]
    before = org.owner.get(f"{org.base}/outputs").json()["items"]
    r = org.owner.post(f"{org.base}/outputs/bulk", json={"items": items})
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["field"] == "body.items.3.id"
    assert org.owner.get(f"{org.base}/outputs").json()["items"] == before
    single = org.owner.post(
        f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "x", "id": ids["output"]}
    )
    assert single.status_code == 409 and single.json()["errors"][0]["field"] == "body.id"


def test_if_match_takes_a_list_of_entity_tags(client) -> None:
    """RFC 9110 allows ``If-Match: "41", "42"``: the edit goes through when the record is at any of them (it
    answered 422; found by QA); a list naming none of them is 412; a malformed one 422 naming the header."""
    org = new_org(client)
    ids = seed_library(org)
    path = f"{org.base}/prompts/{ids['prompt']}"
    current = org.owner.get(path).headers["etag"]
    ok = org.owner.patch(path, json={"title": "Listed"}, headers={"If-Match": f'"1", {current}, W/"2"'})
    assert ok.status_code == 200, ok.text
    stale = org.owner.patch(path, json={"title": "Stale"}, headers={"If-Match": f'"1", {current}'})
    assert stale.status_code == 412 and "not 1, " in stale.json()["detail"]
    bad = org.owner.patch(path, json={"title": "Bad"}, headers={"If-Match": '"1", "x"'})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "header.If-Match"
    huge = org.owner.patch(path, json={"title": "Huge"}, headers={"If-Match": '"99999999999999999999"'})
    assert huge.status_code == 422
    assert org.owner.get(path).json()["title"] == "Listed"


def test_if_match_reads_entity_tags_strictly(client) -> None:  # type: ignore[no-untyped-def]
    """A quote left open (``"N`` or ``N"``) was read as the revision N, a weak tag matched although
    ``If-Match`` compares strongly, and ``"0N"`` matched revision N though tags compare as strings (found by
    QA): the first is 422 naming the header, the others never meet the condition (412). A revision without
    quotes is still taken."""
    org = new_org(client)
    ids = seed_library(org)
    path = f"{org.base}/prompts/{ids['prompt']}"

    def patch(if_match: str) -> int:
        revision = org.owner.get(path).json()["revision"]
        headers = {"If-Match": if_match.format(r=revision)}
        return int(org.owner.patch(path, json={"description": uuid.uuid4().hex}, headers=headers).status_code)

    assert [patch(f) for f in ('"{r}', '{r}"', '"{r}" junk', "W/{r}")] == [422] * 4
    assert patch('W/"{r}"') == 412
    revision = org.owner.get(path).json()["revision"]
    weak = org.owner.patch(path, json={"description": "w"}, headers={"If-Match": f'W/"{revision}"'}).json()
    assert weak["detail"].endswith('a weak one (W/...) never matches'), weak  # it read "not ; reload" (QA)
    assert patch('"0{r}"') == 412
    assert [patch(f) for f in ('"{r}"', "{r}", ' "{r}" ')] == [200] * 3
