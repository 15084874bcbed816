"""The audit log: every mutation recorded, append-only, readable by owners and admins with filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.client import add_member, api_key_actor, new_org, seed_library


@pytest.fixture(params=["embedded", "mongo"])
def docs_client(request, backend):
    return request.getfixturevalue("client" if request.param == "embedded" else "mongo_client")


def audit(who, org, **params):
    r = who.get(f"{org.base}/audit", params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_every_kind_of_mutation_is_recorded_with_who_and_what(docs_client):
    org = new_org(docs_client)
    ids = seed_library(org)
    o = org.owner
    pid = ids["prompt"]
    assert o.patch(f"{org.base}/prompts/{pid}", json={"title": "Renamed"}).status_code == 200
    tag = o.post(f"{org.base}/tags", json={"name": "temp"}).json()["id"]
    assert o.patch(f"{org.base}/tags/{tag}", json={"name": "temp2"}).status_code == 200
    assert o.delete(f"{org.base}/tags/{tag}").status_code == 204
    assert o.patch(f"{org.base}/outputs/{ids['output']}", json={"notes": "checked"}).status_code == 200
    assert o.patch(f"{org.base}/custom-gpts/{ids['custom_gpt']}", json={"name": "Coder 2"}).status_code == 200
    key = o.post(f"{org.base}/api-keys", json={"name": "ci", "scope": "write"}).json()
    assert o.patch(org.base, json={"name": "Acme 2"}).status_code == 200
    editor = add_member(org, "editor")

    kinds = {r["kind"] for r in audit(o, org)}
    assert {
        "org.created",
        "org.updated",
        "accuracy_level.created",  # the seeded defaults
        "tag.created",
        "tag.updated",
        "tag.deleted",
        "custom_gpt.created",
        "custom_gpt.updated",
        "prompt.created",
        "prompt.updated",
        "output.created",
        "output.updated",
        "api_key.created",
        "invitation.created",
        "invitation.accepted",
        "member.added",
    } <= kinds

    [renamed] = audit(o, org, kind="prompt.updated", entity_id=pid)
    assert renamed["entity"] == "prompt" and renamed["actor"] == f"user:{o.user_id}"
    assert renamed["before"] == {"title": "Linux Terminal", "version": 1}
    assert renamed["after"] == {"title": "Renamed", "version": 2}
    assert renamed["source"] == "api" and renamed["device"] is None and renamed["merge"] is None
    assert renamed["revision"] is not None
    arrived = datetime.fromisoformat(renamed["arrived_at"])
    assert abs(arrived - datetime.now(UTC)) < timedelta(minutes=5)

    [note] = audit(o, org, kind="output.updated")
    assert note["before"] == {"notes": ""} and note["after"] == {"notes": "checked"}
    [added] = audit(o, org, kind="member.added")
    assert added["entity_id"] == editor.user_id and added["after"]["role"] == "editor"

    # an API key is the actor of what it does
    bot = api_key_actor(docs_client, key["key"])
    out = bot.post(f"{org.base}/outputs", json={"prompt_id": pid, "content": "by key"}).json()
    [by_key] = audit(o, org, entity_id=out["id"])
    assert by_key["actor"] == f"apikey:{key['id']}" and by_key["kind"] == "output.created"
    assert by_key["after"]["content"] == "by key"

    # deleting a prompt with its outputs records the deletion
    assert o.delete(f"{org.base}/prompts/{pid}", params={"cascade": "true"}).status_code == 204
    [gone] = audit(o, org, kind="prompt.deleted")
    assert gone["before"]["title"] == "Renamed" and gone["details"]["outputs_deleted"] == 2


def test_filters_and_cursor_paging(docs_client):
    org = new_org(docs_client)
    o = org.owner
    admin = add_member(org, "admin")
    for i in range(7):
        o.post(f"{org.base}/tags", json={"name": f"owner-{i}"})
        admin.post(f"{org.base}/tags", json={"name": f"admin-{i}"})
    everything = audit(o, org)
    # compared as times: a timestamp on a whole second is written without a fraction ("...:33Z"), which sorts
    # after "...:33.157000Z" as text
    arrived = [datetime.fromisoformat(r["arrived_at"]) for r in everything]
    assert arrived == sorted(arrived, reverse=True)  # newest first

    by_admin = audit(o, org, actor=f"user:{admin.user_id}", kind="tag.created")
    assert len(by_admin) == 7 and {r["after"]["name"] for r in by_admin} == {f"admin-{i}" for i in range(7)}
    assert len(audit(o, org, entity="tag")) == 14
    assert audit(o, org, source="sync") == []

    # pages of 4: every record once, in order
    seen, cursor = [], None
    while True:
        params = {"entity": "tag", "limit": 4, **({"cursor": cursor} if cursor else {})}
        page = o.get(f"{org.base}/audit", params=params).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [r["id"] for r in audit(o, org, entity="tag")]
    assert len(set(seen)) == 14

    # time window: from inclusive, to exclusive
    first = datetime.fromisoformat(everything[-1]["arrived_at"])
    assert audit(o, org, to=first.isoformat()) == []
    assert len(audit(o, org, **{"from": first.isoformat()})) == len(everything)
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert audit(o, org, **{"from": future}) == []

    bad = o.get(f"{org.base}/audit", params={"cursor": "garbage"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.cursor"
    bad = o.get(f"{org.base}/audit", params={"from": future, "to": first.isoformat()})
    assert bad.status_code == 422


def test_only_owners_and_admins_read_the_audit_log(docs_client):
    org = new_org(docs_client)
    assert org.owner.get(f"{org.base}/audit").status_code == 200
    assert add_member(org, "admin").get(f"{org.base}/audit").status_code == 200
    for role in ("editor", "viewer"):
        r = add_member(org, role).get(f"{org.base}/audit")
        assert r.status_code == 403, role
        assert "may not view audit" in r.json()["detail"]
    for scope in ("read", "write"):
        key = org.owner.post(f"{org.base}/api-keys", json={"name": scope, "scope": scope}).json()["key"]
        assert api_key_actor(docs_client, key).get(f"{org.base}/audit").status_code == 403


def test_another_organizations_audit_log_is_not_found(docs_client):
    a = new_org(docs_client, name="A")
    b = new_org(docs_client, name="B")
    r = b.owner.get(f"{a.base}/audit")
    assert r.status_code == 404
    # and B's own log holds nothing of A's
    assert {x["entity_id"] for x in audit(b.owner, b)}.isdisjoint({a.id})


def test_the_audit_log_is_append_only(docs_client):
    org = new_org(docs_client)
    record = audit(org.owner, org)[0]
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert org.owner.request(method, f"{org.base}/audit").status_code == 405
        assert org.owner.request(method, f"{org.base}/audit/{record['id']}").status_code in (404, 405)
    assert audit(org.owner, org)[0] == record


def test_a_failed_audit_write_stays_in_the_outbox_and_is_delivered_later(docs_client):
    """Durability: the events are in the outbox table from the commit on; a handler failure keeps them."""
    services = docs_client.app.state.services
    org = new_org(docs_client)
    store = services.document_store()
    original_insert = store.insert
    calls = {"n": 0}

    def failing_insert(collection, docs, **kw):
        if collection == "audit":
            calls["n"] += 1
            from outputhub.common.errors import StorageError

            raise StorageError("document store: unavailable (simulated outage)")
        return original_insert(collection, docs, **kw)

    def failing_joined(session, collection, docs):
        if collection == "audit":
            calls["joined"] = calls.get("joined", 0) + 1
            from outputhub.common.errors import StorageError

            raise StorageError("document store: unavailable (simulated outage)")
        return original_joined(session, collection, docs)

    # the embedded store's records are written in the shared after-commit transaction first; when that
    # fails, each handler runs again on its own (store.insert)
    original_joined = getattr(store, "insert_joined", None)
    store.insert = failing_insert  # an outage of the audit store, for this one request
    if original_joined is not None:
        store.insert_joined = failing_joined
    try:
        r = org.owner.post(f"{org.base}/tags", json={"name": "during-outage"})
    finally:
        del store.insert
        if original_joined is not None:
            del store.insert_joined
    assert r.status_code == 201 and calls["n"] == 1  # the request itself succeeded
    assert calls.get("joined", 0) == (1 if original_joined is not None else 0)
    assert audit(org.owner, org, kind="tag.created") == []
    assert services.outbox.drain(services.event_handlers) >= 1
    [rec] = audit(org.owner, org, kind="tag.created")
    assert rec["entity_id"] == r.json()["id"]
    # delivered once even if drained again
    services.outbox.drain(services.event_handlers)
    assert len(audit(org.owner, org, kind="tag.created")) == 1


def test_webhook_changes_are_audited_without_their_secrets_and_never_sent_to_webhooks(docs_client):
    org = new_org(docs_client)
    o = org.owner
    watcher = o.post(f"{org.base}/webhooks", json={"url": "https://hooks.example.invalid/all"}).json()
    made = o.post(
        f"{org.base}/webhooks", json={"url": "https://hooks.example.invalid/a", "event_types": ["*"]}
    )
    assert made.status_code == 201, made.text
    hook = made.json()
    moved = o.patch(f"{org.base}/webhooks/{hook['id']}", json={"url": "https://elsewhere.example.invalid/x"})
    assert moved.status_code == 200, moved.text
    assert o.post(f"{org.base}/webhooks/{hook['id']}/rotate-secret").status_code == 200
    assert o.delete(f"{org.base}/webhooks/{hook['id']}").status_code == 204

    records = audit(o, org, entity="webhook")
    assert [r["kind"] for r in reversed(records)] == [
        "webhook.created",
        "webhook.created",
        "webhook.updated",
        "webhook.secret_rotated",
        "webhook.deleted",
    ]
    [updated] = [r for r in records if r["kind"] == "webhook.updated"]
    assert updated["before"] == {"url": "https://hooks.example.invalid/a"}
    assert updated["after"] == {"url": "https://elsewhere.example.invalid/x"}
    assert updated["actor"] == f"user:{o.user_id}" and updated["entity_id"] == hook["id"]
    assert "whsec_" not in str(records), "a secret reached the audit log"
    sent = o.get(f"{org.base}/webhooks/{watcher['id']}/deliveries").json()
    assert not any(d["event_type"].startswith("webhook.") for d in sent)
