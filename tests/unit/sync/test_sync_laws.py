"""Property tests of the sync engine's laws, on simulated replicas that edit, delete, restore, resolve
conflicts and sync with each other (by changes, in arbitrary order, or by whole states), with skewed clocks.

Laws checked after every simulated history:

1. idempotence: replaying any known change is a NOOP and leaves the state equal;
2. order independence: folding a replica's changes in any hypothesis-drawn order gives its state;
3. replicas that have seen the same changes are identical (after an all-to-all sync, and a state join equals
   the fold of the union of changes);
4. no user edit disappears without a conflict record (see ``assert_no_lost_edits``): a write is superseded
   only by writes whose authors had it on screen; every line typed or deleted, every member added or
   removed, is reflected in the displayed value unless an open conflict holds it, or an author who saw it
   undid it, or (sets) a concurrent add won; a delete is visible, undone by a restore whose author saw it,
   or overridden by an edit and recorded as a DELETE conflict.

The example count is ``OUTPUTHUB_HYPOTHESIS_EXAMPLES`` (default 200; the ``slow`` property defaults to 1000).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from outputhub.common.clock import HLC, receive, tick
from outputhub.sync.engine import (
    DEFAULT_SCHEMA,
    TOMBSTONE,
    Change,
    ChangeKind,
    ConflictKind,
    FieldKind,
    Merged,
    OutcomeKind,
    RecordState,
    Resolution,
    fold_changes,
    is_unlink,
    make_create,
    make_delete,
    make_edit,
    make_restore,
    merge_change,
    merge_states,
    resolve,
    unlink_op_id,
)
from outputhub.sync.engine import merge as merge_module

EXAMPLES = int(os.environ.get("OUTPUTHUB_HYPOTHESIS_EXAMPLES", "200"))
SLOW_EXAMPLES = int(os.environ.get("OUTPUTHUB_HYPOTHESIS_EXAMPLES", "1000"))
LAW_SETTINGS = settings(
    derandomize=True,
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""The law tests over whole simulated histories (big examples, slow to generate)."""
SCHEMA = DEFAULT_SCHEMA
ENTITY = "prompt"
RECORD = "00000000-0000-4000-8000-000000000001"
NODES = ("n0", "n1", "n2")
FIELDS = tuple(SCHEMA.entity(ENTITY).fields)  # title, body, description, development_stage_id, tag_ids
SCALARS = ("alpha", "beta", "gamma", None)
MEMBERS = ("t1", "t2", "t3", "t4")
START_MS = 1_700_000_000_000
VERBS = ("edit", "sync", "edit", "resolve", "sync", "edit", "delete", "sync")
"""Action codes (0 shrinks to "edit"; a "resolve" with nothing to resolve syncs instead)."""


@dataclass
class Replica:
    node: str
    skew_ms: int
    clock: HLC | None = None
    state: RecordState | None = None
    known: dict[str, Change] = field(default_factory=dict)


@dataclass
class World:
    replicas: list[Replica]
    now_ms: int = START_MS
    fresh: int = 0
    saw: dict[str, frozenset[HLC]] = field(default_factory=dict)
    """op id -> every version its author knew when making it."""
    typed: dict[str, frozenset[str]] = field(default_factory=dict)
    """op id -> the text lines its author typed (fresh, globally unique; copies of other lines excluded)."""
    unclaimed: set[str] = field(default_factory=set)

    def fresh_lines(self, node: str, count: int) -> list[str]:
        out = []
        for _ in range(count):
            self.fresh += 1
            out.append(f"{node}:{self.fresh}")
        self.unclaimed.update(out)
        return out

    def all_changes(self) -> dict[str, Change]:
        out: dict[str, Change] = {}
        for replica in self.replicas:
            out.update(replica.known)
        return out


def _local(world: World, replica: Replica, change: Change | None) -> None:
    typed, world.unclaimed = frozenset(world.unclaimed), set()
    if change is None:
        return
    world.saw[change.op_id] = frozenset(c.hlc for c in replica.known.values())
    world.typed[change.op_id] = typed
    outcome = merge_change(replica.state, change, SCHEMA)
    assert outcome.kind is not OutcomeKind.NOOP
    replica.state = outcome.state
    replica.known[change.op_id] = change
    replica.clock = change.hlc


def _next_hlc(world: World, replica: Replica) -> HLC:
    return tick(replica.clock, now_ms=world.now_ms + replica.skew_ms, node=replica.node)


def _edited_text(world: World, node: str, text: str, op: tuple[int, int, int]) -> str:
    kind, pos, length = op
    lines = text.split("\n")
    pos %= len(lines) + 1
    if kind == 0:  # insert
        lines[pos:pos] = world.fresh_lines(node, length + 1)
    elif kind == 1:  # delete
        del lines[pos : pos + length + 1]
    else:  # replace
        lines[pos : pos + length + 1] = world.fresh_lines(node, 1 + length % 2)
    return "\n".join(lines)


def _unlinked_values(state: RecordState, pick: int) -> dict[str, object] | None:
    """What taking a deleted entry off the record writes: a tag less, or no development stage."""
    tags = sorted(state.values["tag_ids"])  # type: ignore[arg-type]
    if tags:
        return {"tag_ids": frozenset(tags) - {tags[pick % len(tags)]}}
    if state.values["development_stage_id"] is not None:
        return {"development_stage_id": None}
    return None


def _edit_values(world: World, replica: Replica, picks: list[tuple[int, int, int, int]]) -> dict[str, object]:
    assert replica.state is not None
    values: dict[str, object] = {}
    for field_index, a, b, c in picks:
        name = FIELDS[field_index % len(FIELDS)]
        kind = SCHEMA.kind(ENTITY, name)
        current = values.get(name, replica.state.values[name])
        if kind is FieldKind.SCALAR:
            values[name] = SCALARS[a % len(SCALARS)]
        elif kind is FieldKind.TEXT:
            assert isinstance(current, str)
            values[name] = _edited_text(world, replica.node, current, (a % 3, b, c % 3))
        else:
            assert isinstance(current, frozenset)
            added = {MEMBERS[a % len(MEMBERS)]} if b % 3 != 1 else set()
            removed = {MEMBERS[c % len(MEMBERS)]} if b % 3 != 0 else set()
            values[name] = frozenset((current - removed) | added)
    return values


def _deliver(world: World, src: Replica, dst: Replica, *, by_state: bool, reverse: bool) -> None:
    missing = [c for op, c in src.known.items() if op not in dst.known]
    if not missing:
        return
    now = world.now_ms + dst.skew_ms
    dst.clock = receive(dst.clock, max(c.hlc for c in missing), now_ms=now, node=dst.node)
    if by_state and src.state is not None:
        dst.state = src.state if dst.state is None else merge_states(dst.state, src.state, SCHEMA)
        dst.known.update(src.known)
        return
    for change in reversed(missing) if reverse else missing:
        dst.state = merge_change(dst.state, change, SCHEMA).state
        dst.known[change.op_id] = change


def _resolve(world: World, replica: Replica, pick: tuple[int, int, int]) -> None:
    state = replica.state
    if state is None or not state.conflicts:
        return
    conflict = state.conflicts[pick[0] % len(state.conflicts)]
    choice: Resolution | Merged
    if pick[1] % 3 == 2 and conflict.kind is not ConflictKind.DELETE:
        if conflict.kind is ConflictKind.TEXT:
            assert isinstance(conflict.winner.value, str)
            choice = Merged("\n".join([conflict.winner.value, *world.fresh_lines(replica.node, 1)]))
        else:
            choice = Merged(SCALARS[pick[2] % len(SCALARS)])
    else:
        choice = Resolution.KEEP_MINE if pick[1] % 3 == 0 else Resolution.KEEP_THEIRS
    hlc = _next_hlc(world, replica)
    _local(world, replica, resolve(conflict, choice, node=replica.node, hlc=hlc, op_id=f"op-{hlc}"))


def run_history(actions: list[tuple[int, ...]], skews: list[int], shared: bool = True) -> World:
    world = World([Replica(node, skew) for node, skew in zip(NODES, skews, strict=True)])
    creator = world.replicas[0]
    hlc = _next_hlc(world, creator)
    create = make_create(
        ENTITY,
        RECORD,
        {"title": "start", "body": "l1\nl2\nl3\nl4", "tag_ids": {"t1", "t2"}},
        schema=SCHEMA,
        node=creator.node,
        hlc=hlc,
        op_id=f"op-{hlc}",
    )
    _local(world, creator, create)
    if shared:  # the usual case: every replica has the record before the concurrent edits start
        for replica in world.replicas[1:]:
            _deliver(world, creator, replica, by_state=False, reverse=False)
    for step, action in enumerate(actions):
        code, who, other, a, b, c, advance = action
        verb = VERBS[code % len(VERBS)]
        world.now_ms += advance
        # Rotate through the replicas so that even all-zero (shrunk) actions spread over every node.
        replica = world.replicas[(who + step) % len(NODES)]
        state = replica.state
        if verb == "resolve" and not (state is not None and state.conflicts):
            verb = "sync"  # nothing to resolve: sync instead
        if verb == "delete" and state is not None and not state.deleted and a % 2 == 1:
            verb = "edit"  # delete half as often as it comes up
        if verb == "sync":
            src = world.replicas[(who + step + 1 + other) % len(NODES)]
            if src is not replica:
                _deliver(world, src, replica, by_state=a % 2 == 0, reverse=b % 2 == 0)
        elif verb == "edit":
            if state is None or state.deleted or not state.created:
                continue
            picks = [(other, a, b, c), (other + a + 1, b, c, a)][: 1 + c % 2]
            values = _edit_values(world, replica, picks)
            hlc = _next_hlc(world, replica)
            op_id = f"op-{hlc}"
            unlinked = _unlinked_values(state, (a + b) % len(MEMBERS)) if (a + c) % 4 == 0 else None
            if unlinked:  # a deleted entry taken off the record (an unlink: restores nothing by itself)
                values, op_id = unlinked, unlink_op_id(op_id)
            _local(
                world,
                replica,
                make_edit(state, values, schema=SCHEMA, node=replica.node, hlc=hlc, op_id=op_id),
            )
        elif verb == "delete":  # delete, or restore if deleted
            if state is None or not state.created:
                continue
            hlc = _next_hlc(world, replica)
            make = make_restore if state.deleted else make_delete
            _local(world, replica, make(state, schema=SCHEMA, node=replica.node, hlc=hlc, op_id=f"op-{hlc}"))
        else:  # resolve a conflict
            _resolve(world, replica, (other, a, b))
    return world


action_strategy = st.tuples(
    st.integers(0, len(VERBS) - 1),
    st.integers(0, 2),  # replica
    st.integers(0, 7),  # other replica / field
    st.integers(0, 7),
    st.integers(0, 7),
    st.integers(0, 7),
    st.integers(0, 3000),  # milliseconds that pass
)
histories = st.tuples(
    st.lists(action_strategy, min_size=4, max_size=30),
    st.lists(st.integers(-5000, 5000), min_size=3, max_size=3),
    st.booleans(),
)


def _lines(text: object) -> set[str]:
    assert isinstance(text, str)
    return set(text.split("\n"))


def _ancestors(changes: list[Change], name: str, version: HLC) -> set[HLC]:
    """``version`` and every write of field ``name`` it was (transitively) based on, from the changes."""
    by_version = {c.hlc: c for c in changes}
    out: set[HLC] = set()
    stack = [version]
    while stack:
        current = stack.pop()
        if current in out:
            continue
        out.add(current)
        change = by_version.get(current)
        if change is not None and name in change.base:
            stack.extend(change.base[name].versions)
    return out


def _text_lost(
    state: RecordState, changes: list[Change], world: World, name: str, change: Change
) -> set[str]:
    """Lines ``change``'s author typed into ``name`` that are neither displayed, nor held by an open
    conflict, nor deleted by an author who had them on screen."""
    value = change.values[name]
    typed = world.typed[change.op_id] & _lines(value)
    missing = typed - _lines(state.values[name])
    for conflict in state.conflicts + state.moot_conflicts:  # a deleted record's reopen with a restore
        if conflict.field == name:
            missing -= _lines(conflict.winner.value) | _lines(conflict.loser.value)
    by_version = {c.hlc: c for c in changes}
    for other in changes:
        if not missing:
            break
        if name not in other.values or name not in other.base:
            continue
        on_screen = _lines(other.base[name].value)
        for version in other.base[name].versions:  # e.g. a resolution superseding a conflict's loser
            if version in by_version and name in by_version[version].values:
                on_screen |= _lines(by_version[version].values[name])
        missing -= on_screen - _lines(other.values[name])
    return missing


def _text_undeleted(state: RecordState, changes: list[Change], name: str, change: Change) -> set[str]:
    """Lines ``change`` deleted from ``name`` that are displayed again, although no open conflict holds a
    text without them and nobody brought them back (after seeing the deletion, or by re-adding them)."""
    base = change.base.get(name)
    if base is None:
        return set()
    back = (_lines(base.value) - _lines(change.values[name])) & _lines(state.values[name])
    for conflict in state.conflicts + state.moot_conflicts:
        if conflict.field == name:
            back -= back - _lines(conflict.loser.value)
    for other in changes:
        if not back or other is change or name not in other.values:
            continue
        kept = back & _lines(other.values[name])
        if change.hlc in _ancestors(changes, name, other.hlc):
            back -= kept  # its author saw the deletion and kept (restored) the lines
        else:
            other_base = _lines(other.base[name].value) if name in other.base else set()
            back -= kept - other_base  # re-added concurrently
    return back


def assert_no_lost_edits(state: RecordState, changes: Iterable[Change], world: World) -> None:
    """Law 4 for one state and the changes it was built from (the check reads the changes, not the engine's
    own bookkeeping, for everything but "which writes are heads").

    - a superseded write was superseded by writes whose authors knew it;
    - scalar: every head's value is displayed or held by a conflict;
    - text: for *every* write (superseded or not), the lines its author typed are displayed, held by an open
      conflict, or were deleted by an author who had them on screen (lines a write merely carries over, e.g.
      a resolution keeping the other side, are not "typed" by it);
    - text: lines a write deleted are not displayed again unless an open conflict holds a text without them
      or some write brought them back (after seeing the deletion, or re-adding them concurrently);
    - set: for every write, each member it added is present, or was removed by a write that had that add
      among its ancestors (an observed remove); each member it removed is absent, or was added by a write
      that had not seen the removal (add wins);
    - a delete is visible, undone by a restore whose author saw it, or noted in a DELETE conflict.
    """
    saw = world.saw
    changes = list(changes)
    conflicts = state.conflicts + state.moot_conflicts  # a deleted record's, open again with a restore
    for change in changes:
        for name, value in change.values.items():
            fs = state.fields[name]
            version = change.hlc
            kind = SCHEMA.kind(ENTITY, name)
            if kind is FieldKind.TEXT:
                lost = _text_lost(state, changes, world, name, change)
                assert not lost, f"{name}: lines {lost} typed at {version} were lost"
                back = _text_undeleted(state, changes, name, change)
                assert not back, f"{name}: lines {back} deleted at {version} came back"
            elif kind is FieldKind.SET:
                assert isinstance(value, frozenset)
                base_set = change.base[name].value if name in change.base else frozenset()
                assert isinstance(base_set, frozenset)
                for member in value - base_set - state.values[name]:  # type: ignore[operator]
                    removers = [
                        c
                        for c in changes
                        if name in c.values
                        and name in c.base
                        and member in c.base[name].value  # type: ignore[operator]
                        and member not in c.values[name]  # type: ignore[operator]
                        and version in _ancestors(changes, name, c.hlc)
                    ]
                    assert removers, f"{name}: member {member!r} added at {version} was lost"
                for member in base_set - value & state.values[name]:  # type: ignore[operator]
                    ancestors = _ancestors(changes, name, version)
                    readders = [
                        c
                        for c in changes
                        if name in c.values
                        and member in c.values[name]  # type: ignore[operator]
                        and (name not in c.base or member not in c.base[name].value)  # type: ignore[operator]
                        and c.hlc not in ancestors
                    ]
                    assert readders, f"{name}: member {member!r} removed at {version} came back"
            if version in fs.superseded:
                successors = [c for c in changes if name in c.base and version in c.base[name].versions]
                assert successors, f"{name}@{version} superseded by nothing"
                assert all(version in saw[c.op_id] for c in successors), (
                    "superseded by an author who never saw it"
                )
                continue
            assert version in fs.versions, f"{name}@{version} neither head nor superseded"
            held = any(c.field == name and c.loser.version == version for c in conflicts)
            if kind is FieldKind.SCALAR:
                # an unlink gives way to a concurrent edit: it wanted the entry gone, the edit replaced it
                gave_way = is_unlink(change.op_id) and any(not is_unlink(w.op_id) for w in fs.heads)
                assert held or state.values[name] == value or gave_way, f"{name}: {value!r} lost"
            elif kind is FieldKind.TEXT and not held:
                assert version in state.value_versions[name]
        if change.kind is ChangeKind.DELETE:
            ts = state.tombstone
            if change.hlc in ts.superseded:
                restorers = [
                    c for c in changes if TOMBSTONE in c.base and change.hlc in c.base[TOMBSTONE].versions
                ]
                assert restorers and all(change.hlc in saw[c.op_id] for c in restorers)
            elif not state.deleted:
                assert any(
                    c.kind is ConflictKind.DELETE and c.loser.version == change.hlc for c in conflicts
                ), "a delete was overridden without a conflict note"
    if state.tombstone.heads and all(w.deleted for w in state.tombstone.heads):
        # live iff some field head no delete saw is an edit, or an unlink over such an edit (read from the
        # changes themselves: an unlink's base names the writes it superseded)
        covered = frozenset().union(*(w.covers for w in state.tombstone.heads))
        written = {(name, c.hlc): c for c in changes for name in c.values}

        def restores(name: str, version: HLC, *, under_unlink: bool = False) -> bool:
            if version in covered:
                return False
            change = written.get((name, version))
            if change is None or not is_unlink(change.op_id):
                return True
            if under_unlink and SCHEMA.kind(ENTITY, name) is FieldKind.SCALAR:
                return True  # a scalar field keeps no history: a superseded write counts as the edit it was
            base = change.base[name].versions if name in change.base else frozenset()
            return any(restores(name, v, under_unlink=True) for v in base)

        live = any(restores(name, head.version) for name, fs in state.fields.items() for head in fs.heads)
        assert state.deleted is not live, "deleted over an edit" if live else "restored by unlinks alone"
        for head in state.tombstone.heads:
            assert head.covers <= saw[head.op_id]


def check_laws(world: World, order: list[int], subsets: tuple[list[int], list[int]]) -> None:
    # Law 1 (idempotence), 2 (order independence) and 4 on every replica, for what it has seen.
    for replica in world.replicas:
        if replica.state is None:
            continue
        known = list(replica.known.values())
        for change in known:
            outcome = merge_change(replica.state, change, SCHEMA)
            assert outcome.kind is OutcomeKind.NOOP
            assert outcome.state == replica.state
        permuted = [known[i % len(known)] for i in order] + known  # a drawn order, then everything
        assert fold_changes(permuted, SCHEMA) == replica.state
        assert fold_changes(reversed(known), SCHEMA) == replica.state
        assert_no_lost_edits(replica.state, known, world)

    everything = list(world.all_changes().values())
    final = fold_changes(sorted(everything, key=lambda c: c.hlc), SCHEMA)
    assert final is not None
    assert fold_changes(sorted(everything, key=lambda c: c.hlc, reverse=True), SCHEMA) == final

    # Law 3: everyone syncs with everyone; all replicas are then equal, and equal to the fold of all changes.
    for _ in range(2):
        for dst in world.replicas:
            for src in world.replicas:
                if src is not dst:
                    _deliver(world, src, dst, by_state=False, reverse=False)
    assert all(r.state == final for r in world.replicas)
    assert_no_lost_edits(final, everything, world)
    for conflict in final.conflicts:
        event(f"final state has a {conflict.kind} conflict")
    for name, fs in final.fields.items():
        if len(fs.heads) > 1 and len(final.value_versions[name]) > 1:
            event(f"final {SCHEMA.kind(ENTITY, name)} value merged from concurrent heads")
    event(f"final record deleted={final.deleted}")

    # The state join is a homomorphism of set union: join(fold(A), fold(B)) == fold(A | B).
    first = [everything[i % len(everything)] for i in subsets[0]]
    second = [everything[i % len(everything)] for i in subsets[1]]
    fa, fb = fold_changes(first, SCHEMA), fold_changes(second, SCHEMA)
    if fa is not None and fb is not None:
        joined = merge_states(fa, fb, SCHEMA)
        assert joined == merge_states(fb, fa, SCHEMA)
        assert joined == fold_changes(first + second, SCHEMA)
        assert merge_states(joined, fa, SCHEMA) == joined


indexes = st.lists(st.integers(0, 1000), max_size=40)

SMALL = st.integers(0, 7)


@st.composite
def offline_sessions(draw: st.DrawFn) -> list[tuple[int, ...]]:
    """Rounds in which every replica makes several edits offline (so concurrent *lineages* of edits form,
    not just concurrent single edits), then replicas sync (each pair with some probability)."""
    actions: list[tuple[int, ...]] = []
    for _round in range(draw(st.integers(1, 3))):
        for replica in range(len(NODES)):
            for _ in range(draw(st.integers(0, 3))):
                step = len(actions)  # run_history rotates replicas by step; aim at `replica`
                # Mostly the merging kinds: body (text) and tag_ids (set).
                target = draw(st.sampled_from([FIELDS.index("body"), FIELDS.index("tag_ids"), 0, 2, 3]))
                picks = (target, draw(SMALL), draw(SMALL), draw(SMALL))
                actions.append(
                    (VERBS.index("edit"), (replica - step) % len(NODES), *picks, draw(st.integers(0, 2000)))
                )
        for dst in range(len(NODES)):
            for offset in (0, 1):
                if draw(st.integers(0, 3)) == 0:
                    continue  # leave this pair unsynced for a round
                step = len(actions)
                by_state, reverse = draw(st.integers(0, 1)), draw(st.integers(0, 1))
                actions.append(
                    (VERBS.index("sync"), (dst - step) % len(NODES), offset, by_state, reverse, 0, 0)
                )
    return actions


@LAW_SETTINGS
@given(history=histories, order=st.permutations(range(40)), subsets=st.tuples(indexes, indexes))
def test_laws_hold_for_simulated_histories(
    history: tuple[list[tuple[int, ...]], list[int], bool],
    order: list[int],
    subsets: tuple[list[int], list[int]],
) -> None:
    world = run_history(*history)
    check_laws(world, order, subsets)


@pytest.mark.slow
@settings(
    derandomize=True,
    max_examples=SLOW_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    history=st.tuples(
        st.lists(action_strategy, min_size=20, max_size=80),
        st.lists(st.integers(-60_000, 60_000), min_size=3, max_size=3),
        st.booleans(),
    ),
    order=st.permutations(range(100)),
    subsets=st.tuples(indexes, indexes),
)
def test_laws_hold_for_long_histories(
    history: tuple[list[tuple[int, ...]], list[int], bool],
    order: list[int],
    subsets: tuple[list[int], list[int]],
) -> None:
    world = run_history(*history)
    check_laws(world, order, subsets)


@LAW_SETTINGS
@given(
    actions=offline_sessions(),
    skews=st.lists(st.integers(-5000, 5000), min_size=3, max_size=3),
    order=st.permutations(range(40)),
    subsets=st.tuples(indexes, indexes),
)
def test_laws_hold_for_offline_editing_sessions(
    actions: list[tuple[int, ...]], skews: list[int], order: list[int], subsets: tuple[list[int], list[int]]
) -> None:
    world = run_history(actions, skews)
    check_laws(world, order, subsets)


@settings(derandomize=True, max_examples=EXAMPLES, deadline=None)
@given(history=histories, data=st.data())
def test_every_delivery_order_converges(
    history: tuple[list[tuple[int, ...]], list[int], bool], data: st.DataObject
) -> None:
    """Convergence for a full permutation of all changes drawn by hypothesis (not only index shuffles)."""
    world = run_history(*history)
    everything = list(world.all_changes().values())
    reference = fold_changes(sorted(everything, key=lambda c: c.op_id), SCHEMA)
    shuffled = data.draw(st.permutations(everything))
    assert fold_changes(shuffled, SCHEMA) == reference
    # Applying each change twice, anywhere in the sequence, changes nothing either.
    doubled = [c for change in shuffled for c in (change, change)]
    assert fold_changes(doubled, SCHEMA) == reference


@LAW_SETTINGS
@given(
    history=histories,
    order=st.permutations(range(40)),
    subsets=st.tuples(indexes, indexes),
    limit=st.integers(0, 2),
)
def test_laws_hold_with_a_short_text_history(
    history: tuple[list[tuple[int, ...]], list[int], bool],
    order: list[int],
    subsets: tuple[list[int], list[int]],
    limit: int,
) -> None:
    """Text fields keep only their newest superseded writes (``TEXT_HISTORY_LIMIT``, 16); with a window of
    0-2 writes, forks are deeper than it all the time, and the laws still hold: replays change nothing,
    delivery order does not matter, replicas with the same changes are identical, and no edit is lost (a
    merge that cannot find its ancestor any more opens a conflict)."""
    with mock.patch.object(merge_module, "TEXT_HISTORY_LIMIT", limit):
        world = run_history(*history)
        check_laws(world, order, subsets)
        for replica in world.replicas:
            if replica.state is None:
                continue
            for name, fs in replica.state.fields.items():
                if SCHEMA.kind(ENTITY, name) is FieldKind.TEXT:
                    assert len(fs.history) <= limit


def test_a_text_field_keeps_its_newest_superseded_writes() -> None:
    body = "x" * 2000
    state = make_create(
        ENTITY, RECORD, {"title": "t", "body": body}, schema=SCHEMA, node="n0", hlc=HLC(1, 0, "n0"), op_id="c"
    )
    merged = merge_change(None, state, SCHEMA).state
    for n in range(1, 60):
        edit = make_edit(
            merged, {"body": f"{body}{n}"}, schema=SCHEMA, node="n0", hlc=HLC(1 + n, 0, "n0"), op_id=f"e{n}"
        )
        assert edit is not None
        merged = merge_change(merged, edit, SCHEMA).state
    body_state = merged.fields["body"]
    assert [w.op_id for w in body_state.history] == [
        f"e{n}" for n in range(59 - merge_module.TEXT_HISTORY_LIMIT, 59)
    ]
    assert len(body_state.superseded) == 59  # every superseded version is still known (late replays)
    assert merged.values["body"] == f"{body}59"
    # a late replay of a write that fell out of the window is still recognised: nothing changes
    first = make_edit(
        merge_change(None, state, SCHEMA).state,
        {"body": f"{body}1"},
        schema=SCHEMA,
        node="n0",
        hlc=HLC(2, 0, "n0"),
        op_id="e1",
    )
    assert first is not None
    again = merge_change(merged, first, SCHEMA)
    assert again.kind is OutcomeKind.NOOP and again.state == merged
