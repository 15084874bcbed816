"""Wire form of the engine's values (changes and record states), shared by the server and the client.

JSON-able and compact: HLCs as their sortable text form, set values as sorted lists (turned back into
frozensets by the schema on the way in). Decoding validates; a malformed payload raises
:class:`ProtocolError` naming what is wrong, never a ``KeyError`` from deep inside.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Final

from outputhub.common.clock import HLC, ClockError
from outputhub.sync.engine import (
    DEFAULT_SCHEMA,
    Change,
    ChangeKind,
    EntitySchema,
    FieldBase,
    FieldKind,
    FieldState,
    FieldValue,
    FieldWrite,
    InvalidChangeError,
    RecordState,
    TombstoneState,
    TombstoneWrite,
    build_state,
    default_value,
)
from outputhub.sync.engine.schema import TOMBSTONE

ENTITY_TABLES: Final[dict[str, str]] = {
    "prompt": "prompts",
    "output": "outputs",
    "custom_gpt": "custom_gpts",
    "tag": "tags",
    "knowledge_type": "knowledge_types",
    "accuracy_level": "accuracy_levels",
    "development_stage": "development_stages",
    "gpt_model": "gpt_models",
    "agent_group": "agent_groups",
}
"""Engine entity name -> table (and pull feed) name."""
TABLE_ENTITIES: Final[dict[str, str]] = {table: entity for entity, table in ENTITY_TABLES.items()}


class ProtocolError(ValueError):
    """A wire payload is malformed; the message says where, ``field`` which field of a change (or None)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


_decoded_hlc = functools.lru_cache(maxsize=1 << 14)(HLC.decode)
"""``HLC.decode`` remembered (HLCs are immutable values): a record's stored state names the versions of every
write it superseded, and each push that edits the record decodes them again (a prompt whose title was edited
200 times: over 100 per push). At most 16k entries (a few MB). A miss costs the lookup on top of the
decode; invalid text raises and is not remembered."""


def _hlc(text: object, where: str) -> HLC:
    if not isinstance(text, str):
        raise ProtocolError(f"{where}: a version must be a string")
    try:
        return _decoded_hlc(text)
    except ClockError as exc:
        raise ProtocolError(f"{where}: {exc}") from None


def _field_hlc(text: object, where: str) -> HLC:
    """A change's own version (``hlc``), an error naming that field."""
    try:
        return _hlc(text, where)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), field="hlc") from None


MAX_NODE_CHARS: Final = 64
"""The longest node a pushed change may have: a replica's id, bounded as a push's ``device`` is (the node is
stored in the record's state, in every later base and superseded set: a node of 1,000,000 characters was
taken, QA)."""

MAX_BASE_VERSIONS: Final = 1000
"""The most versions one field's base in a pushed change may name (a base names the heads its author saw: a
handful; 20,000 made-up ones were stored in the record's state). Stored states are not bounded by it."""


def _versions(items: object, where: str) -> frozenset[HLC]:
    if not isinstance(items, list):
        raise ProtocolError(f"{where}: versions must be a list")
    return frozenset(_hlc(v, where) for v in items)


def _enc_versions(versions: frozenset[HLC]) -> list[str]:
    return sorted(v.encode() for v in versions)


def encode_value(value: FieldValue) -> Any:
    if isinstance(value, frozenset):
        return sorted(value)
    return value


def decode_value(schema: EntitySchema, entity: str, name: str, value: object, where: str) -> FieldValue:
    try:
        kind = schema.kind(entity, name)
    except InvalidChangeError as exc:
        raise ProtocolError(f"{where}: {exc}", field=name) from None
    if kind is FieldKind.SET:
        if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
            raise ProtocolError(f"{where}: a set value must be a list of strings", field=name)
        return frozenset(value)
    if isinstance(value, list | dict):
        raise ProtocolError(f"{where}: {entity}.{name} takes a single value", field=name)
    return value  # type: ignore[return-value]  # str | int | float | bool | None, checked by the engine


# -- changes ---------------------------------------------------------------------------------------------


def change_to_wire(change: Change) -> dict[str, Any]:
    return {
        "op_id": change.op_id,
        "entity": change.entity,
        "id": change.record_id,
        "kind": change.kind.value,
        "node": change.node,
        "hlc": change.hlc.encode(),
        "values": {name: encode_value(v) for name, v in sorted(change.values.items())},
        "base": {
            name: [encode_value(b.value), _enc_versions(b.versions)]
            for name, b in sorted(change.base.items())
        },
    }


def change_from_wire(data: Mapping[str, Any], *, schema: EntitySchema = DEFAULT_SCHEMA) -> Change:
    where = f"change {data.get('op_id', '?')}"
    try:
        entity = data["entity"]
        if not isinstance(entity, str) or entity not in schema.entities:
            raise ProtocolError(f"{where}: unknown entity {entity!r}", field="entity")
        try:
            kind = ChangeKind(data["kind"])
        except ValueError:
            known = ", ".join(k.value for k in ChangeKind)
            unknown = f"{where}: unknown kind {data['kind']!r} (one of {known})"
            raise ProtocolError(unknown, field="kind") from None
        if not isinstance(data["id"], str):
            raise ProtocolError(f"{where}: the record id must be a string (a UUID)", field="id")
        for part in ("values", "base"):
            given = data.get(part)
            if given is not None and not isinstance(given, Mapping):  # [] too (it was read as no fields)
                raise ProtocolError(f"{where}: {part} must be an object of fields", field=part)
        values = {
            name: decode_value(schema, entity, name, v, f"{where}.values.{name}")
            for name, v in dict(data.get("values") or {}).items()
        }
        base: dict[str, FieldBase] = {}
        for name, pair in dict(data.get("base") or {}).items():
            if not isinstance(pair, list) or len(pair) != 2:
                raise ProtocolError(f"{where}.base.{name}: expected [value, versions]", field=name)
            value = pair[0]
            if name != TOMBSTONE and name in values:
                value = decode_value(schema, entity, name, value, f"{where}.base.{name}")
            elif isinstance(value, list):
                value = frozenset(value)
            if isinstance(pair[1], list) and len(pair[1]) > MAX_BASE_VERSIONS:
                too_many = f"{where}.base.{name}: more than {MAX_BASE_VERSIONS} versions"
                raise ProtocolError(too_many, field=name)
            try:
                base[name] = FieldBase(value, _versions(pair[1], f"{where}.base.{name}"))
            except ProtocolError as exc:
                raise ProtocolError(str(exc), field=name) from None
        node = str(data["node"])
        if not 0 < len(node) <= MAX_NODE_CHARS:
            too_long = f"{where}: node must be 1 to {MAX_NODE_CHARS} characters, not {len(node)}"
            raise ProtocolError(too_long, field="node")
        change = Change(
            entity=entity,
            record_id=str(data["id"]),
            node=node,
            hlc=_field_hlc(data["hlc"], f"{where}.hlc"),
            op_id=str(data["op_id"]),
            kind=kind,
            values=values,
            base=base,
        )
    except KeyError as exc:
        raise ProtocolError(f"{where}: missing {exc.args[0]!r}", field=str(exc.args[0])) from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"{where}: {exc}") from None
    try:
        change.validate(schema)
    except InvalidChangeError as exc:
        raise ProtocolError(str(exc), field=exc.errors[0].field if exc.errors else None) from None
    return change


# -- record states ---------------------------------------------------------------------------------------


def _enc_write(w: FieldWrite) -> list[Any]:
    return [
        w.version.encode(),
        w.op_id,
        encode_value(w.value),
        encode_value(w.base_value),
        _enc_versions(w.base_versions),
    ]


def state_to_wire(state: RecordState) -> dict[str, Any]:
    """The raw registers only: what a state materializes to is re-derived by the receiver."""
    fields: dict[str, Any] = {}
    for name, fs in state.fields.items():
        item: dict[str, Any] = {"h": [_enc_write(w) for w in fs.heads], "s": _enc_versions(fs.superseded)}
        if fs.history:
            item["y"] = [_enc_write(w) for w in fs.history]
        fields[name] = item
    return {
        "f": fields,
        "t": {
            "h": [
                [w.version.encode(), w.op_id, w.deleted, _enc_versions(w.covers)]
                for w in state.tombstone.heads
            ],
            "s": _enc_versions(state.tombstone.superseded),
        },
    }


# -- compact states (protocol 2) -----------------------------------------------------------------------------

CURRENT: Final[dict[str, int]] = {"=": 1}
"""In a pulled state (protocol 2): a text write whose value is the record's own ``data`` value of that field
(the text travels once, in ``data``; a 2 KB output's state would otherwise carry it a second time)."""
COMPACT_MIN: Final = 64
"""Shorter texts are sent as they are (the marker would save next to nothing)."""

_TEXT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    entity: tuple(f for f, kind in DEFAULT_SCHEMA.entity(entity).fields.items() if kind is FieldKind.TEXT)
    for entity in DEFAULT_SCHEMA.entities
}


def swap_text_values(
    entity: str, wire: Mapping[str, Any], current: Callable[[str], object], *, compact: bool
) -> Mapping[str, Any]:
    """``wire`` with its long text writes equal to the record's own text (``current(field)``) replaced by
    :data:`CURRENT` (``compact``), or each :data:`CURRENT` replaced by that text again. Returns ``wire``
    itself when nothing changes; raises :class:`ProtocolError` for a marker without a text to stand for.

    The one implementation of the marker: the server's stored pull form, the client's expansion of a
    pulled state and the replica's stored states all use it."""
    fields = wire.get("f")
    if not fields:
        return wire
    out: dict[str, Any] | None = None
    for name in _TEXT_FIELDS.get(entity, ()):
        item = fields.get(name)
        if item is None:
            continue
        text: object = None
        if compact:
            text = current(name)
            if not isinstance(text, str) or len(text) < COMPACT_MIN:
                continue
        changed: dict[str, Any] | None = None
        for key in ("h", "y"):
            writes = item.get(key)
            old = text if compact else CURRENT
            if not writes or not any(w[2] == old for w in writes):
                continue
            if not compact:
                text = current(name)
                if not isinstance(text, str):
                    raise ProtocolError(f"state {entity}: {name} refers to the record's text, which it lacks")
            new = CURRENT if compact else text
            changed = changed if changed is not None else dict(item)
            changed[key] = [[w[0], w[1], new, *w[3:]] if w[2] == old else w for w in writes]
        if changed is not None:
            out = out if out is not None else dict(fields)
            out[name] = changed
    return wire if out is None else {**wire, "f": out}


def _uniform_bases(entity: str) -> dict[str, Any]:
    return {
        name: encode_value(default_value(kind)) for name, kind in DEFAULT_SCHEMA.entity(entity).fields.items()
    }


_UNIFORM_BASES: Final[dict[str, dict[str, Any]]] = {e: _uniform_bases(e) for e in DEFAULT_SCHEMA.entities}
_NO_BASE: Final = object()


def uniform_state_wire(entity: str, wire: Mapping[str, Any]) -> dict[str, Any] | None:
    """Protocol 3's form of a state written by one operation and nothing else (a record created once and
    never edited, the common case): ``{"u": [version, op_id], "v": {field: value}}``, or None when ``wire``
    is not such a state.

    It stands for: each field of ``v`` has one write ``[version, op_id, value, <the field kind's default>,
    []]`` and nothing superseded, and the tombstone has one write ``[version, op_id, false, []]`` and nothing
    superseded; :func:`expand_uniform` gives exactly ``wire`` back (the checks below admit nothing else).
    Values may be :data:`CURRENT` markers (compact the texts first). Decoded JSON only (dicts and lists)."""
    bases = _UNIFORM_BASES.get(entity)
    tomb = wire.get("t")
    fields = wire.get("f")
    if bases is None or type(tomb) is not dict or type(fields) is not dict or len(wire) != 2:
        return None
    heads = tomb.get("h")
    if len(tomb) != 2 or tomb.get("s") != [] or type(heads) is not list or len(heads) != 1:
        return None
    head = heads[0]
    if type(head) is not list or len(head) != 4 or head[2] is not False or head[3] != []:
        return None
    version, op_id = head[0], head[1]
    if type(version) is not str or type(op_id) is not str:
        return None
    values: dict[str, Any] = {}
    for name, item in fields.items():
        base = bases.get(name, _NO_BASE)
        if base is _NO_BASE or type(item) is not dict or len(item) != 2 or item.get("s") != []:
            return None
        writes = item.get("h")
        if type(writes) is not list or len(writes) != 1:
            return None
        w = writes[0]
        if (
            type(w) is not list
            or len(w) != 5
            or w[0] != version
            or w[1] != op_id
            or w[4] != []
            or type(w[3]) is not type(base)
            or w[3] != base
        ):
            return None
        values[name] = w[2]
    return {"u": [version, op_id], "v": values}


def _uniform_parts(
    entity: str, wire: Mapping[str, Any]
) -> tuple[str, str, Mapping[str, Any], dict[str, Any]]:
    """(version, op_id, values, the entity's bases) of a uniform form; :class:`ProtocolError` when it is
    malformed."""
    where = f"state {entity}"
    bases = _UNIFORM_BASES.get(entity)
    if bases is None:
        raise ProtocolError(f"{where}: unknown entity {entity!r}")
    stamp, values = wire.get("u"), wire.get("v")
    # (checked for every pulled record: plain type tests first, the ABC only for a non-dict mapping)
    if (
        len(wire) != 2
        or not isinstance(stamp, list)
        or len(stamp) != 2
        or not (isinstance(stamp[0], str) and isinstance(stamp[1], str))
        or not (type(values) is dict or isinstance(values, Mapping))
    ):
        raise ProtocolError(f'{where}: a uniform state is {{"u": [version, op_id], "v": {{field: value}}}}')
    if not values.keys() <= bases.keys():
        unknown = next(name for name in values if name not in bases)
        raise ProtocolError(f"{where}: unknown field {unknown!r}")
    return stamp[0], stamp[1], values, bases


def expand_uniform(entity: str, wire: Mapping[str, Any]) -> Mapping[str, Any]:
    """The full state a :func:`uniform_state_wire` form stands for; ``wire`` itself when it is not one.
    Raises :class:`ProtocolError` for a malformed one."""
    if "u" not in wire:
        return wire
    version, op_id, values, bases = _uniform_parts(entity, wire)
    fields: dict[str, Any] = {}
    for name, value in values.items():
        base = bases[name]
        fields[name] = {
            "h": [[version, op_id, value, list(base) if isinstance(base, list) else base, []]],
            "s": [],
        }
    return {"f": fields, "t": {"h": [[version, op_id, False, []]], "s": []}}


def check_uniform(entity: str, wire: Mapping[str, Any], current: Callable[[str], object]) -> None:
    """Raise :class:`ProtocolError` exactly when ``expand_state(entity, wire, current)`` of this uniform
    form would: malformed, or a :data:`CURRENT` marker on a text field without that text. Costs a fraction
    of the expansion (nothing is built)."""
    _version, _op_id, values, _bases = _uniform_parts(entity, wire)
    for name in _TEXT_FIELDS.get(entity, ()):
        if values.get(name) == CURRENT and not isinstance(current(name), str):
            raise ProtocolError(f"state {entity}: {name} refers to the record's text, which it lacks")


def compact_state(
    entity: str, wire: Mapping[str, Any], current: Callable[[str], object]
) -> Mapping[str, Any]:
    """The most compact form of a full state: long texts equal to the record's own (``current(field)``) as
    :data:`CURRENT`, then the uniform form (protocol 3) where it applies. ``wire`` itself when neither
    applies. :func:`expand_state` is its inverse."""
    marked = swap_text_values(entity, wire, current, compact=True)
    return uniform_state_wire(entity, marked) or marked


def expand_state(entity: str, wire: Mapping[str, Any], current: Callable[[str], object]) -> Mapping[str, Any]:
    """The full state of any compact form (uniform, text markers, or none: ``wire`` itself)."""
    return swap_text_values(entity, expand_uniform(entity, wire), current, compact=False)


def compact_state_wire(
    entity: str, wire: Mapping[str, Any], values: Mapping[str, Any], *, uniform: bool = True
) -> dict[str, Any] | None:
    """``wire`` as a pull sends it: every text write whose value equals ``values[field]`` (at least
    :data:`COMPACT_MIN` characters) replaced by :data:`CURRENT` (protocol 2), then with ``uniform`` the
    uniform form where it applies (protocol 3); None when nothing changes (send ``wire`` itself)."""
    compact = (
        compact_state(entity, wire, values.get)
        if uniform
        else swap_text_values(entity, wire, values.get, compact=True)
    )
    return None if compact is wire else dict(compact)


def expand_state_wire(entity: str, wire: Mapping[str, Any], data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The full state of a pulled compact one (protocol 2 markers replaced by ``data[field]``, a protocol 3
    uniform form expanded). Returns ``wire`` itself when it is neither; raises :class:`ProtocolError` for a
    marker ``data`` cannot fill or a malformed uniform form."""
    return expand_state(entity, wire, data.get)


def _dec_write(schema: EntitySchema, entity: str, name: str, item: object, where: str) -> FieldWrite:
    if not isinstance(item, list) or len(item) != 5:
        raise ProtocolError(f"{where}: a write is [version, op_id, value, base_value, base_versions]")
    kind = schema.kind(entity, name)
    base_value = item[3]
    if kind is FieldKind.SET and isinstance(base_value, list):
        base_value = frozenset(base_value)
    return FieldWrite(
        version=_hlc(item[0], where),
        op_id=str(item[1]),
        value=decode_value(schema, entity, name, item[2], where),
        base_value=base_value,
        base_versions=_versions(item[4], where),
    )


def state_from_wire(
    entity: str, record_id: str, data: Mapping[str, Any], *, schema: EntitySchema = DEFAULT_SCHEMA
) -> RecordState:
    where = f"state {entity}/{record_id}"
    try:
        if entity not in schema.entities:
            raise ProtocolError(f"{where}: unknown entity {entity!r}")
        if "u" in data:
            raise ProtocolError(f"{where}: a uniform (protocol 3) state must be expanded first")
        fields: dict[str, FieldState] = {}
        for name, item in dict(data.get("f") or {}).items():
            if name not in schema.entity(entity).fields:
                raise ProtocolError(f"{where}: unknown field {name!r}")
            heads = tuple(
                sorted(
                    (_dec_write(schema, entity, name, w, where) for w in item["h"]), key=lambda w: w.version
                )
            )
            history = tuple(
                sorted(
                    (_dec_write(schema, entity, name, w, where) for w in item.get("y", [])),
                    key=lambda w: w.version,
                )
            )
            fields[name] = FieldState(heads, _versions(item["s"], where), history)
        tomb = data.get("t") or {"h": [], "s": []}
        tomb_heads = tuple(
            sorted(
                (
                    TombstoneWrite(_hlc(h[0], where), str(h[1]), bool(h[2]), _versions(h[3], where))
                    for h in tomb["h"]
                ),
                key=lambda w: w.version,
            )
        )
        tombstone = TombstoneState(tomb_heads, _versions(tomb["s"], where))
        return build_state(schema, entity, record_id, fields, tombstone)
    except ProtocolError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ProtocolError(f"{where}: malformed ({exc.__class__.__name__}: {exc})") from None
