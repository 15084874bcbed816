"""The sync check's figures kept by triggers (``sync_sums``, migration 0011) always equal the rows counted:
after every kind of write (REST, bulk, sync pushes with merges and remaps, deletes, purges), on both backends,
and the check answers from them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text

from outputhub.server.api.sync.feed import FEEDS
from outputhub.server.api.sync.service import counted_sums, kept_sums, purge_tombstones
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.server.storage.tables import REPLICATED_TABLES, SYNC_SUMS, Base, ReplicatedRow
from tests.support.client import Org, new_org, seed_library
from tests.sync.support import make_device


def sums(app: Any, org: Org) -> tuple[dict[int, tuple[int, int]] | None, dict[int, tuple[int, int]]]:
    """(kept, counted) for ``org``, read in one transaction."""
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        return kept_sums(session, org_id=uuid.UUID(org.id)), counted_sums(session, org_id=uuid.UUID(org.id))


def assert_kept(app: Any, org: Org) -> dict[int, tuple[int, int]]:
    kept, counted = sums(app, org)
    assert kept == counted
    return counted


def count_of(figures: dict[int, tuple[int, int]], table: str) -> int:
    return figures[[f.table.__tablename__ for f in FEEDS].index(table)][0]


def test_every_replicated_table_is_kept() -> None:
    tables = {
        mapper.class_.__tablename__
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, ReplicatedRow)
    }
    assert set(REPLICATED_TABLES) == tables == {f.table.__tablename__ for f in FEEDS}
    assert len(SYNC_SUMS.columns) == 1 + 2 * len(REPLICATED_TABLES)


def test_a_new_organization_starts_with_its_default_lookups_counted(app, client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client, name="Sums from the start")
    figures = assert_kept(app, org)
    assert count_of(figures, "accuracy_levels") > 0  # the defaults every organization gets
    assert count_of(figures, "outputs") == 0


def test_rest_bulk_and_sync_writes_deletes_and_purges_keep_the_figures(  # type: ignore[no-untyped-def]
    app, client, tmp_path: Path
) -> None:
    org = new_org(client, name="Sums of every write")
    ids = seed_library(org)
    assert_kept(app, org)
    o = org.owner
    assert o.patch(f"{org.base}/prompts/{ids['prompt']}", json={"title": "Renamed"}).status_code == 200
    made = o.post(
        f"{org.base}/outputs/bulk",
        json={"items": [{"prompt_id": ids["prompt"], "content": f"bulk {n}"} for n in range(30)]},
    )
    assert made.status_code == 201, made.text
    assert_kept(app, org)
    bulk_ids = [item["id"] for item in made.json()["items"]]
    for ident in bulk_ids[:10]:
        assert o.delete(f"{org.base}/outputs/{ident}").status_code == 204
    assert_kept(app, org)

    # through sync: creates (the bulk path), edits, deletes, and a lookup created twice offline (merged)
    laptop, desktop = (
        make_device(tmp_path, name, http=client, base_url="", token=o.token, org_id=org.id)
        for name in ("laptop", "desktop")
    )
    try:
        laptop.sync()
        desktop.sync()
        for device in (laptop, desktop):
            device.library.create("tag", {"name": "offline twice"})
        for n in range(5):
            laptop.library.create("output", {"prompt_id": ids["prompt"], "content": f"synced {n}"})
        laptop.library.edit("prompt", ids["prompt"], {"title": "From the laptop"})
        desktop.library.delete("output", bulk_ids[20])
        laptop.sync()
        desktop.sync()
        laptop.sync()
        assert laptop.values() == desktop.values()
        assert laptop.sync().checksum_ok is True
    finally:
        laptop.replica.close()
        desktop.replica.close()
    assert_kept(app, org)

    # a purge hard-deletes tombstones (and the link rows go by cascade)
    before = assert_kept(app, org)
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        purged = purge_tombstones(session, org_id=uuid.UUID(org.id), before=datetime.now(UTC) + timedelta(1))
    assert purged.records >= 11
    after = assert_kept(app, org)
    assert count_of(after, "outputs") < count_of(before, "outputs")

    # the check answers from the kept figures, and a full check (counted) agrees with them
    quick = o.get(f"{org.base}/sync/checksums").json()
    full = o.get(f"{org.base}/sync/checksums", params={"full": "true"}).json()
    for name, table in quick["tables"].items():
        assert (table["count"], table["revision_sum"]) == (
            full["tables"][name]["count"],
            full["tables"][name]["revision_sum"],
        )
    assert quick["tables"]["outputs"]["count"] == count_of(after, "outputs")


def test_a_refused_write_changes_no_figure(app, client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client, name="Sums of a refused write")
    ids = seed_library(org)
    before = assert_kept(app, org)
    # the first item is fine, the second refers to a prompt that does not exist: nothing is written
    bad = org.owner.post(
        f"{org.base}/outputs/bulk",
        json={
            "items": [
                {"prompt_id": ids["prompt"], "content": "fine"},
                {"prompt_id": str(uuid.uuid4()), "content": "refused"},
            ]
        },
    )
    assert 400 <= bad.status_code < 500
    assert assert_kept(app, org) == before


def test_a_deleted_organization_takes_its_figures_along(app, client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client, name="Sums deleted")
    seed_library(org)
    other = new_org(client, name="Sums kept")
    seed_library(other)
    assert org.owner.delete(org.base).status_code == 204
    with unit_of_work(app.state.services.session_factory) as session:
        rows = session.execute(
            select(SYNC_SUMS.c.org_id).where(SYNC_SUMS.c.org_id == uuid.UUID(org.id))
        ).all()
    assert rows == []
    assert_kept(app, other)


OPS = st.lists(
    st.sampled_from(["prompt", "output", "bulk", "edit", "delete-output", "delete-prompt", "tag", "purge"]),
    min_size=1,
    max_size=10,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_any_sequence_of_writes_keeps_the_figures(app, client, ops: list[str]) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client, name="Sums of random writes")
    o = org.owner
    prompts: list[str] = []
    outputs: list[str] = []
    for op in ops:
        if op == "prompt" or (not prompts and op in {"output", "bulk", "edit", "delete-prompt"}):
            made = o.post(f"{org.base}/prompts", json={"title": "P", "body": "b"})
            assert made.status_code == 201, made.text
            prompts.append(made.json()["id"])
        elif op == "output":
            made = o.post(f"{org.base}/outputs", json={"prompt_id": prompts[-1], "content": "c"})
            assert made.status_code == 201, made.text
            outputs.append(made.json()["id"])
        elif op == "bulk":
            items = [{"prompt_id": prompts[-1], "content": f"c{n}"} for n in range(3)]
            made = o.post(f"{org.base}/outputs/bulk", json={"items": items})
            assert made.status_code == 201, made.text
            outputs.extend(item["id"] for item in made.json()["items"])
        elif op == "edit":
            assert o.patch(f"{org.base}/prompts/{prompts[0]}", json={"title": "E"}).status_code == 200
        elif op == "delete-output" and outputs:
            assert o.delete(f"{org.base}/outputs/{outputs.pop()}").status_code == 204
        elif op == "delete-prompt":
            gone = o.delete(f"{org.base}/prompts/{prompts[-1]}")  # 204, or 409 while outputs refer to it
            assert gone.status_code in (204, 409), gone.text
            if gone.status_code == 204:
                prompts.pop()
        elif op == "tag":
            assert o.post(f"{org.base}/tags", json={"name": f"t{uuid.uuid4().hex[:8]}"}).status_code == 201
        elif op == "purge":
            with unit_of_work(app.state.services.session_factory) as session:
                set_tenant(session, org_id=uuid.UUID(org.id))
                purge_tombstones(session, org_id=uuid.UUID(org.id), before=datetime.now(UTC) + timedelta(1))
        assert_kept(app, org)


def test_upgrading_counts_the_records_written_before_the_figures_were_kept(app, client) -> None:  # type: ignore[no-untyped-def]
    """Migration 0011 creates every organization's row from its records: simulated by taking the schema back
    to 0010 (no figures, no triggers), writing, and upgrading again."""
    from alembic import command

    from outputhub.server.storage import migrate

    org = new_org(client, name="Sums after an upgrade")
    ids = seed_library(org)
    engine = app.state.services.engine
    cfg = migrate.alembic_config()
    # logins need the columns of 0012 (after 0011): kept while the schema is back at 0010
    login_columns = ("rotation INTEGER NOT NULL DEFAULT 0", "rotation_seen BOOLEAN NOT NULL DEFAULT true")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0010")
        for column in login_columns:
            conn.execute(text(f"ALTER TABLE auth_sessions ADD COLUMN {column}"))
    try:
        made = org.owner.post(
            f"{org.base}/outputs/bulk",
            json={"items": [{"prompt_id": ids["prompt"], "content": f"before {n}"} for n in range(7)]},
        )
        assert made.status_code == 201, made.text
        assert org.owner.delete(f"{org.base}/outputs/{made.json()['items'][0]['id']}").status_code == 204
    finally:
        with engine.begin() as conn:
            for column in login_columns:
                conn.execute(text(f"ALTER TABLE auth_sessions DROP COLUMN {column.split()[0]}"))
        migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    counted = assert_kept(app, org)
    check = org.owner.get(f"{org.base}/sync/checksums").json()
    assert count_of(counted, "outputs") == check["tables"]["outputs"]["count"] == 8  # the seeded one and 7


def test_an_organization_without_its_row_is_counted(app, client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client, name="Sums row lost")
    seed_library(org)
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        session.execute(delete(SYNC_SUMS).where(SYNC_SUMS.c.org_id == uuid.UUID(org.id)))
    assert sums(app, org)[0] is None
    check = org.owner.get(f"{org.base}/sync/checksums").json()
    counted = sums(app, org)[1]
    assert check["tables"]["outputs"]["count"] == count_of(counted, "outputs") == 1
    assert check["tables"]["prompts"]["count"] == count_of(counted, "prompts") == 1
