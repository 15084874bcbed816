"""The check after every sync: remembered per revision and purge horizon, never stale."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import event

from outputhub.server.api.sync.service import purge_tombstones
from outputhub.server.storage.database import set_tenant, unit_of_work
from tests.support.client import new_org, seed_library


@contextmanager
def sums_computed(app) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """The statements that compute the sums (or read them as the triggers keep them), while the block runs."""
    seen: list[str] = []

    def record(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "sum(revision)" in statement or "FROM sync_sums" in statement:
            seen.append(statement)

    engine = app.state.services.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_the_check_is_remembered_until_a_write_or_a_purge(app, client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client)
    ids = seed_library(org)
    url = f"{org.base}/sync/checksums"
    with sums_computed(app) as computed:
        first = org.owner.get(url)
        again = org.owner.get(url)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert len(computed) == 1  # the second answer came from the cache
    outputs = first.json()["tables"]["outputs"]

    made = org.owner.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "one more"})
    assert made.status_code == 201, made.text
    after_write = org.owner.get(url).json()
    assert after_write["tables"]["outputs"]["count"] == outputs["count"] + 1
    assert after_write["revision"] > first.json()["revision"]

    assert org.owner.delete(f"{org.base}/outputs/{made.json()['id']}").status_code == 204
    deleted = org.owner.get(url).json()
    assert deleted["tables"]["outputs"]["count"] == outputs["count"] + 1  # a tombstone still counts
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        assert purge_tombstones(
            session, org_id=uuid.UUID(org.id), before=datetime.now(UTC) + timedelta(1)
        ).records
    purged = org.owner.get(url).json()
    assert purged["tables"]["outputs"]["count"] == outputs["count"]  # the purge drew a revision: recomputed
    # a full check (with digests) is never cached
    with sums_computed(app) as computed:
        assert org.owner.get(url, params={"full": "true"}).json()["tables"]["outputs"]["digest"]
        org.owner.get(url, params={"full": "true"})
    assert len(computed) == 2


def test_organizations_never_share_a_check(client) -> None:  # type: ignore[no-untyped-def]
    one, two = new_org(client), new_org(client)
    seed_library(one)
    a = one.owner.get(f"{one.base}/sync/checksums").json()
    b = two.owner.get(f"{two.base}/sync/checksums").json()
    assert a["tables"]["prompts"]["count"] == 1 and b["tables"]["prompts"]["count"] == 0
