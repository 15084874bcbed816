"""Schema versions: numbered migrations, upgrading old replicas, refusing newer ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from replica_support import PASSPHRASE, output, prompt, snapshot

from outputhub.desktop.storage import (
    Migration,
    Replica,
    ReplicaMigrationError,
    ReplicaTooNewError,
    load_migrations,
    open_replica,
)
from outputhub.desktop.storage.migrations import check_sequence

SHIPPED = load_migrations()
V1 = SHIPPED[:1]
LATEST = len(SHIPPED)
ADD_COLUMN = Migration(
    len(SHIPPED) + 1,
    "outputs_rating",
    "ALTER TABLE outputs ADD COLUMN rating INTEGER NOT NULL DEFAULT 3;\n"
    "CREATE TABLE rating_log (id INTEGER PRIMARY KEY, output_id TEXT NOT NULL);",
)


def test_shipped_migrations_are_numbered_from_one() -> None:
    assert [m.version for m in SHIPPED] == list(range(1, len(SHIPPED) + 1))
    assert SHIPPED[0].name == "initial"
    for migration in SHIPPED:
        assert "COMMIT" not in migration.sql.upper()  # each migration runs inside the runner's transaction


def test_gaps_in_numbering_are_rejected() -> None:
    with pytest.raises(ValueError, match="expected 2"):
        check_sequence((Migration(1, "a", ""), Migration(3, "c", "")))


def test_new_replica_is_at_the_latest_version(tmp_path: Path) -> None:
    with open_replica(tmp_path / "r.db", passphrase=PASSPHRASE, create=True) as replica:
        assert replica.schema_version == len(SHIPPED)
        assert replica.verify_integrity() == []


def test_old_replica_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    record = prompt(title="made at version 1")
    with open_replica(path, passphrase=PASSPHRASE, create=True, migrations=V1) as replica:
        assert replica.schema_version == 1
        replica.upsert_prompt(record=record)
        replica.upsert_output(record=output(record.id, content="made before the upgrade"))
        node_id = replica.node_base
    with open_replica(path, passphrase=PASSPHRASE, migrations=(*SHIPPED, ADD_COLUMN)) as replica:
        assert replica.schema_version == LATEST + 1
        assert replica.node_base == node_id
        assert replica.get_prompt(id=record.id) == record
        assert [hit.entity for hit in replica.search("upgrade")] == ["output"]
        with replica.transaction():
            pass
    # the new column exists with its default, read through a fresh open at the new version
    with open_replica(path, passphrase=PASSPHRASE, migrations=(*SHIPPED, ADD_COLUMN)) as replica:
        assert replica.schema_version == LATEST + 1
        assert replica.verify_integrity() == []


def test_failed_migration_rolls_back_and_keeps_the_version(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    record = prompt()
    with open_replica(path, passphrase=PASSPHRASE, create=True) as replica:
        replica.upsert_prompt(record=record)
    broken = Migration(
        LATEST + 1, "broken", "CREATE TABLE half_done (x INTEGER);\nSELECT * FROM no_such_table;"
    )
    with pytest.raises(ReplicaMigrationError, match=f"stays at version {LATEST}"):
        open_replica(path, passphrase=PASSPHRASE, migrations=(*SHIPPED, broken))
    with open_replica(path, passphrase=PASSPHRASE, migrations=(*SHIPPED, ADD_COLUMN)) as replica:
        assert replica.schema_version == LATEST + 1  # half_done was rolled back: the real step applies
        assert replica.get_prompt(id=record.id) == record


def test_a_new_replica_whose_schema_fails_is_not_left_at_its_path(tmp_path: Path) -> None:
    """The schema was built after the new file was moved into place: a full disk (or a kill) at that point
    left a version-0 file at the real path, which ``init`` then refused as existing (QA). It is built on the
    file under its temporary name now, and a failure leaves nothing."""
    path = tmp_path / "new" / "r.db"
    broken = Migration(LATEST + 1, "broken", "SELECT * FROM no_such_table;")
    with pytest.raises(ReplicaMigrationError):
        open_replica(path, passphrase=PASSPHRASE, create=True, migrations=(*SHIPPED, broken))
    assert list(path.parent.iterdir()) == []
    with open_replica(path, passphrase=PASSPHRASE, create=True) as replica:
        assert replica.schema_version == LATEST


def test_replica_from_a_newer_app_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with open_replica(path, passphrase=PASSPHRASE, create=True, migrations=(*SHIPPED, ADD_COLUMN)):
        pass
    before = snapshot(tmp_path)
    with pytest.raises(ReplicaTooNewError, match="update the app") as caught:
        open_replica(path, passphrase=PASSPHRASE, migrations=SHIPPED)
    assert (caught.value.found, caught.value.supported) == (LATEST + 1, LATEST)
    assert snapshot(tmp_path) == before


def test_version_1_replica_gets_the_search_tombstone_indexes(tmp_path: Path) -> None:
    """0002 indexes the tombstones of a replica made at version 1; search and counts leave them out."""
    path = tmp_path / "r.db"
    parent = prompt(title="made at version 1")
    live = output(parent.id, content="an ibis by the river")
    dead = output(parent.id, content="an ibis in the mud")
    with open_replica(path, passphrase=PASSPHRASE, create=True, migrations=V1) as replica:
        replica.upsert_prompt(record=parent)
        replica.bulk_insert_outputs([live, dead])
        replica.delete_output(id=dead.id)
    with open_replica(path, passphrase=PASSPHRASE) as replica:
        assert replica.schema_version == LATEST
        assert [hit.id for hit in replica.search("ibis")] == [live.id]
        assert replica.count_output_matches("ibis").count == 1
        assert replica.verify_integrity() == []


def _indexes(replica: Replica) -> set[str]:
    with replica.reading("list the indexes") as conn:
        return {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def test_version_5_drops_the_per_organization_indexes_and_lists_stay_indexed(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with open_replica(path, passphrase=PASSPHRASE, create=True, migrations=SHIPPED[:4]) as replica:
        assert "outputs_org_updated" in _indexes(replica)
    with open_replica(path, passphrase=PASSPHRASE) as replica:
        assert replica.schema_version >= 5
        assert not {name for name in _indexes(replica) if name.endswith("_org_updated")}
        with replica.reading("plan a list") as conn:
            for table in ("prompts", "outputs"):
                # the list page's inner query (tables.list_rows), ordered by the last change
                plan = " ".join(
                    str(r[3])
                    for r in conn.execute(
                        f"EXPLAIN QUERY PLAN SELECT seq FROM {table} WHERE deleted = 0 "
                        "ORDER BY updated_at DESC, seq DESC LIMIT 50 OFFSET 0"
                    )
                )
                assert f"{table}_updated" in plan and "TEMP B-TREE" not in plan, plan
                # the check after a sync reads the revisions from their index, not the wide rows
                plan = " ".join(
                    str(r[3])
                    for r in conn.execute(
                        f"EXPLAIN QUERY PLAN SELECT count(*), sum(revision) FROM {table} "
                        "WHERE revision IS NOT NULL"
                    )
                )
                assert f"COVERING INDEX {table}_revision" in plan, plan
