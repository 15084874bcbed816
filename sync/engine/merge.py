"""The merge rules: a record state is a join-semilattice, and a change is a one-write state.

Each field of a record is a *multi-value register*: the set of writes no known write has superseded (its
heads) plus the set of superseded versions (and, for text and set fields, the superseded writes: the
history). A write supersedes exactly the versions named in its base (what its author had on screen), so::

    join(a, b).superseded = a.superseded | b.superseded
    join(a, b).heads      = (a.heads | b.heads) minus join(a, b).superseded
    join(a, b).history    = writes of (a.heads | a.history | b.heads | b.history) in join(a, b).superseded

is the image of plain set union of "writes seen" -- commutative, associative and idempotent. That single
fact gives the laws (idempotent replay, order-independent delivery, replicas with the same changes are
equal). What a user sees is then a *pure function of that state*:

- scalar: the head with the highest (HLC, node) wins; every other head with a different value is a
  :class:`Conflict` (the losing value is kept in the state until a resolution supersedes it); an unlink
  head (a deleted entry taken off the record, ``model.is_unlink``) gives way to a concurrent edit, with no
  conflict;
- text: heads are folded from the highest version down, each merged with diff3 into the result against the
  newest known common ancestor (found through the write history, which text fields keep: the newest
  :data:`TEXT_HISTORY_LIMIT` superseded writes); a head whose
  merge overlaps stays out (the winner stays in place) and is a conflict;
- set: an observed-remove set over the write history -- a member is present iff some write added it and
  no write that removed it had seen that add: an add beats a concurrent remove, and a remove only removes
  what its author saw;
- tombstone: deleted iff every tombstone head is a delete and every field head was seen by some delete; an
  edit the deleter did not see restores the record and leaves a DELETE conflict as a note.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from outputhub.common.clock import HLC
from outputhub.sync.engine.errors import InvalidChangeError
from outputhub.sync.engine.model import (
    Change,
    ChangeKind,
    Conflict,
    ConflictKind,
    ConflictSide,
    FieldState,
    FieldWrite,
    RecordState,
    TombstoneState,
    TombstoneWrite,
    conflict_id,
    is_unlink,
)
from outputhub.sync.engine.schema import (
    TOMBSTONE,
    EntitySchema,
    FieldKind,
    FieldValue,
    check_value,
    default_value,
    same_value,
)
from outputhub.sync.engine.textmerge import merge3


class OutcomeKind(StrEnum):
    APPLIED = "applied"  # the change's values are in place as written
    MERGED = "merged"  # the state changed, but some value in place is a merge with (or beats) the change
    CONFLICT = "conflict"  # the change opened at least one conflict
    NOOP = "noop"  # nothing changed (a replay, or a change every part of which is already superseded)


@dataclass(frozen=True)
class MergeOutcome:
    """A tagged result: ``state`` is the new record state; ``conflicts`` are the conflicts this change
    opened and ``resolved`` those it closed (all open conflicts are in ``state.conflicts``)."""

    kind: OutcomeKind
    state: RecordState
    conflicts: tuple[Conflict, ...] = ()
    resolved: tuple[Conflict, ...] = ()


# -- building states ---------------------------------------------------------------------------------------


def _canonical(value: FieldValue) -> tuple[str, str]:
    if isinstance(value, frozenset):
        return ("frozenset", "\x00".join(sorted(value)))
    return (type(value).__name__, repr(value))


def _field_write_key(write: FieldWrite) -> tuple[object, ...]:
    return (write.op_id, _canonical(write.value), _canonical(write.base_value), sorted(write.base_versions))


def _tombstone_write_key(write: TombstoneWrite) -> tuple[object, ...]:
    return (write.op_id, write.deleted, sorted(write.covers))


TEXT_HISTORY_LIMIT: Final = 16
"""The superseded writes a text field keeps: the newest this many. Merging concurrent text heads looks for
their newest common ancestor in the history; a fork deeper than this on one side merges against an older
common ancestor (a child write's base text, or the empty text every record starts from), which may open a
conflict where the full history would have merged cleanly -- nothing is lost either way. Without a bound a
prompt's body edited 200 times kept 200 bodies in its state (415 KB, sent with every pull of it). Keeping the
newest K of a union is keeping the newest K of the sides' newest K, so the join stays commutative,
associative and idempotent, and replicas that saw the same writes hold the same history. Set fields keep
their whole history (the observed-remove set reads every add and remove)."""


def _join_field(
    a: FieldState, b: FieldState, *, keep_history: bool, history_limit: int | None = None
) -> FieldState:
    superseded = a.superseded | b.superseded
    by_version: dict[HLC, FieldWrite] = {}
    for write in (*a.heads, *a.history, *b.heads, *b.history):
        kept = by_version.get(write.version)
        # The same version twice is the same write; if a faulty client reused a version, pick one the same
        # way everywhere rather than diverge.
        if kept is None or _field_write_key(write) < _field_write_key(kept):
            by_version[write.version] = write
    versions = sorted(by_version)
    heads = tuple(by_version[v] for v in versions if v not in superseded)
    history = tuple(by_version[v] for v in versions if v in superseded) if keep_history else ()
    if history_limit is not None and len(history) > history_limit:
        history = history[len(history) - history_limit :]  # ascending: the newest are last
    return FieldState(heads, superseded, history)


def _join_tombstone(a: TombstoneState, b: TombstoneState) -> TombstoneState:
    superseded = a.superseded | b.superseded
    by_version: dict[HLC, TombstoneWrite] = {}
    for write in (*a.heads, *b.heads):
        if write.version in superseded:
            continue
        kept = by_version.get(write.version)
        if kept is None or _tombstone_write_key(write) < _tombstone_write_key(kept):
            by_version[write.version] = write
    return TombstoneState(tuple(by_version[v] for v in sorted(by_version)), superseded)


def state_from_change(change: Change, schema: EntitySchema) -> RecordState:
    """The state that knows exactly one change (validated against ``schema``)."""
    change.validate(schema)
    fields: dict[str, FieldState] = {}
    for name, value in change.values.items():
        base = change.base.get(name)
        kind = schema.kind(change.entity, name)
        write = FieldWrite(
            version=change.hlc,
            op_id=change.op_id,
            value=value,
            base_value=base.value if base is not None else default_value(kind),
            base_versions=base.versions if base is not None else frozenset(),
        )
        fields[name] = FieldState((write,), write.base_versions)
    tomb_base = change.base.get(TOMBSTONE)
    tomb_superseded = tomb_base.versions if tomb_base is not None else frozenset()
    if change.kind is ChangeKind.DELETE:
        covers = frozenset().union(*(b.versions for n, b in change.base.items() if n != TOMBSTONE))
        tombstone = TombstoneState((TombstoneWrite(change.hlc, change.op_id, True, covers),), tomb_superseded)
    elif change.kind in (ChangeKind.CREATE, ChangeKind.RESTORE):
        tombstone = TombstoneState((TombstoneWrite(change.hlc, change.op_id, False),), tomb_superseded)
    else:
        tombstone = TombstoneState()
    return build_state(schema, change.entity, change.record_id, fields, tombstone)


def merge_states(a: RecordState, b: RecordState, schema: EntitySchema) -> RecordState:
    """The join of two states of the same record (state-based replication: commutative, associative,
    idempotent)."""
    if (a.entity, a.record_id) != (b.entity, b.record_id):
        raise InvalidChangeError(f"cannot merge {a.entity}/{a.record_id} with {b.entity}/{b.record_id}")
    empty = FieldState()
    fields = {
        name: _join_field(
            a.fields.get(name, empty),
            b.fields.get(name, empty),
            keep_history=schema.kind(a.entity, name) is not FieldKind.SCALAR,
            history_limit=TEXT_HISTORY_LIMIT if schema.kind(a.entity, name) is FieldKind.TEXT else None,
        )
        for name in sorted(a.fields.keys() | b.fields.keys())
    }
    return build_state(schema, a.entity, a.record_id, fields, _join_tombstone(a.tombstone, b.tombstone))


def merge_change(current: RecordState | None, change: Change, schema: EntitySchema) -> MergeOutcome:
    """Apply one change (local or remote) to a record's state. Pure and deterministic.

    Idempotence rests on write identity, not on a set of op ids: a write is identified by its version (its
    HLC, which includes the node), and a replayed write is either already a head or already superseded.
    """
    incoming = state_from_change(change, schema)
    if current is None:
        new = incoming
    else:
        if (current.entity, current.record_id) != (change.entity, change.record_id):
            raise InvalidChangeError(
                f"change for {change.entity}/{change.record_id} "
                f"applied to {current.entity}/{current.record_id}"
            )
        new = merge_states(current, incoming, schema)
        if new == current:
            return MergeOutcome(OutcomeKind.NOOP, current)
    before = {c.id: c for c in current.conflicts} if current is not None else {}
    after = {c.id for c in new.conflicts}
    opened = tuple(c for c in new.conflicts if c.id not in before)
    resolved = tuple(c for cid, c in sorted(before.items()) if cid not in after)
    if opened:
        kind = OutcomeKind.CONFLICT
    elif _as_written(new, change):
        kind = OutcomeKind.APPLIED
    else:
        kind = OutcomeKind.MERGED
    return MergeOutcome(kind, new, opened, resolved)


def _as_written(state: RecordState, change: Change) -> bool:
    for name, value in change.values.items():
        if not same_value(state.values[name], value) or change.hlc not in state.value_versions[name]:
            return False
    return state.deleted is (change.kind is ChangeKind.DELETE)


def fold_changes(
    changes: Iterable[Change], schema: EntitySchema, *, initial: RecordState | None = None
) -> RecordState | None:
    """Apply changes of one record in the given order (the laws say the order does not matter)."""
    state = initial
    for change in changes:
        state = merge_change(state, change, schema).state
    return state


# -- materializing -----------------------------------------------------------------------------------------


def _ancestry(writes: Mapping[HLC, FieldWrite]) -> Callable[[HLC], frozenset[HLC]]:
    """``anc(v)``: ``v`` and every version reachable through the known writes' bases (a version whose write
    has not arrived yet is a leaf). Every version in ``anc(v)`` really is a causal ancestor of ``v``."""
    memo: dict[HLC, frozenset[HLC]] = {}

    def anc(version: HLC) -> frozenset[HLC]:
        found = memo.get(version)
        if found is None:
            seen: set[HLC] = set()
            stack = [version]
            while stack:
                current = stack.pop()
                if current not in seen:
                    seen.add(current)
                    write = writes.get(current)
                    if write is not None:
                        stack.extend(write.base_versions)
            found = memo[version] = frozenset(seen)
        return found

    return anc


def _base_rank(versions: frozenset[HLC]) -> tuple[object, ...]:
    """Orders candidate merge bases, newest first wins. HLCs respect causality, so a state that descends
    from another has a version at least as high: the newest common ancestor gives the fewest conflicts."""
    if not versions:
        return (0,)
    return (1, max(versions), len(versions), tuple(sorted(versions)))


@dataclass(frozen=True)
class _Materialized:
    value: FieldValue
    versions: frozenset[HLC]
    conflicts: tuple[Conflict, ...]


def _scalar(entity: str, record_id: str, name: str, heads: tuple[FieldWrite, ...]) -> _Materialized:
    # an unlink (a deleted entry taken off the record) loses to a concurrent edit, with no conflict: it only
    # wanted the entry gone, and the edit replaced it (QA: a stage set offline lost to the unlink of the
    # stage it replaced, kept only as a conflict)
    edits = [w for w in heads if not is_unlink(w.op_id)]
    winner = (edits or heads)[-1]
    kept = frozenset(
        w.version for w in heads if same_value(w.value, winner.value) or (edits and is_unlink(w.op_id))
    )
    conflicts = tuple(
        Conflict(
            id=conflict_id(entity, record_id, name, winner.version, loser.version),
            entity=entity,
            record_id=record_id,
            field=name,
            kind=ConflictKind.VALUE,
            winner=ConflictSide(winner.version, winner.op_id, winner.value),
            loser=ConflictSide(loser.version, loser.op_id, loser.value),
            base=loser.base_value,
            resolves=((name, kept | {loser.version}),),
        )
        for loser in heads
        if loser.version not in kept
    )
    return _Materialized(winner.value, kept, conflicts)


def _text(entity: str, record_id: str, name: str, state: FieldState) -> _Materialized:
    heads = state.heads
    if len(heads) == 1:
        return _Materialized(heads[0].value, frozenset({heads[0].version}), ())
    writes = {w.version: w for w in (*state.history, *heads)}
    anc = _ancestry(writes)
    # Every state whose text is known, as (versions, text): each write's result and each write's base, plus
    # the empty text every record starts from (a common ancestor of everything).
    candidates: list[tuple[frozenset[HLC], FieldValue]] = [(frozenset(), "")]
    for version in sorted(writes):
        write = writes[version]
        candidates.append((frozenset({version}), write.value))
        if write.base_versions:
            candidates.append((write.base_versions, write.base_value))

    ordered = sorted(heads, key=lambda w: w.version, reverse=True)
    winner = ordered[0]
    text = winner.value
    assert isinstance(text, str)
    common = anc(winner.version)  # versions that are ancestors of every head merged so far
    kept = {winner.version}
    failed: list[tuple[FieldWrite, FieldValue]] = []
    for head in ordered[1:]:
        assert isinstance(head.value, str)
        shared = common & anc(head.version)
        if head.value == text:
            kept.add(head.version)
            common = shared
            continue
        # Merge against a true common ancestor (never against one side's own base: that would read the
        # other side's earlier edits as reverts).
        base = _merge_base(shared, candidates, writes, anc)
        merged = merge3(base, text, head.value)
        if merged.clean:
            text, common = merged.text, shared
            kept.add(head.version)
        else:
            failed.append((head, base))
    versions = frozenset(kept)
    conflicts = tuple(
        Conflict(
            id=conflict_id(entity, record_id, name, winner.version, loser.version),
            entity=entity,
            record_id=record_id,
            field=name,
            kind=ConflictKind.TEXT,
            winner=ConflictSide(winner.version, winner.op_id, text),
            loser=ConflictSide(loser.version, loser.op_id, loser.value),
            base=base_value,
            resolves=((name, versions | {loser.version}),),
        )
        for loser, base_value in failed
    )
    return _Materialized(text, versions, conflicts)


def _merge_base(
    shared: frozenset[HLC],
    candidates: list[tuple[frozenset[HLC], FieldValue]],
    writes: Mapping[HLC, FieldWrite],
    anc: Callable[[HLC], frozenset[HLC]],
) -> str:
    """The text two heads merge against, given ``shared``, the versions that are ancestors of both.

    With one newest shared version (every other shared one its ancestor), the newest known state within
    ``shared``. With several, none descending from another (a criss-cross: two replicas that each saw the
    same concurrent writes, e.g. both resolved one conflict), no single known state is their common base: the
    text in place when they wrote showed one side of a conflict, not a merge of both. Against it, a write
    that kept that text read as "no change" and the other won in silence (QA: two resolutions of one text
    conflict, one of them dropped). The base is then the merge of the newest shared versions against their
    own common base, as a recursive three-way merge takes it; when they do not merge cleanly, their own
    common base (so the heads conflict again, nothing dropped)."""
    newest = [v for v in shared if not any(u != v and v in anc(u) for u in shared)]
    if len(newest) > 1:
        below = frozenset.intersection(*(anc(v) for v in newest)) - frozenset(newest)
        inner = _merge_base(below, candidates, writes, anc)
        texts = [writes[v].value for v in sorted(newest) if v in writes]
        if len(texts) < len(newest):  # a text beyond the kept history: the older base, conservatively
            return inner
        text = texts[0]
        for other in texts[1:]:
            assert isinstance(text, str) and isinstance(other, str)
            merged = merge3(inner, text, other)
            if not merged.clean:
                return inner
            text = merged.text
        assert isinstance(text, str)
        return text
    base = max((c for c in candidates if c[0] <= shared), key=lambda c: _base_rank(c[0]))[1]
    assert isinstance(base, str)
    return base


def _set(state: FieldState) -> _Materialized:
    """An observed-remove set over the write history: a member is in the set iff some write added it
    (relative to its base) and no write that removed it had that add among its ancestors. So an add beats
    a concurrent remove, and a remove only removes adds its author saw."""
    heads = state.heads
    versions = frozenset(w.version for w in heads)
    if len(heads) == 1:
        return _Materialized(heads[0].value, versions, ())
    writes = {w.version: w for w in (*state.history, *heads)}
    anc = _ancestry(writes)
    adds: dict[str, list[HLC]] = {}
    removes: dict[str, list[HLC]] = {}
    for version in sorted(writes):
        value, base = writes[version].value, writes[version].base_value
        assert isinstance(value, frozenset) and isinstance(base, frozenset)
        for member in value - base:
            adds.setdefault(member, []).append(version)
        for member in base - value:
            removes.setdefault(member, []).append(version)
    members: set[str] = set(adds)
    for head in heads:
        assert isinstance(head.value, frozenset)
        members |= head.value
    result: set[str] = set()
    for member in members:
        observed_by_removal = [anc(r) for r in removes.get(member, [])]
        member_adds = adds.get(member, [])
        alive = any(all(a not in seen for seen in observed_by_removal) for a in member_adds)
        if not alive:
            # A head holding the member with no known add among its ancestors: the add has not arrived yet
            # (out-of-order delivery); keep the member until it does.
            alive = any(
                isinstance(h.value, frozenset)
                and member in h.value
                and not any(a in anc(h.version) for a in member_adds)
                for h in heads
            )
        if alive:
            result.add(member)
    return _Materialized(frozenset(result), versions, ())


def build_state(
    schema: EntitySchema,
    entity: str,
    record_id: str,
    fields: Mapping[str, FieldState],
    tombstone: TombstoneState,
) -> RecordState:
    """Assemble a canonical :class:`RecordState` from raw field and tombstone registers."""
    entity_type = schema.entity(entity)
    raw = {
        name: replace(state, history=())
        if state.history and entity_type.fields.get(name) is FieldKind.SCALAR
        else state
        for name, state in sorted(fields.items())
        if state.heads or state.superseded
    }
    values: dict[str, FieldValue] = {}
    versions: dict[str, frozenset[HLC]] = {}
    conflicts: list[Conflict] = []
    for name, kind in entity_type.fields.items():
        state = raw.get(name)
        if state is None or not state.heads:
            values[name], versions[name] = default_value(kind), frozenset()
            continue
        for write in state.heads:
            check_value(entity, name, kind, write.value)
        if kind is FieldKind.SCALAR:
            out = _scalar(entity, record_id, name, state.heads)
        elif kind is FieldKind.TEXT:
            out = _text(entity, record_id, name, state)
        else:
            out = _set(state)
        values[name], versions[name] = out.value, out.versions
        conflicts.extend(out.conflicts)
    unknown = raw.keys() - entity_type.fields.keys()
    if unknown:
        raise InvalidChangeError(f"{entity} has no field(s) {', '.join(repr(n) for n in sorted(unknown))}")
    deleted, tomb_conflicts = _tombstone(entity, record_id, raw, tombstone)
    moot: list[Conflict] = []
    if deleted:
        # a deleted record's value conflicts are moot while it is deleted: not open (listed nowhere, not
        # resolvable), open again under the same ids if it is restored. Left open, resolving one restored
        # the record on every replica without a word (found by QA); the registers keep both sides
        moot, conflicts = conflicts, []
    conflicts.extend(tomb_conflicts)
    return RecordState(
        entity=entity,
        record_id=record_id,
        fields=raw,
        tombstone=tombstone,
        values=values,
        value_versions=versions,
        deleted=deleted,
        conflicts=tuple(sorted(conflicts, key=lambda c: c.id)),
        moot_conflicts=tuple(sorted(moot, key=lambda c: c.id)),
    )


def _tombstone(
    entity: str, record_id: str, fields: Mapping[str, FieldState], tombstone: TombstoneState
) -> tuple[bool, tuple[Conflict, ...]]:
    deletes = [w for w in tombstone.heads if w.deleted]
    if not deletes:
        return False, ()
    covered = frozenset().union(*(d.covers for d in deletes))
    # an unlink (a deleted entry taken off the record) restores only what it carried on: an edit no delete saw
    # among the writes it superseded. Alone, it is the delete of the entry reaching a record deleted meanwhile
    # (QA: it brought the record back, with a conflict)
    restorers = [(w.version, w.op_id) for w in tombstone.heads if not w.deleted]
    for state in fields.values():
        for w in state.heads:
            if w.version in covered:
                continue
            origin = _carried_edit(state, w, covered) if is_unlink(w.op_id) else (w.version, w.op_id)
            if origin is not None:
                restorers.append(origin)
    if not restorers:
        return True, ()
    # named by the newest edit that restores it, also when an unlink has superseded it since: taking a deleted
    # entry off a restored record changes nothing about why it is live (its conflict keeps its id)
    top_version, top_op = max(restorers)
    resolves = tuple(
        sorted(
            [(TOMBSTONE, tombstone.versions)]
            + [(name, state.versions) for name, state in fields.items() if state.heads]
        )
    )
    return False, tuple(
        Conflict(
            id=conflict_id(entity, record_id, TOMBSTONE, top_version, d.version),
            entity=entity,
            record_id=record_id,
            field=TOMBSTONE,
            kind=ConflictKind.DELETE,
            winner=ConflictSide(top_version, top_op, False),
            loser=ConflictSide(d.version, d.op_id, True),
            base=False,
            resolves=resolves,
        )
        for d in deletes
    )


def _carried_edit(state: FieldState, unlink: FieldWrite, covered: frozenset[HLC]) -> tuple[HLC, str] | None:
    """The newest edit no delete saw (``covered``) that ``unlink`` carried on: following the writes it
    superseded back through unlinks, as far as the field's history holds them (set fields keep all of it);
    a superseded version the history does not hold (scalar fields keep none; there an unlink can only follow
    the edit that gave the field its value) counts as that edit. None: it carried none on, it restores
    nothing."""
    history = {w.version: w for w in state.history}
    found: list[tuple[HLC, str]] = []
    todo, seen = [unlink], set()
    while todo:
        write = todo.pop()
        for version in write.base_versions - covered:
            if version in seen:
                continue
            seen.add(version)
            prior = history.get(version)
            if prior is None:
                found.append((version, write.op_id))
            elif is_unlink(prior.op_id):
                todo.append(prior)
            else:
                found.append((prior.version, prior.op_id))
    return max(found) if found else None
