"""The check after every sync: it describes what the database holds after every write and purge."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from outputhub.server.api.sync.service import purge_tombstones
from outputhub.server.storage.database import set_tenant, unit_of_work
from tests.support.client import new_org, seed_library


def test_the_check_follows_every_write_and_purge(app, client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client)
    ids = seed_library(org)
    url = f"{org.base}/sync/checksums"
    first = org.owner.get(url)
    assert first.status_code == 200
    outputs = first.json()["tables"]["outputs"]
    assert outputs["newest"] == f"{ids['output']}:{outputs['revision_sum']}"  # the only output

    made = org.owner.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "one more"})
    assert made.status_code == 201, made.text
    after_write = org.owner.get(url).json()
    assert after_write["tables"]["outputs"]["count"] == outputs["count"] + 1
    assert after_write["revision"] > first.json()["revision"]
    assert after_write["tables"]["outputs"]["newest"] == f"{made.json()['id']}:{made.json()['revision']}"

    assert org.owner.delete(f"{org.base}/outputs/{made.json()['id']}").status_code == 204
    deleted = org.owner.get(url).json()
    assert deleted["tables"]["outputs"]["count"] == outputs["count"] + 1  # a tombstone still counts
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        assert purge_tombstones(
            session, org_id=uuid.UUID(org.id), before=datetime.now(UTC) + timedelta(1)
        ).records
    purged = org.owner.get(url).json()
    assert purged["tables"]["outputs"]["count"] == outputs["count"]
    assert purged["tables"]["outputs"]["newest"] == outputs["newest"]
    full = org.owner.get(url, params={"full": "true"}).json()
    assert full["tables"]["outputs"]["digest"] and full["tables"] == {
        name: {**table, "digest": full["tables"][name]["digest"]} for name, table in purged["tables"].items()
    }


def test_organizations_never_share_a_check(client) -> None:  # type: ignore[no-untyped-def]
    one, two = new_org(client), new_org(client)
    seed_library(one)
    a = one.owner.get(f"{one.base}/sync/checksums").json()
    b = two.owner.get(f"{two.base}/sync/checksums").json()
    assert a["tables"]["prompts"]["count"] == 1 and b["tables"]["prompts"]["count"] == 0
