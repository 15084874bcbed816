"""The engine's values: changes, per-field replicated state, record state and conflicts.

Every value is immutable and canonical (tuples sorted by version, frozensets), so two replicas that hold
the same information hold *equal* objects: convergence can be checked with ``==``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, NoReturn

from outputhub.common.clock import HLC
from outputhub.common.errors import FieldError
from outputhub.sync.engine.errors import InvalidChangeError
from outputhub.sync.engine.schema import TOMBSTONE, EntitySchema, FieldValue, check_value

CONFLICT_NAMESPACE: Final = uuid.UUID("6f1d3a52-8c1e-5b7e-9a43-2f0c6d1e8b90")
"""uuid5 namespace of conflict ids (any fixed UUID; changing it changes every conflict id)."""


class ChangeKind(StrEnum):
    CREATE = "create"  # a new record: initial values, record live
    UPDATE = "update"  # new values for the changed fields only
    DELETE = "delete"  # tombstone the record; ``base`` lists every field version the deleter saw
    RESTORE = "restore"  # clear the tombstone (``base[TOMBSTONE]`` names the deletes it undoes)


@dataclass(frozen=True)
class FieldBase:
    """What an edit was made from, for one field: the value on screen and the versions it was made of.

    ``versions`` are the HLCs of the writes the edited value consisted of; the new write *supersedes* them
    (they are its causal predecessors). Versions, not values, decide causality: two replicas typing the same
    text concurrently are still concurrent.
    """

    value: FieldValue
    versions: frozenset[HLC] = frozenset()


@dataclass(frozen=True)
class Change:
    """One user operation on one record, as it replicates.

    ``op_id`` is the client operation id (the server's push deduplication key). The write's identity and its
    place in the (HLC, node) order is ``hlc``; ``hlc.node`` must be ``node``.
    """

    entity: str
    record_id: str
    node: str
    hlc: HLC
    op_id: str
    kind: ChangeKind
    values: Mapping[str, FieldValue] = field(default_factory=dict)
    base: Mapping[str, FieldBase] = field(default_factory=dict)

    def validate(self, schema: EntitySchema) -> None:
        """Raise :class:`InvalidChangeError` unless the change is well formed for ``schema``."""
        schema.entity(self.entity)
        if self.hlc.node != self.node:
            detail = f"change {self.op_id}: hlc node {self.hlc.node!r} is not {self.node!r}"
            raise InvalidChangeError(detail, errors=[FieldError("node", detail)])
        if not self.record_id or not self.op_id:
            detail = "change needs a record id and an op id"
            raise InvalidChangeError(detail, errors=[FieldError("op_id" if self.record_id else "id", detail)])
        checking = ""  # the field being checked: an error about it names it (``errors``)
        try:
            for checking, value in self.values.items():
                check_value(self.entity, checking, schema.kind(self.entity, checking), value)
            for checking, base in self.base.items():
                if checking == TOMBSTONE:
                    continue
                if checking in self.values:  # a delete's base only lists versions; its values are not used
                    check_value(self.entity, checking, schema.kind(self.entity, checking), base.value)
                else:
                    schema.kind(self.entity, checking)
        except InvalidChangeError as exc:
            if exc.errors:
                raise
            raise InvalidChangeError(exc.detail, errors=[FieldError(checking, exc.detail)]) from None
        for name, base in self.base.items():
            if name == TOMBSTONE and self.kind not in (ChangeKind.DELETE, ChangeKind.RESTORE):
                _invalid(f"change {self.op_id}: only delete/restore may name {TOMBSTONE}", "base")
            if any(v >= self.hlc for v in base.versions):
                _invalid(
                    f"change {self.op_id}: base of {name!r} is not older than the change (receive the remote "
                    "clock before editing)",
                    name,
                )
        if self.kind is ChangeKind.CREATE and self.base:
            _invalid(f"change {self.op_id}: a create has no base", "base")
        if self.kind is ChangeKind.UPDATE and not self.values:
            _invalid(f"change {self.op_id}: an update changes at least one field", "values")
        if self.kind is ChangeKind.DELETE and self.values:
            _invalid(f"change {self.op_id}: a delete carries no values", "values")
        if self.kind is ChangeKind.RESTORE and TOMBSTONE not in self.base:
            _invalid(f"change {self.op_id}: a restore names the deletes it undoes", "base")
        if self.kind in (ChangeKind.UPDATE, ChangeKind.RESTORE):
            missing = sorted(name for name in self.values if name not in self.base)
            if missing:
                _invalid(f"change {self.op_id}: no base for {', '.join(missing)}", missing[0])


def _invalid(detail: str, field: str) -> NoReturn:
    """Raise :class:`InvalidChangeError` about ``field`` (a refused op's answer names it)."""
    raise InvalidChangeError(detail, errors=[FieldError(field, detail)])


@dataclass(frozen=True)
class FieldWrite:
    """One write to one field: its version (the change's HLC), the value written, and the value and
    versions it was made from. A write no known write has superseded is a *head* of the field."""

    version: HLC
    op_id: str
    value: FieldValue
    base_value: FieldValue
    base_versions: frozenset[HLC]


@dataclass(frozen=True)
class FieldState:
    """A multi-value register: the concurrent heads (ascending version) and every superseded version.

    ``superseded`` is what makes the state a join-semilattice: a write that arrives after a write that
    superseded it is recognised and stays out of ``heads``. ``history`` keeps the superseded writes
    themselves (ascending version) for text and set fields: merging concurrent heads needs their common
    ancestors, which may be several writes back on each side (two users each editing twice offline).
    """

    heads: tuple[FieldWrite, ...] = ()
    superseded: frozenset[HLC] = frozenset()
    history: tuple[FieldWrite, ...] = ()

    @property
    def versions(self) -> frozenset[HLC]:
        return frozenset(w.version for w in self.heads)


@dataclass(frozen=True)
class TombstoneWrite:
    """A head of the record's existence register: a create/restore (live) or a delete.

    ``covers`` is, for a delete, every field version the deleter saw; a field head outside every delete's
    cover is an edit the deleter did not see, and it restores the record.
    """

    version: HLC
    op_id: str
    deleted: bool
    covers: frozenset[HLC] = frozenset()


@dataclass(frozen=True)
class TombstoneState:
    heads: tuple[TombstoneWrite, ...] = ()
    superseded: frozenset[HLC] = frozenset()

    @property
    def versions(self) -> frozenset[HLC]:
        return frozenset(w.version for w in self.heads)


class ConflictKind(StrEnum):
    VALUE = "value"  # a scalar field written concurrently with different values
    TEXT = "text"  # a text field with overlapping concurrent edits
    DELETE = "delete"  # a delete that a concurrent edit (or restore) overrode


@dataclass(frozen=True)
class ConflictSide:
    """One side of a conflict: the write, its author, and its value (for a delete conflict: the flag
    ``deleted``, ``False`` for the surviving edit and ``True`` for the overridden delete)."""

    version: HLC
    op_id: str
    value: FieldValue

    @property
    def node(self) -> str:
        return self.version.node


@dataclass(frozen=True)
class Conflict:
    """An open conflict, identical on every replica that holds the same record state.

    ``winner`` is what is in place (the field's displayed value), ``loser`` the concurrent write that did not
    make it, ``base`` the value both were edited from (for text: the base the merge was attempted against).
    ``resolves`` maps field (or ``TOMBSTONE``) -> the versions a resolution must supersede; it is the base a
    resolving change carries.
    """

    id: str
    entity: str
    record_id: str
    field: str
    kind: ConflictKind
    winner: ConflictSide
    loser: ConflictSide
    base: FieldValue
    resolves: tuple[tuple[str, frozenset[HLC]], ...]

    @property
    def values(self) -> tuple[FieldValue, ...]:
        """Every value this conflict keeps (winner, loser, base)."""
        return (self.winner.value, self.loser.value, self.base)


UNLINK_PREFIX: Final = "unlink:"
"""Op ids of a replica's edits that only take a deleted lookup entry off a record (``unlink:<uuid>``)."""
UNLINK_SUFFIX: Final = ":unlink"
"""Op ids of the server's alike (``server:<record>:<revision>:unlink``)."""


def unlink_op_id(op_id: str) -> str:
    """The op id of an edit that only takes deleted lookup entries off a record (see :func:`is_unlink`)."""
    return UNLINK_PREFIX + op_id


def is_unlink(op_id: str) -> bool:
    """Whether a write only took deleted lookup entries off its record: a consequence of another delete,
    not an edit anyone made, so it does not bring back a record deleted concurrently (``merge._tombstone``).
    Told by its op id, which is part of the state: every replica tells it alike."""
    return op_id.startswith(UNLINK_PREFIX) or op_id.endswith(UNLINK_SUFFIX)


KEPT_PREFIX: Final = "server:"
KEPT_MARK: Final = ":kept:"


def kept_op_id(record_id: str, hlc: HLC) -> str:
    """The op id of the server's restore of a deleted record that a live record names
    (``server:<record>:kept:<hlc>``; docs/sync-protocol.md 5.5): see :func:`is_kept`."""
    return f"{KEPT_PREFIX}{record_id}{KEPT_MARK}{hlc.encode()}"


def is_kept(op_id: str) -> bool:
    """Whether a write is the server keeping a deleted record live because a live record names it (a tag
    put on a prompt offline while another replica deleted the tag), not an edit anyone made: a replica says
    so of the delete conflict it leaves. Told by its op id, which is part of the state."""
    return op_id.startswith(KEPT_PREFIX) and KEPT_MARK in op_id


def conflict_id(entity: str, record_id: str, field_name: str, winner: HLC, loser: HLC) -> str:
    """Deterministic: uuid5 of record, field and the two versions, so every replica computes the same id."""
    name = f"{entity}/{record_id}/{field_name}/{winner.encode()}/{loser.encode()}"
    return str(uuid.uuid5(CONFLICT_NAMESPACE, name))


@dataclass(frozen=True)
class RecordState:
    """The replicated state of one record plus what it materializes to.

    Raw state: ``fields`` (only fields ever written or superseded, keyed by name) and ``tombstone``.
    Derived (a pure function of the raw state, stored so readers need no schema): ``values`` (every schema
    field, defaults included), ``value_versions`` (the head versions each displayed value is made of — the
    base of the next local edit), ``deleted`` and ``conflicts`` (sorted by id: the open ones; a deleted
    record's value conflicts are ``moot_conflicts`` until it is restored).
    """

    entity: str
    record_id: str
    fields: Mapping[str, FieldState]
    tombstone: TombstoneState
    values: Mapping[str, FieldValue]
    value_versions: Mapping[str, frozenset[HLC]]
    deleted: bool
    conflicts: tuple[Conflict, ...]
    moot_conflicts: tuple[Conflict, ...] = ()
    """The value conflicts of a deleted record: not open while it is deleted (not in ``conflicts``), open
    again, under the same ids, when it is restored."""

    @property
    def known_versions(self) -> frozenset[HLC]:
        """Every write version this state knows of (heads and superseded, fields and tombstone)."""
        out: set[HLC] = set(self.tombstone.versions | self.tombstone.superseded)
        for state in self.fields.values():
            out |= state.versions | state.superseded
        return frozenset(out)

    @property
    def created(self) -> bool:
        """Whether this replica has seen the record's create (a record can be known from edits alone when
        changes arrive out of causal order)."""
        return bool(self.tombstone.heads or self.tombstone.superseded)

    def conflict(self, conflict_id: str) -> Conflict | None:
        return next((c for c in self.conflicts if c.id == conflict_id), None)


def relinked_value(state: RecordState, name: str, entry: str) -> FieldValue | None:
    """``state``'s reference field ``name`` with the lookup ``entry`` put back, when a delete's unlinks took
    it off and nobody has written the field since (every head is an unlink, one took ``entry`` off, and the
    value lacks it); None otherwise, also for a single-valued field that names another entry now. The server
    (after a push that makes the entry live again) and a replica's restore put it back alike."""
    written = state.fields.get(name)
    if written is None or not written.heads or not all(is_unlink(w.op_id) for w in written.heads):
        return None  # never written, or edited since: as its editor left it
    value = state.values.get(name)
    if _names(value, entry) or not any(
        _names(w.base_value, entry) and not _names(w.value, entry) for w in written.heads
    ):
        return None
    if isinstance(value, frozenset):
        return value | {entry}
    return entry if value is None else None


def _names(value: object, ident: str) -> bool:
    return ident in value if isinstance(value, frozenset) else value == ident
