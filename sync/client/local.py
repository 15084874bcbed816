"""Local edits on a replica: every user action becomes an engine change, merged into the record's state
and queued for pushing, in one replica transaction (the durable outbox)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from outputhub.common.clock import HLC, tick
from outputhub.common.ids import new_id_text
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
        out[name] = value
    problem = schema.reference_problem({k: v for k, v in out.items() if v != ""})
    if problem is not None:
        raise LocalEditError(problem[0])
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

    def _record(
        self,
        state: RecordState | None,
        revision: int | None,
        build: Callable[[str, HLC, str], Change | None],
    ) -> bool:
        """Make the change (``build(node, hlc, op_id)``), merge it into the state and store both with the
        outbox entry. False when there is nothing to change."""
        try:
            change = build(self.store.node_id, self._hlc(state), new_id_text())
            if change is None:
                return False
            new_state = merge_change(state, change, DEFAULT_SCHEMA).state
        except InvalidChangeError as exc:
            raise LocalEditError(str(exc)) from None
        self.store.save_local(new_state, change, base_revision=revision)
        return True

    # -- edits ---------------------------------------------------------------------------------------------

    def create(self, entity: str, values: Mapping[str, Any], *, id: str | None = None) -> str:
        record_id = id or new_id_text()
        if self.store.load(entity, record_id) is not None:
            raise LocalEditError(f"{entity} {record_id} already exists")
        coerced = _coerce(entity, values)
        if DEFAULT_SCHEMA.entity(entity).lookup and coerced.get("position") is None:
            coerced["position"] = 0  # as the REST API stores it: a replica and the server show the same entry
        with self.store.transaction():
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

    def edit(self, entity: str, record_id: str, values: Mapping[str, Any]) -> bool:
        """Change the given fields (only those whose value differs are recorded). False if nothing did."""
        with self.store.transaction():
            state, revision = self._load(entity, record_id)
            coerced = _coerce(entity, values)
            return self._record(
                state,
                revision,
                lambda node, hlc, op_id: make_edit(
                    state, coerced, schema=DEFAULT_SCHEMA, node=node, hlc=hlc, op_id=op_id
                ),
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

    def restore(self, entity: str, record_id: str) -> None:
        with self.store.transaction():
            state, revision = self._load(entity, record_id)
            self._record(
                state,
                revision,
                lambda node, hlc, op_id: make_restore(
                    state, schema=DEFAULT_SCHEMA, node=node, hlc=hlc, op_id=op_id
                ),
            )

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
            self._record(
                state,
                revision,
                lambda node, hlc, op_id: resolve(conflict, pick, node=node, hlc=hlc, op_id=op_id),
            )
