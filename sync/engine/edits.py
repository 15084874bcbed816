"""Turning user intent into changes: create, edit, delete, restore, and conflict resolution.

These functions compute each change's base from the replica's current state, which is what makes the
merge rules sound: a write supersedes exactly what its author had on screen. The caller supplies the node,
a fresh HLC (``outputhub.common.clock.tick``) and a fresh op id; nothing here reads a clock or makes ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from outputhub.common.clock import HLC
from outputhub.sync.engine.errors import InvalidChangeError
from outputhub.sync.engine.model import Change, ChangeKind, Conflict, ConflictKind, FieldBase, RecordState
from outputhub.sync.engine.schema import (
    TOMBSTONE,
    EntitySchema,
    FieldKind,
    FieldValue,
    check_value,
    same_value,
)


def coerce_value(schema: EntitySchema, entity: str, name: str, value: object) -> FieldValue:
    """Validate a value for its field; set fields also accept any iterable of str (made a frozenset)."""
    kind = schema.kind(entity, name)
    if kind is FieldKind.SET and not isinstance(value, frozenset | str) and isinstance(value, Iterable):
        value = frozenset(value)
    return check_value(entity, name, kind, value)


def make_create(
    entity: str,
    record_id: str,
    values: Mapping[str, object],
    *,
    schema: EntitySchema,
    node: str,
    hlc: HLC,
    op_id: str,
) -> Change:
    """A new record with its initial values (unset fields keep their kind's default)."""
    coerced = {name: coerce_value(schema, entity, name, v) for name, v in sorted(values.items())}
    change = Change(entity, record_id, node, hlc, op_id, ChangeKind.CREATE, coerced)
    change.validate(schema)
    return change


def make_edit(
    state: RecordState,
    values: Mapping[str, object],
    *,
    schema: EntitySchema,
    node: str,
    hlc: HLC,
    op_id: str,
    seen: Mapping[str, object] | None = None,
) -> Change | None:
    """An update of the fields whose value differs from what ``state`` shows; ``None`` if none does.

    The base of each field is the displayed value and the versions it is made of; an open conflict's losing
    value is not part of the display, so an ordinary edit leaves the conflict open (only :func:`resolve`
    closes it). ``seen``: for a field the editor showed with another value than ``state`` holds now (a
    sync wrote it while the user typed), that value: the edit is then made from it, concurrent with the
    write the user never saw (a text merges against it, a single value is a conflict), instead of
    overwriting that write silently.
    """
    if state.deleted:
        raise InvalidChangeError(f"{state.entity} {state.record_id} is deleted: restore it before editing")
    changed: dict[str, FieldValue] = {}
    for name, raw in sorted(values.items()):
        value = coerce_value(schema, state.entity, name, raw)
        if not same_value(value, state.values[name]):
            changed[name] = value
    if not changed:
        return None
    base = {name: FieldBase(state.values[name], state.value_versions[name]) for name in changed}
    for name, shown in (seen or {}).items():
        if name not in changed or schema.kind(state.entity, name) is FieldKind.SET:
            continue
        shown = coerce_value(schema, state.entity, name, shown)
        if not same_value(shown, state.values[name]):  # made from a value no longer there
            # made of the newest superseded write of that value (a text keeps its history): the common
            # ancestor a merge of the text needs; none known: concurrent with everything there (§5.3)
            field_state = state.fields.get(name)
            known = [w.version for w in (field_state.history if field_state else ()) if w.value == shown]
            base[name] = FieldBase(shown, frozenset(known[-1:]))
    change = Change(state.entity, state.record_id, node, hlc, op_id, ChangeKind.UPDATE, changed, base)
    change.validate(schema)
    return change


def make_delete(state: RecordState, *, schema: EntitySchema, node: str, hlc: HLC, op_id: str) -> Change:
    """Tombstone a record. The base lists every field version on this replica: an edit not among them is
    concurrent, and it will restore the record."""
    if state.deleted:
        raise InvalidChangeError(f"{state.entity} {state.record_id} is already deleted")
    base = {name: FieldBase(None, fs.versions) for name, fs in state.fields.items() if fs.heads}
    base[TOMBSTONE] = FieldBase(False, state.tombstone.versions)
    change = Change(state.entity, state.record_id, node, hlc, op_id, ChangeKind.DELETE, {}, base)
    change.validate(schema)
    return change


def make_restore(state: RecordState, *, schema: EntitySchema, node: str, hlc: HLC, op_id: str) -> Change:
    """Undo the deletes this replica has seen."""
    if not state.deleted:
        raise InvalidChangeError(f"{state.entity} {state.record_id} is not deleted")
    base = {TOMBSTONE: FieldBase(True, state.tombstone.versions)}
    change = Change(state.entity, state.record_id, node, hlc, op_id, ChangeKind.RESTORE, {}, base)
    change.validate(schema)
    return change


class Resolution(StrEnum):
    KEEP_MINE = "keep_mine"
    KEEP_THEIRS = "keep_theirs"


@dataclass(frozen=True)
class Merged:
    """Resolve with a new value (typically a hand merge of both sides)."""

    value: FieldValue


def same_replica(a: str, b: str) -> bool:
    """Whether two node ids are one replica's: a replica writes as ``<its id>.<per-open suffix>`` (so two
    copies of its file never stamp two writes alike), and its writes from every open, and from before
    suffixes, are its own."""
    return a.partition(".")[0] == b.partition(".")[0]


def sides(conflict: Conflict, node: str) -> tuple[str, str]:
    """Which side is "mine" for ``node``: ``("winner", "loser")`` or ``("loser", "winner")``.

    Mine is the side ``node``'s replica wrote (:func:`same_replica`); when it wrote both or neither, mine
    is the winner -- the value in place on the resolving replica.
    """
    if same_replica(conflict.loser.node, node) and not same_replica(conflict.winner.node, node):
        return "loser", "winner"
    return "winner", "loser"


def written_here(conflict: Conflict, node: str) -> Literal["mine", "both", "neither"]:
    """Which of ``conflict``'s sides ``node``'s replica wrote: ``"mine"`` (one of them: :func:`sides` calls
    it mine), ``"both"`` or ``"neither"`` (mine is then only the value in place, which a user must be told:
    "mine" alone reads as "what I wrote")."""
    winner, loser = same_replica(conflict.winner.node, node), same_replica(conflict.loser.node, node)
    if winner and loser:
        return "both"
    return "mine" if winner or loser else "neither"


def resolve(
    conflict: Conflict,
    choice: Resolution | Merged,
    *,
    node: str,
    hlc: HLC,
    op_id: str,
) -> Change:
    """A change that closes ``conflict`` (it supersedes both sides); it replicates like any edit.

    For a DELETE conflict, keeping the delete yields a new delete (covering every version the conflict saw)
    and keeping the edit yields a restore; ``Merged`` is not allowed there.
    """
    resolves = dict(conflict.resolves)
    if isinstance(choice, Merged):
        if conflict.kind is ConflictKind.DELETE:
            raise InvalidChangeError("a delete conflict is resolved by keeping the record or the delete")
        value = choice.value
    else:
        mine, theirs = sides(conflict, node)
        keep = mine if choice is Resolution.KEEP_MINE else theirs
        value = (conflict.winner if keep == "winner" else conflict.loser).value
    if conflict.kind is ConflictKind.DELETE:
        if value is True:  # the delete side
            base = {name: FieldBase(None, versions) for name, versions in resolves.items()}
            base[TOMBSTONE] = FieldBase(False, resolves[TOMBSTONE])
            return Change(conflict.entity, conflict.record_id, node, hlc, op_id, ChangeKind.DELETE, {}, base)
        base = {TOMBSTONE: FieldBase(True, resolves[TOMBSTONE])}
        return Change(conflict.entity, conflict.record_id, node, hlc, op_id, ChangeKind.RESTORE, {}, base)
    base = {conflict.field: FieldBase(conflict.winner.value, resolves[conflict.field])}
    return Change(
        conflict.entity,
        conflict.record_id,
        node,
        hlc,
        op_id,
        ChangeKind.UPDATE,
        {conflict.field: value},
        base,
    )
