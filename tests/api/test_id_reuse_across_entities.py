"""A client-chosen id already held by a record of another entity type in the same organization is refused
with 409 naming the id field, and nothing is written (the same answer as an id used in another organization).

Every replicated record has one sync state per (organization, id), whatever its entity, so two records of
different types sharing an id would share (and overwrite) one state: before this was checked, an output with
a prompt's id failed at commit with a 500, and a knowledge type with a tag's id was accepted (201) and took
over the tag's state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from outputhub.server.storage.tables import Tag
from tests.support.client import Org, new_org, seed_library

Body = Callable[[dict[str, str]], dict[str, Any]]

CASES: list[tuple[str, str, Body, str]] = [
    # (path of the create, whose id it reuses, the body without the id, path to read the new record under)
    ("/outputs", "prompt", lambda ids: {"prompt_id": ids["prompt"], "content": "x"}, "/outputs"),
    ("/outputs", "tag", lambda ids: {"prompt_id": ids["prompt"], "content": "x"}, "/outputs"),
    ("/prompts", "output", lambda ids: {"title": "t", "body": "b"}, "/prompts"),
    ("/prompts", "tag", lambda ids: {"title": "t", "body": "b"}, "/prompts"),
    ("/custom-gpts", "prompt", lambda ids: {"name": "collide"}, "/custom-gpts"),
    ("/tags", "custom_gpt", lambda ids: {"name": "collide"}, "/tags"),
    ("/tags", "knowledge", lambda ids: {"name": "collide"}, "/tags"),
    ("/knowledge-types", "tag", lambda ids: {"name": "collide"}, "/knowledge-types"),
    ("/accuracy-levels", "stage", lambda ids: {"name": "collide"}, "/accuracy-levels"),
    ("/gpt-models", "agent_group", lambda ids: {"name": "collide"}, "/gpt-models"),
]

READ_PATHS = {
    "prompt": "/prompts",
    "output": "/outputs",
    "tag": "/tags",
    "custom_gpt": "/custom-gpts",
    "knowledge": "/knowledge-types",
    "stage": "/development-stages",
    "agent_group": "/agent-groups",
}


@pytest.fixture(scope="module")
def world(client: Any) -> tuple[Org, dict[str, str]]:
    org = new_org(client)
    return org, seed_library(org)


def _count(org: Org, path: str) -> int:
    r = org.owner.get(f"{org.base}{path}", params={"limit": 500})
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


@pytest.mark.parametrize(("path", "owner", "body", "read"), CASES, ids=[f"{c[0]}<-{c[1]}" for c in CASES])
def test_create_with_an_id_of_another_entity_is_409(
    world: tuple[Org, dict[str, str]], path: str, owner: str, body: Body, read: str
) -> None:
    org, ids = world
    taken = ids[owner]
    before = _count(org, read)
    r = org.owner.post(f"{org.base}{path}", json={**body(ids), "id": taken})
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == ["body.id"]
    # nothing written: no new record, the owner of the id untouched
    assert org.owner.get(f"{org.base}{read}/{taken}").status_code == 404
    assert _count(org, read) == before
    kept = org.owner.get(f"{org.base}{READ_PATHS[owner]}/{taken}")
    assert kept.status_code == 200, kept.text
    assert kept.json()["id"] == taken


def test_bulk_outputs_with_an_id_of_another_entity_is_409_naming_the_item(
    world: tuple[Org, dict[str, str]],
) -> None:
    org, ids = world
    before = _count(org, "/outputs")
    r = org.owner.post(
        f"{org.base}/outputs/bulk",
        json={
            "items": [
                {"prompt_id": ids["prompt"], "content": "fine"},
                {"id": ids["tag"], "prompt_id": ids["prompt"], "content": "x"},
            ]
        },
    )
    assert r.status_code == 409, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["body.items.1.id"]
    assert _count(org, "/outputs") == before  # all or none
    assert org.owner.get(f"{org.base}/tags/{ids['tag']}").json()["name"] == "python"
    # the next request (the same keep-alive connection for a real client) is answered normally
    assert org.owner.get(f"{org.base}/tags").status_code == 200


def test_an_id_of_another_organization_gets_the_same_answer(
    client: Any, world: tuple[Org, dict[str, str]]
) -> None:
    """The answer the reuse of an id across entity types now shares: an id of the same type elsewhere."""
    _, ids = world
    other = new_org(client, name="Other")
    r = other.owner.post(f"{other.base}/prompts", json={"id": ids["prompt"], "title": "t", "body": "b"})
    assert r.status_code == 409, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["body.id"]
    r = other.owner.post(f"{other.base}/tags", json={"id": ids["tag"], "name": "k"})
    assert r.status_code == 409, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["body.id"]


def test_the_record_keeps_its_sync_state(world: tuple[Org, dict[str, str]]) -> None:
    """After a refused reuse the record still syncs as what it is (its state was not taken over)."""
    org, ids = world
    r = org.owner.post(f"{org.base}/knowledge-types", json={"id": ids["tag"], "name": "kt-collide"})
    assert r.status_code == 409, r.text
    records: list[dict[str, Any]] = []
    since = 0
    while True:
        r = org.owner.get(f"{org.base}/sync/changes", params={"protocol": 1, "since": since, "limit": 1000})
        assert r.status_code == 200, r.text
        page = r.json()
        records += page["records"]
        since = page["next_since"]
        if not page["has_more"]:
            break
    mine = [x for x in records if x["id"] == ids["tag"]]
    assert [(x["entity"], x["data"]["name"]) for x in mine] == [("tags", "python")], mine


def test_a_failing_commit_is_the_answer_and_writes_nothing(
    app: Any, world: tuple[Org, dict[str, str]]
) -> None:
    """The request's transaction commits before its response is sent (``SessionDep`` is function-scoped):
    a commit that fails is what the client is answered, never a 201 for a record that is not there."""
    org, _ = world
    factory = app.state.services.session_factory

    def fail(session: Session) -> None:
        if session.execute(select(Tag.id).where(Tag.name == "commit-fails")).first() is not None:
            raise RuntimeError("the commit failed")

    event.listen(factory, "before_commit", fail)
    try:
        # not entered as a context: that would run the shared app's shutdown (stopping its job workers)
        raw = TestClient(app, raise_server_exceptions=False)
        r = raw.post(f"{org.base}/tags", headers=org.owner.headers, json={"name": "commit-fails"})
    finally:
        event.remove(factory, "before_commit", fail)
    assert r.status_code == 500, r.text
    names = [t["name"] for t in org.owner.get(f"{org.base}/tags", params={"limit": 500}).json()["items"]]
    assert "commit-fails" not in names
