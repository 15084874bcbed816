"""Lookup deduplication: two replicas that create the same taxonomy entry offline (tag "python" twice).

The survivor of a group of live lookups of one entity with the same name key (``name_key``, the server's
unique-index rule in ``common/names.py``: stripped, case-folded, Unicode NFC) is the one with the lowest
id. The choice depends only on ids, which every replica has as soon as it has the records -- no creation
time or other metadata that might be missing on one replica -- so every replica that sees the same group
picks the same survivor. Callers then rewrite references with :func:`remap_references` and retire the
duplicates with ``make_delete``; those changes replicate and converge like any edit (two replicas that both
rewrite a reference to the same survivor write equal values, which is no conflict).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from outputhub.common.clock import HLC
from outputhub.common.names import name_key  # the server's unique-index rule ("Café" as NFC or NFD: one)
from outputhub.sync.engine.edits import make_edit
from outputhub.sync.engine.model import Change, RecordState
from outputhub.sync.engine.schema import EntitySchema, FieldKind, FieldValue


@dataclass(frozen=True)
class LookupDedup:
    """``survivors``: (entity, name key) -> surviving id, for groups with duplicates only.
    ``remap``: duplicate id -> survivor id. ``duplicates``: (entity, id) of each record to retire."""

    survivors: Mapping[tuple[str, str], str] = field(default_factory=dict)
    remap: Mapping[str, str] = field(default_factory=dict)
    duplicates: tuple[tuple[str, str], ...] = ()


def dedupe_lookups(records: Iterable[RecordState], schema: EntitySchema) -> LookupDedup:
    """Find live lookups that share an entity and a name key; pick the lowest id of each group."""
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in records:
        if record.deleted or not schema.entity(record.entity).lookup:
            continue
        name = record.values.get("name")
        if isinstance(name, str) and name_key(name):
            groups[(record.entity, name_key(name))].add(record.record_id)
    survivors: dict[tuple[str, str], str] = {}
    remap: dict[str, str] = {}
    duplicates: list[tuple[str, str]] = []
    for key in sorted(groups):
        ids = sorted(groups[key])
        if len(ids) < 2:
            continue
        survivors[key] = ids[0]
        for dup in ids[1:]:
            remap[dup] = ids[0]
            duplicates.append((key[0], dup))
    return LookupDedup(survivors, remap, tuple(duplicates))


def remapped_values(
    record: RecordState, remap: Mapping[str, str], schema: EntitySchema
) -> dict[str, FieldValue]:
    """The reference fields of ``record`` whose value changes under ``remap``, with their new values."""
    entity = schema.entity(record.entity)
    out: dict[str, FieldValue] = {}
    for name in sorted(entity.references):
        value = record.values[name]
        if entity.fields[name] is FieldKind.SET:
            assert isinstance(value, frozenset)
            new: FieldValue = frozenset(remap.get(m, m) for m in value)
        else:
            new = remap.get(value, value) if isinstance(value, str) else value
        if new != value:
            out[name] = new
    return out


def remap_references(
    record: RecordState,
    remap: Mapping[str, str],
    *,
    schema: EntitySchema,
    node: str,
    hlc: HLC,
    op_id: str,
) -> Change | None:
    """An edit pointing ``record``'s references at survivors; ``None`` if it references no duplicate (or is
    deleted)."""
    if record.deleted:
        return None
    values = remapped_values(record, remap, schema)
    if not values:
        return None
    return make_edit(record, values, schema=schema, node=node, hlc=hlc, op_id=op_id)
