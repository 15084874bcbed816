"""Applying pulled records: new outputs are stored from the pulled data directly (``_new_output_rows``), and
the replica must end exactly as the record path (``build_record`` -> ``to_row``) leaves it: rows, links,
merge states, conflicts, full-text index and search results."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from replica_support import ORG, PASSPHRASE

from outputhub.common.clock import HLC
from outputhub.desktop.storage import open_replica, tables
from outputhub.desktop.storage import sync_store as store_module
from outputhub.desktop.storage.replica import Replica
from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from outputhub.sync.engine import DEFAULT_SCHEMA, make_create, merge_change, merge_states
from outputhub.sync.ports import RemoteItem
from outputhub.sync.protocol import state_to_wire

PROMPT = str(uuid.UUID(int=7))
TAGS = [str(uuid.UUID(int=100 + n)) for n in range(3)]
KINDS = [str(uuid.UUID(int=200 + n)) for n in range(2)]
WORDS = ("harbour", "lantern", "quartz", "meadow", "cipher", "orbit", "velvet", "granite")


def _state(record_id: str, values: dict[str, Any], *, node: str, ms: int) -> Any:
    change = make_create(
        "output",
        record_id,
        {k: v for k, v in values.items() if v is not None},
        schema=DEFAULT_SCHEMA,
        node=node,
        hlc=HLC(ms, 0, node),
        op_id=f"{node}:{record_id}:{ms}",
    )
    return merge_change(None, change, DEFAULT_SCHEMA).state


def pulled_outputs(count: int) -> list[RemoteItem]:
    """Outputs as a pull page brings them: varied text (long, short, empty notes), sets in any order with
    repeats, optional fields missing, tombstones, produced_at or not, and some with a conflict."""
    items: list[RemoteItem] = []
    for n in range(count):
        record_id = str(uuid.UUID(int=10_000 + n))
        words = " ".join(WORDS[(n + k) % len(WORDS)] for k in range(3 + n % 40))
        content = f"Output {n}: {words}" if n % 5 else f"o{n}"
        values: dict[str, Any] = {
            "prompt_id": PROMPT,
            "content": content,
            "notes": "" if n % 3 else f"note {n} " + "long " * (n % 30),
            "custom_gpt_id": None if n % 4 == 0 else str(uuid.UUID(int=300 + n % 2)),
            "gpt_model_id": str(uuid.UUID(int=400)) if n % 2 else None,
            "accuracy_level_id": str(uuid.UUID(int=500 + n % 3)),
            "tag_ids": frozenset(TAGS[: n % 4]),
            "knowledge_type_ids": frozenset(KINDS[: n % 3]),
        }
        state = _state(record_id, values, node="server", ms=1_700_000_000_000 + n)
        if n % 11 == 0:  # two concurrent creates: a text conflict in the merged state
            other = _state(record_id, {**values, "content": content + " (other)"}, node="n2", ms=1_000 + n)
            state = merge_states(state, other, DEFAULT_SCHEMA)
        data: dict[str, Any] = {
            "id": record_id,
            "revision": n + 1,
            "created_at": f"2026-11-26T08:{n % 60:02d}:{n % 60:02d}.{n:06d}Z",
            "updated_at": "2026-11-26T09:00:00+00:00" if n % 7 == 0 else f"2026-11-26T09:{n % 60:02d}:00.5Z",
            "created_by": f"user:{n % 3}",
            "updated_by": "" if n % 6 == 0 else f"user:{n % 2}",
            **state.values,
        }
        data["tag_ids"] = (
            list(reversed(sorted(data["tag_ids"]))) + list(data["tag_ids"])[:1]
        )  # order, repeats
        data["knowledge_type_ids"] = list(data["knowledge_type_ids"])
        if n % 8 == 0:
            data.pop("gpt_model_id")  # a field the page left out
        if n % 9 == 0:
            data["produced_at"] = "2026-01-02T03:04:05.000006+00:00"
        items.append(
            RemoteItem(
                entity="output",
                record_id=record_id,
                revision=n + 1,
                deleted=n % 13 == 0,
                data=data,
                state=state_to_wire(state),
            )
        )
    return items


def test_new_output_rows_equal_the_record_path() -> None:
    items = pulled_outputs(120)
    rows, links = store_module._new_output_rows(items, ORG)
    expected = [store_module.fresh_record(i, ORG) for i in items]
    assert rows == [tables.OUTPUTS.to_row(r) for r in expected]
    assert links == {
        "tag_ids": [(r.id, t) for r in expected for t in r.tag_ids],  # type: ignore[attr-defined]
        "knowledge_type_ids": [(r.id, k) for r in expected for k in r.knowledge_type_ids],  # type: ignore[attr-defined]
    }
    # a long text equal to the column is kept once, as the marker
    assert any('{"=":1}' in str(row[6]) for row in rows)


def test_rows_staged_ahead_are_the_rows_built_in_the_apply() -> None:
    """``prepare_remote`` (run on the pull's prefetch thread) builds each output's row ahead; the apply takes
    the staged rows only when they were built for its organization, and they equal the rows it builds."""
    plain = pulled_outputs(60)
    staged = pulled_outputs(60)
    store_module._stage_outputs(staged, ORG)
    assert all(isinstance(item.staged, tuple) for item in staged)
    assert store_module._new_output_rows(staged, ORG) == store_module._new_output_rows(plain, ORG)

    other = str(uuid.UUID(int=99))
    elsewhere = pulled_outputs(60)
    store_module._stage_outputs(elsewhere, other)
    rows, _ = store_module._new_output_rows(elsewhere, ORG)
    assert {row[1] for row in rows} == {ORG}  # staged for another organization: built again
    assert rows == store_module._new_output_rows(plain, ORG)[0]


def _apply_pages(replica: Replica, pages: Sequence[Sequence[RemoteItem]]) -> None:
    store = ReplicaSyncStore(replica)
    store.attach(org_id=ORG)
    for cursor, page in enumerate(pages, start=1):
        with store.transaction():
            store.apply_remote(page)
            store.set_cursor(server_url="http://server", org_id=ORG, cursor=cursor)


def _contents(replica: Replica) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    with replica.reading("dump") as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '%fts%' "
                "AND name NOT IN ('replica_meta', 'sync_state', 'sqlite_sequence') ORDER BY name"
            )
        ]
        for name in names:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({name})")]
            keep = [c for c in columns if not (name == "conflicts" and c == "created_at")]
            if name == "conflicts":  # when it was closed is the clock's; whether it is, the replica's
                keep = [c if c != "resolved_at" else "resolved_at IS NOT NULL" for c in keep]
            out[name] = conn.execute(f"SELECT {', '.join(keep)} FROM {name} ORDER BY 1, 2").fetchall()
    return out


def _searches(replica: Replica) -> list[Any]:
    found: list[Any] = []
    for query in ("harbour", "lantern quartz", "Output 7", "o5", "other", "velv*", "nothing-here"):
        found.append(replica.search(query, limit=200))
        found.append(replica.search_outputs(query, tag_id=TAGS[0], limit=200))
        found.append(str(replica.count_output_matches(query)))
    return found


def test_apply_new_outputs_ends_as_the_record_path(
    replicas: tuple[Replica, Replica], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = replicas
    items = pulled_outputs(300)
    pages = [items[:10], items[10:150], items[150:]]
    _apply_pages(fast, pages)
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "_NEW_ROWS", {})  # every entity through build_record
        _apply_pages(slow, pages)

    assert _contents(fast) == _contents(slow)
    assert _searches(fast) == _searches(slow)
    assert any(_searches(fast)[0])  # the searches do find pulled outputs
    assert fast.verify_integrity() == [] and slow.verify_integrity() == []
    assert len(fast.list_conflicts()) == len(slow.list_conflicts()) > 0


def test_new_outputs_are_searchable_and_edits_keep_the_index_sound(replicas: tuple[Replica, Replica]) -> None:
    fast, _ = replicas
    items = pulled_outputs(40)
    _apply_pages(fast, [items[:20], items[20:]])
    live = [i for i in items if not i.deleted]
    target = live[3]
    hits = fast.search_outputs(str(target.data["content"]).split()[-1], limit=100)
    assert target.record_id in {h.id for h in hits}
    # an edit, a tombstone and a purge of pulled rows go through the triggers: the index stays consistent
    record = fast.get_output(id=target.record_id)
    assert record is not None
    fast.upsert_output(record=dataclasses.replace(record, content="zebra crossing"))
    fast.delete_output(id=live[4].record_id)
    fast.delete_output(id=live[5].record_id, purge=True)
    assert fast.verify_integrity() == []
    assert [h.id for h in fast.search_outputs("zebra", limit=10)] == [target.record_id]


def _echo_setup(replica: Replica) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A local prompt edited twice and a concurrent remote edit of its title merged in (a conflict); returns
    the prompt id, the server's data and the state the replica now holds (what the server sends back after
    the replica's push)."""
    from outputhub.desktop.storage.sync_store import stored_state
    from outputhub.sync.client import LocalLibrary
    from outputhub.sync.engine import make_edit

    store = ReplicaSyncStore(replica)
    store.attach(org_id=ORG)
    clock = iter(range(1_700_000_000_000, 1_700_000_100_000, 10))
    library = LocalLibrary(store, now_ms=lambda: next(clock))
    body = "Act as a careful reviewer of long texts. " * 4
    library.create("tag", {"name": "reviewing"}, id=TAGS[0])  # a replica names only records it has
    prompt = library.create("prompt", {"title": "t", "body": body, "tag_ids": [TAGS[0]]}, id=PROMPT)
    created = store.load("prompt", prompt)
    library.edit("prompt", prompt, {"title": "t2"})
    local = store.load("prompt", prompt)
    assert created is not None and local is not None
    theirs = make_edit(  # made from the created prompt: concurrent with the local edit
        created.state,
        {"title": "theirs"},
        schema=DEFAULT_SCHEMA,
        node="other",
        hlc=HLC(1_700_000_050_000, 0, "other"),
        op_id="other:1",
    )
    assert theirs is not None
    remote = merge_change(local.state, theirs, DEFAULT_SCHEMA).state
    data: dict[str, Any] = {
        "id": prompt,
        "title": remote.values["title"],
        "body": body,
        "description": "",
        "tag_ids": [TAGS[0]],
        "development_stage_id": None,
        "version": 3,
        "created_at": "2026-11-26T09:00:00Z",
        "updated_at": "2026-11-26T10:00:00Z",
        "created_by": "user:a",
        "updated_by": "user:b",
    }
    with store.transaction():
        store.apply_remote([RemoteItem("prompt", prompt, 7, False, data, state_to_wire(remote))])
    with replica.reading("row") as conn:
        row = tables.get(conn, store_module.SPEC["prompt"], prompt)
    echoed = stored_state("prompt", row)
    assert echoed is not None
    return prompt, {**data, "updated_at": "2026-11-26T10:05:00Z"}, dict(echoed)


def test_a_state_the_replica_already_holds_is_applied_without_merging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    first = open_replica(tmp_path / "fast.ohr", passphrase=PASSPHRASE, create=True)
    prompt, data, echoed = _echo_setup(first)
    first.close()
    shutil.copy(tmp_path / "fast.ohr", tmp_path / "slow.ohr")
    merges: list[str] = []
    original = ReplicaSyncStore._merge_states

    def counted(self: ReplicaSyncStore, *args: Any) -> None:
        merges.append("merge")
        original(self, *args)

    monkeypatch.setattr(ReplicaSyncStore, "_merge_states", counted)
    results: dict[str, Any] = {}
    contents: dict[str, Any] = {}
    for name in ("fast", "slow"):
        replica = open_replica(tmp_path / f"{name}.ohr", passphrase=PASSPHRASE)
        store = ReplicaSyncStore(replica)
        with monkeypatch.context() as patch:
            if name == "slow":  # the general path: decode both states, merge, encode
                patch.setattr(
                    ReplicaSyncStore,
                    "_same_state",
                    lambda self, conn, item, old, wire, result: counted(self, conn, item, old, result),
                )
            with store.transaction():
                r = store.apply_remote([RemoteItem("prompt", prompt, 9, False, data, echoed)])
        results[name] = (r.changed, r.max_version, sorted(r.opened), sorted(r.closed))
        contents[name] = (_contents(replica), [(c.id, c.field) for c in replica.list_conflicts()])
        assert replica.get_prompt(id=prompt).revision == 9  # type: ignore[union-attr]
        assert replica.verify_integrity() == []
        replica.close()
    assert merges == ["merge"]  # only the slow replica merged
    assert results["fast"] == results["slow"]
    assert contents["fast"] == contents["slow"]
    assert [field for _, field in contents["fast"][1]] == ["title"]


def test_a_remap_rewrites_the_records_whose_state_holds_only_their_row(
    replicas: tuple[Replica, Replica],
) -> None:
    """A state written once is stored without its values (they are the row's: ``imply_values``), so a
    lookup merged into another on the server must be found through the rows and link tables too: the
    records naming it end naming the survivor, in their columns and in their merge states alike."""
    replica, _ = replicas
    items = pulled_outputs(60)
    _apply_pages(replica, [items])
    store = ReplicaSyncStore(replica)

    def stored(record_id: str) -> str:
        with replica.reading("inspect") as conn:
            row = conn.execute("SELECT field_clocks FROM outputs WHERE id = ?", (record_id,)).fetchone()
        return str(row[0])

    level = str(uuid.UUID(int=500))
    by_tag = [i.record_id for i in items if TAGS[0] in i.data["tag_ids"]]
    by_level = [i.record_id for i in items if i.data["accuracy_level_id"] == level]
    for named in (by_tag, by_level):  # each case holds both forms of stored state
        assert any(stored(r).endswith('"v":"="}}') for r in named)
        assert any(not stored(r).endswith('"v":"="}}') for r in named)
    tag_survivor, level_survivor = str(uuid.UUID(int=150)), str(uuid.UUID(int=599))

    assert store.remap("tag", TAGS[0], tag_survivor) == len(by_tag)
    assert store.remap("accuracy_level", level, level_survivor) == len(by_level)
    for record_id in {*by_tag, *by_level}:
        record = replica.get_output(id=record_id)
        assert record is not None
        state = json.dumps(store_module.stored_state("output", record))
        assert TAGS[0] not in record.tag_ids and TAGS[0] not in state and level not in state
        assert record.accuracy_level_id != level
    assert all(tag_survivor in replica.get_output(id=r).tag_ids for r in by_tag)  # type: ignore[union-attr]
    assert all(replica.get_output(id=r).accuracy_level_id == level_survivor for r in by_level)  # type: ignore[union-attr]
    assert replica.verify_integrity() == []


def test_purged_records_go_unless_edited_here_or_written_after_the_purge(
    replicas: tuple[Replica, Replica],
) -> None:
    """A page's ``purged`` names records the server removed for good at the purge's revision. The replica
    drops its copies, tombstones and live ones alike, but keeps one with a local edit (the server will
    refuse it, and the replica keeps it as a refused edit) and one it holds at a revision at or after the
    purge's (written again since). Ids it does not hold and entities it does not know change nothing."""
    from outputhub.sync.client import LocalLibrary

    replica, _ = replicas
    store = ReplicaSyncStore(replica)
    store.attach(org_id=ORG)
    items = pulled_outputs(8)  # revisions 1-8; output 0 is a tombstone
    with store.replayable_transaction():
        store.apply_remote(items)
    ids = [item.record_id for item in items]
    LocalLibrary(store).edit("output", ids[2], {"notes": "edited here"})
    purge = 6
    named = [("output", i, purge) for i in ids] + [("output", str(uuid.UUID(int=1)), purge)]
    assert store.drop_purged([*named, ("no-such-entity", ids[7], purge)])[0] == 4
    kept = {i for i in ids if store.load("output", i) is not None}
    assert kept == {ids[2], ids[5], ids[6], ids[7]}, "edited here; revisions 6, 7, 8 (at or after the purge)"
    assert store.load("output", ids[2]).pending
    assert replica.verify_integrity() == []


def _newer(items: Sequence[RemoteItem], *, step: int) -> list[RemoteItem]:
    """The server's later state of every ``step``-th record: another node edited its content and tags or
    deleted it, at higher revisions."""
    from outputhub.sync.engine import make_delete, make_edit
    from outputhub.sync.protocol import state_from_wire

    newer: list[RemoteItem] = []
    for n, item in enumerate(items[::step]):
        state = state_from_wire("output", item.record_id, item.state)
        hlc = HLC(1_800_000_000_000 + n, 0, "n3")
        op = f"n3:{item.record_id}"
        if n % 3 == 2 and not state.deleted:
            change = make_delete(state, schema=DEFAULT_SCHEMA, node="n3", hlc=hlc, op_id=op)
        else:
            edit = {"content": f"rewritten {n}", "tag_ids": frozenset(TAGS[n % 3 :])}
            change = make_edit(state, edit, schema=DEFAULT_SCHEMA, node="n3", hlc=hlc, op_id=op)
        assert change is not None
        after = merge_change(state, change, DEFAULT_SCHEMA).state
        data = {**item.data, **after.values, "revision": 1_000 + n}
        data["tag_ids"], data["knowledge_type_ids"] = list(data["tag_ids"]), list(data["knowledge_type_ids"])
        newer.append(
            RemoteItem("output", item.record_id, 1_000 + n, after.deleted, data, state_to_wire(after))
        )
    return newer


def test_a_record_with_no_local_edit_takes_the_servers_newer_state_as_the_merge_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pulled record this replica holds with no local edit (synced, nothing in the outbox) is stored as
    the server has it, without decoding and merging the two states: the server's state at a later revision
    holds every write the replica has. The replica ends exactly as the merge leaves it; records with a local
    edit are merged (the edit kept), and an older state arriving after a newer one (a page delivered again)
    is merged too, so nothing goes back."""
    import shutil

    from outputhub.sync.client import LocalLibrary

    items = pulled_outputs(60)
    first = open_replica(tmp_path / "fast.ohr", passphrase=PASSPHRASE, create=True)
    _apply_pages(first, [items])
    library = LocalLibrary(ReplicaSyncStore(first), now_ms=iter(range(1_750_000_000_000, 2**62)).__next__)
    edited = [i.record_id for i in items[::6] if not i.deleted]
    for record_id in edited:  # local edits, not pushed: their records stay merged
        library.edit("output", record_id, {"notes": "kept from here"})
    first.close()
    shutil.copy(tmp_path / "fast.ohr", tmp_path / "slow.ohr")

    newer = _newer(items, step=2)
    merged: list[str] = []
    original = ReplicaSyncStore._merge_states

    def counted(self: ReplicaSyncStore, conn: Any, item: RemoteItem, old: Any, result: Any) -> None:
        merged.append(item.record_id)
        original(self, conn, item, old, result)

    monkeypatch.setattr(ReplicaSyncStore, "_merge_states", counted)
    outcome: dict[str, Any] = {}
    for name in ("fast", "slow"):
        replica = open_replica(tmp_path / f"{name}.ohr", passphrase=PASSPHRASE)
        store = ReplicaSyncStore(replica)
        merged.clear()
        with monkeypatch.context() as patch:
            if name == "slow":  # every held record through the merge, as before
                patch.setattr(ReplicaSyncStore, "_take_remote", counted)
            for page in ([newer], [items], [newer]):  # the newer states, then the old page again, then again
                with store.transaction():
                    result = store.apply_remote(page[0])
                if page[0] is newer and name == "fast":
                    outcome.setdefault("first_merges", sorted(merged))
        outcome[name] = (_contents(replica), [(c.id, c.field, c.record_id) for c in replica.list_conflicts()])
        outcome[f"{name}_last"] = (result.changed, result.max_version, sorted(result.opened))
        assert replica.verify_integrity() == []
        for n, item in enumerate(newer):
            record = replica.get_output(id=item.record_id)
            assert record is not None and record.revision == 1_000 + n
            assert bool(record.deleted) == item.deleted or item.record_id in edited  # an edit restores
            if not record.deleted:
                assert record.content == f"rewritten {n}"
        for record_id in edited:
            assert replica.get_output(id=record_id).notes == "kept from here"  # type: ignore[union-attr]
        replica.close()

    assert outcome["fast"] == outcome["slow"]
    assert outcome["fast_last"] == outcome["slow_last"]
    # the first page of newer states merged only the records edited here
    assert outcome["first_merges"] == sorted({i.record_id for i in newer} & set(edited))
