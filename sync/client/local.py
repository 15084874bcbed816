"""Local edits on a replica: every user action becomes an engine change, merged into the record's state
and queued for pushing, in one replica transaction (the durable outbox)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from outputhub.common.clock import HLC, tick
from outputhub.sync.client.errors import LocalEditError
from outputhub.sync.engine import (
    DEFAULT_SCHEMA,
    Change,
    InvalidChangeError,
    Merged,
    RecordState,
    Resolution,
    make_create,
    make_delete,
    make_edit,
    make_restore,
    merge_change,
    resolve,
)
from outputhub.sync.ports import ReplicaStore

ResolutionChoice = Literal["mine", "theirs"] | Merged


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _coerce(entity: str, values: Mapping[str, Any]) -> dict[str, Any]:
    try:
        fields = DEFAULT_SCHEMA.entity(entity).fields
    except InvalidChangeError as exc:
        raise LocalEditError(str(exc)) from None
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
        out[name] = value
    return out


class LocalLibrary:
    """The one way to change a replica's records (the desktop app and ``outputhub replica`` use it)."""

    def __init__(self, store: ReplicaStore, *, now_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.store = store
        self.now_ms = now_ms

    # -- clock ---------------------------------------------------------------------------------------------

    def _hlc(self, state: RecordState | None) -> HLC:
        prev = self.store.last_hlc()
        if state is not None and state.known_versions:
            top = max(state.known_versions)
            if prev is None or top > prev:
                prev = HLC(top.wall_ms, top.counter, self.store.node_id)
        hlc = tick(prev, now_ms=self.now_ms(), node=self.store.node_id)
        self.store.save_hlc(hlc)
        return hlc

    def _save(self, state: RecordState, change: Change, revision: int | None) -> None:
        self.store.save_local(state, change, base_revision=revision)

    # -- edits ---------------------------------------------------------------------------------------------

    def create(self, entity: str, values: Mapping[str, Any], *, id: str | None = None) -> str:
        record_id = id or str(uuid.uuid4())
        if self.store.load(entity, record_id) is not None:
            raise LocalEditError(f"{entity} {record_id} already exists")
        with self.store.transaction():
            try:
                change = make_create(
                    entity,
                    record_id,
                    _coerce(entity, values),
                    schema=DEFAULT_SCHEMA,
                    node=self.store.node_id,
                    hlc=self._hlc(None),
                    op_id=str(uuid.uuid4()),
                )
            except InvalidChangeError as exc:
                raise LocalEditError(str(exc)) from None
            self._save(merge_change(None, change, DEFAULT_SCHEMA).state, change, None)
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

    def edit(self, entity: str, record_id: str, values: Mapping[str, Any]) -> bool:
        """Change the given fields (only those whose value differs are recorded). False if nothing did."""
        with self.store.transaction():
            state, revision = self._load(entity, record_id)
            try:
                change = make_edit(
                    state,
                    _coerce(entity, values),
                    schema=DEFAULT_SCHEMA,
                    node=self.store.node_id,
                    hlc=self._hlc(state),
                    op_id=str(uuid.uuid4()),
                )
            except InvalidChangeError as exc:
                raise LocalEditError(str(exc)) from None
            if change is None:
                return False
            self._save(merge_change(state, change, DEFAULT_SCHEMA).state, change, revision)
            return True

    def delete(self, entity: str, record_id: str) -> None:
        with self.store.transaction():
            state, revision = self._load(entity, record_id)
            try:
                change = make_delete(
                    state,
                    schema=DEFAULT_SCHEMA,
                    node=self.store.node_id,
                    hlc=self._hlc(state),
                    op_id=str(uuid.uuid4()),
                )
            except InvalidChangeError as exc:
                raise LocalEditError(str(exc)) from None
            self._save(merge_change(state, change, DEFAULT_SCHEMA).state, change, revision)

    def restore(self, entity: str, record_id: str) -> None:
        with self.store.transaction():
            state, revision = self._load(entity, record_id)
            try:
                change = make_restore(
                    state,
                    schema=DEFAULT_SCHEMA,
                    node=self.store.node_id,
                    hlc=self._hlc(state),
                    op_id=str(uuid.uuid4()),
                )
            except InvalidChangeError as exc:
                raise LocalEditError(str(exc)) from None
            self._save(merge_change(state, change, DEFAULT_SCHEMA).state, change, revision)

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
                value = choice.value
                kind = DEFAULT_SCHEMA.kind(entity, conflict.field) if conflict.field != "_deleted" else None
                if (
                    kind is not None
                    and kind.value == "set"
                    and isinstance(value, Iterable)
                    and not isinstance(value, str)
                ):
                    value = frozenset(value)
                pick: Resolution | Merged = Merged(value)
            elif choice == "mine":
                pick = Resolution.KEEP_MINE
            elif choice == "theirs":
                pick = Resolution.KEEP_THEIRS
            else:
                raise LocalEditError(f"unknown resolution {choice!r}: use mine, theirs or an edited value")
            try:
                change = resolve(
                    conflict, pick, node=self.store.node_id, hlc=self._hlc(state), op_id=str(uuid.uuid4())
                )
                new_state = merge_change(state, change, DEFAULT_SCHEMA).state
            except InvalidChangeError as exc:
                raise LocalEditError(str(exc)) from None
            self._save(new_state, change, revision)
