"""The sync planner: given what the client has and what it pulled, what to store and what to push. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from outputhub.common.clock import HLC
from outputhub.sync.engine.dedupe import LookupDedup, dedupe_lookups
from outputhub.sync.engine.errors import InvalidChangeError
from outputhub.sync.engine.merge import build_state, merge_change, merge_states
from outputhub.sync.engine.model import Change, Conflict, RecordState
from outputhub.sync.engine.schema import DEFAULT_SCHEMA, EntitySchema

RecordKey = tuple[str, str]
"""(entity, record id)."""


@dataclass(frozen=True)
class Checkpoint:
    """The pull cursor: the highest server revision this replica has applied (0: nothing yet).

    After a ``cursor too old`` answer (the server purged tombstones newer than it) the client pulls again
    from ``Checkpoint()``; merging is a join, so local edits survive the full resync.
    """

    cursor: int = 0

    def __post_init__(self) -> None:
        if self.cursor < 0:
            raise InvalidChangeError(f"checkpoint cursor must be >= 0, got {self.cursor}")


@dataclass(frozen=True)
class Pulled:
    """One item of a pull page: a change or a whole record state, at its server revision."""

    revision: int
    payload: Change | RecordState

    @property
    def key(self) -> RecordKey:
        return (self.payload.entity, self.payload.record_id)


@dataclass(frozen=True)
class Plan:
    """What the client does next.

    - ``apply``: the new state of every record that changes locally (write them in one transaction with
      ``checkpoint``);
    - ``push``: the pending local changes the server does not have yet, oldest first;
    - ``acknowledged``: op ids of pending changes the pull shows the server already has (drop them);
    - ``conflicts`` / ``resolved``: conflicts opened / closed by this sync, for the UI;
    - ``checkpoint``: the cursor to store once ``apply`` is written;
    - ``max_remote_hlc``: feed it to ``clock.receive`` before the next local edit;
    - ``dedup``: duplicate lookups among the resulting records (see :mod:`.dedupe`).
    """

    apply: Mapping[RecordKey, RecordState]
    push: tuple[Change, ...]
    acknowledged: tuple[str, ...]
    conflicts: tuple[Conflict, ...]
    resolved: tuple[Conflict, ...]
    checkpoint: Checkpoint
    max_remote_hlc: HLC | None
    dedup: LookupDedup = field(default_factory=LookupDedup)
    skipped: int = 0
    """Pulled items at or below the checkpoint (already applied; ignored)."""


def plan(
    local_pending: Sequence[Change],
    remote: Sequence[Pulled],
    checkpoint: Checkpoint,
    *,
    local_states: Mapping[RecordKey, RecordState],
    schema: EntitySchema = DEFAULT_SCHEMA,
) -> Plan:
    """Merge pulled items into the local states and decide what to push.

    ``local_states`` are the replica's records (normally already including the pending changes, which were
    merged when made; they are merged again here, which is a no-op, so the plan is right either way).
    Pulled items are applied in revision order; items at or below ``checkpoint`` are skipped.
    """
    states: dict[RecordKey, RecordState] = dict(local_states)
    for change in local_pending:
        key = (change.entity, change.record_id)
        states[key] = merge_change(states.get(key), change, schema).state
    before = dict(states)

    cursor = checkpoint.cursor
    skipped = 0
    max_hlc: HLC | None = None
    remote_ops: set[str] = set()
    remote_versions: dict[RecordKey, set[HLC]] = {}
    for item in sorted(remote, key=lambda p: p.revision):
        if item.revision <= checkpoint.cursor:
            skipped += 1
            continue
        cursor = max(cursor, item.revision)
        key, payload = item.key, item.payload
        if isinstance(payload, Change):
            states[key] = merge_change(states.get(key), payload, schema).state
            remote_ops.add(payload.op_id)
            seen = {payload.hlc}
        else:
            current = states.get(key)
            # Re-derive rather than trust what the payload says it materializes to.
            incoming = build_state(
                schema, payload.entity, payload.record_id, payload.fields, payload.tombstone
            )
            states[key] = incoming if current is None else merge_states(current, incoming, schema)
            seen = set(payload.known_versions)
        remote_versions.setdefault(key, set()).update(seen)
        if seen:
            top = max(seen)
            max_hlc = top if max_hlc is None or top > max_hlc else max_hlc

    acknowledged = tuple(
        c.op_id
        for c in local_pending
        if c.op_id in remote_ops or c.hlc in remote_versions.get((c.entity, c.record_id), ())
    )
    acked = set(acknowledged)
    push = tuple(sorted((c for c in local_pending if c.op_id not in acked), key=lambda c: c.hlc))

    apply = {key: state for key, state in sorted(states.items()) if before.get(key) != state}
    opened: list[Conflict] = []
    closed: list[Conflict] = []
    for key, state in apply.items():
        old = before.get(key)
        old_ids = {c.id for c in old.conflicts} if old is not None else set()
        new_ids = {c.id for c in state.conflicts}
        opened.extend(c for c in state.conflicts if c.id not in old_ids)
        if old is not None:
            closed.extend(c for c in old.conflicts if c.id not in new_ids)

    return Plan(
        apply=apply,
        push=push,
        acknowledged=acknowledged,
        conflicts=tuple(opened),
        resolved=tuple(closed),
        checkpoint=Checkpoint(cursor),
        max_remote_hlc=max_hlc,
        dedup=dedupe_lookups(states.values(), schema),
        skipped=skipped,
    )
