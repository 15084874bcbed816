"""The encrypted replica as the sync client's store (``outputhub.sync.ports.ReplicaStore``).

Each replicated row keeps its merge state (the engine's registers, wire form) in ``field_clocks["state"]``;
the typed columns are what that state materializes to, so lists, filters and full-text search read plain
columns. Local edits write the row, the state and the outbox entry in one transaction; pulled records are
joined with the local state (a fresh record skips the engine: the server's materialized data is stored
as is, which is what makes an initial sync fast).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace as dc_replace
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

from outputhub.common.clock import HLC
from outputhub.desktop.storage import tables
from outputhub.desktop.storage.records import (
    CustomGptRecord,
    LocalStatus,
    LookupKind,
    LookupRecord,
    OutputRecord,
    PromptRecord,
    PromptVersionRecord,
    ReplicatedRecord,
    utc_now,
)
from outputhub.desktop.storage.replica import Replica, forget_closed_conflicts
from outputhub.desktop.storage.tables import EntityTable, dumps, to_timestamp
from outputhub.sync.engine import (
    DEFAULT_SCHEMA,
    Change,
    ConflictKind,
    FieldKind,
    FieldState,
    FieldWrite,
    RecordState,
    build_state,
    make_create,
    merge_change,
    merge_states,
    relinked_value,
    sides,
)
from outputhub.sync.ports import ApplyResult, LocalRecord, Outgoing, RemoteItem, TableSums
from outputhub.sync.protocol import (
    CURRENT,
    ENTITY_TABLES,
    change_to_wire,
    compact_state,
    encode_value,
    expand_state,
    state_from_wire,
    state_to_wire,
)

SPEC: Final[dict[str, EntityTable[Any]]] = {
    "prompt": tables.PROMPTS,
    "output": tables.OUTPUTS,
    "custom_gpt": tables.CUSTOM_GPTS,
    **{
        entity: tables.LOOKUPS[LookupKind(ENTITY_TABLES[entity])]
        for entity in (
            "tag",
            "knowledge_type",
            "accuracy_level",
            "development_stage",
            "gpt_model",
            "agent_group",
        )
    },
}
ENTITY_ORDER: Final = (
    "tag",
    "knowledge_type",
    "accuracy_level",
    "development_stage",
    "gpt_model",
    "agent_group",
    "custom_gpt",
    "prompt",
    "output",
)
REJECTED_FIELD: Final = "_rejected"
"""Conflict-table field of an edit the server refused (kept so that it is not silently lost)."""
META_ORG: Final = "org_id"
META_HLC: Final = "hlc"
META_FULL_WALK: Final = "full_walk"
"""A full pull is under way: ``<server url> <organization id>`` (its records so far in ``walk_seen``)."""
META_FROM_ZERO: Final = "pull_from_zero"
"""A pull that started at revision 0 (an initial sync, a walk) has pages left: ``<server url> <org id>``."""
LOCAL_ORG: Final = "local"


def _ids(value: object) -> tuple[str, ...]:
    return tuple(sorted(value)) if isinstance(value, frozenset | set | list | tuple) else ()


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _ts(value: object, default: datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return default


def build_record(
    entity: str,
    record_id: str,
    values: Mapping[str, Any],
    *,
    org_id: str,
    revision: int | None,
    deleted: bool,
    status: LocalStatus,
    state_wire: Mapping[str, Any],
    extra: Mapping[str, Any],
    previous: ReplicatedRecord | None,
) -> ReplicatedRecord:
    """The typed replica row for materialized ``values`` (plus server-only fields from ``extra``, else kept
    from ``previous``), its state stored compactly (``sync.protocol.compact_state``: a long text equal to its
    column is kept once, in the column; a state written by one operation in the uniform form)."""
    record = _typed_record(
        entity,
        record_id,
        values,
        org_id=org_id,
        revision=revision,
        deleted=deleted,
        status=status,
        state_wire=compact_state(entity, state_wire, values.get),
        extra=extra,
        previous=previous,
    )
    clocks = record.field_clocks  # the record's own dict, made by _typed_record
    clocks["state"] = imply_values(entity, clocks["state"], lambda name: getattr(record, name, None))
    return record


ROW_VALUES: Final = "="
"""A stored uniform state's ``v`` when its values are the row's own, field by field (:func:`imply_values`)."""


def imply_values(
    entity: str, wire: Mapping[str, Any], current: Callable[[str], object]
) -> Mapping[str, Any]:
    """A compact state as the replica stores it: the uniform form of a state whose values are all the row's
    own (``current(field)``; every field of the entity written, each with the value its column holds) as
    ``{"u": [version, op_id], "v": "="}``, which :func:`stored_state` expands from the row again; ``wire``
    itself otherwise. A record written once and never edited (every record of an initial sync) then keeps
    its ids and short texts once, in its columns: 470 of the 2,900 bytes of a pulled 2 KB output were
    its state repeating them (docs/replica.md). Exact: a value that differs in any way, even only in type
    (``0`` and ``False``), keeps the state as it is."""
    values = wire.get("v") if "u" in wire else None
    if type(values) is not dict or entity not in _FIELD_KINDS:
        return wire
    expected = _row_values(entity, current)  # what stored_state reads back: the form holds iff they agree
    if values.keys() != expected.keys():
        return wire
    for name, own in expected.items():
        value = values[name]
        # a text as the marker stands for the column's text
        if not ((type(value) is type(own) and value == own) or (value == CURRENT and isinstance(own, str))):
            return wire
    return {"u": wire["u"], "v": ROW_VALUES}


def _row_values(entity: str, current: Callable[[str], object]) -> dict[str, Any]:
    """The ``v`` a :data:`ROW_VALUES` state stands for: each field's value as the row holds it (a set as
    its sorted list, as ``sync.protocol.encode_value`` writes one)."""
    return {
        name: sorted(current(name) or ()) if is_set else current(name)  # type: ignore[call-overload]
        for name, is_set in _FIELD_KINDS[entity]
    }


def stored_state(entity: str, record: ReplicatedRecord) -> Mapping[str, Any] | None:
    """The record's merge state as the engine knows it (compacted values restored), or None."""
    wire = record.field_clocks.get("state")
    if not wire:
        return None
    current = lambda name: getattr(record, name, None)  # noqa: E731
    if wire.get("v") == ROW_VALUES:
        wire = {"u": wire["u"], "v": _row_values(entity, current)}
    return expand_state(entity, wire, current)


def _typed_record(
    entity: str,
    record_id: str,
    values: Mapping[str, Any],
    *,
    org_id: str,
    revision: int | None,
    deleted: bool,
    status: LocalStatus,
    state_wire: Mapping[str, Any],
    extra: Mapping[str, Any],
    previous: ReplicatedRecord | None,
) -> ReplicatedRecord:
    """The typed replica row for materialized ``values`` (plus server-only fields from ``extra``, else kept
    from ``previous``)."""
    now = utc_now()
    meta: dict[str, Any] = {
        "id": record_id,
        "org_id": org_id,
        "revision": revision,
        "deleted": deleted,
        "local_status": status,
        "base": None,
        "field_clocks": {"state": state_wire},
        "created_at": _ts(extra.get("created_at"), previous.created_at if previous else now),
        "updated_at": _ts(extra.get("updated_at"), now),
        "created_by": str(extra.get("created_by") or (previous.created_by if previous else "")),
        "updated_by": str(extra.get("updated_by") or (previous.updated_by if previous else "")),
    }
    if entity == "prompt":
        version = extra.get("version") or (previous.version if isinstance(previous, PromptRecord) else 1)
        return PromptRecord(
            **meta,
            title=_text(values.get("title")),
            body=_text(values.get("body")),
            description=_text(values.get("description")),
            development_stage_id=values.get("development_stage_id"),
            tag_ids=_ids(values.get("tag_ids")),
            version=int(version),
        )
    if entity == "output":
        produced = extra.get("produced_at")
        return OutputRecord(
            **meta,
            prompt_id=_text(values.get("prompt_id")),
            content=_text(values.get("content")),
            notes=_text(values.get("notes")),
            custom_gpt_id=values.get("custom_gpt_id"),
            gpt_model_id=values.get("gpt_model_id"),
            accuracy_level_id=values.get("accuracy_level_id"),
            produced_at=_ts(produced, now)
            if produced
            else (previous.produced_at if isinstance(previous, OutputRecord) else None),
            tag_ids=_ids(values.get("tag_ids")),
            knowledge_type_ids=_ids(values.get("knowledge_type_ids")),
        )
    if entity == "custom_gpt":
        return CustomGptRecord(
            **meta,
            name=_text(values.get("name")),
            description=_text(values.get("description")),
            instructions=_text(values.get("instructions")),
            gpt_model_id=values.get("gpt_model_id"),
            agent_group_ids=_ids(values.get("agent_group_ids")),
        )
    old = previous if isinstance(previous, LookupRecord) else None
    score = extra.get("score", old.score if old else None) if entity == "accuracy_level" else None
    provider = extra.get("provider", old.provider if old else None) if entity == "gpt_model" else None
    position = values.get("position")
    return LookupRecord(
        **meta,
        name=_text(values.get("name")),
        description=_text(values.get("description")),
        position=position if isinstance(position, int) and not isinstance(position, bool) else 0,
        score=(score or 0) if entity == "accuracy_level" else None,
        provider=(provider or "") if entity == "gpt_model" else None,
    )


def record_values(entity: str, record: ReplicatedRecord) -> dict[str, Any]:
    """The engine values a typed row shows (for rows written without a merge state)."""
    fields = DEFAULT_SCHEMA.entity(entity).fields
    out: dict[str, Any] = {}
    for name, kind in fields.items():
        value = getattr(record, name, None)
        out[name] = frozenset(value or ()) if kind.value == "set" else value
    return out


class ReplicaSyncStore:
    """:class:`outputhub.sync.ports.ReplicaStore` over an open :class:`Replica`."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica

    @property
    def node_id(self) -> str:
        return self.replica.node_id

    def transaction(self) -> AbstractContextManager[None]:
        return self.replica.transaction()

    def replayable_transaction(self) -> AbstractContextManager[None]:
        return self.replica.transaction(durable=False)

    def bulk_apply(self) -> AbstractContextManager[None]:
        return self.replica.checkpoints_apart()

    # -- replica facts ---------------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        return self.replica.get_meta(key=key)

    def _set_meta(self, key: str, value: str | None) -> None:
        self.replica.set_meta(key=key, value=value)

    def org_id(self) -> str:
        return self._meta(META_ORG) or LOCAL_ORG

    def attach(self, *, org_id: str) -> None:
        """Tie the replica to an organization; records made before (offline) move into it."""
        current = self._meta(META_ORG)
        if current not in (None, LOCAL_ORG, org_id):
            raise ValueError(f"this replica belongs to organization {current}, not {org_id}")
        if current == org_id:  # attached already: what was made since belongs to it
            return
        with self.replica.writing("attach the replica"):
            self._set_meta(META_ORG, org_id)
            with self.replica.writing("move offline records") as conn:
                for spec in {s.table: s for s in SPEC.values()}.values():
                    conn.execute(f"UPDATE {spec.table} SET org_id = ? WHERE org_id = ?", (org_id, LOCAL_ORG))

    def last_hlc(self) -> HLC | None:
        text = self._meta(META_HLC)
        return HLC.decode(text) if text else None

    def save_hlc(self, hlc: HLC) -> None:
        self._set_meta(META_HLC, hlc.encode())

    # -- records ---------------------------------------------------------------------------------------

    def details(self, entity: str, record_id: str) -> dict[str, Any]:
        """What the replica's row holds beside the synced fields: when the record was made and last changed
        (as the server last said, or here), a prompt's version as last synced, an output's ``produced_at``
        (ISO-8601 UTC text, or None), an accuracy level's ``score``, a GPT model's ``provider``. Empty for a
        record this replica does not have."""
        record = self._get(entity, record_id)
        if record is None:
            return {}
        shown: dict[str, Any] = {
            "created_at": to_timestamp(record.created_at),
            "updated_at": to_timestamp(record.updated_at),
        }
        if isinstance(record, PromptRecord):
            shown["version"] = record.version
        if isinstance(record, OutputRecord):
            shown["produced_at"] = to_timestamp(record.produced_at) if record.produced_at else None
        # the server's fields a replica keeps but does not edit: in `show` and `export`, as REST has them (an
        # export left them out; QA)
        if entity == "accuracy_level":
            shown["score"] = getattr(record, "score", None) or 0
        if entity == "gpt_model":
            shown["provider"] = getattr(record, "provider", None) or ""
        return shown

    def _get(self, entity: str, record_id: str) -> ReplicatedRecord | None:
        with self.replica.reading("read the record") as conn:
            return tables.get(conn, SPEC[entity], record_id)  # type: ignore[no-any-return]

    def _state_of(self, entity: str, record: ReplicatedRecord) -> RecordState:
        wire = stored_state(entity, record)
        if wire:
            return state_from_wire(entity, record.id, wire)
        # a row written without sync (an import, a benchmark): its values as a create by this node
        at = int(record.created_at.timestamp() * 1000)
        change = make_create(
            entity,
            record.id,
            {k: v for k, v in record_values(entity, record).items() if v is not None},
            schema=DEFAULT_SCHEMA,
            node=self.node_id,
            hlc=HLC(at, 0, self.node_id),
            op_id=f"import:{record.id}",
        )
        return merge_change(None, change, DEFAULT_SCHEMA).state

    def _has_pending(self, conn: Any, entity: str, record_id: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM outbox WHERE entity = ? AND record_id = ? LIMIT 1", (entity, record_id)
        ).fetchone()
        return row is not None

    def load(self, entity: str, record_id: str) -> LocalRecord | None:
        record = self._get(entity, record_id)
        if record is None:
            return None
        with self.replica.reading("read the outbox") as conn:
            pending = self._has_pending(conn, entity, record_id)
        return LocalRecord(entity, record_id, self._state_of(entity, record), record.revision, pending)

    def _write(self, conn: Any, entity: str, record: ReplicatedRecord) -> None:
        tables.upsert(conn, SPEC[entity], record)

    def _version_snapshot(self, conn: Any, old: ReplicatedRecord | None, new: ReplicatedRecord) -> None:
        """Keep a local history of prompt texts (the desktop's version list and diff)."""
        if not isinstance(new, PromptRecord):
            return
        if isinstance(old, PromptRecord) and (old.title, old.body) == (new.title, new.body):
            return
        latest = conn.execute(
            "SELECT coalesce(max(version), 0) FROM prompt_versions WHERE prompt_id = ?", (new.id,)
        ).fetchone()[0]
        version = int(latest) + 1
        tables.upsert(
            conn,
            tables.PROMPT_VERSIONS,
            PromptVersionRecord(
                id=str(uuid.uuid5(uuid.UUID(new.id), f"v{version}")),
                org_id=new.org_id,
                revision=new.revision,
                local_status=LocalStatus.SYNCED,
                prompt_id=new.id,
                version=version,
                title=new.title,
                body=new.body,
                created_at=new.updated_at,
                updated_at=new.updated_at,
                created_by=new.updated_by,
                updated_by=new.updated_by,
            ),
        )

    def _mirror_conflicts(self, conn: Any, state: RecordState, result: ApplyResult | None = None) -> None:
        """The replica's conflicts table shows the state's open conflicts, each from this node's side."""
        open_ids = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM conflicts WHERE entity = ? AND record_id = ? AND resolved_at IS NULL "
                "AND field <> ?",
                (state.entity, state.record_id, REJECTED_FIELD),
            )
        }
        now = to_timestamp(utc_now())
        for conflict in state.conflicts:
            if conflict.id in open_ids:
                continue
            mine_side, _ = sides(conflict, self.node_id)
            mine, theirs = (
                (conflict.winner, conflict.loser)
                if mine_side == "winner"
                else (conflict.loser, conflict.winner)
            )
            inserted = conn.execute(
                "INSERT INTO conflicts (id, entity, record_id, field, base, mine, theirs, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET resolved_at = NULL",
                (
                    conflict.id,
                    state.entity,
                    state.record_id,
                    conflict.field if conflict.kind is not ConflictKind.DELETE else "_deleted",
                    dumps(encode_value(conflict.base)),
                    dumps(encode_value(mine.value)),
                    dumps(encode_value(theirs.value)),
                    now,
                ),
            ).rowcount
            if inserted and result is not None:
                result.opened.append(conflict.id)
        current = {c.id for c in state.conflicts}
        for cid in open_ids - current:
            conn.execute("UPDATE conflicts SET resolved_at = ? WHERE id = ?", (now, cid))
            if result is not None:
                result.closed.append(cid)
        if open_ids - current:
            forget_closed_conflicts(conn)

    def save_local(self, state: RecordState, change: Change, *, base_revision: int | None) -> None:
        entity = state.entity
        with self.replica.writing("save the edit") as conn:
            old = tables.get(conn, SPEC[entity], state.record_id)
            status = (
                LocalStatus.CREATED
                if old is None or old.local_status is LocalStatus.CREATED
                else (LocalStatus.DELETED if state.deleted else LocalStatus.UPDATED)
            )
            # one clock read: a new record is created and updated at the same instant (two reads put its
            # updated_at microseconds before its created_at; QA)
            now = utc_now()
            extra = {"updated_at": now, "updated_by": f"node:{self.node_id}"}
            record = build_record(
                entity,
                state.record_id,
                state.values,
                org_id=old.org_id if old else self.org_id(),
                revision=old.revision if old else None,
                deleted=state.deleted,
                status=status,
                state_wire=state_to_wire(state),
                extra=extra if old is not None else {**extra, "created_at": now},
                previous=old,
            )
            self._write(conn, entity, record)
            self._version_snapshot(conn, old, record)
            self._mirror_conflicts(conn, state)
            conn.execute(
                "INSERT INTO outbox (op_id, entity, record_id, payload, base_revision, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    change.op_id,
                    entity,
                    state.record_id,
                    dumps(change_to_wire(change)),
                    base_revision,
                    to_timestamp(utc_now()),
                ),
            )

    def prepare_remote(self, items: Sequence[RemoteItem], *, org_id: str) -> None:
        """The rows of pulled outputs, built ahead (on the pull's prefetch thread, while the previous page is
        applied: SQLite releases the GIL there, so building them overlaps storing). Used by
        :meth:`apply_remote` for the outputs that turn out to be new here and were staged for this replica's
        organization; the others are built as before."""
        _stage_outputs(items, org_id)

    def apply_remote(self, items: Sequence[RemoteItem]) -> ApplyResult:
        """Store a pulled page: new records as they came; a record this replica holds with a local edit
        (not synced, or in the outbox) merged with it.

        A held record with no local edit (synced, nothing in the outbox) takes the server's state as it is
        when the pulled revision is at or after the one held: the server's state then holds every write this
        replica has (its own edits were accepted into it, and every other write came from the server), so
        the merge would give the same, at the cost of decoding and merging both states (``bench.pull_changed``
        times both). An older revision arriving after a newer one (a page delivered again) is merged, so
        nothing goes back. During a full walk (a resync from 0) the state is taken whatever the revision:
        that is what fixes a record purged and then made again with the same id (a re-import) after the
        purge log had been forgotten, whose old values and tags the merge brought back into the new one on
        every replica that walked (QA, 2026-11-29)."""
        result = ApplyResult()
        by_entity: dict[str, list[RemoteItem]] = {}
        for item in items:
            by_entity.setdefault(item.entity, []).append(item)
        walking = self._meta(META_FULL_WALK) is not None
        with self.replica.writing("apply pulled records") as conn:
            org = self.org_id()
            for entity in ENTITY_ORDER:
                group = by_entity.get(entity)
                if not group:
                    continue
                spec = SPEC[entity]
                existing = {
                    r[0]
                    for r in conn.execute(
                        f"SELECT id FROM {spec.table} WHERE id IN (SELECT value FROM json_each(?))",
                        (dumps([i.record_id for i in group]),),
                    )
                }
                fresh = [i for i in group if i.record_id not in existing]
                if fresh and entity in _NEW_ROWS:
                    rows, links = _NEW_ROWS[entity](fresh, org)
                    # a large pull's text is indexed after the sync (Replica.catch_up_search_index)
                    defer = len(rows) >= DEFER_INDEX_ROWS
                    tables.insert_new_rows(conn, spec, rows, links, defer_index=defer)
                elif fresh:
                    records = [fresh_record(i, org) for i in fresh]
                    tables.bulk_upsert(conn, spec, records, chunk_size=1000, new=True)
                    for record in records:
                        self._version_snapshot(conn, None, record)
                if fresh:
                    best = result.max_version.encode() if result.max_version is not None else ""
                    for item in fresh:
                        top, may_conflict = _scan_state(item.wire or item.state)
                        best = max(best, top)
                        if may_conflict:
                            self._mirror_conflicts(
                                conn, state_from_wire(entity, item.record_id, item.state), result
                            )
                    if best:
                        result.max_version = HLC.decode(best)
                    result.changed += len(fresh)
                for item in group:
                    if item.record_id in existing:
                        self._merge_one(conn, item, result, walking=walking)
        return result

    def _merge_one(self, conn: Any, item: RemoteItem, result: ApplyResult, *, walking: bool = False) -> None:
        entity = item.entity
        old = tables.get(conn, SPEC[entity], item.record_id)
        assert old is not None
        wire = stored_state(entity, old)
        if wire is not None and wire == item.state:
            self._same_state(conn, item, old, wire, result)
        elif (
            (walking or item.revision >= (old.revision or 0))
            and old.local_status == LocalStatus.SYNCED
            and not self._has_pending(conn, entity, item.record_id)
        ):
            self._take_remote(conn, item, old, result)
        else:
            self._merge_states(conn, item, old, result)

    def _take_remote(
        self, conn: Any, item: RemoteItem, old: ReplicatedRecord | None, result: ApplyResult
    ) -> None:
        """Store the pulled record as the server has it (its state as it is, no merge)."""
        entity, record_id = item.entity, item.record_id
        state = state_from_wire(entity, record_id, item.state)
        result.saw(max(state.known_versions, default=None))
        record = build_record(
            entity,
            record_id,
            state.values,
            org_id=old.org_id if old else self.org_id(),
            revision=item.revision,
            deleted=state.deleted,
            status=LocalStatus.SYNCED,
            state_wire=item.state,
            extra=item.data,
            previous=old,
        )
        if record != old:
            self._write(conn, entity, record)
            self._version_snapshot(conn, old, record)
            result.changed += 1
        self._mirror_conflicts(conn, state, result)

    def _same_state(
        self, conn: Any, item: RemoteItem, old: ReplicatedRecord, wire: Mapping[str, Any], result: ApplyResult
    ) -> None:
        """The pulled state is the one this replica holds (typically its own edit coming back after the
        push): nothing to merge, the row already shows it; only the revision, the sync status and the
        server's fields (updated_at, ...) change. Decoding and merging a state that has grown with many edits
        would cost milliseconds per record."""
        entity = item.entity
        top, may_conflict = _scan_state(item.state)
        result.saw(HLC.decode(top) if top else None)
        pending = self._has_pending(conn, entity, item.record_id)
        record = build_record(
            entity,
            item.record_id,
            record_values(entity, old),
            org_id=old.org_id,
            revision=max(item.revision, old.revision or 0),
            deleted=old.deleted,
            status=old.local_status if pending else LocalStatus.SYNCED,
            state_wire=wire,
            extra=item.data,
            previous=old,
        )
        if record != old:
            self._write(conn, entity, record)
            self._version_snapshot(conn, old, record)
            result.changed += 1
        if may_conflict:  # the table already shows this state's conflicts; cheap insurance where it has any
            self._mirror_conflicts(conn, state_from_wire(entity, item.record_id, item.state), result)

    def _merge_states(self, conn: Any, item: RemoteItem, old: ReplicatedRecord, result: ApplyResult) -> None:
        entity = item.entity
        local = self._state_of(entity, old)
        remote = state_from_wire(entity, item.record_id, item.state)
        merged = merge_states(local, remote, DEFAULT_SCHEMA)
        result.saw(max(remote.known_versions, default=None))
        pending = self._has_pending(conn, entity, item.record_id)
        status = old.local_status if pending else LocalStatus.SYNCED
        record = build_record(
            entity,
            item.record_id,
            merged.values,
            org_id=old.org_id,
            revision=max(item.revision, old.revision or 0),
            deleted=merged.deleted,
            status=status,
            state_wire=state_to_wire(merged),
            extra=item.data if merged == remote else {**item.data, "updated_at": item.data.get("updated_at")},
            previous=old,
        )
        if record != old:
            self._write(conn, entity, record)
            self._version_snapshot(conn, old, record)
            result.changed += 1
        self._mirror_conflicts(conn, merged, result)

    def replace_with_remote(self, item: RemoteItem | None, *, entity: str, record_id: str) -> None:
        with self.replica.writing("reset the record") as conn:
            old = tables.get(conn, SPEC[entity], record_id)
            if item is None:
                if old is not None:
                    tables.purge(conn, SPEC[entity], record_id)
                _close_conflicts(conn, entity, [record_id])
                return
            self._take_remote(conn, item, old, ApplyResult())

    def remap(self, entity: str, from_id: str, to_id: str) -> int:
        """A lookup was merged into another on the server: rewrite this replica's references to it, in the
        merge states (so the writes equal the server's, which rewrote them on arrival) and in the rows."""
        changed = 0
        with self.replica.writing("rewrite references") as conn:
            for owner, refs in _references_to(entity):
                spec = SPEC[owner]
                rows = conn.execute(_naming_sql(owner, refs), (from_id,)).fetchall()
                for (record_id,) in rows:
                    old = tables.get(conn, spec, record_id)
                    state = _remap_state(self._state_of(owner, old), refs, from_id, to_id)
                    record = build_record(
                        owner,
                        record_id,
                        state.values,
                        org_id=old.org_id,
                        revision=old.revision,
                        deleted=state.deleted,
                        status=old.local_status,
                        state_wire=state_to_wire(state),
                        extra={},
                        previous=old,
                    )
                    self._write(conn, owner, record)
                    changed += 1
        return changed

    # -- outbox ----------------------------------------------------------------------------------------

    def pending(self, *, limit: int) -> list[Outgoing]:
        return [
            Outgoing(e.op_id, e.entity, e.record_id, e.payload, e.base_revision, e.attempts)
            for e in self.replica.pending_outbox(limit=limit)
        ]

    def out_of_step(self, *, limit: int) -> list[tuple[str, str]]:
        """Records whose local status is not ``synced`` (each table's partial index ``<table>_pending``) while
        the outbox holds no op of them."""
        out: list[tuple[str, str]] = []
        with self.replica.reading("find records out of step") as conn:
            for entity, spec in SPEC.items():
                if len(out) >= limit:
                    break
                rows = conn.execute(
                    f"SELECT id FROM {spec.table} AS t WHERE local_status <> 'synced' AND NOT EXISTS "
                    "(SELECT 1 FROM outbox AS o WHERE o.entity = ? AND o.record_id = t.id) LIMIT ?",
                    (entity, limit - len(out)),
                )
                out.extend((entity, str(r[0])) for r in rows)
        return out

    def pending_count(self) -> int:
        with self.replica.reading("count the outbox") as conn:
            return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def acknowledge(self, op_ids: Sequence[str]) -> None:
        with self.replica.writing("acknowledge pushed changes") as conn:
            conn.execute(
                "DELETE FROM outbox WHERE op_id IN (SELECT value FROM json_each(?))", (dumps(list(op_ids)),)
            )

    def record_failure(self, op_ids: Sequence[str], error: str) -> None:
        self.replica.record_outbox_failure(op_ids=op_ids, error=error)

    def add_rejection(self, *, op: Outgoing, reason: str) -> None:
        """Keep an edit the server refused as an open conflict (mine: the edit; theirs: the reason)."""
        self.replica.add_conflict(
            id=str(uuid.uuid5(uuid.UUID(int=0), f"rejected/{op.op_id}")),
            entity=op.entity,
            record_id=op.record_id,
            field=REJECTED_FIELD,
            base=None,
            mine={
                "kind": op.change.get("kind"),
                "values": op.change.get("values", {}),
                "resolving": _resolving(op.change),
                # what it was made on: making it again supersedes only that (``LocalLibrary.remake``), and
                # when (``conflicts resolve --all`` makes a replica's refused edits again in their order)
                "base": op.change.get("base", {}),
                "hlc": op.change.get("hlc"),
            },
            theirs={"reason": reason},
        )

    # -- a full pull under way (migration 0004) ------------------------------------------------------------

    def _walk_key(self, server_url: str, org_id: str) -> str:
        return f"{server_url} {org_id}"

    def walking(self, *, server_url: str, org_id: str) -> bool:
        return self._meta(META_FULL_WALK) == self._walk_key(server_url, org_id)

    def start_walk(self, *, server_url: str, org_id: str) -> None:
        with self.replica.writing("start a full pull") as conn:
            conn.execute("DELETE FROM walk_seen")
            self._set_meta(META_FULL_WALK, self._walk_key(server_url, org_id))
            self.set_cursor(server_url=server_url, org_id=org_id, cursor=0)

    def note_walked(self, records: Sequence[tuple[str, str]]) -> None:
        with self.replica.writing("note the records of a full pull") as conn:
            conn.executemany("INSERT OR IGNORE INTO walk_seen (entity, id) VALUES (?, ?)", records)

    def walked(self) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        with self.replica.reading("read the records of a full pull") as conn:
            for entity, record_id in conn.execute("SELECT entity, id FROM walk_seen"):
                seen.setdefault(str(entity), set()).add(str(record_id))
        return seen

    def pulling_from_zero(self, *, server_url: str, org_id: str) -> bool:
        return self._meta(META_FROM_ZERO) == self._walk_key(server_url, org_id)

    def note_pull_from_zero(self, *, server_url: str, org_id: str, going_on: bool) -> None:
        key = self._walk_key(server_url, org_id) if going_on else None
        if self._meta(META_FROM_ZERO) != key:
            self._set_meta(META_FROM_ZERO, key)

    def end_walk(self) -> None:
        with self.replica.writing("end a full pull") as conn:
            conn.execute("DELETE FROM walk_seen")
            self._set_meta(META_FULL_WALK, None)

    # -- cursor and checks -----------------------------------------------------------------------------

    def cursor(self, *, server_url: str, org_id: str) -> int:
        state = self.replica.get_sync_state(server_url=server_url, org_id=org_id)
        return int(state.cursor) if state is not None and state.cursor else 0

    def set_cursor(self, *, server_url: str, org_id: str, cursor: int) -> None:
        self.replica.set_sync_cursor(server_url=server_url, org_id=org_id, cursor=str(cursor))

    def checksums(self, *, full: bool = False) -> dict[str, TableSums]:
        """Per table: count and revision sum, the newest record (``'<id>:<revision>'``), and with ``full`` a
        digest of the sorted (id, revision) pairs, of the rows the server knows (revision set)."""
        out: dict[str, TableSums] = {}
        with self.replica.reading("compute checksums") as conn:
            for entity in ENTITY_ORDER:
                table = SPEC[entity].table
                count, total = conn.execute(
                    f"SELECT count(*), coalesce(sum(revision), 0) FROM {table} WHERE revision IS NOT NULL"
                ).fetchone()
                newest = conn.execute(  # the highest revision by its index, then its rows (ordered by both
                    # at once, SQLite sorted the whole table: 0.8 s at 100k outputs)
                    f"SELECT id || ':' || revision FROM {table} WHERE revision = "
                    f"(SELECT max(revision) FROM {table}) ORDER BY id LIMIT 1"
                ).fetchone()
                digest: str | None = None
                if full:
                    hasher = hashlib.sha256()
                    for ident, revision in conn.execute(
                        f"SELECT id, revision FROM {table} WHERE revision IS NOT NULL ORDER BY id"
                    ):
                        hasher.update(f"{ident}:{revision}\n".encode())
                    digest = hasher.hexdigest()
                out[table] = TableSums(int(count), int(total), digest, newest[0] if newest else None)
        return out

    def record_ids(self, entity: str) -> Iterator[str]:
        with self.replica.reading("list records") as conn:
            ids = [r[0] for r in conn.execute(f"SELECT id FROM {SPEC[entity].table}")]
        yield from ids

    def taken_off(self, entity: str, record_id: str) -> list[tuple[str, str, str, str]]:
        """Where a delete took the entry ``record_id`` off live records and nobody has written the field
        since: ``(entity, id, field, entry)`` of each, as :class:`LibraryService`'s relink takes them (the
        field's heads are still the delete's unlinks, and its value lacks the entry)."""
        found: list[tuple[str, str, str, str]] = []
        for owner, refs in _references_to(entity):
            with self.replica.reading("find where an entry was taken off") as conn:
                table = SPEC[owner].table
                ids = [
                    str(row[0])
                    for row in conn.execute(
                        f"SELECT id FROM {table} WHERE deleted = 0 AND instr(field_clocks, ?1) > 0",
                        (record_id,),
                    )
                ]
            for owner_id in ids:
                record = self.load(owner, owner_id)
                if record is None or record.state.deleted:
                    continue
                found += [
                    (owner, owner_id, name, record_id)
                    for name in refs
                    if relinked_value(record.state, name, record_id) is not None
                ]
        return found

    def named_by(self, entity: str, record_id: str, *, limit: int) -> tuple[list[tuple[str, str]], int]:
        """The live records of this replica that name the record through a reference field (an output's
        prompt, a record's tags, ...): ``(entity, id)`` of the first ``limit`` in a stable order, and how many
        there are in all."""
        found: list[tuple[str, str]] = []
        total = 0
        with self.replica.reading("find the records naming one") as conn:
            for owner, refs in _references_to(entity):
                naming = _naming_sql(owner, refs, states=False)
                live = f"SELECT id FROM {SPEC[owner].table} WHERE deleted = 0 AND id IN ({naming})"
                total += int(conn.execute(f"SELECT count(*) FROM ({live})", (record_id,)).fetchone()[0])
                if len(found) < limit:
                    rows = conn.execute(f"{live} ORDER BY seq LIMIT ?2", (record_id, limit - len(found)))
                    found.extend((owner, str(row[0])) for row in rows)
        return found, total

    def drop(self, entity: str, record_id: str) -> None:
        """Remove the record (the server no longer has it) and close its open conflicts."""
        with self.replica.writing("drop the record") as conn:
            tables.purge(conn, SPEC[entity], record_id)
            _close_conflicts(conn, entity, [record_id])

    def drop_purged(self, purged: Sequence[tuple[str, str, int]]) -> tuple[int, list[str]]:
        """Drop the records a pulled page says the server purged (``(entity, record_id, revision of the
        purge)``): those this replica last had before the purge and that carry no local edit (an edit is
        kept: the server refuses it, and the replica keeps it as a refused edit). Their open conflicts are
        closed, as the purge closed them on the server. How many went, and the conflicts closed."""
        by_entity: dict[str, list[tuple[str, int]]] = {}
        for entity, record_id, revision in purged:
            if entity in SPEC:
                by_entity.setdefault(entity, []).append((record_id, revision))
        dropped = 0
        closed: list[str] = []
        with self.replica.writing("drop purged records") as conn:
            for entity, named in by_entity.items():
                table = SPEC[entity].table
                gone = [
                    str(row[0])
                    for row in conn.execute(
                        f"DELETE FROM {table} WHERE id IN (SELECT r.id FROM json_each(?1) AS p "
                        f"JOIN {table} AS r ON r.id = json_extract(p.value, '$[0]') "
                        "WHERE r.revision IS NOT NULL AND r.revision < json_extract(p.value, '$[1]')) "
                        "AND NOT EXISTS (SELECT 1 FROM outbox AS o "
                        f"WHERE o.entity = ?2 AND o.record_id = {table}.id) RETURNING id",
                        (dumps(named), entity),
                    ).fetchall()
                ]
                dropped += len(gone)
                closed += _close_conflicts(conn, entity, gone)
        return dropped, closed

    def snapshot_values(self, entity: str) -> dict[str, dict[str, Any]]:
        """Every record's displayed values (tests compare replicas with this)."""
        out: dict[str, dict[str, Any]] = {}
        spec = SPEC[entity]
        with self.replica.reading("read records") as conn:
            ids = [r[0] for r in conn.execute(f"SELECT id FROM {spec.table}")]
            records = tables.get_many(conn, spec, ids)
        for record in records:
            wire = stored_state(entity, record)
            if wire:
                ident = record.id
                state = state_from_wire(entity, ident, wire)
                out[ident] = {k: encode_value(v) for k, v in state.values.items()} | {
                    "_deleted": state.deleted
                }
        return out


def _close_conflicts(conn: Any, entity: str, record_ids: Sequence[str]) -> list[str]:
    """Close the open conflicts of records this replica no longer holds (not the refused edits: they hold
    the user's edits the server would not take, and stay until the user deals with them); their ids."""
    if not record_ids:
        return []
    closed = [
        str(row[0])
        for row in conn.execute(
            "UPDATE conflicts SET resolved_at = ?1 WHERE entity = ?2 AND resolved_at IS NULL AND field <> ?3 "
            "AND record_id IN (SELECT value FROM json_each(?4)) RETURNING id",
            (to_timestamp(utc_now()), entity, REJECTED_FIELD, dumps(list(record_ids))),
        ).fetchall()
    ]
    if closed:
        forget_closed_conflicts(conn)
    return closed


def _references_to(entity: str) -> list[tuple[str, list[str]]]:
    """Each entity with reference fields that name records of ``entity``, with those fields."""
    found = []
    for owner in DEFAULT_SCHEMA.entities:
        refs = [name for name, target in DEFAULT_SCHEMA.entity(owner).references.items() if target == entity]
        if refs:
            found.append((owner, refs))
    return found


def _naming_sql(owner: str, refs: Sequence[str], *, states: bool = True) -> str:
    """The ids of ``owner``'s rows whose merge state or references (``refs``: columns, link tables) name
    the record ``?``. A state stored as its row's values (:data:`ROW_VALUES`) names it only in the row.
    ``states=False``: only those whose references name it now."""
    spec = SPEC[owner]
    links = {link.field: link for link in spec.links}
    found = [f"SELECT id FROM {spec.table} WHERE instr(field_clocks, ?1) > 0"] if states else []
    for name in refs:
        link = links.get(name)
        found.append(
            f"SELECT {link.owner} FROM {link.table} WHERE {link.target} = ?1"
            if link is not None
            else f"SELECT id FROM {spec.table} WHERE {name} = ?1"
        )
    return " UNION ".join(found)


def _remap_value(value: Any, from_id: str, to_id: str) -> Any:
    if isinstance(value, frozenset):
        return frozenset(to_id if m == from_id else m for m in value)
    return to_id if value == from_id else value


def _remap_state(state: RecordState, refs: Sequence[str], from_id: str, to_id: str) -> RecordState:
    fields = dict(state.fields)
    for name in refs:
        fs = fields.get(name)
        if fs is None:
            continue

        def fix(w: FieldWrite) -> FieldWrite:
            return dc_replace(
                w,
                value=_remap_value(w.value, from_id, to_id),
                base_value=_remap_value(w.base_value, from_id, to_id),
            )

        fields[name] = FieldState(
            tuple(fix(w) for w in fs.heads), fs.superseded, tuple(fix(w) for w in fs.history)
        )
    return build_state(DEFAULT_SCHEMA, state.entity, state.record_id, fields, state.tombstone)


_FIELD_KINDS: Final = {
    name: tuple((f, kind is FieldKind.SET) for f, kind in DEFAULT_SCHEMA.entity(name).fields.items())
    for name in DEFAULT_SCHEMA.entities
}


def fresh_record(item: RemoteItem, org_id: str) -> ReplicatedRecord:
    """The replica record of a pulled record new to this replica (the general path; outputs take
    :func:`_new_output_rows`, which must give the same rows)."""
    return build_record(
        item.entity,
        item.record_id,
        _data_values(item.entity, item.data),
        org_id=org_id,
        revision=item.revision,
        deleted=item.deleted,
        status=LocalStatus.SYNCED,
        state_wire=item.state,
        extra=item.data,
        previous=None,
    )


def _resolving(change: Mapping[str, Any]) -> list[str]:
    """The fields a pushed change resolved: its base names more than one version of them (it was made over
    a conflict's both sides). Kept with a refused edit, so that making it again resolves them again."""
    base = change.get("base") or {}
    values = change.get("values") or {}
    return sorted(
        name
        for name, pair in base.items()
        if name in values and isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], list)
        and len(pair[1]) > 1
    )


def _data_values(entity: str, data: Mapping[str, Any]) -> dict[str, Any]:
    get = data.get
    return {
        name: (frozenset(get(name) or ()) if is_set else get(name)) for name, is_set in _FIELD_KINDS[entity]
    }


_CANONICAL_STAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
"""``tables.to_timestamp``'s form, which the server's data already has: kept as it is."""


def _stamp(value: object, now: datetime) -> str:
    if isinstance(value, str) and _CANONICAL_STAMP.fullmatch(value):
        return value
    return to_timestamp(_ts(value, now))


NewRows: TypeAlias = tuple[list[tuple[object, ...]], dict[str, list[tuple[str, str]]]]
"""Rows in column order, and link rows (owner id, target id) by link field."""


_SYNCED: Final = LocalStatus.SYNCED.value

OutputRow: TypeAlias = tuple[tuple[object, ...], list[tuple[str, str]], list[tuple[str, str]]]
"""A new pulled output's ``outputs`` row and its tag and knowledge-type link rows."""


def _output_row(item: RemoteItem, org_id: str, now: datetime) -> OutputRow:
    record_id = item.record_id
    data = item.data
    get = data.get
    produced = get("produced_at")
    tag_ids = sorted(frozenset(get("tag_ids") or ()))
    kind_ids = sorted(frozenset(get("knowledge_type_ids") or ()))
    own = {
        "prompt_id": _text(get("prompt_id")),
        "content": _text(get("content")),
        "notes": _text(get("notes")),
        "custom_gpt_id": get("custom_gpt_id"),
        "gpt_model_id": get("gpt_model_id"),
        "accuracy_level_id": get("accuracy_level_id"),
        "tag_ids": tag_ids,
        "knowledge_type_ids": kind_ids,
    }
    # the compact form it came in stands for its state given this data, which the row stores
    wire = item.wire if item.wire is not None else compact_state("output", item.state, get)
    row = (
        record_id,
        org_id,
        item.revision,
        1 if item.deleted else 0,
        _SYNCED,
        None,
        dumps({"state": imply_values("output", wire, own.get)}),
        _stamp(get("created_at"), now),
        _stamp(get("updated_at"), now),
        str(get("created_by") or ""),
        str(get("updated_by") or ""),
        own["prompt_id"],
        own["content"],
        own["notes"],
        own["custom_gpt_id"],
        own["gpt_model_id"],
        own["accuracy_level_id"],
        _stamp(produced, now) if produced else None,
    )
    tags = [(record_id, target) for target in tag_ids]
    kinds = [(record_id, target) for target in kind_ids]
    return row, tags, kinds


def _stage_outputs(items: Sequence[RemoteItem], org_id: str) -> None:
    """Each pulled output's row as :func:`_new_output_rows` would build it if it is new here, kept in its
    ``staged`` with the organization it was built for (``ReplicaSyncStore.prepare_remote``)."""
    now = utc_now()
    for item in items:
        if item.entity == "output":
            item.staged = (org_id, _output_row(item, org_id, now))


def _new_output_rows(items: Sequence[RemoteItem], org_id: str) -> NewRows:
    """The ``outputs`` rows and link rows of pulled outputs new to this replica, built straight from the
    pulled data: what ``tables.OUTPUTS.to_row(build_record(...))`` gives for them (tested to be equal),
    without the record objects in between (an initial sync stores every pulled output through here). A
    repeated id keeps its first position and its last version, as ``tables.bulk_upsert`` does. Rows staged
    ahead for the same organization (:func:`_stage_outputs`) are taken as they are."""
    now = utc_now()
    by_id = {item.record_id: item for item in items}
    rows: list[tuple[object, ...]] = []
    tags: list[tuple[str, str]] = []
    kinds: list[tuple[str, str]] = []
    for item in by_id.values():
        staged = item.staged
        if type(staged) is tuple and staged[0] == org_id:
            row, its_tags, its_kinds = staged[1]
        else:
            row, its_tags, its_kinds = _output_row(item, org_id, now)
        rows.append(row)
        tags += its_tags
        kinds += its_kinds
    # link rows in key order: their tables are keyed by the (random) output id, and inserting a batch in key
    # order touches each b-tree page once (100k outputs: 1.7 -> 1.2 s)
    tags.sort()
    kinds.sort()
    return rows, {"tag_ids": tags, "knowledge_type_ids": kinds}


DEFER_INDEX_ROWS: Final = 500
"""A pulled page with at least this many new outputs leaves their full-text indexing to the catch-up after
the sync (the search backlog, migration 0003): indexing is ~40% of storing an output, and the records are
there to browse sooner. Fewer are indexed as they are stored (an everyday sync's changes are searchable at
once)."""

_NEW_ROWS: Final[dict[str, Callable[[Sequence[RemoteItem], str], NewRows]]] = {"output": _new_output_rows}
"""Entities whose new pulled records skip the record objects (:func:`_new_output_rows`); the others (few
rows, and prompts keep a version history) go through ``build_record``."""


def _scan_state(wire: Mapping[str, Any]) -> tuple[str, bool]:
    """One pass over a wire state: its newest version (encoded HLCs sort as the clocks do; "" when none) and
    whether it can hold a conflict (some register with more than one head, or a delete). Takes the full form
    or a compact one (``sync.protocol.compact_state``)."""
    uniform = wire.get("u")
    if uniform:  # one write per field and a live tombstone, all of one version
        return str(uniform[0]), False
    best = ""
    may_conflict = False
    for f in (wire.get("f") or {}).values():
        heads = f.get("h", ())
        if len(heads) > 1:
            may_conflict = True
        for w in heads:
            if w[0] > best:
                best = w[0]
    for h in (wire.get("t") or {}).get("h", ()):
        if h[2]:
            may_conflict = True
        if h[0] > best:
            best = h[0]
    return best, may_conflict
