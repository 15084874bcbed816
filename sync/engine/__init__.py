"""The pure sync engine: merge rules, changes, conflicts and the sync plan.

No clock source, no network, no database, no Qt: values in, values out, deterministic. The rules and their
laws are described in ``docs/sync-protocol.md``.
"""

from __future__ import annotations

from outputhub.sync.engine.dedupe import (
    LookupDedup,
    dedupe_lookups,
    name_key,
    remap_references,
    remapped_values,
)
from outputhub.sync.engine.edits import (
    Merged,
    Resolution,
    make_create,
    make_delete,
    make_edit,
    make_restore,
    resolve,
    sides,
    written_here,
)
from outputhub.sync.engine.errors import InvalidChangeError
from outputhub.sync.engine.merge import (
    MergeOutcome,
    OutcomeKind,
    build_state,
    fold_changes,
    merge_change,
    merge_states,
    state_from_change,
)
from outputhub.sync.engine.model import (
    Change,
    ChangeKind,
    Conflict,
    ConflictKind,
    ConflictSide,
    FieldBase,
    FieldState,
    FieldWrite,
    RecordState,
    TombstoneState,
    TombstoneWrite,
    conflict_id,
    is_kept,
    is_unlink,
    kept_op_id,
    unlink_op_id,
)
from outputhub.sync.engine.planner import Checkpoint, Plan, Pulled, RecordKey, plan
from outputhub.sync.engine.schema import (
    DEFAULT_SCHEMA,
    LOOKUP_ENTITIES,
    TOMBSTONE,
    EntitySchema,
    EntityType,
    FieldKind,
    FieldValue,
    default_value,
)
from outputhub.sync.engine.textmerge import ConflictHunk, TextMerge, merge3

__all__ = [
    "DEFAULT_SCHEMA",
    "LOOKUP_ENTITIES",
    "TOMBSTONE",
    "Change",
    "ChangeKind",
    "Checkpoint",
    "Conflict",
    "ConflictHunk",
    "ConflictKind",
    "ConflictSide",
    "EntitySchema",
    "EntityType",
    "FieldBase",
    "FieldKind",
    "FieldState",
    "FieldValue",
    "FieldWrite",
    "InvalidChangeError",
    "LookupDedup",
    "MergeOutcome",
    "Merged",
    "OutcomeKind",
    "Plan",
    "Pulled",
    "RecordKey",
    "RecordState",
    "Resolution",
    "TextMerge",
    "TombstoneState",
    "TombstoneWrite",
    "build_state",
    "conflict_id",
    "dedupe_lookups",
    "default_value",
    "fold_changes",
    "is_kept",
    "is_unlink",
    "kept_op_id",
    "make_create",
    "make_delete",
    "make_edit",
    "make_restore",
    "merge3",
    "merge_change",
    "merge_states",
    "name_key",
    "plan",
    "remap_references",
    "remapped_values",
    "resolve",
    "sides",
    "state_from_change",
    "unlink_op_id",
    "written_here",
]
