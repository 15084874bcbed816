"""The Conflicts panel's use cases: open conflicts with a merge suggestion, and resolving them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from outputhub.common.clock import HLC
from outputhub.common.errors import InvalidInputError, NotFoundError
from outputhub.desktop.services.editing import LOOKUP_KINDS, Editor
from outputhub.desktop.services.library import LibraryService
from outputhub.desktop.storage import Replica
from outputhub.desktop.storage.records import ConflictRecord
from outputhub.desktop.storage.sync_store import REJECTED_FIELD, ReplicaSyncStore
from outputhub.sync.client import LocalEditError, LocalLibrary, Merged
from outputhub.sync.client.local import REQUIRED
from outputhub.sync.engine import Conflict, ConflictKind, RecordState, is_kept, written_here
from outputhub.sync.engine.edits import same_replica
from outputhub.sync.engine.schema import DEFAULT_SCHEMA, TOMBSTONE, FieldKind
from outputhub.sync.engine.textmerge import merge3


@dataclass(frozen=True, slots=True)
class ConflictItem:
    id: str
    entity: str
    record_id: str
    record_label: str
    field: str
    kind: str  # scalar / text / set / existence
    base: Any
    mine: Any
    theirs: Any
    suggestion: Any
    suggestion_note: str
    created_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)
    """For a field naming other records (a stage, tags, a prompt): each id the sides name -> its name."""
    written_here: str | None = "mine"
    """Which sides this replica wrote (:func:`sides_written_here`): "mine", "both" or "neither"."""
    kept_in_use: str = ""
    """A delete conflict the server opened by keeping a record that others name: what names it, in words
    (:meth:`KeptInUse.words`); empty for every other conflict."""

    @property
    def is_reference(self) -> bool:
        return self.kind not in ("existence", "rejected") and self.field in references_of(self.entity)


def references_of(entity: str) -> Mapping[str, str]:
    try:
        return DEFAULT_SCHEMA.entity(entity).references
    except Exception:
        return {}


def suggest(kind: str, base: Any, mine: Any, theirs: Any, *, written: str | None = "mine") -> tuple[Any, str]:
    """A merge suggestion for one conflicting field and a sentence saying how it was made. ``written``
    (:func:`sides_written_here`) names mine in that sentence as the sides' headings do: it said "yours" on a
    replica that wrote neither side (QA)."""
    heading = sides_heading(written)[0]
    mine_named = heading[0].lower() + heading[1:]  # "mine (this computer)", "mine (in place here; ...)"
    if kind == FieldKind.TEXT and all(isinstance(v, str | None) for v in (base, mine, theirs)):
        merged = merge3(base or "", mine or "", theirs or "")
        if merged.clean:
            return merged.text, "Both edits merged line by line without overlap."
        return (
            merged.text,
            f"{len(merged.conflicts)} overlapping passage(s): {mine_named} kept there, review it.",
        )
    if kind == "existence":
        return mine, (
            "One side deleted the record while the other edited it, or started using it (an output under "
            "a prompt, a tag on a record): that kept it. Keep mine or keep theirs decides whether it stays "
            "or is deleted (a delete takes what uses it along: a prompt's outputs, a tag off its records)."
        )
    if kind == "rejected":
        return mine, (
            "The server refused this edit (shown as mine; its reason as theirs). Keep mine makes it again, "
            "for the next sync, once what made the server refuse it has changed (say, you were made an "
            "editor); keep theirs drops it."
        )
    if kind == FieldKind.SET:
        union = sorted(set(mine or ()) | set(theirs or ()))
        return union, "Both sides' entries kept (union)."
    return mine, f"A single value: {mine_named} is suggested; pick theirs if it is the right one."


def sides_written_here(replica: Replica, conflict: ConflictRecord) -> str | None:
    """Which sides of ``conflict`` this replica wrote: "mine" (one of them, which is its "mine"), "both" or
    "neither" (its "mine" is then only the value in place: a replica that synced two others' edits must not
    be shown one of them as its own). A refused edit is this replica's own. None for a closed conflict (its
    record's state no longer holds it)."""
    if conflict.field == REJECTED_FIELD:
        return "mine"
    held = _held(replica, conflict)
    return None if held is None else written_here(held[1], replica.node_id)


def _held(replica: Replica, conflict: ConflictRecord) -> tuple[RecordState, Conflict] | None:
    """The record's merge state and the engine's conflict in it (None when closed)."""
    record = ReplicaSyncStore(replica).load(conflict.entity, conflict.record_id)
    if record is None:
        return None
    found = next((c for c in record.state.conflicts if c.id == conflict.id), None)
    return None if found is None else (record.state, found)


KEPT_NAMED_SHOWN: int = 3
"""How many of the records that keep a deleted one in use :func:`kept_in_use` names."""


@dataclass(frozen=True, slots=True)
class KeptInUse:
    """A delete conflict the server opened by keeping the deleted record live because live records name it (a
    tag put on a prompt offline while another workstation deleted the tag): nobody edited the record itself.
    ``named``: (entity, id, label) of the first records here that name it; ``total``: how many do."""

    named: tuple[tuple[str, str, str], ...]
    total: int

    def words(self) -> str:
        """``prompt “Terminal”, output “Ask …” and 2 more``; says so when none names it any more."""
        if not self.total:
            return "no record here names it any more"
        shown = ", ".join(f"{entity.replace('_', ' ')} “{label}”" for entity, _id, label in self.named)
        more = self.total - len(self.named)
        return f"{shown} and {more} more" if more > 0 else shown


def kept_in_use(replica: Replica, conflict: ConflictRecord) -> KeptInUse | None:
    """For a delete conflict that the server's keeping of a named record opened (its op id, :func:`is_kept`),
    what names the record here; None for any other conflict (an edit that met a delete, a closed one)."""
    if conflict.field != TOMBSTONE:
        return None
    held = _held(replica, conflict)
    if held is None or not is_kept(held[1].winner.op_id):
        return None
    found, total = ReplicaSyncStore(replica).named_by(
        conflict.entity, conflict.record_id, limit=KEPT_NAMED_SHOWN
    )
    return KeptInUse(tuple((e, i, label_of(replica, e, i)) for e, i in found), total)


def kept_by_edit(replica: Replica, conflict: ConflictRecord) -> list[str] | None:
    """For a delete conflict an edit opened (the edit wins over the delete): the fields that edit wrote,
    in the schema's order (``[]``: a restore, which writes none); None for any other conflict. ``show``
    said only "edited" (QA)."""
    if conflict.field != TOMBSTONE:
        return None
    held = _held(replica, conflict)
    if held is None or is_kept(held[1].winner.op_id):
        return None
    state, op = held[0], held[1].winner.op_id
    return [
        name
        for name, written in state.fields.items()
        if any(w.op_id == op for w in (*written.heads, *written.history))
    ]


def label_of(replica: Replica, entity: str, record_id: str) -> str:
    """A record as a person knows it: a prompt's title, an output's first words, a lookup's name."""
    record: Any
    if entity == "prompt":
        record = replica.get_prompt(id=record_id)
        return record.title if record else record_id
    if entity == "output":
        record = replica.get_output(id=record_id)
        return (" ".join(record.content.split())[:60] + "…") if record else record_id
    if entity == "custom_gpt":
        record = replica.get_custom_gpt(id=record_id)
        return record.name if record else record_id
    if entity in LOOKUP_KINDS:
        record = replica.get_lookup(kind=LOOKUP_KINDS[entity], id=record_id)
        return record.name if record else record_id
    return record_id


def sides_heading(written: str | None, kind: str = "") -> tuple[str, str]:
    """The headings of a conflict's mine and theirs, by :func:`sides_written_here` (and its ``kind``)."""
    if kind == "rejected":
        return "Mine (the edit the server refused)", "Theirs (the server's reason)"
    if written == "neither":
        return "Mine (in place here; written on another computer)", "Theirs (written on another computer)"
    if written == "both":
        return "Mine (in place; both written on this computer)", "Theirs (also written on this computer)"
    return "Mine (this computer)", "Theirs (another computer)"


def conflict_kind(conflict: ConflictRecord) -> str:
    """existence (deleted vs edited), rejected (an edit the server refused), or the field's kind."""
    if conflict.field == TOMBSTONE:
        return "existence"
    if conflict.field == REJECTED_FIELD:
        return "rejected"
    try:
        return DEFAULT_SCHEMA.kind(conflict.entity, conflict.field).value
    except Exception:
        return FieldKind.SCALAR.value


HELD: Final = "held"
"""Noted for a refused edit whose effect held already when it was made again (a restore of a live record, a
delete of a deleted one): a refused edit it followed counts it as made (:func:`_covered`)."""


def reapply_refused(library: LocalLibrary, refused: ConflictRecord) -> str:
    """Make a refused edit again (:func:`_reapply`), and note what it was made again as (its version, or
    :data:`HELD`), for the refused edits of the same record made again after it (``Replica.note_remade``)."""
    before = _newest_version(library, refused.entity, refused.record_id)
    done, held = _reapply(library, refused, others=_refused_of(library, refused))
    after = _newest_version(library, refused.entity, refused.record_id)
    replica = getattr(library.store, "replica", None)
    if replica is not None:
        if after is not None and after != before and same_replica(after.node, library.store.node_id):
            replica.note_remade(id=refused.id, version=after.encode())
        elif held:
            replica.note_remade(id=refused.id, version=HELD)
    return done


def _newest_version(library: LocalLibrary, entity: str, record_id: str) -> HLC | None:
    record = library.store.load(entity, record_id)
    versions = record.state.known_versions if record is not None else frozenset()
    return max(versions) if versions else None


@dataclass(frozen=True)
class _Refused:
    """Another refused edit of the same record: its clock (its version as it was refused), its base, and what
    it was made again as (a version, :data:`HELD`, or None: not made again, or dropped)."""

    hlc: str
    base: Mapping[str, Any]
    remade: str | None


def _refused_of(library: LocalLibrary, refused: ConflictRecord) -> dict[str, _Refused]:
    """This replica's other refused edits of ``refused``'s record (open or closed) by their clock; those kept
    before 2026-11-30 know neither their clock nor their base, and are left out."""
    replica = getattr(library.store, "replica", None)
    if replica is None:
        return {}
    found: dict[str, _Refused] = {}
    same = replica.list_conflicts(entity=refused.entity, record_id=refused.record_id, include_resolved=True)
    for c in same:
        if c.field != REJECTED_FIELD or c.id == refused.id or not isinstance(c.mine, dict):
            continue
        hlc, base = c.mine.get("hlc"), c.mine.get("base")
        if not hlc or not isinstance(base, dict):
            continue
        remade = c.base.get("remade_as") if isinstance(c.base, dict) else None
        found[str(hlc)] = _Refused(str(hlc), base, str(remade) if remade else None)
    return found


def _mapped_base(base: Mapping[str, Any], others: Mapping[str, _Refused]) -> dict[str, Any]:
    """``base`` (wire form) with each version that is another refused edit (one no server ever stored)
    replaced by what that edit was made again as, or, when it was not (not yet, dropped, or its effect
    held), by what it was made on itself, field by field: the edit made again supersedes what its user had
    seen, as far as it exists. Without it, an edit made again before the refused edit it was made on top of
    had no common ancestor with the record: texts that merge were a conflict, and the value both replaced
    came back as a side (QA)."""

    def versions(name: str, given: Sequence[Any], seen: frozenset[str]) -> list[str]:
        out: list[str] = []
        for v in given:
            other = others.get(str(v))
            if other is None or str(v) in seen:
                out.append(str(v))
            elif other.remade and other.remade != HELD:
                out.append(other.remade)
            else:
                pair = other.base.get(name)
                if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], list):
                    out += versions(name, pair[1], seen | {str(v)})
        return sorted(set(out))

    mapped: dict[str, Any] = {}
    for name, pair in base.items():
        if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], list):
            mapped[name] = [pair[0], versions(name, pair[1], frozenset())]
        else:
            mapped[name] = pair
    return mapped


def _covered(hlc: str, others: Mapping[str, _Refused]) -> set[str]:
    """The fields (and the tombstone) of the refused edit at ``hlc`` that a refused edit made after it, on
    top of it, holds already: made again (or found holding) first, it decides them, as it did on this
    replica. A delete made again after the restore that followed it deleted the record again: the restore
    and the edits before the delete were lost (QA)."""
    covered: set[str] = set()
    for other in others.values():
        if other.remade is None or other.hlc <= hlc:
            continue
        for name, pair in other.base.items():
            if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], list) and hlc in pair[1]:
                covered.add(name)
    return covered


def _reapply(
    library: LocalLibrary, refused: ConflictRecord, *, others: Mapping[str, _Refused]
) -> tuple[str, bool]:
    """Make a refused edit again, as a new local edit that the next sync pushes (``outputhub replica
    conflicts resolve ID --keep mine``), after whatever made the server refuse it has changed (a viewer made
    editor, a value fixed). A refused create is created again under its id (the server never stored it and
    the replica dropped it), a refused delete deletes again, an edit is applied to the record as it is now.
    Returns what was done, in words; raises ``LocalEditError`` when it cannot be done (the record is gone, a
    value is invalid): the refused edit then stays open."""
    mine = refused.mine if isinstance(refused.mine, dict) else {}
    kind = mine.get("kind")
    values = dict(mine.get("values") or {})
    entity, record_id = refused.entity, refused.record_id
    reason = str((refused.theirs or {}).get("reason") or "") if isinstance(refused.theirs, dict) else ""
    taken = None
    if reason.startswith("name-taken") and kind == "update" and "name" in values:
        # the name is still taken: making the rename again would be refused again, at every sync, with the
        # rest of the edit (a description typed with it); the rest is made again, the name left as it is
        taken = values.pop("name")
        if not values:
            raise LocalEditError(f"the name {taken!r} is taken: rename it to another name instead")
    left_out = _without_gone_references(library, entity, values)
    try:
        current: dict[str, Any] | None = library.get(entity, record_id)
    except LocalEditError:
        current = None
    if kind == "create" and current is None:
        library.create(entity, values, id=record_id)
        return f"{entity} {record_id} created again{left_out}", False
    if current is None:
        raise LocalEditError(
            f"{entity} {record_id} is no longer in this replica: nothing to apply the edit to"
        )
    base = mine.get("base")
    if isinstance(base, dict) and kind in ("update", "delete", "restore"):
        # on the base it was made on: a write made meanwhile on another replica stays concurrent with it
        # (made on the record as it is now, it overwrote such writes without a trace; QA)
        covered = _covered(str(mine.get("hlc") or ""), others)
        if kind == "update":
            later = sorted(name for name in values if name in covered)
            for name in later:
                values.pop(name)
            if later and not values:
                return f"{entity} {record_id}: a later refused edit made again holds its fields", False
        elif TOMBSTONE in covered:
            undone = "restored" if kind == "delete" else "deleted"
            return f"{entity} {record_id} was {undone} by a later refused edit made again", False
        if kind == "delete" and current["deleted"]:
            return f"{entity} {record_id} is deleted already{left_out}", True
        if kind == "restore" and not current["deleted"]:
            return f"{entity} {record_id} is not deleted any more{left_out}", True
        if kind == "update" and current["deleted"] and _deleted_here(library, entity, record_id):
            # this replica deleted it since (a delete made again after the edit): the edit would bring it
            # back, as an edit another replica made concurrently would
            return f"{entity} {record_id} is deleted here since: the refused edit is not made again", False
        if not library.remake(entity, record_id, kind, values, _mapped_base(base, others)):
            return f"{entity} {record_id} already holds the refused values{left_out}", False
        return _made_again(entity, record_id, kind, taken, left_out), False
    if kind == "delete":
        if current["deleted"]:
            raise LocalEditError(f"{entity} {record_id} is deleted already")
        library.delete(entity, record_id)
        return f"{entity} {record_id} deleted again", False
    if kind == "restore" or (kind == "create" and current["deleted"]):
        library.restore(entity, record_id)
    # a refused resolution resolves again the conflict on its field that is open now (made as a plain edit
    # of the value shown, it replaced one side only, and the conflict came back to resolve again; QA)
    resolving = set(mine.get("resolving") or ()) & set(values)
    for conflict in library.open_conflicts(entity, record_id):
        if conflict.field in resolving and conflict.kind is not ConflictKind.DELETE:
            library.resolve_conflict(entity, record_id, conflict.id, Merged(values.pop(conflict.field)))
            resolving.discard(conflict.field)
            if not values:
                return f"the refused resolution of {entity} {record_id} made again", False
    if values and not library.edit(entity, record_id, values):
        return f"{entity} {record_id} already holds the refused values{left_out}", False
    return _made_again(entity, record_id, kind or "edit", taken, left_out, said_as_done=False), False


def _made_again(
    entity: str, record_id: str, kind: str, taken: str | None, left_out: str, *, said_as_done: bool = True
) -> str:
    """What making a refused edit again did, in words (``said_as_done``: a delete or restore as "deleted
    again" / "restored again", as a refused edit made again on its base says it)."""
    if taken is not None:
        return (
            f"the refused edit of {entity} {record_id} made again without its name {taken!r}, which is "
            f"taken: rename it to another name{left_out}"
        )
    done = {"delete": "deleted again", "restore": "restored again"}.get(kind) if said_as_done else None
    if done:
        return f"{entity} {record_id} {done}{left_out}"
    return f"the refused {kind} of {entity} {record_id} made again{left_out}"


def _deleted_here(library: LocalLibrary, entity: str, record_id: str) -> bool:
    """Whether every delete that holds ``record_id`` deleted was written by this replica."""
    record = library.store.load(entity, record_id)
    heads = record.state.tombstone.heads if record is not None else ()
    return bool(heads) and all(same_replica(w.version.node, library.store.node_id) for w in heads)


def _without_gone_references(library: LocalLibrary, entity: str, values: dict[str, Any]) -> str:
    """Take out of ``values`` (in place) the references to records this replica does not hold at all (the
    server purged them, a tag deleted and purged while the edit was offline): making the edit again with
    them was refused as it was made ("there is no tag ... in this replica"), so a prompt created offline
    with such a tag could only be dropped (QA). Returns what was left out, in words (empty: nothing). A
    reference the record cannot be without (an output's prompt) stays, and the edit is refused naming it."""
    gone: list[str] = []
    for name, target in references_of(entity).items():
        value = values.get(name)
        if isinstance(value, list | tuple | set | frozenset):
            missing = sorted(str(m) for m in value if library.store.load(target, str(m)) is None)
            if missing:
                values[name] = [m for m in value if str(m) not in missing]
                gone += [f"{target} {m}" for m in missing]
        elif isinstance(value, str) and library.store.load(target, value) is None:
            if name in REQUIRED.get(entity, ()):
                continue
            values[name] = None
            gone.append(f"{target} {value}")
    if not gone:
        return ""
    return f" (left out: {', '.join(gone)}, which no longer exist{'s' if len(gone) == 1 else ''})"


@dataclass(frozen=True)
class TakenAlong:
    """What keeping a delete took with the record: live records deleted with it (a prompt's outputs, as
    ``(entity, id)``) and lookup entries taken off records (``(entity, id, field, entry id)``)."""

    deleted: tuple[tuple[str, str], ...] = ()
    unlinked: tuple[tuple[str, str, str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.deleted or self.unlinked)


def resolve_conflict(
    replica: Replica, editor: Editor, conflict: ConflictRecord, choice: Any
) -> TakenAlong:
    """Resolve an open conflict (``"mine"``, ``"theirs"`` or ``Merged``). When the resolution deletes the
    record (a delete kept), what a delete of it takes along goes too, in the same transaction: the server
    keeps a record alive while live records name it, and would open the conflict again. Returns what went
    along (outputs made or edited elsewhere since the delete among them: callers say so, QA found them
    deleted without a word)."""
    with replica.transaction():
        editor.resolve_conflict(conflict.entity, conflict.record_id, conflict.id, choice)
        if conflict.field == TOMBSTONE and _deleted(replica, conflict.entity, conflict.record_id):
            deleted, unlinked = LibraryService(replica=replica, editor=editor).take_along(
                entity=conflict.entity, ids=[conflict.record_id]
            )
            return TakenAlong(tuple(deleted), tuple(unlinked))
    return TakenAlong()


def _deleted(replica: Replica, entity: str, record_id: str) -> bool:
    if entity == "prompt":
        record: Any = replica.get_prompt(id=record_id)
    elif entity in LOOKUP_KINDS:
        record = replica.get_lookup(kind=LOOKUP_KINDS[entity], id=record_id)
    else:
        return False  # nothing is taken along with an output or a custom GPT
    return record is not None and bool(record.deleted)


class ConflictService:
    def __init__(self, *, replica: Replica, editor: Editor) -> None:
        self._replica = replica
        self._editor = editor

    def _label(self, entity: str, record_id: str) -> str:
        return label_of(self._replica, entity, record_id)

    def open_conflicts(self) -> list[ConflictItem]:
        items = []
        for c in self._replica.list_conflicts():
            kind = conflict_kind(c)
            written = sides_written_here(self._replica, c)
            suggestion, note = suggest(kind, c.base, c.mine, c.theirs, written=written)
            references = references_of(c.entity)
            named: list[tuple[str, Any]] = []  # (entity named, value naming it)
            if kind == "rejected" and isinstance(c.mine, dict):  # the refused edit's references, by name
                refused = c.mine.get("values") or {}
                named = [(references[f], v) for f, v in refused.items() if f in references]
            elif kind != "existence" and c.field in references:
                named = [(references[c.field], side) for side in (c.base, c.mine, c.theirs, suggestion)]
            labels: dict[str, str] = {}
            for target, side in named:
                for ident in side if isinstance(side, list | tuple | set | frozenset) else (side,):
                    if isinstance(ident, str) and ident not in labels:
                        labels[ident] = self._label(target, ident)
            kept = kept_in_use(self._replica, c) if kind == "existence" else None
            if kept is not None:
                note = (
                    f"The server kept it in use: {kept.words()} named it after it was deleted on the other "
                    "side, so nobody's edit is lost. Keep the delete and it is taken off them (a prompt's "
                    "outputs are deleted with it); keep it and nothing changes."
                )
            items.append(
                ConflictItem(
                    c.id,
                    c.entity,
                    c.record_id,
                    self._label(c.entity, c.record_id),
                    c.field,
                    kind,
                    c.base,
                    c.mine,
                    c.theirs,
                    suggestion,
                    note,
                    c.created_at,
                    labels,
                    written,
                    kept.words() if kept is not None else "",
                )
            )
        return items

    def resolve(
        self, *, conflict_id: str, choice: Literal["mine", "theirs", "merged"], merged: Any = None
    ) -> TakenAlong:
        """Keep mine, keep theirs, or save an edited merge; a refused-edit notice is just dismissed. Returns
        what a kept delete took with the record (the window says so)."""
        conflict = next((c for c in self._replica.list_conflicts() if c.id == conflict_id), None)
        if conflict is None:
            raise NotFoundError("conflict", conflict_id)
        if conflict.field == REJECTED_FIELD:
            if choice != "mine":
                self._replica.resolve_conflict(id=conflict_id)
                return TakenAlong()
            try:
                with self._replica.transaction():  # made again and closed together, or neither
                    reapply_refused(LocalLibrary(ReplicaSyncStore(self._replica)), conflict)
                    self._replica.resolve_conflict(id=conflict_id)
            except LocalEditError as exc:
                raise InvalidInputError("choice", f"cannot make the refused edit again: {exc}") from exc
            return TakenAlong()
        if choice not in ("mine", "theirs", "merged"):
            raise InvalidInputError("choice", "choose mine, theirs or merged")
        pick: object = Merged(merged) if choice == "merged" else choice
        try:
            return resolve_conflict(self._replica, self._editor, conflict, pick)
        except LocalEditError as exc:
            raise InvalidInputError("choice", str(exc)) from exc
