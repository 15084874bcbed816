"""Local edits on a replica: every user action becomes an engine change, merged into the record's state
and queued for pushing, in one replica transaction (the durable outbox)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal

from outputhub.common.clock import DEFAULT_MAX_DRIFT_MS, HLC, tick
from outputhub.common.ids import canonical_id, new_id_text
from outputhub.common.limits import NUMBER_RANGE, limit_problem, missing_problem, type_problem
from outputhub.common.names import has_visible, normalize_name
from outputhub.sync.client.errors import LocalEditError
from outputhub.sync.engine import (
    DEFAULT_SCHEMA,
    LOOKUP_ENTITIES,
    Change,
    ChangeKind,
    Conflict,
    ConflictKind,
    InvalidChangeError,
    Merged,
    RecordState,
    Resolution,
    make_create,
    make_delete,
    make_edit,
    make_restore,
    merge_change,
    name_key,
    resolve,
    sides,
    unlink_op_id,
)
from outputhub.sync.ports import ReplicaStore
from outputhub.sync.protocol import ProtocolError, change_from_wire, encode_value

ResolutionChoice = Literal["mine", "theirs"] | Merged


REQUIRED: Final[Mapping[str, tuple[str, ...]]] = {
    "prompt": ("title", "body"),
    "output": ("prompt_id", "content"),
    "custom_gpt": ("name",),
    **{name: ("name",) for name in LOOKUP_ENTITIES},
}
"""Fields a record cannot be without (blank text counts as missing): the server refuses a pushed op that
leaves one empty (``EntitySpec.required``), so a replica refuses the edit as it is made."""

STRIPPED: Final = frozenset({"name", "title"})
"""Fields stored without leading and trailing spaces, as REST stores them (``common/schemas.py``: a lookup
named "  ws tag  " offline kept its spaces on the server and in every replica; QA). A lookup's name is also
stored in Unicode NFC (``common/names.py``: "Café" typed as e + U+0301 is the "Café" typed as U+00E9)."""

MERGED_INTO: Final = ":merged-into:"
"""The server merges a lookup created offline under a name another live one of its kind has into that one
(docs/sync-protocol.md section 6): it keeps the new record as a tombstone whose delete has the op id
``server:<id>:merged-into:<surviving id>``. Every replica pulls that state, so the tombstone itself says
which record took its place."""


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def merged_into(state: RecordState) -> str | None:
    """The id of the lookup the server merged this deleted one into, or None (not deleted, or deleted by
    someone)."""
    if not state.deleted:
        return None
    prefix = f"server:{state.record_id}{MERGED_INTO}"
    for head in state.tombstone.heads:
        if head.deleted and head.op_id.startswith(prefix):
            return head.op_id[len(prefix) :] or None
    return None


def _label(values: Mapping[str, Any]) -> str:
    for name in ("name", "title"):
        value = values.get(name)
        if isinstance(value, str) and value.strip():
            return f" ({value.strip()[:60]!r})"
    return ""


def _check_required(entity: str, values: Mapping[str, Any], *, creating: bool) -> None:
    for name in REQUIRED.get(entity, ()):
        if not creating and name not in values:
            continue
        value = values.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise LocalEditError(f"{entity}.{name} is required: give it a value")
        if entity in LOOKUP_ENTITIES and name == "name" and isinstance(value, str) and not has_visible(value):
            raise LocalEditError(f"{entity}.name shows nothing (only invisible characters): give it a name")


def _canonical_id(value: Any) -> Any:
    """``value`` written as record ids are (lower-case hex with dashes) if it is one; else as it was (the
    reference check then refuses it)."""
    return (canonical_id(value) or value) if isinstance(value, str) else value


def _coerce(entity: str, values: Mapping[str, Any]) -> dict[str, Any]:
    try:
        schema = DEFAULT_SCHEMA.entity(entity)
    except InvalidChangeError as exc:
        raise LocalEditError(str(exc)) from None
    fields = schema.fields
    out: dict[str, Any] = {}
    for name, value in values.items():
        kind = fields.get(name)
        if kind is None:
            raise LocalEditError(f"{entity} has no field {name!r} (fields: {', '.join(sorted(fields))})")
        if kind.value == "set":
            if isinstance(value, str):
                value = [v for v in value.split(",") if v]
            value = frozenset(str(v) for v in (value or ()))
        elif kind.value == "text" and value is None:
            value = ""
        if name in STRIPPED and isinstance(value, str):
            value = normalize_name(value) if name == "name" and schema.lookup else value.strip()
        if name in schema.references:  # an id typed as 8D0F... or {8d0f...} is written as ids are
            value = (
                frozenset(_canonical_id(v) for v in value)
                if isinstance(value, frozenset)
                else _canonical_id(value)
            )
        out[name] = value
    problem = schema.reference_problem({k: v for k, v in out.items() if v != ""})
    problem = (
        problem
        or type_problem(entity, out)
        or limit_problem(entity, out)
        or missing_problem(entity, {k: v for k, v in out.items() if k in NUMBER_RANGE}, creating=False)
    )
    if problem is not None:
        raise LocalEditError(problem[0])
    for name, value in out.items():  # text the server cannot store is refused as it is typed
        if isinstance(value, str) and "\x00" in value:
            raise LocalEditError(f"{entity}.{name} must not contain a NUL character (U+0000)")
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise LocalEditError(f"{entity}.{name} is not UTF-8 text") from None
    return out


class LocalLibrary:
    """The one way to change a replica's records (the desktop app and ``outputhub replica`` use it)."""

    def __init__(self, store: ReplicaStore, *, now_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.store = store
        self.now_ms = now_ms

    # -- clock ---------------------------------------------------------------------------------------------

    def _hlc(self, state: RecordState | None) -> HLC:
        prev = self.store.last_hlc()
        now = self.now_ms()
        if prev is not None and prev.wall_ms > now + DEFAULT_MAX_DRIFT_MS:
            # stamped while this device's clock ran further ahead than any server accepts (each such edit
            # was refused, clock-drift): going on from there had every later edit refused too, the clock
            # set right or not, until real time caught up (QA). No server holds a write stamped there, and
            # this open writes under its own node id, so the clock starts again from the physical time.
            prev = None
        if state is not None and state.known_versions:
            top = max(state.known_versions)
            if prev is None or top > prev:
                prev = HLC(top.wall_ms, top.counter, self.store.node_id)
        hlc = tick(prev, now_ms=now, node=self.store.node_id)
        self.store.save_hlc(hlc)
        return hlc

    def _record(
        self,
        state: RecordState | None,
        revision: int | None,
        build: Callable[[str, HLC, str], Change | None],
        *,
        unlink: bool = False,
    ) -> bool:
        """Make the change (``build(node, hlc, op_id)``), merge it into the state and store both with the
        outbox entry. False when there is nothing to change. ``unlink``: the change only takes deleted lookup
        entries off the record (its op id says so: ``sync.engine.is_unlink``)."""
        try:
            op_id = unlink_op_id(new_id_text()) if unlink else new_id_text()
            change = build(self.store.node_id, self._hlc(state), op_id)
            if change is None:
                return False
            new_state = merge_change(state, change, DEFAULT_SCHEMA).state
        except InvalidChangeError as exc:
            raise LocalEditError(str(exc)) from None
        self.store.save_local(new_state, change, base_revision=revision)
        return True

    # -- edits ---------------------------------------------------------------------------------------------

    def create(self, entity: str, values: Mapping[str, Any], *, id: str | None = None) -> str:
        record_id = canonical_id(id) if id else new_id_text()  # 8D0F... or {8d0f...} written as ids are
        if record_id is None:
            raise LocalEditError(f"{entity} id {id!r} is not a record id (a UUID)")
        if self.store.load(entity, record_id) is not None:
            raise LocalEditError(f"{entity} {record_id} already exists")
        coerced = _coerce(entity, values)
        _check_required(entity, coerced, creating=True)
        if DEFAULT_SCHEMA.entity(entity).lookup and coerced.get("position") is None:
            coerced["position"] = 0  # as the REST API stores it: a replica and the server show the same entry
        with self.store.transaction():
            coerced = self._live_references(entity, coerced, None)
            self._record(
                None,
                None,
                lambda node, hlc, op_id: make_create(
                    entity, record_id, coerced, schema=DEFAULT_SCHEMA, node=node, hlc=hlc, op_id=op_id
                ),
            )
        return record_id

    def _load(self, entity: str, record_id: str) -> tuple[RecordState, int | None]:
        try:
            DEFAULT_SCHEMA.entity(entity)
        except InvalidChangeError as exc:
            raise LocalEditError(str(exc)) from None
        record = self.store.load(entity, record_id)
        if record is None:
            raise LocalEditError(f"no {entity} with id {record_id} in this replica")
        return record.state, record.revision

    def edit(
        self,
        entity: str,
        record_id: str,
        values: Mapping[str, Any],
        *,
        seen: Mapping[str, Any] | None = None,
        unlink: bool = False,
    ) -> bool:
        """Change the given fields (only those whose value differs are recorded). False if nothing did.
        ``seen``: what an editor showed of those fields when it loaded the record (see ``make_edit``).
        ``unlink``: the edit only takes deleted lookup entries off the record, as deleting them does: it does
        not bring the record back where it was deleted meanwhile (``sync.engine.is_unlink``)."""
        with self.store.transaction():
            state, revision = self._load(entity, record_id)
            self._refuse_merged(entity, record_id, state, "edited")
            coerced = _coerce(entity, values)
            _check_required(entity, coerced, creating=False)
            if not state.deleted:  # a deleted one is refused below, as the engine says
                coerced = self._live_references(entity, coerced, state.values)
                self._refuse_taken_name(entity, record_id, coerced, state.values)
            return self._record(
                state,
                revision,
                lambda node, hlc, op_id: make_edit(
                    state, coerced, schema=DEFAULT_SCHEMA, node=node, hlc=hlc, op_id=op_id, seen=seen
                ),
                unlink=unlink,
            )

    def delete(self, entity: str, record_id: str) -> None:
        with self.store.transaction():
            state, revision = self._load(entity, record_id)
            self._record(
                state,
                revision,
                lambda node, hlc, op_id: make_delete(
                    state, schema=DEFAULT_SCHEMA, node=node, hlc=hlc, op_id=op_id
                ),
            )

    def remake(
        self,
        entity: str,
        record_id: str,
        kind: str,
        values: Mapping[str, Any],
        base: Mapping[str, Any],
    ) -> bool:
        """Make again an edit the server refused (an update, delete or restore; ``values`` and ``base`` as
        the refused op carried them on the wire), on the base it was first made on, as its caller maps it
        (``reapply_refused``: a version of another refused edit becomes what that one was made again as):
        what it supersedes is what its user had seen. Every other write stays concurrent with it: another
        replica's edit made meanwhile, a refused edit made after it but made again first (a text merges, a
        value is a conflict, an edit beats the delete), as they would have had the server taken the edits
        at once. Made on the record as it is now, it overwrote such writes without a trace (QA). False when
        an update has nothing left to change."""
        with self.store.transaction():
            state, revision = self._load(entity, record_id)
            coerced: dict[str, Any] = {}
            if kind == ChangeKind.UPDATE.value:
                self._refuse_merged(entity, record_id, state, "edited")
                coerced = _coerce(entity, values)
                _check_required(entity, coerced, creating=False)
                coerced = self._live_references(entity, coerced, state.values)
                self._refuse_taken_name(entity, record_id, coerced, state.values)
                if not coerced:
                    return False
            elif kind not in (ChangeKind.DELETE.value, ChangeKind.RESTORE.value):
                raise LocalEditError(f"a refused {kind} is not made again on its base")

            def build(node: str, hlc: HLC, op_id: str) -> Change:
                wire = {
                    "op_id": op_id,
                    "entity": entity,
                    "id": record_id,
                    "kind": kind,
                    "node": node,
                    "hlc": hlc.encode(),
                    "values": {name: encode_value(value) for name, value in coerced.items()},
                    "base": {
                        name: pair
                        for name, pair in base.items()
                        if kind != ChangeKind.UPDATE.value or name in coerced
                    },
                }
                try:
                    return change_from_wire(wire)
                except ProtocolError as exc:
                    raise InvalidChangeError(str(exc)) from None

            return self._record(state, revision, build)

    def restore(self, entity: str, record_id: str) -> None:
        with self.store.transaction():
            state, revision = self._load(entity, record_id)
            # the server keeps the name for the surviving record (a restore is refused as name-taken) and
            # rewrites every reference to this one into a reference to it
            self._refuse_merged(entity, record_id, state, "restored")
            if state.deleted:  # its name may have gone to another live one meanwhile (refused by the server)
                self._refuse_taken_name(entity, record_id, {"name": state.values.get("name")}, {})
            self._record(
                state,
                revision,
                lambda node, hlc, op_id: make_restore(
                    state, schema=DEFAULT_SCHEMA, node=node, hlc=hlc, op_id=op_id
                ),
            )

    def _refuse_taken_name(
        self, entity: str, record_id: str, values: Mapping[str, Any], current: Mapping[str, Any]
    ) -> None:
        """A rename of a lookup to the name another live one of its kind has here is refused as it is made,
        as the server refuses it (``name-taken``); it was taken, and refused only at the next sync (QA).
        Names compare as the server's unique index compares them (:func:`name_key`)."""
        name = values.get("name")
        if entity not in LOOKUP_ENTITIES or not isinstance(name, str):
            return
        key = name_key(name)
        if isinstance(current.get("name"), str) and name_key(current["name"]) == key:
            return
        for other_id in self.store.record_ids(entity):
            if other_id == record_id:
                continue
            other = self.store.load(entity, other_id)
            if other is None or other.state.deleted:
                continue
            taken = other.state.values.get("name")
            if isinstance(taken, str) and name_key(taken) == key:
                raise LocalEditError(
                    f"another {entity.replace('_', ' ')} is already named {taken!r} ({other_id}): choose "
                    "another name"
                )

    def _refuse_merged(self, entity: str, record_id: str, state: RecordState, done: str) -> None:
        """Raise ``LocalEditError`` naming the surviving record if the server merged this one into it."""
        survivor = merged_into(state)
        if survivor is None:
            return
        kept = self.store.load(entity, survivor)
        label = _label(kept.state.values) if kept is not None else ""
        use = "restore and use that one" if kept is None or kept.state.deleted else "use that one"
        raise LocalEditError(
            f"{entity} {record_id} cannot be {done}: it was merged into {entity} {survivor}{label} "
            f"(the same name, made on another replica); {use}"
        )

    def _live_references(
        self, entity: str, values: Mapping[str, Any], current: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """``values`` with the references they add checked: each must name a record this replica has live (a
        live record never names a deleted one; the server would restore it), and one to a lookup the server
        merged into another is rewritten to the surviving one (as the server rewrites it). What a reference
        adds is a scalar's new non-null value, or the members a set gains over ``current`` (the record's
        values; None for a create): members already there are left alone (a concurrent delete may have left
        one). Raises ``LocalEditError`` naming the field."""
        out = dict(values)
        for name, target in DEFAULT_SCHEMA.entity(entity).references.items():
            if name not in values:
                continue
            value = values[name]
            before = current.get(name) if current is not None else None
            if isinstance(value, frozenset):
                added = value - (before if isinstance(before, frozenset) else frozenset())
                if added:
                    out[name] = (value - added) | {
                        self._live_reference(entity, name, target, str(m)) for m in added
                    }
            elif value is not None and value != before:
                out[name] = self._live_reference(entity, name, target, str(value))
        return out

    def _live_reference(self, entity: str, name: str, target: str, ident: str) -> str:
        """``ident`` if this replica has that ``target`` live, the lookup it was merged into if that one is
        live; else ``LocalEditError``."""
        where = f"{entity}.{name}"
        seen = {ident}
        record = self.store.load(target, ident)
        while record is not None and record.state.deleted:
            survivor = merged_into(record.state)
            if survivor is None or survivor in seen:
                found = f"{target} {record.record_id}{_label(record.state.values)}"
                if record.record_id != ident:
                    found = f"{target} {ident} was merged into {found}, which"
                raise LocalEditError(f"{where}: {found} is deleted: restore it first, or choose another")
            seen.add(survivor)
            record = self.store.load(target, survivor)
        if record is None:
            raise LocalEditError(f"{where}: there is no {target} {ident} in this replica")
        return record.record_id

    def get(self, entity: str, record_id: str) -> dict[str, Any]:
        """The record's displayed values, ``deleted`` and its open conflicts."""
        state, revision = self._load(entity, record_id)
        values: dict[str, Any] = {
            k: sorted(v) if isinstance(v, frozenset) else v for k, v in state.values.items()
        }
        return {
            "id": record_id,
            "entity": entity,
            "revision": revision,
            "deleted": state.deleted,
            **values,
            "conflicts": [c.id for c in state.conflicts],
        }

    # -- conflicts -----------------------------------------------------------------------------------------

    def open_conflicts(self, entity: str, record_id: str) -> tuple[Conflict, ...]:
        """The record's open conflicts, as its merge state holds them."""
        state, _revision = self._load(entity, record_id)
        return tuple(state.conflicts)

    def resolve_conflict(
        self, entity: str, record_id: str, conflict_id: str, choice: ResolutionChoice
    ) -> None:
        """Close an open conflict: keep mine, keep theirs, or an edited merge (``Merged(value)``)."""
        with self.store.transaction():
            state, revision = self._load(entity, record_id)
            conflict = state.conflict(conflict_id)
            if conflict is None:
                raise LocalEditError(f"conflict {conflict_id} is not open on {entity} {record_id}")
            if isinstance(choice, Merged):
                if conflict.kind is ConflictKind.DELETE:
                    raise LocalEditError(
                        "a delete conflict is resolved with keep mine or keep theirs, not an edited value"
                    )
                value = choice.value
                kind = DEFAULT_SCHEMA.kind(entity, conflict.field)
                if kind.value == "set" and isinstance(value, Iterable) and not isinstance(value, str):
                    value = frozenset(value)
                # an edited value is checked as an edit is: a blank title, position -1 or a text of the
                # wrong type was taken, refused by the server at the next sync, and the conflict came back
                coerced = _coerce(entity, {conflict.field: value})
                _check_required(entity, coerced, creating=False)
                value = coerced[conflict.field]
                if conflict.field in DEFAULT_SCHEMA.entity(entity).references:  # an edited value: as an edit
                    checked = self._live_references(entity, {conflict.field: value}, state.values)
                    value = checked[conflict.field]
                if not state.deleted:  # a lookup's name another live one has here: refused as a rename is
                    self._refuse_taken_name(entity, record_id, {conflict.field: value}, state.values)
                pick: Resolution | Merged = Merged(value)
            elif choice in ("mine", "theirs"):
                pick = Resolution.KEEP_MINE if choice == "mine" else Resolution.KEEP_THEIRS
                field = conflict.field
                references = DEFAULT_SCHEMA.entity(entity).references
                if conflict.kind is not ConflictKind.DELETE and field in references:
                    # the side kept may name an entry deleted since: refused as the server refuses it (it was
                    # taken, and the sync brought the deleted entry back; QA); one merged into another is
                    # written as the survivor
                    mine_side, theirs_side = sides(conflict, self.store.node_id)
                    kept = getattr(conflict, mine_side if choice == "mine" else theirs_side).value
                    checked = self._live_references(entity, {field: kept}, {})[field]
                    if checked != kept:
                        pick = Merged(checked)
            else:
                raise LocalEditError(f"unknown resolution {choice!r}: use mine, theirs or an edited value")
            self._record(
                state,
                revision,
                lambda node, hlc, op_id: resolve(conflict, pick, node=node, hlc=hlc, op_id=op_id),
            )
