"""The repository API: round trips, filters, tombstones, transactions, sync bookkeeping, bulk inserts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from replica_support import ORG, PASSPHRASE, T0, new_id, output, prompt

from outputhub.desktop.storage import (
    CustomGptRecord,
    LocalStatus,
    LookupKind,
    LookupRecord,
    PromptVersionRecord,
    Replica,
    ReplicaError,
    open_replica,
)


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    with open_replica(tmp_path / "r.db", passphrase=PASSPHRASE, create=True) as opened:
        yield opened


def test_prompt_round_trip_with_every_field(replica: Replica) -> None:
    record = prompt(
        revision=12,
        local_status=LocalStatus.UPDATED,
        base={"title": "old", "revision": 12},
        field_clocks={"title": ["0000018f-0001", "node-a"]},
        description="desc",
        development_stage_id=new_id(),
        tag_ids=tuple(sorted([new_id(), new_id()])),
        version=3,
        created_by="ann",
        updated_by="bob",
    )
    replica.upsert_prompt(record=record)
    assert replica.get_prompt(id=record.id) == record
    assert replica.get_prompt(id=new_id()) is None


def test_upsert_replaces_fields_and_links(replica: Replica) -> None:
    tag_a, tag_b = new_id(), new_id()
    record = prompt(tag_ids=(tag_a,))
    replica.upsert_prompt(record=record)
    changed = dataclasses.replace(
        record, title="New title", tag_ids=(tag_b,), updated_at=T0 + timedelta(hours=1)
    )
    replica.upsert_prompt(record=changed)
    assert replica.get_prompt(id=record.id) == changed
    assert replica.list_prompts(tag_id=tag_a) == []
    assert replica.list_prompts(tag_id=tag_b) == [changed]


def test_upsert_writes_only_the_link_rows_that_change(replica: Replica) -> None:
    kept, dropped, added = sorted(new_id() for _ in range(3))
    record = prompt(tag_ids=tuple(sorted((kept, dropped))))
    unlinked = prompt()
    replica.upsert_prompt(record=record)
    replica.upsert_prompt(record=unlinked)
    conn = replica._require_open()

    def changes(written: object) -> int:
        before = conn.total_changes
        replica.upsert_prompt(record=written)  # type: ignore[arg-type]
        return conn.total_changes - before

    later = T0 + timedelta(hours=1)
    row_only = changes(dataclasses.replace(unlinked, updated_at=later))
    # the same edit of a record with links: no link row deleted or re-inserted
    assert changes(dataclasses.replace(record, updated_at=later)) == row_only
    changed = dataclasses.replace(record, tag_ids=tuple(sorted((kept, added))), updated_at=later)
    assert changes(changed) == row_only + 2  # the dropped link and the added one
    assert replica.get_prompt(id=record.id) == changed
    assert replica.list_prompts(tag_id=dropped) == []
    cleared = dataclasses.replace(changed, tag_ids=())
    replica.upsert_prompt(record=cleared)
    assert replica.get_prompt(id=record.id) == cleared
    assert replica.list_prompts(tag_id=kept) == []


def test_list_filters_order_and_paging(replica: Replica) -> None:
    stage, tag = new_id(), new_id()
    records = [
        prompt(
            title=f"p{i}", updated_at=T0 + timedelta(minutes=i), development_stage_id=stage if i % 2 else None
        )
        for i in range(10)
    ]
    records[3] = dataclasses.replace(records[3], tag_ids=(tag,), local_status=LocalStatus.SYNCED, revision=1)
    other_org = prompt(org_id=new_id(), title="elsewhere")
    for record in [*records, other_org]:
        replica.upsert_prompt(record=record)

    assert [p.title for p in replica.list_prompts(org_id=ORG)] == [f"p{i}" for i in range(10)]
    assert [p.title for p in replica.list_prompts(org_id=ORG, descending=True, limit=3)] == ["p9", "p8", "p7"]
    assert [p.title for p in replica.list_prompts(org_id=ORG, limit=3, offset=8)] == ["p8", "p9"]
    assert [p.title for p in replica.list_prompts(order_by="title", limit=1, descending=True)] == ["p9"]
    assert {p.title for p in replica.list_prompts(development_stage_id=stage)} == {
        "p1",
        "p3",
        "p5",
        "p7",
        "p9",
    }
    assert [p.title for p in replica.list_prompts(tag_id=tag)] == ["p3"]
    assert [p.title for p in replica.list_prompts(local_status=LocalStatus.SYNCED)] == ["p3"]
    assert len(replica.list_prompts()) == 11
    with pytest.raises(ValueError, match="cannot order"):
        replica.list_prompts(order_by="title; DROP TABLE prompts")


def test_tombstone_then_purge(replica: Replica) -> None:
    record = prompt(tag_ids=(new_id(),))
    replica.upsert_prompt(record=record)
    at = T0 + timedelta(days=1)
    assert replica.delete_prompt(id=record.id, at=at) is True
    tombstoned = replica.get_prompt(id=record.id)
    assert tombstoned is not None
    assert (tombstoned.deleted, tombstoned.local_status, tombstoned.updated_at) == (
        True,
        LocalStatus.DELETED,
        at,
    )
    assert replica.list_prompts() == []
    assert replica.list_prompts(include_deleted=True) == [tombstoned]
    assert replica.delete_prompt(id=record.id, purge=True) is True
    assert replica.get_prompt(id=record.id) is None
    assert replica.delete_prompt(id=record.id) is False


def test_prompt_versions(replica: Replica) -> None:
    parent = prompt()
    replica.upsert_prompt(record=parent)
    versions = [
        PromptVersionRecord(id=new_id(), org_id=ORG, prompt_id=parent.id, version=v, title=f"t{v}", body="b")
        for v in (2, 1)
    ]
    for version in versions:
        replica.upsert_prompt_version(record=version)
    assert [v.version for v in replica.list_prompt_versions(prompt_id=parent.id)] == [1, 2]


def test_output_round_trip_and_filters(replica: Replica) -> None:
    parent = prompt()
    replica.upsert_prompt(record=parent)
    tag, knowledge = new_id(), new_id()
    record = output(
        parent.id,
        notes="n",
        custom_gpt_id=new_id(),
        gpt_model_id=new_id(),
        accuracy_level_id=new_id(),
        produced_at=datetime.fromisoformat("2024-04-30T08:00:00+02:00"),
        tag_ids=(tag,),
        knowledge_type_ids=(knowledge,),
    )
    plain = output(parent.id)
    replica.upsert_output(record=record)
    replica.upsert_output(record=plain)
    found = replica.get_output(id=record.id)
    assert found == record
    assert found is not None and found.produced_at == record.produced_at
    assert {o.id for o in replica.list_outputs(prompt_id=parent.id)} == {record.id, plain.id}
    assert [o.id for o in replica.list_outputs(tag_id=tag)] == [record.id]
    assert [o.id for o in replica.list_outputs(knowledge_type_id=knowledge)] == [record.id]
    assert [o.id for o in replica.list_outputs(gpt_model_id=record.gpt_model_id)] == [record.id]
    assert [o.id for o in replica.list_outputs(accuracy_level_id=record.accuracy_level_id)] == [record.id]
    assert replica.delete_output(id=plain.id)
    assert [o.id for o in replica.list_outputs()] == [record.id]


def test_purging_an_output_removes_its_links(replica: Replica) -> None:
    tag = new_id()
    record = output(new_id(), tag_ids=(tag,))  # the prompt may arrive later: no foreign key on prompt_id
    replica.upsert_output(record=record)
    replica.delete_output(id=record.id, purge=True)
    replica.upsert_output(record=dataclasses.replace(record, tag_ids=()))
    assert replica.list_outputs(tag_id=tag) == []


def test_naive_timestamps_are_refused(replica: Replica) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        replica.upsert_prompt(record=prompt(created_at=datetime(2024, 1, 1)))


@pytest.mark.parametrize("kind", list(LookupKind))
def test_lookups_round_trip(replica: Replica, kind: LookupKind) -> None:
    extra: dict[str, object] = {}
    if kind is LookupKind.ACCURACY_LEVELS:
        extra = {"score": 80}
    if kind is LookupKind.GPT_MODELS:
        extra = {"provider": "openai"}
    records = [
        LookupRecord(id=new_id(), org_id=ORG, name=f"n{i}", description="d", position=5 - i, **extra)  # type: ignore[arg-type]
        for i in range(3)
    ]
    for record in records:
        replica.upsert_lookup(kind=kind, record=record)
    assert replica.get_lookup(kind=kind, id=records[0].id) == records[0]
    assert [r.name for r in replica.list_lookups(kind=kind)] == ["n2", "n1", "n0"]  # by position
    assert replica.delete_lookup(kind=kind, id=records[1].id)
    assert [r.name for r in replica.list_lookups(kind=kind, order_by="name")] == ["n0", "n2"]
    for other in LookupKind:
        if other is not kind:
            assert replica.list_lookups(kind=other) == []


def test_lookup_extras_belong_to_their_kind(replica: Replica) -> None:
    with pytest.raises(ValueError, match="score"):
        replica.upsert_lookup(
            kind=LookupKind.TAGS, record=LookupRecord(id=new_id(), org_id=ORG, name="x", score=1)
        )
    level = LookupRecord(id=new_id(), org_id=ORG, name="unknown")
    replica.upsert_lookup(kind=LookupKind.ACCURACY_LEVELS, record=level)
    stored = replica.get_lookup(kind=LookupKind.ACCURACY_LEVELS, id=level.id)
    assert stored is not None and stored.score == 0


def test_custom_gpts(replica: Replica) -> None:
    group = new_id()
    record = CustomGptRecord(
        id=new_id(), org_id=ORG, name="Helper", instructions="Be brief", agent_group_ids=(group,)
    )
    replica.upsert_custom_gpt(record=record)
    assert replica.get_custom_gpt(id=record.id) == record
    assert replica.list_custom_gpts(agent_group_id=group) == [record]
    assert replica.delete_custom_gpt(id=record.id, purge=True)
    assert replica.list_custom_gpts(include_deleted=True) == []


def test_transaction_is_all_or_nothing(replica: Replica) -> None:
    record = prompt()

    class BoomError(Exception):
        pass

    with pytest.raises(BoomError), replica.transaction():
        replica.upsert_prompt(record=record)
        replica.enqueue_outbox(
            op_id="op", entity="prompt", record_id=record.id, payload={}, base_revision=None
        )
        raise BoomError
    assert replica.get_prompt(id=record.id) is None
    assert replica.pending_outbox() == []

    with replica.transaction(), replica.transaction():
        replica.upsert_prompt(record=record)
        replica.enqueue_outbox(
            op_id="op", entity="prompt", record_id=record.id, payload={}, base_revision=None
        )
    assert replica.get_prompt(id=record.id) == record
    assert [e.op_id for e in replica.pending_outbox()] == ["op"]


def test_outbox_sync_state_and_conflicts(replica: Replica) -> None:
    record_id = new_id()
    for n in range(3):
        replica.enqueue_outbox(
            op_id=f"op{n}",
            entity="prompt",
            record_id=record_id,
            payload={"title": f"t{n}"},
            base_revision=n or None,
        )
    pending = replica.pending_outbox(limit=2)
    assert [(e.op_id, e.payload, e.base_revision, e.attempts) for e in pending] == [
        ("op0", {"title": "t0"}, None, 0),
        ("op1", {"title": "t1"}, 1, 0),
    ]
    replica.record_outbox_failure(op_ids=["op0"], error="timeout")
    assert (replica.pending_outbox()[0].attempts, replica.pending_outbox()[0].last_error) == (1, "timeout")
    assert replica.acknowledge_outbox(op_ids=["op0", "op1", "nope"]) == 2
    assert [e.op_id for e in replica.pending_outbox()] == ["op2"]

    url = "https://hub.example"
    assert replica.get_sync_state(server_url=url, org_id=ORG) is None
    replica.set_sync_cursor(server_url=url, org_id=ORG, cursor="41", at=T0)
    replica.set_sync_cursor(server_url=url, org_id=ORG, cursor="42", at=T0)
    state = replica.get_sync_state(server_url=url, org_id=ORG)
    assert state is not None and (state.cursor, state.updated_at) == ("42", T0)

    replica.add_conflict(
        id="c1", entity="prompt", record_id=record_id, field="title", base="a", mine="b", theirs="c"
    )
    replica.add_conflict(
        id="c1", entity="prompt", record_id=record_id, field="title", base="a", mine="b", theirs="c"
    )
    conflicts = replica.list_conflicts(record_id=record_id)
    assert [(c.id, c.base, c.mine, c.theirs) for c in conflicts] == [("c1", "a", "b", "c")]
    assert replica.resolve_conflict(id="c1")
    assert not replica.resolve_conflict(id="c1")
    assert replica.list_conflicts() == []
    assert len(replica.list_conflicts(include_resolved=True)) == 1


def test_bulk_insert_ten_thousand_outputs(replica: Replica) -> None:
    parent = prompt()
    replica.upsert_prompt(record=parent)
    tag = new_id()
    rows = [
        output(
            parent.id, content=f"bulk row {i} " + ("lorem ipsum " * 20), tag_ids=(tag,) if i % 10 == 0 else ()
        )
        for i in range(10_000)
    ]
    rows[1234] = dataclasses.replace(rows[1234], content="the needle haystack")
    assert replica.bulk_insert_outputs(rows) == 10_000
    assert len(replica.list_outputs(prompt_id=parent.id, limit=20_000)) == 10_000
    assert len(replica.list_outputs(tag_id=tag, limit=20_000)) == 1_000
    assert [h.id for h in replica.search("needle")] == [rows[1234].id]
    assert replica.get_output(id=rows[9999].id) == rows[9999]
    # idempotent: a resumed initial sync rewrites the same rows
    assert replica.bulk_insert_outputs(iter(rows[:100])) == 100
    assert len(replica.list_outputs(limit=20_000)) == 10_000
    assert replica.verify_integrity() == []


def test_bulk_insert_is_all_or_nothing(replica: Replica) -> None:
    rows = [output(new_id()) for _ in range(50)]
    rows.append(output(new_id(), id="bad"))
    with pytest.raises(ReplicaError):
        replica.bulk_insert_outputs(rows)
    assert replica.list_outputs() == []


def test_nested_transaction_is_a_savepoint(replica: Replica) -> None:
    kept, undone = prompt(), prompt()
    with replica.transaction():
        replica.upsert_prompt(record=kept)
        with pytest.raises(ReplicaError), replica.transaction():
            replica.upsert_prompt(record=undone)
            replica.upsert_prompt(record=prompt(id="bad"))
    assert replica.get_prompt(id=kept.id) == kept
    assert replica.get_prompt(id=undone.id) is None


def test_failed_bulk_inside_a_transaction_leaves_search_consistent(replica: Replica) -> None:
    good = output(new_id(), content="survivor text")
    with replica.transaction():
        replica.upsert_output(record=good)
        with pytest.raises(ReplicaError):
            replica.bulk_insert_outputs([output(new_id(), content="ghost text"), output(new_id(), id="bad")])
    later = output(new_id(), content="latecomer text")
    replica.upsert_output(record=later)  # the per-row index trigger is back
    assert {h.id for h in replica.search("text")} == {good.id, later.id}
    assert replica.verify_integrity() == []


def test_bulk_insert_with_repeated_ids_keeps_the_last_version(replica: Replica) -> None:
    first = output(new_id(), content="draft wording")
    rows = [first, output(new_id()), dataclasses.replace(first, content="final wording")]
    replica.bulk_insert_outputs(rows, chunk_size=2)  # the repeat falls in the next chunk
    replica.bulk_insert_outputs(rows)  # and within one chunk
    assert replica.get_output(id=first.id) == rows[2]
    assert {h.id for h in replica.search("wording")} == {first.id}
    assert replica.search("draft") == []
    assert replica.verify_integrity() == []


def _synchronous(replica: Replica) -> int:
    with replica.reading("read the commit durability") as conn:
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])


FULL, NORMAL = 2, 1


def test_a_relaxed_transaction_commits_at_normal_durability_and_restores_full(tmp_path: Path) -> None:
    path = tmp_path / "relaxed.db"
    kept, undone = prompt(), prompt()
    with open_replica(path, passphrase=PASSPHRASE, create=True) as replica:
        assert _synchronous(replica) == FULL
        with replica.transaction(durable=False):
            assert _synchronous(replica) == NORMAL
            with replica.transaction():  # a nested one joins the outer transaction's durability
                replica.upsert_prompt(record=kept)
                assert _synchronous(replica) == NORMAL
        assert _synchronous(replica) == FULL

        class BoomError(Exception):
            pass

        with pytest.raises(BoomError), replica.transaction(durable=False):
            replica.upsert_prompt(record=undone)
            raise BoomError
        assert _synchronous(replica) == FULL  # restored after a rollback too
        assert replica.get_prompt(id=undone.id) is None
        with replica.transaction():
            assert _synchronous(replica) == FULL
    # committed all the same: the relaxed transaction's writes are in the file
    with open_replica(path, passphrase=PASSPHRASE) as reopened:
        assert reopened.get_prompt(id=kept.id) == kept
        assert reopened.get_prompt(id=undone.id) is None
