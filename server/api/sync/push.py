"""The push half of replication: merge a batch of client operations into the server's records.

Each operation is handled on its own (a savepoint per op): a refused op (no permission, bad reference, name
taken, malformed) is reported with its reason and the rest of the batch proceeds. Each handled op id is
remembered with its answer, so replaying a batch (a retry after a lost response) returns the same answers
and changes nothing.

Plain creates of records the server does not know yet (a desktop's first upload, bulk imports) take a bulk
path: checked in Python against what the batch already knows, then written together with Core
``executemany`` inserts, one savepoint per run of consecutive such ops (see :func:`_new_record`). Their
answers, rows, states, op log and events are the ones the per-op path gives; anything the bulk path is not
sure of (a lookup, a reference it would have to look up, a value it would refuse, a concurrent writer)
goes through the per-op path.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from outputhub.common.clock import DEFAULT_MAX_DRIFT_MS, HLC, after
from outputhub.common.ids import canonical_id, new_uuid
from outputhub.common.limits import NAME_MAX, limit_problem, missing_problem
from outputhub.common.names import has_visible, name_key, normalize_name
from outputhub.common.roles import Action, allows
from outputhub.common.sync import OpError, OpResult
from outputhub.server.api.base import Tenant, allocate_revisions
from outputhub.server.api.lookups.service import KIND_BY_TABLE, repair_stale_keys
from outputhub.server.api.sync.feed import FEED_BY_NAME
from outputhub.server.api.sync.records import (
    SERVER_NODE,
    SPEC_BY_TABLE,
    SPECS,
    EntitySpec,
    close_conflicts,
    column_values,
    conflict_json,
    link_children,
    load_states,
    mark_data_stored,
    open_conflicts,
    reference_ids,
    reference_problem,
    state_texts,
    store_state,
    value_problem,
    write_row,
)
from outputhub.server.api.sync.references import (
    KEPT_ALIVE,
    dangling_references,
    deleted_among,
    named_by,
    still_named,
)
from outputhub.server.events import DomainEvent, emit
from outputhub.server.storage.tables import (
    SYNC_OP_ENTITY_MAX,
    SYNC_OP_TEXT_MAX,
    LookupRow,
    Prompt,
    PromptVersion,
    ReplicatedRow,
    SyncOp,
    SyncRecordState,
    SyncRemap,
)
from outputhub.sync.engine import (
    DEFAULT_SCHEMA,
    TOMBSTONE,
    UNLINK_SUFFIX,
    Change,
    ChangeKind,
    Conflict,
    FieldBase,
    FieldKind,
    FieldValue,
    MergeOutcome,
    OutcomeKind,
    RecordState,
    kept_op_id,
    make_delete,
    make_edit,
    merge_change,
    relinked_value,
)
from outputhub.sync.protocol import ProtocolError, change_from_wire, encode_value


class OpRefusedError(Exception):
    def __init__(self, code: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.error = OpError(code=code, detail=detail, field=field)


class AlreadyGoneError(Exception):
    """A delete of a record this organization does not have (deleted and then purged, typically while the
    deleting replica was offline): what it asks for holds already, so the op is answered ``noop``."""


@dataclass(frozen=True)
class Applied:
    """What applying one change did (for the caller's answer and events)."""

    outcome: OutcomeKind
    state: RecordState
    revision: int
    opened: tuple[Conflict, ...]
    resolved: tuple[Conflict, ...]
    before: dict[str, Any] | None


@dataclass
class PushBatch:
    """What one push learns once for all its ops; each op still has its own savepoint and its own checks.

    ``known`` holds ids known to exist per table (tombstones included, as the reference check counts them;
    push never hard-deletes, so a known id stays known), ``remaps`` the merged lookups, and ``revisions``
    a block reserved before the first op (outside every op's savepoint, so a refused op cannot give its
    revision back to another transaction; unused ones are just skipped numbers)."""

    org_id: uuid.UUID
    known: dict[type[ReplicatedRow], set[uuid.UUID]]
    remaps: dict[str, str]
    next_revision: int = 0
    last_revision: int = -1
    rows: dict[tuple[type[ReplicatedRow], uuid.UUID], ReplicatedRow] = field(default_factory=dict)
    """The rows the batch read, held here: the session's identity map only holds them weakly, and a row
    collected before its op would be read again."""

    def revision(self, session: Session) -> int:
        if self.next_revision > self.last_revision:
            return allocate_revisions(session, org_id=self.org_id)
        self.next_revision += 1
        return self.next_revision - 1

    def exists(self, session: Session, table: type[ReplicatedRow], ids: set[uuid.UUID]) -> set[uuid.UUID]:
        known = self.known.setdefault(table, set())
        unknown = ids - known
        if unknown:
            known.update(
                session.execute(
                    select(table.id).where(table.org_id == self.org_id, table.id.in_(unknown))
                ).scalars()
            )
        return ids & known


def _prepare_batch(
    session: Session, *, tenant: Tenant, parsed: list[Change | None], write_count: int
) -> PushBatch:
    """One query per table for every record and reference the batch names, one for their remaps, and the
    block of revisions (one per op that may write)."""
    wanted: dict[type[ReplicatedRow], set[uuid.UUID]] = {}
    referenced: set[uuid.UUID] = set()
    for change in parsed:
        if change is None:
            continue
        spec = SPECS[change.entity]
        wanted.setdefault(spec.table, set()).add(uuid.UUID(change.record_id))
        if spec.lookup and change.kind is ChangeKind.UPDATE:
            referenced.add(uuid.UUID(change.record_id))  # an edit of a merged lookup moves onto the survivor
        bases = {n: b.value for n, b in change.base.items() if n in spec.references}
        try:
            for name, ident in reference_ids(spec, change.values):
                wanted.setdefault(spec.references[name], set()).add(ident)
                referenced.add(ident)
            referenced.update(ident for _, ident in reference_ids(spec, bases))
        except ValueError:
            continue  # refused with a reason when the op is handled
    batch = PushBatch(
        org_id=tenant.org_id, known={}, remaps=_remaps(session, org_id=tenant.org_id, ids=referenced)
    )
    for table, ids in wanted.items():
        rows = session.execute(
            select(table).where(table.org_id == tenant.org_id, table.id.in_(ids))
        ).scalars()  # loaded into the session: each op's session.get finds its row without a query
        batch.known[table] = set()
        for row in rows:
            batch.known[table].add(row.id)
            batch.rows[(table, row.id)] = row
    if write_count:
        first = allocate_revisions(session, org_id=tenant.org_id, count=write_count)
        batch.next_revision, batch.last_revision = first, first + write_count - 1
    return batch


def display_state(state: RecordState) -> dict[str, Any]:
    """A state's values and ``deleted`` as an event's ``before``/``after`` show them."""
    return {name: encode_value(v) for name, v in state.values.items()} | {"deleted": state.deleted}


def _remaps(session: Session, *, org_id: uuid.UUID, ids: set[uuid.UUID]) -> dict[str, str]:
    if not ids:
        return {}
    rows = session.execute(
        select(SyncRemap.from_id, SyncRemap.to_id).where(
            SyncRemap.org_id == org_id, SyncRemap.from_id.in_(ids)
        )
    )
    return {str(a): str(b) for a, b in rows}


def _remap_value(value: FieldValue, remap: dict[str, str]) -> FieldValue:
    if isinstance(value, frozenset):
        return frozenset(remap.get(m, m) for m in value)
    if isinstance(value, str):
        return remap.get(value, value)
    return value


def remap_change(
    session: Session,
    *,
    org_id: uuid.UUID,
    change: Change,
    spec: EntitySpec,
    known: dict[str, str] | None = None,
) -> Change:
    """Rewrite references to lookups that were merged into another (values and bases alike). ``known``: the
    remaps already read for this push (bases are looked up when they name other ids)."""
    wanted: set[uuid.UUID] = set()
    for source in (change.values, {n: b.value for n, b in change.base.items() if n in spec.references}):
        if reference_problem(spec, source) is not None:
            return change  # not remapped: the op is refused, naming the field, before anything is written
        for _field, ident in reference_ids(spec, source):
            wanted.add(ident)
    if known is not None:
        remap = {str(i): known[str(i)] for i in wanted if str(i) in known}
    else:
        remap = _remaps(session, org_id=org_id, ids=wanted)
    if not remap:
        return change
    values = {n: _remap_value(v, remap) if n in spec.references else v for n, v in change.values.items()}
    base = {
        n: FieldBase(_remap_value(b.value, remap), b.versions) if n in spec.references else b
        for n, b in change.base.items()
    }
    return Change(
        change.entity, change.record_id, change.node, change.hlc, change.op_id, change.kind, values, base
    )


def _field_problem(spec: EntitySpec, values: Mapping[str, FieldValue]) -> tuple[str, str] | None:
    """(detail, field) of the first value of the wrong type, required field missing, or value past its limit
    (``common/limits.py``, the REST API's limits too), or None."""
    problem = value_problem(spec, values)
    if problem is not None:
        return problem
    for name in spec.required:
        value = values.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return f"{spec.entity}.{name} is required", name
        if spec.lookup and name == "name" and isinstance(value, str) and not has_visible(value):
            return f"{spec.entity}.name shows nothing (only invisible characters): give it a name", name
    return limit_problem(spec.entity, values)


def _check_values(
    session: Session,
    *,
    tenant: Tenant,
    spec: EntitySpec,
    state: RecordState,
    batch: PushBatch | None = None,
    current: RecordState | None = None,
) -> None:
    """Refuse a merged state the server could not store (missing references, required fields, lengths).

    A column reference the record already holds (``current``, its state before this op) is not looked up
    again: the row stores it under a foreign key, and tombstones that a column references are never purged,
    so it exists (link-table references are still looked up: purging a tombstone drops its link rows)."""
    values = state.values
    problem = _field_problem(spec, values)
    if problem is not None:
        raise OpRefusedError("invalid", *problem)
    if "position" in values and values["position"] is not None and not isinstance(values["position"], int):
        raise OpRefusedError("invalid", f"{spec.entity}.position must be an integer", "position")
    by_table: dict[type[ReplicatedRow], set[uuid.UUID]] = {}
    fields: dict[uuid.UUID, str] = {}
    try:
        held = (
            {(n, i) for n, i in reference_ids(spec, current.values) if n in spec.columns}
            if current is not None
            else set()
        )
        for name, ident in reference_ids(spec, values):
            if (name, ident) in held:
                continue
            by_table.setdefault(spec.references[name], set()).add(ident)
            fields[ident] = name
    except ValueError:
        raise OpRefusedError("invalid", f"{spec.entity}: a reference is not a UUID") from None
    for table, ids in by_table.items():
        found = (
            batch.exists(session, table, ids)
            if batch is not None
            else set(
                session.execute(
                    select(table.id).where(table.org_id == tenant.org_id, table.id.in_(ids))  # type: ignore[attr-defined]
                ).scalars()
            )
        )
        missing = sorted(ids - found, key=str)
        if missing:
            raise OpRefusedError(
                "unknown-reference",
                f"{spec.entity}.{fields[missing[0]]}: no {table.__tablename__} record {missing[0]}",
                fields[missing[0]],
            )
    if spec.lookup and not state.deleted:
        taken = session.execute(
            select(spec.table.id, spec.table.name).where(  # type: ignore[attr-defined]
                spec.table.org_id == tenant.org_id,
                spec.table.deleted.is_(False),
                spec.table.name_key == name_key(str(values["name"])),  # type: ignore[attr-defined]
                spec.table.id != uuid.UUID(state.record_id),
            )
        ).first()
        if taken is not None:  # its own spelling: the names match as keys ("Go" is taken by "go"; QA)
            raise OpRefusedError("name-taken", f"another {spec.entity} is already named {taken[1]!r}", "name")


def created_at(change: Change, now: datetime) -> datetime:
    """When a pushed record was made: its create's clock time (a record made offline in the morning and
    pushed at night was made in the morning; it showed the push's time, QA), never after ``now`` (a clock
    ahead within the accepted drift)."""
    if change.hlc.wall_ms >= now.timestamp() * 1000:  # (and no datetime made of a clock far ahead)
        return now
    return datetime.fromtimestamp(change.hlc.wall_ms / 1000, UTC)


def apply_change(
    session: Session,
    *,
    tenant: Tenant,
    change: Change,
    now: datetime,
    source: str = "sync",
    batch: PushBatch | None = None,
) -> Applied:
    """Merge one change into its record (creating the row when new) and store the result.

    Raises :class:`OpRefusedError` when the result cannot be stored; nothing is written then.
    """
    spec = SPECS[change.entity]
    rid = uuid.UUID(change.record_id)
    if batch is not None and rid not in batch.known.get(spec.table, ()):
        row = None  # the batch read every record it names: this one is new
    elif batch is not None and (spec.table, rid) in batch.rows:
        row = batch.rows[(spec.table, rid)]
    else:
        row = session.get(spec.table, rid)
    if row is not None and row.org_id != tenant.org_id:
        raise OpRefusedError("not-found", f"{change.entity} {rid} not found", field="id")
    if row is None and change.kind is ChangeKind.DELETE:
        # refused, it was kept as a refused edit and the sync ended in failure (exit 5 in the CLI) for a
        # delete that two sides agreed on, one of them long ago (QA)
        raise AlreadyGoneError
    if row is None and change.kind is not ChangeKind.CREATE and not change.values:
        raise OpRefusedError("not-found", f"{change.entity} {rid} not found", field="id")
    current = (
        load_states(session, org_id=tenant.org_id, spec=spec, rows=[row])[rid] if row is not None else None
    )
    before = display_state(current) if current is not None else None
    outcome = merge_change(current, change, DEFAULT_SCHEMA)
    state = outcome.state
    if outcome.kind is OutcomeKind.NOOP and row is not None:
        return Applied(outcome.kind, state, row.revision, (), (), before)
    if not state.created:
        raise OpRefusedError(
            "invalid",
            f"{change.entity} {rid}: an edit of a record the server does not have (never created there, or "
            "deleted and then purged)",
            field="id",
        )
    _check_values(session, tenant=tenant, spec=spec, state=state, batch=batch, current=current)
    revision = (
        batch.revision(session) if batch is not None else allocate_revisions(session, org_id=tenant.org_id)
    )
    new = row is None
    if row is None:
        row = spec.table(
            id=rid, org_id=tenant.org_id, created_at=created_at(change, now), created_by=tenant.actor
        )
        if isinstance(row, Prompt):
            row.version = 0
        session.add(row)
    text_changed = False
    if isinstance(row, Prompt):
        # the new version number goes into the same UPDATE as the new text (write_row flushes)
        columns = column_values(spec, state)
        text_changed = (columns["title"], columns["body"]) != (row.title, row.body)
        if text_changed:
            row.version = (row.version or 0) + 1
    row.revision = revision
    row.updated_at = now
    row.updated_by = tenant.actor
    write_row(session, spec, row, state, org_id=tenant.org_id, new=new, previous=current)
    if isinstance(row, Prompt) and text_changed:
        session.add(
            PromptVersion(
                id=new_uuid(),
                org_id=tenant.org_id,
                prompt_id=row.id,
                version=row.version,
                title=row.title,
                body=row.body,
                created_at=row.created_at if new else now,
                created_by=tenant.actor,
            )
        )
    session.flush()
    # the pull feed's data goes in with the state (the row and its links are final for this revision)
    feed = FEED_BY_NAME[spec.table.__tablename__]
    values = {column: getattr(row, column) for column in feed.columns}
    data = feed.data_json(values, link_children(spec, state))
    store_state(session, org_id=tenant.org_id, state=state, revision=revision, new=new, data=data)
    mark_data_stored(session, org_id=tenant.org_id, revisions=[revision])
    open_conflicts(session, org_id=tenant.org_id, conflicts=outcome.conflicts, revision=revision, at=now)
    close_conflicts(session, org_id=tenant.org_id, conflicts=outcome.resolved, at=now, actor=tenant.actor)
    session.flush()
    return Applied(outcome.kind, state, revision, outcome.conflicts, outcome.resolved, before)


_UNSET: Final = ("", None, 0)
"""A lookup field's value before anyone gave it one (an empty description, no place)."""


def _merge_duplicate_lookup(
    session: Session,
    *,
    tenant: Tenant,
    change: Change,
    spec: EntitySpec,
    now: datetime,
    batch: PushBatch,
    device: str,
) -> tuple[Applied, str] | None:
    """A lookup created offline with a name that is taken: keep it as a tombstone merged into the existing
    one, and remember the remap so every replica rewrites its references. What else the create gave it (a
    description, a place) moves onto the existing one as an edit made without a base: it lands where that
    field is still empty or untouched, and is a conflict like any other against a value given there."""
    if not spec.lookup or change.kind is not ChangeKind.CREATE:
        return None
    name = change.values.get("name")
    if not isinstance(name, str):
        return None
    table: type[LookupRow] = spec.table  # type: ignore[assignment]
    existing = session.execute(
        select(table.id).where(
            table.org_id == tenant.org_id,
            table.deleted.is_(False),
            table.name_key == name_key(name),
            table.id != uuid.UUID(change.record_id),
        )
    ).scalar_one_or_none()
    if existing is None or session.get(spec.table, uuid.UUID(change.record_id)) is not None:
        return None
    created = merge_change(None, change, DEFAULT_SCHEMA).state
    tomb = make_delete(
        created,
        schema=DEFAULT_SCHEMA,
        node=SERVER_NODE,
        hlc=after(change.hlc, node=SERVER_NODE),  # (a counter of 999999 overflowed: a 500 for the push)
        op_id=f"server:{change.record_id}:merged-into:{existing}",
    )
    state = merge_change(created, tomb, DEFAULT_SCHEMA).state
    revision = batch.revision(session)
    row = spec.table(
        id=uuid.UUID(change.record_id), org_id=tenant.org_id, created_at=now, created_by=tenant.actor
    )
    row.revision, row.updated_at, row.updated_by = revision, now, tenant.actor
    session.add(row)
    write_row(session, spec, row, state, org_id=tenant.org_id)
    store_state(session, org_id=tenant.org_id, state=state, revision=revision)
    session.add(
        SyncRemap(
            org_id=tenant.org_id,
            from_id=uuid.UUID(change.record_id),
            to_id=existing,
            entity=spec.entity,
            revision=revision,
        )
    )
    session.flush()
    given = {k: v for k, v in change.values.items() if k != "name" and v not in _UNSET}
    batch.exists(session, spec.table, {existing})  # not one the batch read
    row_of = session.get(spec.table, existing)
    survivor = load_states(session, org_id=tenant.org_id, spec=spec, rows=[row_of])[existing]
    held = [survivor.values.get("name")]
    held += [v for c in survivor.conflicts if c.field == "name" for v in (c.winner.value, c.loser.value)]
    if normalize_name(name) not in {normalize_name(v) for v in held if isinstance(v, str)}:
        # another spelling ("Python" for "python"): two writes of the name, one kept and the other a
        # conflict, as for any scalar both sides gave; it was dropped without a trace (QA). The same name in
        # another Unicode normal form ("Café" as e + U+0301) is the same name: no conflict; nor is a
        # spelling the name already holds in a conflict (a second conflict showed one name twice, QA)
        spelled = normalize_name(name)
        given["name"] = spelled if len(spelled) <= NAME_MAX else name.strip()  # (as _normalize_names does)
    opened: list[Conflict] = []
    if given:
        untouched = {k: v for k, v in given.items() if survivor.values.get(k) in _UNSET}
        for values, supersedes in (
            ({k: v for k, v in given.items() if k not in untouched}, False),
            (untouched, True),
        ):
            if values:
                moved = _moved_values(change, existing, values, survivor, supersedes=supersedes, now=now)
                applied = apply_change(session, tenant=tenant, change=moved, now=now, batch=batch)
                if applied.outcome is not OutcomeKind.NOOP:
                    _emit(session, tenant=tenant, change=moved, applied=applied, device=device, now=now)
                opened += applied.opened
    return Applied(OutcomeKind.MERGED, state, revision, tuple(opened), (), None), str(existing)


def _moved_values(
    change: Change,
    existing: uuid.UUID,
    values: dict[str, Any],
    survivor: RecordState,
    *,
    supersedes: bool,
    now: datetime,
) -> Change:
    """An offline lookup create's ``values`` as an edit of the same-name lookup it was merged into.

    ``supersedes``: fields the survivor never gave a value (an empty description, no place): the edit is
    based on what is there, so it lands. Its stamp must be newer than that base: when the survivor was made
    after the offline create (an integrator's REST create while the laptop was offline) the server makes the
    edit, now (a base newer than its edit was refused, and the whole push with it). Otherwise the edit was
    made without seeing the survivor's values: no base, concurrent with them, at the create's own stamp (a
    conflict like any other, the newer write on show)."""
    base: dict[str, FieldBase] = {}
    for name in values:
        if supersedes:
            base[name] = FieldBase(survivor.values.get(name), survivor.value_versions.get(name, frozenset()))
        else:
            text = DEFAULT_SCHEMA.kind(change.entity, name) is FieldKind.TEXT
            base[name] = FieldBase("" if text else None)
    moved = replace(change, record_id=str(existing), kind=ChangeKind.UPDATE, values=values, base=base)
    if any(v >= change.hlc for b in base.values() for v in b.versions):
        hlc = server_hlc(survivor, now)
        moved = replace(moved, node=SERVER_NODE, hlc=hlc, op_id=f"server:{existing}:moved:{change.op_id}")
    return moved


def _parse(raw: Any) -> Change | ProtocolError:
    try:
        change = change_from_wire(raw)
    except ProtocolError as exc:
        return exc
    canonical = canonical_id(change.record_id)
    if canonical is None:
        not_an_id = f"{change.entity} id {change.record_id!r} is not a record id (a UUID)"
        return ProtocolError(not_an_id, field="id")
    if canonical != change.record_id:
        # the record would be stored under the canonical id and its state under the id as sent: every later
        # op naming it failed the whole push, and set removals of it were lost
        return ProtocolError(
            f"{change.entity} id {change.record_id!r} is not written as record ids are (lower-case hex with "
            f"dashes: {canonical})",
            field="id",
        )
    return change


MAX_OP_ID: Final = 64
"""The longest op id (``SyncOp.op_id``; a client's UUID is 36)."""


def _replay(first: OpResult, raw: Any) -> OpResult:
    """The first answer to an op id, for a replay of its op; a refusal when the op id comes back with a change
    of another record (a client reusing op ids would otherwise take another record's answer for its own, and
    drop the change from its outbox unapplied)."""
    entity, ident = (raw.get("entity"), raw.get("id")) if isinstance(raw, dict) else (None, None)
    if (first.entity and entity != first.entity) or (first.id and str(ident) != first.id):
        return OpResult(
            op_id=first.op_id,
            status="refused",
            entity=entity if isinstance(entity, str) else None,
            id=str(ident) if ident is not None else None,
            error=OpError(
                code="invalid",
                detail=f"op_id {first.op_id!r} was used for a change of {first.entity} {first.id}: every "
                "change needs an op id of its own",
                field="op_id",
            ),
        )
    return first.model_copy(update={"replayed": True})


_VERBS: Final = {"create": "create", "update": "edit", "delete": "delete", "restore": "restore"}
"""What a refused op's kind was, in the words of its refusal (a viewer's add was refused as an edit: QA)."""


def _op_id(raw: Any) -> tuple[str, str | None]:
    """(the op id to answer with, why it cannot be one or None). An op id is the key its answer is kept
    under: text of 1 to 64 characters (it was cut to 64, and a second op sharing the first 64 was answered as
    a replay of the first and never applied)."""
    value = raw.get("op_id") if isinstance(raw, dict) else None
    if value is None or value == "":
        return "", "missing op_id"
    if not isinstance(value, str):
        return json.dumps(value)[:200], f"op_id must be text, not {type(value).__name__}"
    if len(value) > MAX_OP_ID:
        return value, f"op_id is longer than {MAX_OP_ID} characters"
    return value, None


_OPS = SyncOp.__table__
_ANSWERED = select(_OPS.c.op_id, _OPS.c.result).where(
    _OPS.c.org_id == bindparam("org"), _OPS.c.op_id.in_(bindparam("ids", expanding=True))
)
"""The answers already given to a push's op ids (built once: every push runs it first)."""


def push(
    session: Session,
    *,
    tenant: Tenant,
    device: str,
    changes: list[dict[str, Any]],
    now: datetime,
    max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
    bulk_creates: bool = True,
) -> list[OpResult]:
    """Answer each op of a push, in order (``bulk_creates=False``: every op through the per-op path, the
    reference the bulk path of new records is tested against)."""
    may_write = allows(tenant.role, Action.WRITE)
    named = [_op_id(raw) for raw in changes]
    op_ids = [op_id if problem is None else "" for op_id, problem in named]
    answered: dict[str, OpResult] = {
        op_id: OpResult.model_validate(json.loads(result) | {"replayed": True})
        for start in range(0, len(op_ids), 500)
        for op_id, result in session.execute(
            _ANSWERED, {"org": tenant.org_id, "ids": [o for o in op_ids[start : start + 500] if o]}
        )
    }
    parsed: list[Change | ProtocolError | None] = [
        _parse(raw) if may_write and op_id and op_id not in answered else None
        for raw, op_id in zip(changes, op_ids, strict=True)
    ]
    changes_to_apply = [c if isinstance(c, Change) else None for c in parsed]
    batch = _prepare_batch(
        session,
        tenant=tenant,
        parsed=changes_to_apply,
        write_count=sum(c is not None for c in changes_to_apply),
    )
    results: list[OpResult | None] = [None] * len(changes)
    op_rows: list[dict[str, Any]] = []
    run = _Run(batch=batch)
    watch = _Watch()

    def remember(index: int, op_id: str, result: OpResult) -> None:
        results[index] = result
        if result.status != "refused" or result.error is None or result.error.code != "permission-denied":
            # a viewer's refused op is not remembered: once promoted, a retry may succeed
            answered[op_id] = result
            op_rows.append(
                {
                    "org_id": tenant.org_id,
                    "op_id": op_id,
                    # (as the columns hold them: a refused op may name an entity or id of any length, a 500
                    # on PostgreSQL; the result below keeps them whole for a replay)
                    "entity": str(result.entity or "")[:SYNC_OP_ENTITY_MAX],
                    "record_id": str(result.id or "")[:SYNC_OP_TEXT_MAX],
                    "device": device[:SYNC_OP_TEXT_MAX],
                    "result": result.model_dump_json(),
                    "created_at": now,
                }
            )

    def handle(index: int, raw: Any, op_id: str, change: Change | ProtocolError | None) -> None:
        result = _handle(
            session,
            tenant=tenant,
            raw=raw,
            op_id=op_id,
            change=change,
            may_write=may_write,
            now=now,
            max_drift_ms=max_drift_ms,
            device=device,
            batch=batch,
            watch=watch,
        )
        remember(index, op_id, result)

    def write_run() -> None:
        """Insert the pending run of new records (before any op that may read them), or, if a concurrent
        writer got there first, hand its ops to the per-op path, which answers each exactly."""
        news = run.take()
        if not news:
            return
        if _insert_new_records(session, tenant=tenant, news=news, now=now):
            for new in news:
                batch.known.setdefault(new.spec.table, set()).add(new.rid)
                applied = Applied(new.outcome.kind, new.outcome.state, new.revision, (), (), None)
                _emit(session, tenant=tenant, change=new.change, applied=applied, device=device, now=now)
                watch.saw(new.spec, new.change, applied)
                remember(
                    new.index,
                    new.change.op_id,
                    OpResult(
                        op_id=new.change.op_id,
                        status=new.outcome.kind.value,
                        entity=new.change.entity,
                        id=new.change.record_id,
                        revision=new.revision,
                    ),
                )
            return
        batch.next_revision = run.first_revision  # the per-op path draws the same revisions again
        for new in news:
            handle(new.index, changes[new.index], op_ids[new.index], parsed[new.index])

    now_ms = int(now.timestamp() * 1000)
    for index, (raw, op_id, change) in enumerate(zip(changes, op_ids, parsed, strict=True)):
        if not op_id:
            echo, problem = named[index]
            results[index] = OpResult(
                op_id=echo,
                status="refused",
                error=OpError(code="invalid", detail=problem or "missing op_id", field="op_id"),
            )
            continue
        if op_id in run.op_ids:
            write_run()  # its answer is final only once written
        if op_id in answered:  # a replay (an earlier push, or twice in this one)
            results[index] = _replay(answered[op_id], raw)
            continue
        if bulk_creates and may_write and isinstance(change, Change):
            new = _new_record(
                session,
                change=change,
                index=index,
                op_id=op_id,
                batch=batch,
                pending=run.ids,
                now_ms=now_ms,
                max_drift_ms=max_drift_ms,
            )
            if new is not None:
                run.add(session, new)
                continue
        write_run()
        handle(index, raw, op_id, change)
    write_run()
    # what live records name once the whole push is applied: a record an op named may be named no more
    # after a later op of the same push (two tags deleted offline one after the other, each taken off the
    # prompt first: the second came back, with a conflict, though nothing named it any more: QA)
    # (one pass over the references for both: the deleted records ops named, and those this push deleted)
    candidates = deleted_among(session, org_id=tenant.org_id, ids=watch.named)
    for table, ids in watch.dropped.items():
        candidates.setdefault(table, set()).update(ids)
    todo = still_named(session, org_id=tenant.org_id, ids=candidates)
    _keep_named(session, tenant=tenant, todo=todo, now=now, device=device, restored=watch.restored)
    _relink(session, tenant=tenant, restored=watch.restored, now=now, device=device)
    _normalize_names(session, tenant=tenant, records=watch.unnormalized, now=now, device=device)
    if op_rows:
        session.execute(insert(SyncOp.__table__), op_rows)  # type: ignore[arg-type]
    session.flush()
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


@dataclass
class _NewRecord:
    """A plain create of a record the server does not know, checked and ready to be inserted in bulk."""

    index: int
    change: Change  # with references to merged lookups rewritten
    spec: EntitySpec
    rid: uuid.UUID
    outcome: MergeOutcome
    revision: int = 0


@dataclass
class _Run:
    """Consecutive new records of a push, written together before the next op that may read them."""

    batch: PushBatch
    news: list[_NewRecord] = field(default_factory=list)
    ids: dict[type[ReplicatedRow], set[uuid.UUID]] = field(default_factory=dict)
    op_ids: set[str] = field(default_factory=set)
    first_revision: int = 0
    """``batch.next_revision`` before the run's first op drew its revision."""

    def add(self, session: Session, new: _NewRecord) -> None:
        """Add the op and reserve its revision (in op order, as the per-op path would)."""
        if not self.news:
            self.first_revision = self.batch.next_revision
        new.revision = self.batch.revision(session)
        self.news.append(new)
        self.ids.setdefault(new.spec.table, set()).add(new.rid)
        self.op_ids.add(new.change.op_id)

    def take(self) -> list[_NewRecord]:
        news = self.news
        self.news, self.ids, self.op_ids = [], {}, set()
        return news


def _new_record(
    session: Session,
    *,
    change: Change,
    index: int,
    op_id: str,
    batch: PushBatch,
    pending: dict[type[ReplicatedRow], set[uuid.UUID]],
    now_ms: int,
    max_drift_ms: int,
) -> _NewRecord | None:
    """The op as a new record for the bulk path, or None when the per-op path must handle it: not a create,
    a lookup (a taken name is merged), a record the batch knows (or creates earlier), or a merged state
    the per-op checks might refuse (required fields, lengths, value types, a reference the batch does not
    know to exist, created by an op *before* this one)."""
    if change.kind is not ChangeKind.CREATE or change.hlc.wall_ms > now_ms + max_drift_ms:
        return None
    spec = SPECS[change.entity]
    if spec.lookup or change.op_id != op_id:
        return None
    rid = uuid.UUID(change.record_id)
    if rid in batch.known.get(spec.table, ()) or rid in pending.get(spec.table, ()):
        return None
    if missing_problem(spec.entity, change.values, creating=True) is not None:
        return None  # refused by the per-op path
    if batch.remaps:
        change = remap_change(session, org_id=batch.org_id, change=change, spec=spec, known=batch.remaps)
    outcome = merge_change(None, change, DEFAULT_SCHEMA)
    state = outcome.state
    if outcome.kind is OutcomeKind.NOOP or outcome.conflicts or outcome.resolved or not state.created:
        return None
    if not _storable(spec, state, batch=batch, pending=pending):
        return None
    return _NewRecord(index, change, spec, rid, outcome)


def _storable(
    spec: EntitySpec,
    state: RecordState,
    *,
    batch: PushBatch,
    pending: dict[type[ReplicatedRow], set[uuid.UUID]],
) -> bool:
    """Whether :func:`_check_values` surely accepts the state and :func:`write_row` can store it as is,
    judged without a query (False sends the op to the per-op path, which answers it exactly)."""
    values = state.values
    if _field_problem(spec, values) is not None or reference_problem(spec, values) is not None:
        return False
    if values.get("position") is not None:
        return False
    fields = DEFAULT_SCHEMA.entity(spec.entity).fields
    for name in spec.columns:
        value = values[name]
        if name in spec.references or fields[name] is FieldKind.TEXT:
            if value is not None and not isinstance(value, str):
                return False
        elif not isinstance(value, str):
            return False
    for name in spec.links:
        members = values[name]
        if members is not None and (
            not isinstance(members, frozenset) or not all(isinstance(m, str) for m in members)
        ):
            return False
    try:
        references = list(reference_ids(spec, values))
    except ValueError:
        return False
    for name, ident in references:
        table = spec.references[name]
        if ident not in batch.known.get(table, ()) and ident not in pending.get(table, ()):
            return False
    return True


def _insert_new_records(session: Session, *, tenant: Tenant, news: list[_NewRecord], now: datetime) -> bool:
    """Write new records as :func:`apply_change` would (rows, link rows, a first prompt version, states),
    with one Core ``executemany`` per table inside one savepoint. False, with nothing written, when the
    database refuses (a concurrent writer created one of the ids meanwhile)."""
    rows: dict[type[ReplicatedRow], list[dict[str, Any]]] = {}
    links: dict[Any, list[dict[str, Any]]] = {}
    versions: list[dict[str, Any]] = []
    states: list[dict[str, Any]] = []
    for new in news:
        spec, state = new.spec, new.outcome.state
        row: dict[str, Any] = {
            "id": new.rid,
            "org_id": tenant.org_id,
            "revision": new.revision,
            "deleted": state.deleted,
            "created_at": created_at(new.change, now),
            "created_by": tenant.actor,
            "updated_at": now,
            "updated_by": tenant.actor,
        }
        row.update(column_values(spec, state))
        if spec.table is Prompt:
            row["version"] = 1
            versions.append(
                {
                    "id": new_uuid(),
                    "org_id": tenant.org_id,
                    "prompt_id": new.rid,
                    "version": 1,
                    "title": row["title"],
                    "body": row["body"],
                    "created_at": row["created_at"],
                    "created_by": tenant.actor,
                }
            )
        rows.setdefault(spec.table, []).append(row)
        children = link_children(spec, state)
        for name, link in spec.links.items():
            links.setdefault(link, []).extend(
                {"org_id": tenant.org_id, link.parent: new.rid, link.child: child} for child in children[name]
            )
        states.append(
            {
                "org_id": tenant.org_id,
                "record_id": new.rid,
                "entity": state.entity,
                "revision": new.revision,
                **state_texts(state),
                # the pull feed's data, final already (the commit does not build it again)
                "data": FEED_BY_NAME[spec.table.__tablename__].data_json(row, children),
            }
        )
    nested = session.begin_nested()
    try:
        connection = session.connection()
        for spec in SPECS.values():  # referenced tables first (custom GPTs, prompts, then outputs)
            if spec.table in rows:
                connection.execute(insert(spec.table.__table__), rows[spec.table])  # type: ignore[attr-defined]
        for link, items in links.items():
            if items:
                connection.execute(insert(link.table.__table__), items)
        if versions:
            connection.execute(insert(PromptVersion.__table__), versions)  # type: ignore[arg-type]
        connection.execute(insert(SyncRecordState.__table__), states)  # type: ignore[arg-type]
    except IntegrityError:
        nested.rollback()
        return False
    nested.commit()
    mark_data_stored(session, org_id=tenant.org_id, revisions=[new.revision for new in news])
    return True


def _handle(
    session: Session,
    *,
    tenant: Tenant,
    raw: dict[str, Any],
    op_id: str,
    change: Change | ProtocolError | None,
    may_write: bool,
    now: datetime,
    max_drift_ms: int,
    device: str,
    batch: PushBatch,
    watch: _Watch,
) -> OpResult:
    entity = raw.get("entity") if isinstance(raw.get("entity"), str) else None
    ident = str(raw.get("id")) if raw.get("id") is not None else None
    if not may_write:
        kind = raw.get("kind")
        # a kind is whatever JSON the client sent (a list is unhashable)
        verb = _VERBS.get(kind, "change") if isinstance(kind, str) else "change"
        return OpResult(
            op_id=op_id,
            status="refused",
            entity=entity,
            id=ident,
            error=OpError(
                code="permission-denied",
                detail=f"{tenant.acting_as} may not {verb} records",
            ),
        )
    if not isinstance(change, Change):
        return OpResult(
            op_id=op_id,
            status="refused",
            entity=entity,
            id=ident,
            error=OpError(code="invalid", detail=str(change), field=getattr(change, "field", None)),
        )
    now_ms = int(now.timestamp() * 1000)
    if change.hlc.wall_ms > now_ms + max_drift_ms:
        return OpResult(
            op_id=op_id,
            status="refused",
            entity=entity,
            id=ident,
            error=OpError(
                code="clock-drift",
                detail=(
                    f"the edit is stamped {(change.hlc.wall_ms - now_ms) // 1000} s ahead of the server's "
                    "clock: the device's clock was wrong when it was made; set it right, then make the edit "
                    "again"
                ),
                field="hlc",
            ),
        )
    spec = SPECS[change.entity]
    problem = (
        reference_problem(spec, change.values)
        or reference_problem(spec, {n: b.value for n, b in change.base.items() if n in spec.references})
        or value_problem(spec, change.values)
        or missing_problem(spec.entity, change.values, creating=change.kind is ChangeKind.CREATE)
    )
    if problem is not None:
        return OpResult(
            op_id=op_id,
            status="refused",
            entity=entity,
            id=ident,
            error=OpError(code="invalid", detail=problem[0], field=problem[1]),
        )
    change = remap_change(session, org_id=tenant.org_id, change=change, spec=spec, known=batch.remaps)
    moved_from = None
    if spec.lookup and change.kind is ChangeKind.UPDATE and change.record_id in batch.remaps:
        moved_from, change = change.record_id, _moved_onto_survivor(change, batch.remaps[change.record_id])
        batch.exists(session, spec.table, {uuid.UUID(change.record_id)})  # not one the batch read
    nested = session.begin_nested()
    try:
        remapped_to = None
        duplicate = _merge_duplicate_lookup(
            session, tenant=tenant, change=change, spec=spec, now=now, batch=batch, device=device
        )
        if duplicate is not None:
            applied, remapped_to = duplicate
        else:
            applied = apply_change(session, tenant=tenant, change=change, now=now, batch=batch)
    except OpRefusedError as refused:
        nested.rollback()
        return OpResult(
            op_id=op_id, status="refused", entity=change.entity, id=change.record_id, error=refused.error
        )
    except AlreadyGoneError:
        nested.rollback()
        return OpResult(op_id=op_id, status=OutcomeKind.NOOP.value, entity=change.entity, id=change.record_id)
    except IntegrityError:
        nested.rollback()
        return OpResult(
            op_id=op_id,
            status="refused",
            entity=change.entity,
            id=change.record_id,
            error=OpError(
                code="not-found",
                detail=f"{change.entity} {change.record_id} cannot be stored here",
                field="id",  # the id is another organization's record's
            ),
        )
    nested.commit()
    batch.known.setdefault(spec.table, set()).add(uuid.UUID(change.record_id))
    if remapped_to is not None:
        batch.remaps[change.record_id] = remapped_to
    if applied.outcome is not OutcomeKind.NOOP:
        announce = remapped_to is None  # a merged duplicate's conflicts came with the values it moved
        _emit(
            session,
            tenant=tenant,
            change=change,
            applied=applied,
            device=device,
            now=now,
            announce_opened=announce,
        )
        if remapped_to is None:
            watch.saw(spec, change, applied)
            for table in sorted(watch.freed, key=lambda t: t.__tablename__):  # before the next op's check
                repair_stale_keys(session, KIND_BY_TABLE[table], org_id=tenant.org_id)  # type: ignore[index]
            watch.freed.clear()
    return OpResult(
        op_id=op_id,
        status=applied.outcome.value,
        entity=change.entity,
        id=moved_from or change.record_id,
        revision=applied.revision,
        conflicts=[c.id for c in applied.opened],
        resolved=[c.id for c in applied.resolved],
        remapped_to=remapped_to or (change.record_id if moved_from else None),
    )


def _moved_onto_survivor(change: Change, survivor: str) -> Change:
    """An edit of a lookup the server merged into another (made before the replica learnt of the merge:
    often in the same push as its create) as an edit of the surviving one: the merged record is a tombstone
    whose name the survivor holds, so the edit itself would be refused (name taken) and lost. Its base
    versions are the merged record's, none of which the survivor has, so every field it changes counts as
    concurrent with the survivor's: text merges against the edit's base, a scalar both changed is a conflict
    like any other. A delete of the merged record is not moved (the record is gone already; its maker's
    delete must not delete the entry others made)."""
    return replace(change, record_id=survivor)


def effect_verb(before: Mapping[str, Any] | None, after: RecordState) -> str:
    """What a write did to its record, as an event's verb: ``created``, ``deleted``, ``restored`` or
    ``updated``. Judged by the record, not by the op: a device's delete that a concurrent edit overrode left
    the record live (it was announced as ``deleted``, and a webhook consumer deleted a live record), and an
    offline edit that brought a deleted record back was announced as ``updated`` (found by QA)."""
    if before is None:
        return "deleted" if after.deleted else "created"
    was_deleted = bool(before.get("deleted"))
    if was_deleted and not after.deleted:
        return "restored"
    if after.deleted and not was_deleted:
        return "deleted"
    return "updated"


def _emit(
    session: Session,
    *,
    tenant: Tenant,
    change: Change,
    applied: Applied,
    device: str,
    now: datetime,
    reason: str | None = None,
    announce_opened: bool = True,
) -> None:
    """The change's event, and a ``conflict.created`` for each conflict it opened (not with
    ``announce_opened=False``: a duplicate lookup's merge announced them with the edit that moved its values
    onto the survivor, and its own event announced them again, twice in the audit log, webhooks and
    notifications, QA)."""
    made_at = datetime.fromtimestamp(change.hlc.wall_ms / 1000, tz=UTC)
    emit(
        session,
        DomainEvent(
            org_id=tenant.org_id,
            kind=f"{change.entity}.{effect_verb(applied.before, applied.state)}",
            entity=change.entity,
            entity_id=change.record_id,
            actor=tenant.actor,
            at=now,
            revision=applied.revision,
            source="sync",
            device=device,
            made_at=made_at,
            before=applied.before,
            after=display_state(applied.state),
            merge=applied.outcome.value,
            details={"op_id": change.op_id, "op": change.kind.value, "changed": sorted(change.values)}
            | ({"reason": reason} if reason else {}),
        ),
    )
    for conflict in applied.opened if announce_opened else ():
        emit(
            session,
            DomainEvent(
                org_id=tenant.org_id,
                kind="conflict.created",
                entity="conflict",
                entity_id=conflict.id,
                actor=tenant.actor,
                at=now,
                revision=applied.revision,
                source="sync",
                device=device,
                made_at=made_at,
                after={
                    "entity": conflict.entity,
                    "record_id": conflict.record_id,
                    "field": conflict.field,
                    "kind": conflict.kind.value,
                    **conflict_json(conflict),
                },
            ),
        )


@dataclass
class _Watch:
    """What a push wrote that may leave a live record naming a deleted one (see ``references``)."""

    named: dict[type[ReplicatedRow], set[uuid.UUID]] = field(default_factory=dict)
    """Records that live records written by this push name."""
    dropped: dict[type[ReplicatedRow], set[uuid.UUID]] = field(default_factory=dict)
    """Records this push deleted."""
    unnormalized: set[tuple[str, str]] = field(default_factory=set)
    """(entity, id) of the live lookups this push left with a name not stored as names are (an older replica's
    NFD or surrounding spaces): :func:`_normalize_names` stores it so once the whole push is applied."""
    freed: set[type[ReplicatedRow]] = field(default_factory=set)
    """Lookup tables of which the op just applied deleted or renamed an entry: a name it held may be free for
    an entry migration 0013 left without its key (``repair_stale_keys``, before the next op)."""
    restored: dict[type[ReplicatedRow], set[uuid.UUID]] = field(default_factory=dict)
    """Lookup entries this push made live again (a delete that lost to an edit, a restore): ``_relink``."""

    def saw(self, spec: EntitySpec, change: Change, applied: Applied) -> None:
        state = applied.state
        name = state.values.get("name")
        if spec.lookup and not state.deleted and isinstance(name, str) and normalize_name(name) != name:
            self.unnormalized.add((spec.entity, state.record_id))
        was_live = applied.before is not None and not applied.before.get("deleted")
        if spec.lookup and was_live and (state.deleted or (applied.before or {}).get("name") != name):
            self.freed.add(spec.table)
        if spec.lookup and applied.before is not None and applied.before.get("deleted") and not state.deleted:
            self.restored.setdefault(spec.table, set()).add(uuid.UUID(state.record_id))
        if state.deleted:
            if was_live:
                self.dropped.setdefault(spec.table, set()).add(uuid.UUID(state.record_id))
            return
        # a record that just became live names all it names; a live one only what the change touched
        fields = None if not was_live or change.kind is not ChangeKind.UPDATE else change.values.keys()
        for table, ident in named_by(spec, state, fields):
            self.named.setdefault(table, set()).add(ident)


def _keep_named(
    session: Session,
    *,
    tenant: Tenant,
    todo: dict[type[ReplicatedRow], set[uuid.UUID]],
    now: datetime,
    device: str,
    restored: dict[type[ReplicatedRow], set[uuid.UUID]] | None = None,
) -> int:
    """Restore the deleted records ``todo`` that live records name (a delete that met a reference its author
    did not see), and what those name in turn; each keeps its delete as a conflict. Returns how many; adds
    them to ``restored`` when given."""
    count = 0
    done: set[tuple[type[ReplicatedRow], uuid.UUID]] = set()
    while todo:
        named: dict[type[ReplicatedRow], set[uuid.UUID]] = {}
        for table, ids in todo.items():
            for rid in sorted(ids):
                if (table, rid) in done:
                    continue
                done.add((table, rid))
                spec = SPEC_BY_TABLE[table]
                applied = _restore_named(session, tenant=tenant, spec=spec, rid=rid, now=now, device=device)
                if applied is not None:
                    count += 1
                    if restored is not None:
                        restored.setdefault(table, set()).add(rid)
                    for target, ident in named_by(spec, applied.state):
                        named.setdefault(target, set()).add(ident)
        todo = {
            t: {i for i in ids if (t, i) not in done}
            for t, ids in deleted_among(session, org_id=tenant.org_id, ids=named).items()
        }
        todo = {t: ids for t, ids in todo.items() if ids}
    return count


def keep_referenced(session: Session, *, tenant: Tenant, now: datetime) -> int:
    """Restore every deleted record a live record of the organization names, as a push would have (for data
    written before pushes did: ``outputhub sync keep-referenced``). The caller holds the organization's
    write lock. Returns how many records were restored."""
    todo: dict[type[ReplicatedRow], set[uuid.UUID]] = {}
    for entity, _record, name, target in dangling_references(session, org_id=tenant.org_id):
        todo.setdefault(SPECS[entity].references[name], set()).add(uuid.UUID(target))
    return _keep_named(session, tenant=tenant, todo=todo, now=now, device="server")


def _restore_named(
    session: Session, *, tenant: Tenant, spec: EntitySpec, rid: uuid.UUID, now: datetime, device: str
) -> Applied | None:
    """Restore a deleted record that a live record names, by a server restore concurrent with its deletes
    (its base names none of them), so the merge keeps each delete as a conflict. None when the record is
    not deleted after all, or could not be live again (a lookup whose name another entry took since)."""
    row = session.get(spec.table, rid)
    if row is None or row.org_id != tenant.org_id or not row.deleted:
        return None
    state = load_states(session, org_id=tenant.org_id, spec=spec, rows=[row])[rid]
    hlc = server_hlc(state, now)
    change = Change(
        spec.entity,
        str(rid),
        SERVER_NODE,
        hlc,
        kept_op_id(str(rid), hlc),
        ChangeKind.RESTORE,
        {},
        {TOMBSTONE: FieldBase(True, frozenset())},
    )
    try:
        return _apply_server_change(
            session,
            tenant=tenant,
            change=change,
            now=now,
            device=device,
            reason="a live record names it: its delete is kept as a conflict",
        )
    except OpRefusedError as refused:
        if refused.error.code == "name-taken":
            _move_references(
                session,
                tenant=tenant,
                spec=spec,
                rid=rid,
                name=str(state.values["name"]),
                now=now,
                device=device,
            )
        return None


def _normalize_names(
    session: Session, *, tenant: Tenant, records: set[tuple[str, str]], now: datetime, device: str
) -> None:
    """Store the names of these lookups as names are stored (``common/names.py``: stripped, Unicode NFC), by
    an edit of the server's that every replica pulls, as for a REST rename. An older replica pushes a name as
    it was typed ("Café" as e + U+0301 on macOS); newer ones normalize it as it is typed. Made once the whole
    push is applied, so that an older replica's create and rename of one lookup in one push are one name
    write, not a conflict with the server's. A name in conflict is left to its resolution (which stores it
    normalized); one that would be refused (past the length limit once in NFC) is left as it is."""
    for entity, record_id in sorted(records):
        spec = SPECS[entity]
        row = session.get(spec.table, uuid.UUID(record_id))
        if row is None or row.org_id != tenant.org_id or row.deleted:
            continue
        state = load_states(session, org_id=tenant.org_id, spec=spec, rows=[row])[row.id]
        name = state.values.get("name")
        stored = normalize_name(name) if isinstance(name, str) else None
        if not stored or stored == name or any(c.field == "name" for c in state.conflicts):
            continue
        _server_edit(
            session,
            tenant=tenant,
            state=state,
            values={"name": stored},
            what="normalized",
            now=now,
            device=device,
            reason="names are stored without surrounding spaces, in Unicode NFC",
        )


def _relink(
    session: Session,
    *,
    tenant: Tenant,
    restored: dict[type[ReplicatedRow], set[uuid.UUID]],
    now: datetime,
    device: str,
) -> int:
    """Lookup entries live again after a delete (it lost to an edit made without seeing it, or to a reference,
    or the entry was restored): each record the delete took the entry off, and whose field nobody has written
    since (its heads are still the delete's unlinks), names it again, by an edit of the server's. The
    take-along was part of the delete and does not stand once the delete has lost (QA: a tag whose delete
    lost to an edit of its description came back on none of its records). A record edited since keeps what
    its editor gave it. Returns how many records were edited."""
    count = 0
    for table, ids in sorted(restored.items(), key=lambda item: item[0].__tablename__):
        spec = SPEC_BY_TABLE[table]
        for rid in sorted(ids):
            entry = session.get(table, rid)
            if entry is None or entry.deleted:  # deleted again later in the push
                continue
            ident = str(rid)
            for ref in KEPT_ALIVE:
                if ref.target is not table:
                    continue
                # the live records whose merge states name it (one it was taken off keeps it in its field's
                # history), in one query
                naming = select(SyncRecordState.record_id).where(
                    SyncRecordState.org_id == tenant.org_id,
                    SyncRecordState.entity == ref.spec.entity,
                    SyncRecordState.state.contains(ident),
                )
                owner = ref.spec.table
                rows = list(
                    session.execute(
                        select(owner)
                        .where(owner.org_id == tenant.org_id, owner.deleted.is_(False), owner.id.in_(naming))
                        .order_by(owner.id)
                    ).scalars()
                )
                for state in load_states(session, org_id=tenant.org_id, spec=ref.spec, rows=rows).values():
                    back = relinked_value(state, ref.field, ident)
                    if back is None:
                        continue
                    _server_edit(
                        session,
                        tenant=tenant,
                        state=state,
                        values={ref.field: back},
                        what=f"relink-{ident}",
                        now=now,
                        device=device,
                        reason=f"its {spec.entity} is live again: the delete that took it off did not stand",
                        unlink=True,  # undoes an unlink: no edit of the record, as the unlink was none
                    )
                    count += 1
    return count


def _server_edit(
    session: Session,
    *,
    tenant: Tenant,
    state: RecordState,
    values: dict[str, Any],
    what: str,
    now: datetime,
    device: str,
    reason: str,
    unlink: bool = False,
) -> None:
    """Write ``values`` to ``state``'s record by an edit of the server's (op id ``server:<id>:<what>:<hlc>``)
    that every replica pulls; one the merge refuses is left out (nothing of it is written). ``unlink``: a
    consequence of a lookup's fate, not an edit anyone made (its op id ends as an unlink's,
    ``is_unlink``): it does not bring back the record if a replica deleted it meanwhile."""
    hlc = server_hlc(state, now)
    change = make_edit(
        state,
        values,
        schema=DEFAULT_SCHEMA,
        node=SERVER_NODE,
        hlc=hlc,
        op_id=f"server:{state.record_id}:{what}:{hlc.encode()}" + (UNLINK_SUFFIX if unlink else ""),
    )
    if change is None:
        return
    with contextlib.suppress(OpRefusedError):
        _apply_server_change(session, tenant=tenant, change=change, now=now, device=device, reason=reason)


def _apply_server_change(
    session: Session, *, tenant: Tenant, change: Change, now: datetime, device: str, reason: str
) -> Applied:
    """Apply a change the server makes on its own (in a savepoint: a refusal, re-raised, writes nothing)
    and emit its event, saying why."""
    nested = session.begin_nested()
    try:
        applied = apply_change(session, tenant=tenant, change=change, now=now)
    except OpRefusedError:
        nested.rollback()
        raise
    nested.commit()
    _emit(session, tenant=tenant, change=change, applied=applied, device=device, now=now, reason=reason)
    return applied


def server_hlc(state: RecordState, now: datetime) -> HLC:
    """A version for a server change to ``state``: now, or just after the newest write it knows."""
    known = state.known_versions
    top = max(known) if known else None
    now_ms = int(now.timestamp() * 1000)
    if top is not None and top.wall_ms >= now_ms:
        return after(top, node=SERVER_NODE)  # (not counter + 1: a replica's may be the last one, 999999)
    return HLC(now_ms, 0, SERVER_NODE)


def _move_references(
    session: Session,
    *,
    tenant: Tenant,
    spec: EntitySpec,
    rid: uuid.UUID,
    name: str,
    now: datetime,
    device: str,
) -> None:
    """A deleted lookup entry live records name cannot come back: another entry took its name since (tag
    "python" deleted, a new "python" made, an offline replica put the old one on a prompt). The records
    that name it are edited by the server to name the live entry of that name instead."""
    table: type[LookupRow] = spec.table  # type: ignore[assignment]
    live = session.execute(
        select(table.id).where(
            table.org_id == tenant.org_id, table.deleted.is_(False), table.name_key == name_key(name)
        )
    ).scalar_one_or_none()
    if live is None:
        return
    old, new = str(rid), str(live)
    for ref in KEPT_ALIVE:
        if ref.target is not spec.table:
            continue
        users = still_named(
            session, org_id=tenant.org_id, ids={spec.table: {rid}}, references=(ref,), users=True
        ).get(ref.spec.table, set())
        rows = [session.get(ref.spec.table, u) for u in sorted(users)]
        states = load_states(
            session, org_id=tenant.org_id, spec=ref.spec, rows=[r for r in rows if r is not None]
        )
        for state in states.values():
            value = state.values[ref.field]
            moved = (frozenset(value) - {old}) | {new} if isinstance(value, frozenset) else new
            _server_edit(
                session,
                tenant=tenant,
                state=state,
                values={ref.field: moved},
                what=f"moved:{old}",
                now=now,
                device=device,
                reason=f"named a deleted {spec.entity} whose name another took since: moved to that one",
            )
