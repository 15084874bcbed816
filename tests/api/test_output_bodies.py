"""Output bodies (transcript, token usage, metadata) in the document store: embedded and MongoDB, on each
SQL backend."""

from __future__ import annotations

import uuid

import pytest

from tests.support.client import add_member, new_org, seed_library

BODY = {
    "transcript": [
        {"role": "system", "content": "You are a terminal."},
        {"role": "user", "content": "pwd"},
        {"role": "assistant", "content": "/home/user", "name": "coder"},
    ],
    "token_usage": {"prompt_tokens": 12, "completion_tokens": 3},
    "metadata": {"integration": "zapier", "run": {"id": 42, "tags": ["a", "b"], "ok": True, "score": 0.5}},
}


@pytest.fixture(params=["embedded", "mongo"])
def docs_client(request, backend):
    return request.getfixturevalue("client" if request.param == "embedded" else "mongo_client")


def test_a_body_is_stored_as_a_document_and_read_back(docs_client):
    org = new_org(docs_client)
    ids = seed_library(org)
    o = org.owner
    r = o.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "/home/user", **BODY})
    assert r.status_code == 201, r.text
    out = r.json()
    assert "transcript" not in out  # the row's read shape is unchanged
    body = o.get(f"{org.base}/outputs/{out['id']}/body")
    assert body.status_code == 200, body.text
    b = body.json()
    kind = docs_client.app.state.services.document_store().kind
    assert b["stored_in"] == kind
    assert b["content"] == "/home/user"
    assert b["transcript"] == [
        {"role": "system", "content": "You are a terminal.", "name": None},
        {"role": "user", "content": "pwd", "name": None},
        {"role": "assistant", "content": "/home/user", "name": "coder"},
    ]
    assert b["token_usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    assert b["metadata"] == BODY["metadata"]
    # the content stays searchable in SQL
    found = o.get(f"{org.base}/outputs", params={"q": "home/user"}).json()["items"]
    assert out["id"] in {x["id"] for x in found}
    # a viewer reads bodies too
    viewer = add_member(org, "viewer")
    assert viewer.get(f"{org.base}/outputs/{out['id']}/body").status_code == 200


def test_an_output_without_a_body_has_none(docs_client):
    org = new_org(docs_client)
    ids = seed_library(org)
    r = org.owner.get(f"{org.base}/outputs/{ids['output']}/body")
    assert r.status_code == 404
    assert r.json()["title"] == "Not found"


def test_bulk_create_stores_the_bodies_of_the_items_that_have_one(docs_client):
    org = new_org(docs_client)
    ids = seed_library(org)
    items = [
        {"prompt_id": ids["prompt"], "content": f"out {i}", **({"metadata": {"i": i}} if i % 2 else {})}
        for i in range(6)
    ]
    r = org.owner.post(f"{org.base}/outputs/bulk", json={"items": items})
    assert r.status_code == 201, r.text
    created = r.json()["items"]
    for i, out in enumerate(created):
        body = org.owner.get(f"{org.base}/outputs/{out['id']}/body")
        if i % 2:
            assert body.status_code == 200 and body.json()["metadata"] == {"i": i}
        else:
            assert body.status_code == 404


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"metadata": {"blob": "x" * 70_000}}, "body.metadata"),
        ({"metadata": {"$where": 1}}, "body.metadata"),
        ({"metadata": {"a.b": 1}}, "body.metadata"),
        ({"metadata": ["not", "an", "object"]}, "body.metadata"),
        ({"token_usage": {"prompt_tokens": -1, "completion_tokens": 0}}, "body.token_usage.prompt_tokens"),
        ({"transcript": [{"role": "", "content": "x"}]}, "body.transcript.0.role"),
        ({"transcript": [{"content": "x"}]}, "body.transcript.0.role"),
    ],
)
def test_bad_bodies_are_rejected_naming_the_field(client, extra, field):
    org = new_org(client)
    ids = seed_library(org)
    r = org.owner.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "x", **extra})
    assert r.status_code == 422, r.text
    assert field in {e["field"] for e in r.json()["errors"]}, r.json()


def test_a_bad_bulk_item_names_its_index_and_nothing_is_stored(docs_client):
    org = new_org(docs_client)
    ids = seed_library(org)
    good = {"prompt_id": ids["prompt"], "content": "ok", "metadata": {"k": 1}}
    bad = {"prompt_id": str(uuid.uuid4()), "content": "ok", "metadata": {"k": 2}}
    r = org.owner.post(f"{org.base}/outputs/bulk", json={"items": [good, bad]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.items.1.prompt_id"
    r = org.owner.post(f"{org.base}/outputs/bulk", json={"items": [good, {**good, "metadata": {"$x": 1}}]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"].startswith("body.items.1.metadata")


def test_an_existing_output_id_is_a_conflict_and_keeps_its_body(docs_client):
    org = new_org(docs_client)
    ids = seed_library(org)
    oid = str(uuid.uuid4())
    first = {"id": oid, "prompt_id": ids["prompt"], "content": "first", "metadata": {"v": 1}}
    assert org.owner.post(f"{org.base}/outputs", json=first).status_code == 201
    again = org.owner.post(f"{org.base}/outputs", json={**first, "metadata": {"v": 2}})
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "body.id"
    assert org.owner.get(f"{org.base}/outputs/{oid}/body").json()["metadata"] == {"v": 1}


def test_another_organizations_body_is_not_found(docs_client):
    a = new_org(docs_client, name="A")
    ids = seed_library(a)
    out = a.owner.post(
        f"{a.base}/outputs", json={"prompt_id": ids["prompt"], "content": "secret", **BODY}
    ).json()
    b = new_org(docs_client, name="B")
    assert b.owner.get(f"{b.base}/outputs/{out['id']}/body").status_code == 404
    assert b.owner.get(f"{a.base}/outputs/{out['id']}/body").status_code == 404
    # the store itself: organization B's id space does not reach A's document
    store = docs_client.app.state.services.document_store()
    assert store.get("output_bodies", org_id=uuid.UUID(b.id), doc_id=out["id"]) is None
    assert store.get("output_bodies", org_id=uuid.UUID(a.id), doc_id=out["id"]) is not None


def test_deleting_an_organization_removes_its_bodies(docs_client):
    org = new_org(docs_client)
    ids = seed_library(org)
    out = org.owner.post(
        f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "x", **BODY}
    ).json()
    store = docs_client.app.state.services.document_store()
    assert store.get("output_bodies", org_id=uuid.UUID(org.id), doc_id=out["id"]) is not None
    assert org.owner.delete(org.base).status_code == 204
    assert store.get("output_bodies", org_id=uuid.UUID(org.id), doc_id=out["id"]) is None
