"""Server rows <-> the sync engine's record states.

The REST API edits rows directly; the sync layer keeps each record's engine state in
``sync_record_states`` with the row revision it was stored at. When a row has moved on since (a REST edit),
the server's edit is *derived* from the difference, deterministically (the same row and stored state give
the same change, node ``server``), so a pull can compute it without writing and a push stores the very same
state. Materializing goes the other way: a merged state is written back to the row and its links.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    TextClause,
    Uuid,
    bindparam,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from outputhub.common.clock import HLC, after
from outputhub.common.errors import DuplicateError
from outputhub.server.api.base import REVISIONS_KEY, UNLINK_REVISIONS_KEY, Link, set_links
from outputhub.server.api.lookups.service import (
    CUSTOM_GPT_AGENT_GROUPS,
    OUTPUT_KNOWLEDGE_TYPES,
    OUTPUT_TAGS,
    PROMPT_TAGS,
    name_key,
)
from outputhub.server.api.sync.feed import FEED_BY_NAME
from outputhub.server.request_guard import unstorable_text
from outputhub.server.storage.tables import (
    AccuracyLevel,
    AgentGroup,
    CustomGpt,
    DevelopmentStage,
    GptModel,
    KnowledgeType,
    LookupRow,
    Output,
    Prompt,
    ReplicatedRow,
    SyncConflict,
    SyncRecordState,
    Tag,
)
from outputhub.sync.engine import (
    DEFAULT_SCHEMA,
    Change,
    Conflict,
    FieldKind,
    FieldValue,
    RecordState,
    make_create,
    make_delete,
    make_edit,
    make_restore,
    merge_change,
)
from outputhub.sync.protocol import compact_state_wire, encode_value, state_from_wire, state_to_wire

SERVER_NODE: Final = "server"
"""The node id of edits made through the REST API (and conflict resolutions made on the server)."""


@dataclass(frozen=True)
class EntitySpec:
    entity: str  # engine name
    table: type[ReplicatedRow]
    columns: tuple[str, ...]  # scalar and text fields stored as columns
    links: Mapping[str, Link]  # set fields stored in link tables
    references: Mapping[str, type[ReplicatedRow]]  # field -> referenced table
    required: tuple[str, ...] = ()

    @property
    def lookup(self) -> bool:
        return issubclass(self.table, LookupRow)


def _lookup(entity: str, table: type[LookupRow]) -> EntitySpec:
    return EntitySpec(entity, table, ("name", "description", "position"), {}, {}, ("name",))


SPECS: Final[dict[str, EntitySpec]] = {
    spec.entity: spec
    for spec in (
        _lookup("tag", Tag),
        _lookup("knowledge_type", KnowledgeType),
        _lookup("accuracy_level", AccuracyLevel),
        _lookup("development_stage", DevelopmentStage),
        _lookup("gpt_model", GptModel),
        _lookup("agent_group", AgentGroup),
        EntitySpec(
            "custom_gpt",
            CustomGpt,
            ("name", "description", "instructions", "gpt_model_id"),
            {"agent_group_ids": CUSTOM_GPT_AGENT_GROUPS},
            {"gpt_model_id": GptModel, "agent_group_ids": AgentGroup},
            ("name",),
        ),
        EntitySpec(
            "prompt",
            Prompt,
            ("title", "body", "description", "development_stage_id"),
            {"tag_ids": PROMPT_TAGS},
            {"development_stage_id": DevelopmentStage, "tag_ids": Tag},
            ("title",),
        ),
        EntitySpec(
            "output",
            Output,
            ("prompt_id", "content", "notes", "custom_gpt_id", "gpt_model_id", "accuracy_level_id"),
            {"knowledge_type_ids": OUTPUT_KNOWLEDGE_TYPES, "tag_ids": OUTPUT_TAGS},
            {
                "prompt_id": Prompt,
                "custom_gpt_id": CustomGpt,
                "gpt_model_id": GptModel,
                "accuracy_level_id": AccuracyLevel,
                "knowledge_type_ids": KnowledgeType,
                "tag_ids": Tag,
            },
            ("prompt_id",),
        ),
    )
}
SPEC_BY_TABLE: Final[dict[type[ReplicatedRow], EntitySpec]] = {s.table: s for s in SPECS.values()}


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _column_value(value: Any) -> FieldValue:
    if isinstance(value, uuid.UUID):
        return str(value)
    return value  # type: ignore[no-any-return]


def row_values(
    session: Session, spec: EntitySpec, rows: Sequence[ReplicatedRow]
) -> dict[uuid.UUID, dict[str, FieldValue]]:
    """The engine values of rows (columns plus link sets)."""
    out: dict[uuid.UUID, dict[str, FieldValue]] = {
        row.id: {name: _column_value(getattr(row, name)) for name in spec.columns} for row in rows
    }
    for name, link in spec.links.items():
        for row in rows:
            out[row.id][name] = frozenset()
        if not rows:
            continue
        ids = [r.id for r in rows]
        members: dict[uuid.UUID, set[str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for parent, child in session.execute(
                select(link.parent_col(), link.child_col()).where(link.parent_col().in_(chunk))
            ):
                members.setdefault(parent, set()).add(str(child))
        for parent, kids in members.items():
            out[parent][name] = frozenset(kids)
    return out


def _server_hlc(row: ReplicatedRow, state: RecordState | None) -> HLC:
    """A version for the server's derived edit: at the row's update time, after everything it knows."""
    wall = _ms(row.updated_at)
    known = state.known_versions if state is not None else frozenset()
    top = max(known) if known else None
    if top is not None and top.wall_ms >= wall:
        return after(top, node=SERVER_NODE)  # (not counter + 1: a replica's may be the last one, 999999)
    return HLC(wall, 0, SERVER_NODE)


def conflict_json(conflict: Conflict) -> dict[str, Any]:
    def side(s: Any) -> dict[str, Any]:
        return {
            "version": s.version.encode(),
            "node": s.node,
            "op_id": s.op_id,
            "value": encode_value(s.value),
        }

    return {
        "winner": side(conflict.winner),
        "loser": side(conflict.loser),
        "base": encode_value(conflict.base),
    }


def open_conflicts(
    session: Session, *, org_id: uuid.UUID, conflicts: Iterable[Conflict], revision: int, at: datetime
) -> None:
    """List these conflicts as open on the server (``sync_conflicts``: what the REST conflict endpoints
    read and resolve)."""
    for conflict in conflicts:
        session.merge(
            SyncConflict(
                org_id=org_id,
                id=uuid.UUID(conflict.id),
                entity=conflict.entity,
                record_id=uuid.UUID(conflict.record_id),
                field=conflict.field,
                kind=conflict.kind.value,
                data=orjson.dumps(conflict_json(conflict)).decode(),
                opened_at=at,
                opened_revision=revision,
                resolved_at=None,
                resolved_by=None,
            )
        )


def close_conflicts(
    session: Session, *, org_id: uuid.UUID, conflicts: Iterable[Conflict], at: datetime, actor: str | None
) -> None:
    for conflict in conflicts:
        item = session.get(SyncConflict, (org_id, uuid.UUID(conflict.id)))
        if item is not None and item.resolved_at is None:
            item.resolved_at, item.resolved_by = at, actor


def mirror_conflicts(
    session: Session,
    *,
    org_id: uuid.UUID,
    before: RecordState | None,
    after: RecordState,
    revision: int,
    at: datetime,
    actor: str | None,
) -> None:
    """Keep the server's conflict list in step with a record's state after a write outside the push (a REST
    edit, a bulk statement): conflicts the new state no longer has are closed, new ones opened. A REST
    write to a record in conflict replaced its conflict in the state and left the list with the old one
    (QA): no replica had it, the real one was out of reach, resolving the stale one did nothing."""
    old = {c.id: c for c in (before.conflicts if before is not None else ())}
    new = {c.id: c for c in after.conflicts}
    if old.keys() == new.keys():
        return
    close_conflicts(
        session, org_id=org_id, conflicts=[old[c] for c in old.keys() - new.keys()], at=at, actor=actor
    )
    open_conflicts(
        session, org_id=org_id, conflicts=[new[c] for c in new.keys() - old.keys()], revision=revision, at=at
    )


def _op(record_id: uuid.UUID, revision: int, what: str) -> str:
    return f"server:{record_id}:{revision}:{what}"


def create_wire(spec: EntitySpec, row: ReplicatedRow, values: Mapping[str, FieldValue]) -> dict[str, Any]:
    """The wire state of a row the server created and nobody edited since (what :func:`derive_state` gives
    for it, built directly: bulk creates store thousands of these per request)."""
    hlc = HLC(_ms(row.created_at), 0, SERVER_NODE).encode()
    op_id = _op(row.id, 0, "create")
    fields = DEFAULT_SCHEMA.entity(spec.entity).fields
    wire_fields: dict[str, Any] = {}
    for name, kind in fields.items():
        value = values.get(name)
        if kind is FieldKind.SET:
            encoded: Any = sorted(value) if isinstance(value, frozenset) else []
            base: Any = []
        elif kind is FieldKind.TEXT:
            encoded, base = (value if isinstance(value, str) else ""), ""
        else:
            encoded, base = value, None
        wire_fields[name] = {"h": [[hlc, op_id, encoded, base, []]], "s": []}
    return {"f": wire_fields, "t": {"h": [[hlc, op_id, False, []]], "s": []}}


def derive_state(
    spec: EntitySpec,
    row: ReplicatedRow,
    values: Mapping[str, FieldValue],
    stored: RecordState | None,
    *,
    unlink: bool = False,
) -> RecordState:
    """The record's state including any REST edit made since ``stored`` (a pure function of its inputs).
    ``unlink``: the row's change since only took deleted lookup entries off it (the op id says so)."""
    schema = DEFAULT_SCHEMA
    state = stored
    rid = str(row.id)
    if state is None or not state.created:
        hlc = HLC(_ms(row.created_at), 0, SERVER_NODE)
        known = state.known_versions if state is not None else frozenset()
        if known and max(known) >= hlc:
            hlc = _server_hlc(row, state)
        create = make_create(
            spec.entity, rid, values, schema=schema, node=SERVER_NODE, hlc=hlc, op_id=_op(row.id, 0, "create")
        )
        state = merge_change(state, create, schema).state
    if row.deleted and not state.deleted:
        change: Change | None = make_delete(
            state,
            schema=schema,
            node=SERVER_NODE,
            hlc=_server_hlc(row, state),
            op_id=_op(row.id, row.revision, "delete"),
        )
        assert change is not None
        return merge_change(state, change, schema).state
    if not row.deleted and state.deleted:
        change = make_restore(
            state,
            schema=schema,
            node=SERVER_NODE,
            hlc=_server_hlc(row, state),
            op_id=_op(row.id, row.revision, "restore"),
        )
        state = merge_change(state, change, schema).state
    if not state.deleted:
        change = make_edit(
            state,
            values,
            schema=schema,
            node=SERVER_NODE,
            hlc=_server_hlc(row, state),
            op_id=_op(row.id, row.revision, "unlink" if unlink else "edit"),
        )
        if change is not None:
            state = merge_change(state, change, schema).state
    return state


_STATES = SyncRecordState.__table__
_READ_STATES = select(_STATES.c.record_id, _STATES.c.revision, _STATES.c.state).where(
    _STATES.c.org_id == bindparam("org"), _STATES.c.record_id.in_(bindparam("ids", expanding=True))
)
"""Built once, on the table: every push reads the states of the records it edits with it."""


def _stored(
    session: Session, *, org_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, str]]:
    """Record id -> (revision stored at, wire JSON) of the stored states among ``ids``."""
    out: dict[uuid.UUID, tuple[int, str]] = {}
    session.flush()  # a Core statement does not flush the session's pending rows on its own
    for start in range(0, len(ids), 500):
        for record_id, revision, wire in session.execute(
            _READ_STATES, {"org": org_id, "ids": list(ids[start : start + 500])}
        ):
            out[record_id] = (revision, wire)
    return out


def _is_current(row: ReplicatedRow, stored: Mapping[uuid.UUID, tuple[int, str]]) -> bool:
    item = stored.get(row.id)
    return item is not None and item[0] == row.revision


def _states(
    spec: EntitySpec,
    rows: Sequence[ReplicatedRow],
    stored: Mapping[uuid.UUID, tuple[int, str]],
    values: Mapping[uuid.UUID, Mapping[str, FieldValue]],
    previous: dict[uuid.UUID, RecordState] | None = None,
    unlinks: frozenset[int] = frozenset(),
) -> dict[uuid.UUID, RecordState]:
    """Each row's state: the stored one, with the server's edit derived when the row moved on since
    (``values`` must hold the engine values of those rows). ``previous`` collects the stored states read;
    ``unlinks``: revisions at which rows only lost links to deleted entries (their edit is an unlink)."""
    out: dict[uuid.UUID, RecordState] = {}
    for row in rows:
        item = stored.get(row.id)
        state = state_from_wire(spec.entity, str(row.id), orjson.loads(item[1])) if item is not None else None
        if previous is not None and state is not None:
            previous[row.id] = state
        if state is None or not _is_current(row, stored):
            state = derive_state(spec, row, values[row.id], state, unlink=row.revision in unlinks)
        out[row.id] = state
    return out


def load_states(
    session: Session, *, org_id: uuid.UUID, spec: EntitySpec, rows: Sequence[ReplicatedRow]
) -> dict[uuid.UUID, RecordState]:
    """The current engine state of each row (stored, or derived when the row moved on since)."""
    if not rows:
        return {}
    stored = _stored(session, org_id=org_id, ids=[r.id for r in rows])
    stale = [r for r in rows if not _is_current(r, stored)]
    return _states(spec, rows, stored, row_values(session, spec, stale))


def load_state_wires(
    session: Session, *, org_id: uuid.UUID, spec: EntitySpec, rows: Sequence[ReplicatedRow]
) -> dict[uuid.UUID, str]:
    """Like :func:`load_states`, as wire JSON text; current stored states pass through untouched."""
    if not rows:
        return {}
    stored = _stored(session, org_id=org_id, ids=[r.id for r in rows])
    out = {r.id: stored[r.id][1] for r in rows if _is_current(r, stored)}
    stale = [r for r in rows if r.id not in out]
    for ident, state in _states(spec, stale, stored, row_values(session, spec, stale)).items():
        out[ident] = state_json(state)
    return out


def _dumps(wire: Mapping[str, Any]) -> str:
    return orjson.dumps(wire).decode()


def state_json(state: RecordState) -> str:
    """The full wire text of a state, as :func:`store_state` stores it in ``state`` (a stale row's state
    derived for a pull)."""
    return _dumps(state_to_wire(state))


def wire_texts(entity: str, wire: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, str | None]:
    """The ``state`` and ``wire`` columns of a stored state: the full wire JSON, and its most compact form
    for pulls (protocol 2's text markers, protocol 3's uniform form where it applies; ``values``: the record's
    values as its columns hold them) or None."""
    compact = compact_state_wire(entity, wire, values)
    return {"state": _dumps(wire), "wire": None if compact is None else _dumps(compact)}


def state_texts(state: RecordState) -> dict[str, str | None]:
    """:func:`wire_texts` of an engine state (every writer of a state stores both columns)."""
    return wire_texts(state.entity, state_to_wire(state), state.values)


def store_state(
    session: Session,
    *,
    org_id: uuid.UUID,
    state: RecordState,
    revision: int,
    new: bool = False,
    data: str | None = None,
) -> None:
    """Store (insert or replace) the record's state as of the row's ``revision`` (``new``: the record was
    created by this transaction, so there is nothing to replace), with ``data``, its pull-feed data, when
    the caller built it (``Feed.data_json``; it then marks the revision with :func:`mark_data_stored`)."""
    texts: dict[str, Any] = dict(state_texts(state))
    if data is not None:
        texts["data"] = data
    record_id = uuid.UUID(state.record_id)
    replaced = (
        not new
        and session.execute(
            _replace_state_sql(tuple(texts)),
            {
                "org": org_id,
                "rid": record_id,
                "new_revision": revision,
                **{f"new_{c}": v for c, v in texts.items()},
            },
        ).rowcount
    )
    if not replaced:
        session.add(
            SyncRecordState(
                org_id=org_id, record_id=record_id, entity=state.entity, revision=revision, **texts
            )
        )


@functools.cache
def _replace_state_sql(columns: tuple[str, ...]) -> Any:
    """``UPDATE sync_record_states SET revision, <columns> WHERE org and record``, built once per column set
    (a Core statement on the table: no ORM bulk-update machinery for rows no session holds)."""
    return (
        update(_STATES)
        .where(_STATES.c.org_id == bindparam("org"), _STATES.c.record_id == bindparam("rid"))
        .values(revision=bindparam("new_revision"), **{c: bindparam(f"new_{c}") for c in columns})
    )


def _uuid_or_none(value: FieldValue) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


def column_values(spec: EntitySpec, state: RecordState) -> dict[str, Any]:
    """What the state's values are as the row's columns (references as UUIDs, an unset text as "")."""
    schema_fields = DEFAULT_SCHEMA.entity(spec.entity).fields
    out: dict[str, Any] = {}
    for name in spec.columns:
        value = state.values[name]
        if name in spec.references:
            value = _uuid_or_none(value)
        elif schema_fields[name] is FieldKind.TEXT and value is None:
            value = ""
        out[name] = value
    return out


def link_children(spec: EntitySpec, state: RecordState) -> dict[str, list[uuid.UUID]]:
    """Per link field, the state's members as sorted UUIDs: the link rows the record holds."""
    return {
        name: [uuid.UUID(str(m)) for m in sorted(state.values[name] or frozenset())]  # type: ignore[arg-type]
        for name in spec.links
    }


def write_row(
    session: Session,
    spec: EntitySpec,
    row: ReplicatedRow,
    state: RecordState,
    *,
    org_id: uuid.UUID,
    new: bool = False,
    previous: RecordState | None = None,
) -> None:
    """Materialize the state's values onto the row (columns) and its link tables (``new``: the row was just
    added, it has no links to replace; ``previous``: the state the row and its link tables hold now, whose
    unchanged link sets are not written again)."""
    for name, value in column_values(spec, state).items():
        setattr(row, name, value)
    if spec.lookup:
        assert isinstance(row, LookupRow)
        row.name_key = name_key(row.name)
        if row.position is None:
            row.position = 0
    row.deleted = state.deleted
    session.flush()
    children = link_children(spec, state)
    for name, link in spec.links.items():
        if previous is not None and previous.values[name] == state.values[name]:
            continue  # the set did not change: its link rows are right (an edit of a title writes none)
        if not new:  # only the link rows that change are written (``set_links``)
            set_links(session, link, org_id=org_id, parent_id=row.id, child_ids=children[name])
        elif children[name]:  # a Core insert: the ORM's bulk path costs more than the rows
            session.connection().execute(
                insert(link.table.__table__),  # type: ignore[attr-defined]
                [{"org_id": org_id, link.parent: row.id, link.child: c} for c in children[name]],
            )


def reference_ids(spec: EntitySpec, values: Mapping[str, FieldValue]) -> Iterable[tuple[str, uuid.UUID]]:
    """Every (field, id) the values reference."""
    for name in spec.references:
        value = values.get(name)
        if value is None:
            continue
        members = value if isinstance(value, frozenset) else (value,)
        for member in members:
            yield name, uuid.UUID(str(member))


_INT64: Final = 2**63


@functools.cache
def _column_types(entity: str) -> dict[str, type]:
    """The Python type each non-reference column holds (``str``, ``int``, ...), where the column says."""
    spec = SPECS[entity]
    types: dict[str, type] = {}
    for name in spec.columns:
        if name in spec.references:
            continue
        try:
            types[name] = spec.table.__table__.c[name].type.python_type  # type: ignore[attr-defined]
        except NotImplementedError:
            continue
    return types


def value_problem(spec: EntitySpec, values: Mapping[str, FieldValue]) -> tuple[str, str] | None:
    """(detail, field) of the first column value of the wrong type (a number for a title, a 100-digit
    position), or None. Without this a pushed ``"title": true`` was stored as "1" in the row and as ``true``
    in the state (REST and replicas then disagreed), and ``"name": 5`` failed the whole push with 500."""
    for name, value in values.items():
        problem = unstorable_text(value)  # the request-wide check leaves push values to this one
        if problem is not None:
            return f"{spec.entity}.{name} {problem}", name
    for name, kind in _column_types(spec.entity).items():
        value = values.get(name)
        if value is None:
            continue
        if kind is str and not isinstance(value, str):
            return f"{spec.entity}.{name} must be text, not {type(value).__name__}", name
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or abs(value) >= _INT64):
            return f"{spec.entity}.{name} must be a whole number (64-bit)", name
    return None


def reference_problem(spec: EntitySpec, values: Mapping[str, FieldValue]) -> tuple[str, str] | None:
    """(detail, field) of the first reference in ``values`` that is not a UUID, or None."""
    return DEFAULT_SCHEMA.entity(spec.entity).reference_problem(values)


# -- keeping states in step with REST writes -----------------------------------------------------------------


@functools.cache
def _written_rows_sql() -> TextClause:
    """(entity, id, stale, state entity) of the rows of an organization in a revision range, ``stale`` when
    their stored state is missing or older than the row, ``state entity`` the entity the stored state is of
    (None without one). Plain SQL built once: this runs before every commit that wrote replicated rows."""
    parts = [
        f"SELECT '{spec.entity}' AS entity, t.id AS id, "
        "CASE WHEN s.revision IS NULL OR s.revision <> t.revision THEN 1 ELSE 0 END AS stale, "
        "s.entity AS state_entity "
        f"FROM {spec.table.__tablename__} t "
        "LEFT JOIN sync_record_states s ON s.org_id = t.org_id AND s.record_id = t.id "
        "WHERE t.org_id = :org AND t.revision BETWEEN :low AND :high"
        for spec in SPECS.values()
    ]
    return (
        text(" UNION ALL ".join(parts))
        .bindparams(
            bindparam("org", type_=Uuid),
            bindparam("low", type_=BigInteger),
            bindparam("high", type_=BigInteger),
        )
        .columns(entity=String, id=Uuid, stale=Integer, state_entity=String)
    )


def _before_commit(session: Session) -> None:
    """Store the state of every replicated row this transaction wrote outside the sync layer (REST, bulk
    statements), so the server's derived edit is fixed once and every replica sees the same one.

    The rows are found by the revisions the transaction allocated (every write allocates one), whatever
    path wrote them: ORM objects, bulk inserts or UPDATE statements."""
    if session.in_nested_transaction():
        return  # SQLAlchemy fires this when a savepoint is released too: wait for the real commit
    ranges: list[tuple[uuid.UUID, int, int]] = session.info.pop(REVISIONS_KEY, [])
    unlinked: set[tuple[uuid.UUID, int]] = session.info.pop(UNLINK_REVISIONS_KEY, set())
    marks = session.info.pop(DATA_STORED_KEY, None)
    stored_data: dict[uuid.UUID, list[tuple[int, int]]] = (
        marks[1] if marks is not None and marks[0] is session.get_transaction() else {}
    )
    if not ranges:
        return
    by_org: dict[uuid.UUID, list[tuple[int, int]]] = {}
    for org_id, first, last in ranges:
        by_org.setdefault(org_id, []).append((first, last))
    dialect = session.get_bind().dialect.name
    for org_id, spans in by_org.items():
        low, high = min(a for a, _ in spans), max(b for _, b in spans)
        # the revisions whose records stored their state and final data themselves (the sync push): none of
        # them needs anything here; when that is all of them (a push whose every op wrote), nothing is read
        spans_left = uncovered(low, high, stored_data.get(org_id, []))
        if not spans_left:
            continue
        bounds = {"org": org_id, "low": low, "high": high}
        # one round trip finds the written rows and which of them have a state missing or older than the
        # row (a sync push stores its own states, so for it none)
        written: set[str] = set()
        stale_ids: dict[str, list[uuid.UUID]] = {}
        for entity, ident, stale, state_entity in session.execute(_written_rows_sql(), bounds):
            if state_entity is not None and state_entity != entity:
                # a record of another entity holds this id (one state per organization and id): the create
                # paths refuse such an id up front (``check_new_ids``); this is the net behind them, so a
                # path that missed it gets the same 409 rather than a state parsed as the wrong entity
                raise DuplicateError("body.id", str(ident))
            written.add(str(entity))
            if stale:
                stale_ids.setdefault(str(entity), []).append(ident)
        for spec in SPECS.values():
            if spec.entity not in stale_ids:
                continue
            table = spec.table
            # as the database has them now: a row this session loaded earlier keeps its loaded values in the
            # identity map, and a column it did not change may have been changed since by a writer that
            # committed before this one took the revision counter
            stale = list(
                session.execute(
                    select(table)
                    .where(table.org_id == org_id, table.id.in_(stale_ids[spec.entity]))
                    .execution_options(populate_existing=True)
                ).scalars()
            )
            stored = _stored(session, org_id=org_id, ids=[r.id for r in stale])
            values = row_values(session, spec, stale)
            fresh = [r for r in stale if r.id not in stored and not r.deleted]
            session.add_all(
                SyncRecordState(
                    org_id=org_id,
                    record_id=row.id,
                    entity=spec.entity,
                    revision=row.revision,
                    **wire_texts(spec.entity, create_wire(spec, row, values[row.id]), values[row.id]),
                )
                for row in fresh
            )
            rest = [r for r in stale if r.id in stored or r.deleted]
            previous: dict[uuid.UUID, RecordState] = {}
            unlinks = frozenset(rev for org, rev in unlinked if org == org_id)
            states = _states(spec, rest, stored, values, previous, unlinks)
            for row in rest:
                store_state(session, org_id=org_id, state=states[row.id], revision=row.revision)
                # the server's edit may replace a conflict (a conflict is named by its two writes) or open one
                mirror_conflicts(
                    session,
                    org_id=org_id,
                    before=previous.get(row.id),
                    after=states[row.id],
                    revision=row.revision,
                    at=row.updated_at,
                    actor=row.updated_by,
                )
        session.flush()
        # every written record's pull-feed data, built once here rather than on every pull (the rows, their
        # links and their states are all final now), except at the revisions whose data went in with their
        # states (the sync push's writes: a second pass rewrote each of those state rows)
        for spec in SPECS.values():
            if spec.entity in written:
                for first, last in spans_left:
                    session.execute(
                        FEED_BY_NAME[spec.table.__tablename__].refresh_sql(dialect),
                        {"org": org_id, "low": first, "high": last},
                    )
    session.flush()
    session.info.pop(REVISIONS_KEY, None)


DATA_STORED_KEY: Final = "outputhub.feed_data_stored"
"""``session.info`` entry: (the transaction, per organization the (first, last) revision spans whose feed data
is stored in it)."""


def mark_data_stored(session: Session, *, org_id: uuid.UUID, revisions: Iterable[int]) -> None:
    """The records written at these revisions have their state and final pull-feed ``data`` stored: the
    commit neither checks their states nor builds their data again. Only a path that wrote nothing else at
    these revisions may mark them (each write allocates its own). A record written again later in the
    transaction gets a new revision, which is not marked."""
    transaction = session.get_transaction()
    marks = session.info.get(DATA_STORED_KEY)
    if marks is None or marks[0] is not transaction:  # marks of a transaction that rolled back are dropped
        marks = session.info[DATA_STORED_KEY] = (transaction, {})
    spans: list[tuple[int, int]] = marks[1].setdefault(org_id, [])
    for revision in sorted(revisions):
        if spans and spans[-1][1] + 1 == revision:
            spans[-1] = (spans[-1][0], revision)
        else:
            spans.append((revision, revision))


def uncovered(low: int, high: int, covered: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans of ``low..high`` (inclusive) outside every ``covered`` span, in order."""
    out: list[tuple[int, int]] = []
    start = low
    for first, last in sorted(covered):
        if last < start:
            continue
        if first > high:
            break
        if first > start:
            out.append((start, first - 1))
        start = max(start, last + 1)
    if start <= high:
        out.append((start, high))
    return out


def install_state_tracking(factory: sessionmaker[Session]) -> None:
    """Register the listener on the server's session factory (called by the composition root)."""
    event.listen(factory, "before_commit", _before_commit)
