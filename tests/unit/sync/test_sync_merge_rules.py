"""Unit tests of each merge rule, on two or three hand-driven replicas."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from outputhub.common.clock import HLC, receive, tick
from outputhub.sync.engine import (
    DEFAULT_SCHEMA,
    TOMBSTONE,
    Change,
    ChangeKind,
    ConflictKind,
    ConflictSide,
    FieldBase,
    InvalidChangeError,
    Merged,
    OutcomeKind,
    RecordState,
    Resolution,
    conflict_id,
    fold_changes,
    is_unlink,
    make_create,
    make_delete,
    make_edit,
    make_restore,
    merge_change,
    merge_states,
    resolve,
    state_from_change,
    unlink_op_id,
    written_here,
)
from outputhub.sync.engine.model import CONFLICT_NAMESPACE

S = DEFAULT_SCHEMA
RID = "7d0b6a3e-6a0c-4a57-9a55-2c1f1f6f0001"


class Node:
    """A replica driven by hand: its own clock, one record state."""

    def __init__(self, name: str, now_ms: int = 1_000_000) -> None:
        self.name = name
        self.now_ms = now_ms
        self.clock: HLC | None = None
        self.state: RecordState | None = None
        self.ops = 0

    def _hlc(self) -> HLC:
        self.now_ms += 10
        self.clock = tick(self.clock, now_ms=self.now_ms, node=self.name)
        return self.clock

    def _op(self) -> str:
        self.ops += 1
        return f"{self.name}-op{self.ops}"

    def apply(self, *changes: Change) -> RecordState:
        for change in changes:
            self.clock = receive(self.clock, change.hlc, now_ms=self.now_ms, node=self.name)
            self.state = merge_change(self.state, change, S).state
        assert self.state is not None
        return self.state

    def create(self, entity: str = "prompt", **values: object) -> Change:
        change = make_create(entity, RID, values, schema=S, node=self.name, hlc=self._hlc(), op_id=self._op())
        self.apply(change)
        return change

    def edit(self, **values: object) -> Change:
        assert self.state is not None
        change = make_edit(self.state, values, schema=S, node=self.name, hlc=self._hlc(), op_id=self._op())
        assert change is not None
        self.apply(change)
        return change

    def delete(self) -> Change:
        assert self.state is not None
        change = make_delete(self.state, schema=S, node=self.name, hlc=self._hlc(), op_id=self._op())
        self.apply(change)
        return change

    def restore(self) -> Change:
        assert self.state is not None
        change = make_restore(self.state, schema=S, node=self.name, hlc=self._hlc(), op_id=self._op())
        self.apply(change)
        return change

    def resolve(self, conflict_index: int, choice: Resolution | Merged) -> Change:
        assert self.state is not None
        conflict = self.state.conflicts[conflict_index]
        change = resolve(conflict, choice, node=self.name, hlc=self._hlc(), op_id=self._op())
        self.apply(change)
        return change


def two_replicas(**initial: object) -> tuple[Node, Node, Change]:
    a, b = Node("node-a"), Node("node-b")
    create = a.create(**initial)
    b.apply(create)
    return a, b, create


def both_orders(*changes: Change) -> RecordState:
    forward = fold_changes(changes, S)
    backward = fold_changes(reversed(changes), S)
    assert forward is not None
    assert forward == backward
    return forward


# -- basics ------------------------------------------------------------------------------------------------


def test_create_is_applied_with_defaults_for_unset_fields() -> None:
    a = Node("node-a")
    change = make_create("prompt", RID, {"title": "T", "tag_ids": ["x"]}, schema=S, node="node-a",
                         hlc=HLC(5, 0, "node-a"), op_id="o1")  # fmt: skip
    outcome = merge_change(None, change, S)
    assert outcome.kind is OutcomeKind.APPLIED
    assert outcome.state.values == {
        "title": "T",
        "body": "",
        "description": "",
        "development_stage_id": None,
        "tag_ids": frozenset({"x"}),
    }
    assert not outcome.state.deleted
    assert outcome.state.created
    assert a.state is None


def test_replaying_a_change_is_a_noop() -> None:
    a, _b, create = two_replicas(title="T")
    edit = a.edit(title="U", body="x")
    state = a.state
    assert state is not None
    for change in (create, edit):
        outcome = merge_change(state, change, S)
        assert outcome.kind is OutcomeKind.NOOP
        assert outcome.state is state


def test_sequential_edits_do_not_conflict() -> None:
    a, b, create = two_replicas(title="T")
    first = a.edit(title="by a")
    b.apply(first)
    second = b.edit(title="by b")
    state = both_orders(create, first, second)
    assert state.values["title"] == "by b"
    assert state.conflicts == ()


def test_fields_changed_on_one_side_only_are_both_kept() -> None:
    a, b, create = two_replicas(title="T", description="d")
    ea = a.edit(title="new title")
    eb = b.edit(description="new description")
    state = both_orders(create, ea, eb)
    assert state.values["title"] == "new title"
    assert state.values["description"] == "new description"
    assert state.conflicts == ()
    # b's change is in place exactly as written, next to a's: "applied", not "merged".
    assert merge_change(a.state, eb, S).kind is OutcomeKind.APPLIED


# -- scalars -----------------------------------------------------------------------------------------------


def test_concurrent_scalar_edits_highest_hlc_wins_and_the_loser_is_a_conflict() -> None:
    a, b, create = two_replicas(title="T")
    b.now_ms += 1000  # b's edit is later
    ea = a.edit(title="by a")
    eb = b.edit(title="by b")
    assert eb.hlc > ea.hlc
    state = both_orders(create, ea, eb)
    assert state.values["title"] == "by b"
    (conflict,) = state.conflicts
    assert conflict.kind is ConflictKind.VALUE
    assert conflict.field == "title"
    assert (conflict.winner.value, conflict.loser.value, conflict.base) == ("by b", "by a", "T")
    assert (conflict.winner.version, conflict.loser.version) == (eb.hlc, ea.hlc)
    assert conflict.winner.node == "node-b"
    expected = uuid.uuid5(CONFLICT_NAMESPACE, f"prompt/{RID}/title/{eb.hlc.encode()}/{ea.hlc.encode()}")
    assert conflict.id == str(expected) == conflict_id("prompt", RID, "title", eb.hlc, ea.hlc)
    outcome = merge_change(a.state, eb, S)
    assert outcome.kind is OutcomeKind.CONFLICT
    assert outcome.conflicts == (conflict,)


def test_equal_wall_and_counter_break_ties_on_node_id() -> None:
    base = make_create("prompt", RID, {"title": "T"}, schema=S, node="n", hlc=HLC(1, 0, "n"), op_id="c")
    state = merge_change(None, base, S).state
    edits = [
        make_edit(state, {"title": f"by {node}"}, schema=S, node=node, hlc=HLC(2, 0, node), op_id=node)
        for node in ("node-b", "node-a", "node-c")
    ]
    assert all(e is not None for e in edits)
    final = both_orders(base, *[e for e in edits if e is not None])
    assert final.values["title"] == "by node-c"
    assert sorted(c.loser.value for c in final.conflicts) == ["by node-a", "by node-b"]  # type: ignore[type-var]


def test_concurrent_writes_of_the_same_value_are_no_conflict() -> None:
    a, b, create = two_replicas(title="T")
    state = both_orders(create, a.edit(title="same"), b.edit(title="same"))
    assert state.values["title"] == "same"
    assert state.conflicts == ()
    assert len(state.value_versions["title"]) == 2


def test_an_ordinary_edit_of_a_conflicted_field_leaves_the_conflict_open() -> None:
    a, b, create = two_replicas(title="T")
    b.now_ms += 1000
    ea, eb = a.edit(title="by a"), b.edit(title="by b")
    b.apply(ea)
    again = b.edit(title="by b, again")
    state = both_orders(create, ea, eb, again)
    assert state.values["title"] == "by b, again"
    (conflict,) = state.conflicts
    assert conflict.loser.value == "by a"


# -- resolution --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolver", "choice", "expected"),
    [
        ("a", Resolution.KEEP_MINE, "by a"),
        ("a", Resolution.KEEP_THEIRS, "by b"),
        ("b", Resolution.KEEP_MINE, "by b"),
        ("b", Resolution.KEEP_THEIRS, "by a"),
        ("a", Merged("by a and b"), "by a and b"),
    ],
)
def test_resolving_a_scalar_conflict(resolver: str, choice: Resolution | Merged, expected: str) -> None:
    a, b, create = two_replicas(title="T")
    b.now_ms += 1000
    ea, eb = a.edit(title="by a"), b.edit(title="by b")
    a.apply(eb)
    b.apply(ea)
    assert a.state == b.state
    node = a if resolver == "a" else b
    conflict = node.state.conflicts[0] if node.state else None
    fix = node.resolve(0, choice)
    assert fix.kind is ChangeKind.UPDATE
    assert node.state is not None and node.state.values["title"] == expected
    assert node.state.conflicts == ()
    other = b if node is a else a
    outcome = merge_change(other.state, fix, S)
    assert outcome.resolved == (conflict,)
    assert outcome.state == node.state
    assert both_orders(create, ea, eb, fix) == node.state


def test_third_party_resolving_keeps_the_winner_as_mine() -> None:
    a, b, create = two_replicas(title="T")
    b.now_ms += 1000
    ea, eb = a.edit(title="by a"), b.edit(title="by b")
    c = Node("node-c", now_ms=2_000_000)
    c.apply(create, ea, eb)
    fix = c.resolve(0, Resolution.KEEP_MINE)
    assert fix.values == {"title": "by b"}
    assert c.state is not None and c.state.conflicts == ()


def test_written_here_says_which_side_a_replica_wrote() -> None:
    """"Mine" is the side the replica wrote; one that wrote neither (or both: two copies of one file) is
    told so, as its "mine" is then only the value in place."""
    a, b, _create = two_replicas(title="T")
    b.now_ms += 1000
    a.edit(title="by a")
    a.apply(b.edit(title="by b"))
    assert a.state is not None
    (conflict,) = a.state.conflicts
    assert written_here(conflict, a.name) == written_here(conflict, b.name) == "mine"
    assert written_here(conflict, "node-c") == "neither"
    # another open of a's file writes as "<its id>.<suffix>": its writes are its own
    assert written_here(conflict, f"{a.name}.0f0f0f0f") == "mine"

    def by(side: ConflictSide, node: str) -> ConflictSide:
        return replace(side, version=replace(side.version, node=node))

    two_copies = replace(
        conflict, winner=by(conflict.winner, f"{a.name}.1"), loser=by(conflict.loser, a.name)
    )
    assert written_here(two_copies, a.name) == "both"


# -- text --------------------------------------------------------------------------------------------------


def test_text_edits_of_different_lines_merge_cleanly() -> None:
    a, b, create = two_replicas(body="one\ntwo\nthree\nfour")
    ea = a.edit(body="ONE\ntwo\nthree\nfour")
    eb = b.edit(body="one\ntwo\nthree\nFOUR\nfive")
    state = both_orders(create, ea, eb)
    assert state.values["body"] == "ONE\ntwo\nthree\nFOUR\nfive"
    assert state.conflicts == ()
    assert merge_change(a.state, eb, S).kind is OutcomeKind.MERGED
    # The next edit is made from the merged text and supersedes both heads.
    a.apply(eb)
    follow = a.edit(body="ONE\ntwo\nthree\nFOUR\nfive\nsix")
    assert follow.base["body"].versions == {ea.hlc, eb.hlc}
    after = both_orders(create, ea, eb, follow)
    assert len(after.fields["body"].heads) == 1
    assert after.values["body"] == "ONE\ntwo\nthree\nFOUR\nfive\nsix"


def test_overlapping_text_edits_keep_the_winner_and_open_a_conflict_with_base_mine_theirs() -> None:
    a, b, create = two_replicas(body="intro\nmiddle\nend")
    b.now_ms += 1000
    ea = a.edit(body="intro\nmiddle by a\nend")
    eb = b.edit(body="intro\nmiddle by b\nend")
    state = both_orders(create, ea, eb)
    assert state.values["body"] == "intro\nmiddle by b\nend"
    (conflict,) = state.conflicts
    assert conflict.kind is ConflictKind.TEXT
    assert conflict.base == "intro\nmiddle\nend"
    assert conflict.winner.value == "intro\nmiddle by b\nend"
    assert conflict.loser.value == "intro\nmiddle by a\nend"
    fix = a.resolve(0, Merged("intro\nmiddle by a and b\nend")) if a.apply(eb) else None
    assert fix is not None
    final = both_orders(create, ea, eb, fix)
    assert final.values["body"] == "intro\nmiddle by a and b\nend"
    assert final.conflicts == ()


def test_a_chain_delivered_out_of_order_ends_without_conflict() -> None:
    """A replica that sees a later edit before the one it was based on shows a transient conflict; it
    disappears when the missing change arrives (the final state depends only on the set of changes)."""
    a, b, create = two_replicas(body="x\ny")
    first = a.edit(body="x1\ny")
    b.apply(first)
    second = b.edit(body="x1\ny2")
    c = Node("node-c", now_ms=5_000_000)
    c.apply(create, second)
    assert c.state is not None and c.state.conflicts  # transient: c does not know "first" yet
    c.apply(first)
    assert c.state.conflicts == ()
    assert c.state.values["body"] == "x1\ny2"
    assert c.state == both_orders(create, first, second)


def test_text_merge_uses_the_older_base_when_one_base_descends_from_the_other() -> None:
    a, b, create = two_replicas(body="l1\nl2\nl3\nl4\nl5")
    c = Node("node-c")
    c.apply(create)
    v2 = a.edit(body="l1\nl2\nl3 (a)\nl4\nl5")  # a then b build on v2 ...
    b.apply(v2)
    v3 = b.edit(body="l1\nl2\nl3 (a)\nl4\nl5 (b)")
    c.now_ms += 10_000
    vc = c.edit(body="l1 (c)\nl2\nl3\nl4\nl5")  # ... while c edits the original, concurrently with both
    state = both_orders(create, v2, v3, vc)
    # Merging v3 into vc against v3's own base (v2) would read "l3 (a)" -> "l3" as c's edit and drop it.
    assert state.values["body"] == "l1 (c)\nl2\nl3 (a)\nl4\nl5 (b)"
    assert state.conflicts == ()


def test_two_offline_lineages_of_text_edits_merge_without_reverting_either() -> None:
    """a edits twice offline (x, then h1), b edits twice offline (y, then h2). The heads h1 and h2 have
    unrelated bases (x and y); merging against either base would read the other lineage's first edit as a
    revert. The engine merges against their true common ancestor (the create), found in the history."""
    body = "l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8"
    a, b, create = two_replicas(body=body)
    x = a.edit(body=body.replace("l1", "l1 x"))
    h1 = a.edit(body=body.replace("l1", "l1 x").replace("l3", "l3 h1"))
    y = b.edit(body=body.replace("l5", "l5 y"))
    h2 = b.edit(body=body.replace("l5", "l5 y").replace("l7", "l7 h2"))
    state = both_orders(create, x, h1, y, h2)
    assert state.values["body"] == "l1 x\nl2\nl3 h1\nl4\nl5 y\nl6\nl7 h2\nl8"
    assert state.conflicts == ()
    assert [w.version for w in state.fields["body"].history] == sorted([create.hlc, x.hlc, y.hlc])


def test_a_gap_in_the_history_gives_a_conservative_conflict_until_the_history_arrives() -> None:
    a, b, create = two_replicas(body="l1\nl2\nl3\nl4")
    x = a.edit(body="l1 x\nl2\nl3\nl4")
    h1 = a.edit(body="l1 x\nl2 h1\nl3\nl4")
    y = b.edit(body="l1\nl2\nl3\nl4 y")
    partial = both_orders(h1, y)  # no common ancestor known: merged against the empty text
    assert [c.kind for c in partial.conflicts] == [ConflictKind.TEXT]
    full = merge_change(merge_change(partial, x, S).state, create, S).state
    assert full == both_orders(create, x, h1, y)
    assert full.values["body"] == "l1 x\nl2 h1\nl3\nl4 y"
    assert full.conflicts == ()


def test_adjacent_line_edits_conflict_like_diff3() -> None:
    a, b, create = two_replicas(body="l1\nl2\nl3")
    state = both_orders(create, a.edit(body="l1 (a)\nl2\nl3"), b.edit(body="l1\nl2 (b)\nl3"))
    assert [c.kind for c in state.conflicts] == [ConflictKind.TEXT]


# -- sets --------------------------------------------------------------------------------------------------


def test_sets_concurrent_add_and_remove_of_the_same_member_keeps_it() -> None:
    a, b, create = two_replicas(tag_ids={"x", "y"})
    ea = a.edit(tag_ids={"y"})  # removes x
    b2 = Node("node-c")
    b2.apply(create, ea)
    readd = b2.edit(tag_ids={"x", "y"})  # re-adds x after seeing the removal
    eb = b.edit(tag_ids={"y"})  # removes x again, concurrently with the re-add
    state = both_orders(create, ea, readd, eb)
    assert state.values["tag_ids"] == frozenset({"x", "y"})


def test_sets_removal_only_removes_what_its_author_saw() -> None:
    a, b, create = two_replicas(tag_ids={"x", "y"})
    ea = a.edit(tag_ids={"y", "z"})  # remove x, add z
    eb = b.edit(tag_ids={"w"})  # remove x and y, add w -- never saw z
    state = both_orders(create, ea, eb)
    assert state.values["tag_ids"] == frozenset({"z", "w"})
    assert state.conflicts == ()


def test_sets_a_removal_survives_when_its_author_edits_again() -> None:
    """A remove that is no longer a head (its author edited the set again) still wins over a concurrent
    lineage that merely kept the member without seeing the removal."""
    a, b, create = two_replicas(tag_ids={"m", "k"})
    x = a.edit(tag_ids={"k"})  # remove m
    h1 = a.edit(tag_ids={"k", "p"})
    y = b.edit(tag_ids={"m", "k", "q"})
    h2 = b.edit(tag_ids={"m", "k", "q", "r"})
    state = both_orders(create, x, h1, y, h2)
    assert state.values["tag_ids"] == frozenset({"k", "p", "q", "r"})


def test_sets_a_re_add_after_a_seen_removal_is_kept_next_to_concurrent_edits() -> None:
    a, b, create = two_replicas(tag_ids={"m"})
    removal = a.edit(tag_ids=set())
    b.apply(removal)
    readd = b.edit(tag_ids={"m"})
    concurrent = a.edit(tag_ids={"z"})  # a never saw the re-add
    state = both_orders(create, removal, readd, concurrent)
    assert state.values["tag_ids"] == frozenset({"m", "z"})


# -- delete ------------------------------------------------------------------------------------------------


def test_delete_that_saw_everything_tombstones_the_record() -> None:
    a, b, create = two_replicas(title="T")
    edit = b.edit(title="U")
    a.apply(edit)
    delete = a.delete()
    state = both_orders(create, edit, delete)
    assert state.deleted
    assert state.values["title"] == "U"  # values are kept under the tombstone
    assert state.conflicts == ()
    assert merge_change(b.state, delete, S).kind is OutcomeKind.APPLIED


def test_delete_vs_concurrent_edit_the_edit_wins_and_a_note_is_recorded() -> None:
    a, b, create = two_replicas(title="T")
    b.now_ms += 1000
    delete = a.delete()
    edit = b.edit(title="edited offline")
    state = both_orders(create, delete, edit)
    assert not state.deleted
    assert state.values["title"] == "edited offline"
    (note,) = state.conflicts
    assert note.kind is ConflictKind.DELETE
    assert note.field == TOMBSTONE
    assert (note.winner.version, note.loser.version) == (edit.hlc, delete.hlc)
    assert (note.winner.value, note.loser.value) == (False, True)
    assert merge_change(a.state, edit, S).kind is OutcomeKind.CONFLICT


def _unlink(node: Node, **values: object) -> Change:
    """An edit that only takes deleted lookup entries off the record (its op id says so)."""
    assert node.state is not None
    change = make_edit(
        node.state, values, schema=S, node=node.name, hlc=node._hlc(), op_id=unlink_op_id(node._op())
    )
    assert change is not None and is_unlink(change.op_id)
    node.apply(change)
    return change


def test_an_unlink_concurrent_with_a_delete_does_not_restore_the_record() -> None:
    a, b, create = two_replicas(title="T", tag_ids=["t1", "t2"])
    delete = a.delete()
    unlink = _unlink(b, tag_ids=["t1"])  # t2 deleted elsewhere: taken off
    state = both_orders(create, delete, unlink)
    assert state.deleted
    assert state.conflicts == ()
    # the server's form of the op id alike
    assert is_unlink("server:0190e2c4-0000-7000-8000-000000000000:42:unlink")
    assert not is_unlink("server:0190e2c4-0000-7000-8000-000000000000:42:edit")


@pytest.mark.parametrize("field", ["tag_ids", "development_stage_id"])
def test_an_unlink_carries_on_the_edit_it_superseded(field: str) -> None:
    """An unlink over an edit the deleter did not see (same field) keeps the record live, as the edit did,
    and the delete conflict keeps its id (QA: it was closed and opened again under another one, credited to
    whoever deleted the entry); a set field keeps its history, a scalar none, alike."""
    a, b, create = two_replicas(title="T", tag_ids=["t1"], development_stage_id="s1")
    delete = a.delete()
    edit = b.edit(tag_ids=["t1", "t2"]) if field == "tag_ids" else b.edit(development_stage_id="s2")
    (before,) = both_orders(create, delete, edit).conflicts
    # t1 (or s2) deleted since: its write supersedes the edit
    unlink = _unlink(b, tag_ids=["t2"]) if field == "tag_ids" else _unlink(b, development_stage_id=None)
    state = both_orders(create, delete, edit, unlink)
    assert not state.deleted
    (note,) = state.conflicts
    assert note.kind is ConflictKind.DELETE
    assert (note.id, note.winner.version) == (before.id, edit.hlc)
    if field == "tag_ids":  # and again: a chain of unlinks still stands for the edit
        again = _unlink(b, tag_ids=[])
        (still,) = both_orders(create, delete, edit, unlink, again).conflicts
        assert still.id == before.id


def test_an_edit_of_a_single_value_beats_a_concurrent_unlink_of_the_value_it_replaced() -> None:
    """Stage s1 replaced by s2 on one replica while s1 is deleted (taken off the record) on another: the edit
    stands, with no conflict; the unlink wanted s1 gone and it is (QA: s2 was kept only as a conflict)."""
    a, b, create = two_replicas(title="T", development_stage_id="s1")
    edit = a.edit(development_stage_id="s2")
    unlink = _unlink(b, development_stage_id=None)
    state = both_orders(create, edit, unlink)
    assert state.values["development_stage_id"] == "s2"
    assert state.conflicts == ()
    # the next edit supersedes both (what its author saw)
    assert state.value_versions["development_stage_id"] == {edit.hlc, unlink.hlc}
    # two real edits still conflict as before; the unlink stays out of it
    c = Node("node-c")
    c.apply(create)
    other = c.edit(development_stage_id="s3")
    (conflict,) = both_orders(create, edit, unlink, other).conflicts
    assert {conflict.winner.value, conflict.loser.value} == {"s2", "s3"}


def test_unlinks_over_unlinks_the_deleter_did_not_see_restore_nothing() -> None:
    """Two entries deleted one after the other, each taken off the record by an unlink, while another replica
    deleted the record: the second unlink supersedes the first, which no delete saw, but carries no edit
    on."""
    a, b, create = two_replicas(title="T", tag_ids=["t1", "t2"])
    delete = a.delete()
    first = _unlink(b, tag_ids=["t2"])
    second = _unlink(b, tag_ids=[])
    state = both_orders(create, delete, first, second)
    assert state.deleted
    assert state.conflicts == ()


def test_an_unlink_after_a_restoring_edit_leaves_its_conflict_as_it_was() -> None:
    a, b, create = two_replicas(title="T", tag_ids=["t1"])
    delete = a.delete()
    edit = b.edit(title="kept")
    restored = both_orders(create, delete, edit)
    (note,) = restored.conflicts
    unlink = _unlink(b, tag_ids=[])
    state = both_orders(create, delete, edit, unlink)
    assert not state.deleted
    assert [(c.id, c.winner, c.loser) for c in state.conflicts] == [(note.id, note.winner, note.loser)]


def test_delete_conflict_resolved_by_keeping_the_record() -> None:
    a, b, create = two_replicas(title="T")
    delete, edit = a.delete(), b.edit(title="U")
    b.apply(delete)
    fix = b.resolve(0, Resolution.KEEP_MINE)  # b wrote the edit: mine is the record
    assert fix.kind is ChangeKind.RESTORE
    state = both_orders(create, delete, edit, fix)
    assert not state.deleted
    assert state.conflicts == ()


def test_delete_conflict_resolved_by_deleting_again() -> None:
    a, b, create = two_replicas(title="T")
    delete, edit = a.delete(), b.edit(title="U")
    a.apply(edit)
    assert a.state is not None
    note = a.state.conflicts[0]
    fix = a.resolve(0, Resolution.KEEP_MINE)  # a wrote the delete
    assert fix.kind is ChangeKind.DELETE
    state = both_orders(create, delete, edit, fix)
    assert state.deleted
    assert state.conflicts == ()
    with pytest.raises(InvalidChangeError):
        resolve(note, Merged("x"), node="node-b", hlc=HLC(10**12, 0, "node-b"), op_id="m")


def test_restore_undoes_a_delete_and_edits_resume() -> None:
    a, _b, create = two_replicas(title="T")
    delete = a.delete()
    with pytest.raises(InvalidChangeError):
        a.edit(title="nope")
    restore = a.restore()
    edit = a.edit(title="back")
    state = both_orders(create, delete, restore, edit)
    assert not state.deleted
    assert state.values["title"] == "back"
    assert state.conflicts == ()


def test_concurrent_deletes_both_count() -> None:
    a, b, create = two_replicas(title="T")
    state = both_orders(create, a.delete(), b.delete())
    assert state.deleted
    assert state.conflicts == ()


# -- states ------------------------------------------------------------------------------------------------


def test_merge_states_is_a_join() -> None:
    a, b, create = two_replicas(title="T", body="x")
    ea, eb = a.edit(title="A", body="x\na"), b.edit(title="B", tag_ids={"t"})
    assert a.state is not None and b.state is not None
    ab, ba = merge_states(a.state, b.state, S), merge_states(b.state, a.state, S)
    assert ab == ba == both_orders(create, ea, eb)
    assert merge_states(ab, ab, S) == ab
    assert merge_states(ab, a.state, S) == ab


def test_edits_known_before_their_create_are_kept() -> None:
    a, _b, create = two_replicas(title="T")
    edit = a.edit(title="U")
    partial = state_from_change(edit, S)
    assert not partial.created
    assert partial.values["title"] == "U"
    assert merge_change(partial, create, S).state == both_orders(create, edit)


# -- validation --------------------------------------------------------------------------------------------


def _edit(**overrides: object) -> Change:
    change = Change(
        entity="prompt",
        record_id=RID,
        node="n",
        hlc=HLC(10, 0, "n"),
        op_id="op",
        kind=ChangeKind.UPDATE,
        values={"title": "x"},
        base={"title": FieldBase("T", frozenset({HLC(5, 0, "n")}))},
    )
    return replace(change, **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        _edit(entity="nope"),
        _edit(values={"nope": "x"}, base={"nope": FieldBase("x")}),
        _edit(values={"title": ["not", "scalar"]}),
        _edit(values={"body": 3}, base={"body": FieldBase("")}),
        _edit(values={"tag_ids": {"a"}}, base={"tag_ids": FieldBase(frozenset())}),
        _edit(values={"title": float("nan")}),
        _edit(node="other"),
        _edit(base={}),
        _edit(values={}),
        _edit(base={"title": FieldBase("T", frozenset({HLC(10, 0, "n")}))}),  # base not older than change
        _edit(kind=ChangeKind.CREATE),
        _edit(kind=ChangeKind.DELETE),
        _edit(kind=ChangeKind.RESTORE),
        _edit(base={"title": FieldBase("T"), TOMBSTONE: FieldBase(False)}),
        _edit(op_id=""),
    ],
)
def test_malformed_changes_are_refused(bad: Change) -> None:
    with pytest.raises(InvalidChangeError):
        merge_change(None, bad, S)


def test_a_change_for_another_record_is_refused() -> None:
    a, _b, _create = two_replicas(title="T")
    other = replace(_edit(), record_id="another")
    with pytest.raises(InvalidChangeError):
        merge_change(a.state, other, S)


def test_make_edit_returns_none_when_nothing_changes() -> None:
    a, _b, _create = two_replicas(title="T", tag_ids={"x"})
    assert a.state is not None
    assert make_edit(a.state, {"title": "T", "tag_ids": ["x"]}, schema=S, node="node-a",
                     hlc=HLC(10**12, 0, "node-a"), op_id="noop") is None  # fmt: skip


@pytest.mark.parametrize("a_keeps", [Resolution.KEEP_MINE, Resolution.KEEP_THEIRS])
def test_two_replicas_resolving_one_text_conflict_differently_conflict_again(a_keeps: Resolution) -> None:
    """Two replicas resolve the same text conflict before either has seen the other's resolution, and
    choose differently: the two resolutions conflict again, as two resolutions of a scalar do. The text
    in place when they resolved was one side of the open conflict, not a merge of both, so it is no merge
    base: against it, the resolution that kept it read as "no change" and the other won in silence (QA)."""
    a, b, create = two_replicas(body="base")
    b.now_ms += 1000
    ea, eb = a.edit(body="alpha"), b.edit(body="beta")
    a.apply(eb)
    b.apply(ea)
    assert a.state == b.state and len(a.state.conflicts) == 1  # type: ignore[union-attr]
    b_keeps = Resolution.KEEP_THEIRS if a_keeps is Resolution.KEEP_MINE else Resolution.KEEP_MINE
    fix_a, fix_b = a.resolve(0, a_keeps), b.resolve(0, b_keeps)  # a: alpha or beta; b: the same one
    assert fix_a.values["body"] == fix_b.values["body"]  # both chose the same text: nothing to merge
    a2, b2 = Node("node-a2"), Node("node-b2")
    for node in (a2, b2):
        node.apply(create, ea, eb)
    c1 = a2.resolve(0, Resolution.KEEP_MINE)  # the winner in place ...
    c2 = b2.resolve(0, Resolution.KEEP_THEIRS)  # ... and the loser: different choices
    assert {c1.values["body"], c2.values["body"]} == {"alpha", "beta"}
    state = both_orders(create, ea, eb, c1, c2)
    (conflict,) = state.conflicts
    assert {conflict.winner.value, conflict.loser.value} == {"alpha", "beta"}
    assert {conflict.winner.version, conflict.loser.version} == {c1.hlc, c2.hlc}
    # the same choice made twice is no conflict
    same = both_orders(create, ea, eb, fix_a, fix_b)
    assert same.conflicts == () and same.values["body"] == fix_a.values["body"]


def test_a_resolution_still_merges_cleanly_with_an_edit_of_another_passage() -> None:
    """A resolution of one passage and a concurrent edit made on the conflicted text elsewhere merge
    cleanly: the text in place is a fine base for the edit that did not resolve."""
    a, b, create = two_replicas(body="one\ntwo\nthree\nfour\nfive")
    b.now_ms += 1000
    ea, eb = a.edit(body="ONE by a\ntwo\nthree\nfour\nfive"), b.edit(body="ONE by b\ntwo\nthree\nfour\nfive")
    a.apply(eb)
    b.apply(ea)
    fix = a.resolve(0, Merged("ONE by a and b\ntwo\nthree\nfour\nfive"))
    later = b.edit(body="ONE by b\ntwo\nthree\nfour\nFIVE")  # on b's text in place, the conflict still open
    state = both_orders(create, ea, eb, fix, later)
    assert state.values["body"] == "ONE by a and b\ntwo\nthree\nfour\nFIVE"
    assert state.conflicts == ()
