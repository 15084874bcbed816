"""Which fields each replicated entity has, and how each field merges."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, TypeAlias

from outputhub.common.ids import canonical_id
from outputhub.sync.engine.errors import InvalidChangeError

ScalarValue: TypeAlias = str | int | float | bool | None
FieldValue: TypeAlias = str | int | float | bool | frozenset[str] | None

TOMBSTONE: Final = "_deleted"
"""Pseudo-field naming the record's existence register in ``Change.base`` and in conflicts."""


class FieldKind(StrEnum):
    SCALAR = "scalar"  # last-writer-wins register; concurrent losers are kept as conflicts
    TEXT = "text"  # three-way line merge; overlapping edits are kept as conflicts
    SET = "set"  # add-wins set of strings (ids)


@dataclass(frozen=True)
class EntityType:
    """One replicated entity: its fields and their kinds, the entities its id fields point to, and whether it
    is a lookup (a named taxonomy entry that is deduplicated by name)."""

    name: str
    fields: Mapping[str, FieldKind]
    references: Mapping[str, str] = field(default_factory=dict)
    lookup: bool = False

    def __post_init__(self) -> None:
        if TOMBSTONE in self.fields:
            raise ValueError(f"{self.name}: {TOMBSTONE!r} is reserved")
        for ref in self.references:
            if ref not in self.fields:
                raise ValueError(f"{self.name}: reference field {ref!r} is not a field")
            if self.fields[ref] is FieldKind.TEXT:
                raise ValueError(f"{self.name}: reference field {ref!r} must be scalar or set")
        if self.lookup and self.fields.get("name") is not FieldKind.SCALAR:
            raise ValueError(f"{self.name}: a lookup needs a scalar 'name' field")

    def reference_problem(self, values: Mapping[str, object]) -> tuple[str, str] | None:
        """(detail, field) of the first reference in ``values`` that is not a record id (a UUID written as
        ids are: lower-case hex with dashes), or None: the client refuses such an edit as it is typed, the
        server refuses such an op of a push. ``8D0F...`` and ``{8d0f...}`` name the same record as
        ``8d0f...``, but a state holding them would not: a set removal of one would miss the other."""
        for name in self.references:
            value = values.get(name)
            if value is None:
                continue
            for member in value if isinstance(value, frozenset) else (value,):
                canonical = canonical_id(member)
                if canonical is None:
                    return f"{self.name}.{name}: {str(member)[:60]!r} is not a record id (a UUID)", name
                if member != canonical:
                    return (
                        f"{self.name}.{name}: {str(member)[:60]!r} is not written as record ids are "
                        f"(lower-case hex with dashes: {canonical})",
                        name,
                    )
        return None


@dataclass(frozen=True)
class EntitySchema:
    """Entity name -> entity type."""

    entities: Mapping[str, EntityType]

    @classmethod
    def of(cls, *types: EntityType) -> EntitySchema:
        return cls({t.name: t for t in types})

    def entity(self, name: str) -> EntityType:
        try:
            return self.entities[name]
        except KeyError:
            raise InvalidChangeError(f"unknown entity {name!r}") from None

    def kind(self, entity: str, field_name: str) -> FieldKind:
        try:
            return self.entity(entity).fields[field_name]
        except KeyError:
            raise InvalidChangeError(f"{entity} has no field {field_name!r}") from None


def default_value(kind: FieldKind) -> FieldValue:
    """The value of a field that has never been written."""
    if kind is FieldKind.TEXT:
        return ""
    if kind is FieldKind.SET:
        return frozenset()
    return None


def check_value(entity: str, field_name: str, kind: FieldKind, value: object) -> FieldValue:
    """Validate a field value for its kind and return it (sets must be ``frozenset[str]``)."""
    where = f"{entity}.{field_name}"
    if kind is FieldKind.TEXT:
        if not isinstance(value, str):
            raise InvalidChangeError(f"{where}: text value must be a str, got {type(value).__name__}")
        return value
    if kind is FieldKind.SET:
        if not isinstance(value, frozenset) or not all(isinstance(m, str) for m in value):
            raise InvalidChangeError(f"{where}: set value must be a frozenset of str")
        return value
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidChangeError(f"{where}: scalar floats must be finite")
        return value
    raise InvalidChangeError(f"{where}: unsupported scalar type {type(value).__name__}")


def same_value(a: FieldValue, b: FieldValue) -> bool:
    """Equality that does not confuse ``1``, ``1.0`` and ``True``."""
    return type(a) is type(b) and a == b


_S, _T, _SET = FieldKind.SCALAR, FieldKind.TEXT, FieldKind.SET

LOOKUP_ENTITIES: Final = (
    "tag",
    "knowledge_type",
    "accuracy_level",
    "development_stage",
    "gpt_model",
    "agent_group",
)


def _lookup(name: str) -> EntityType:
    return EntityType(name, {"name": _S, "description": _T, "position": _S}, lookup=True)


DEFAULT_SCHEMA: Final = EntitySchema.of(
    EntityType(
        "prompt",
        {"title": _S, "body": _T, "description": _T, "development_stage_id": _S, "tag_ids": _SET},
        references={"development_stage_id": "development_stage", "tag_ids": "tag"},
    ),
    EntityType(
        "output",
        {
            "prompt_id": _S,
            "content": _T,
            "custom_gpt_id": _S,
            "gpt_model_id": _S,
            "accuracy_level_id": _S,
            "knowledge_type_ids": _SET,
            "tag_ids": _SET,
            "notes": _T,
        },
        references={
            "prompt_id": "prompt",
            "custom_gpt_id": "custom_gpt",
            "gpt_model_id": "gpt_model",
            "accuracy_level_id": "accuracy_level",
            "knowledge_type_ids": "knowledge_type",
            "tag_ids": "tag",
        },
    ),
    EntityType(
        "custom_gpt",
        {
            "name": _S,
            "description": _T,
            "instructions": _T,
            "gpt_model_id": _S,
            "agent_group_ids": _SET,
        },
        references={"gpt_model_id": "gpt_model", "agent_group_ids": "agent_group"},
    ),
    *(_lookup(name) for name in LOOKUP_ENTITIES),
)
"""The Output Hub entities as the sync engine sees them."""
