"""How long a text, how large a number and how many members a record's fields may hold: one set of limits for
the REST schemas (``common/schemas.py``), the sync push (``server/api/sync/push.py``) and a replica's local
edits (``sync/client/local.py``), so that what one accepts the others accept too. (Sync took a 30,000
character description and a lookup position of -3 that REST refused, and a position past 2^31 failed every
push of its replica with a 500: the column is a 32-bit integer.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

NAME_MAX: Final = 200
NAME_KEY_MAX: Final = 4 * NAME_MAX
"""The length of a lookup name's uniqueness key column (``common/names.py``): case folding writes some letters
longer ("ß" as "ss", "ﬃ" as "ffi", at most three characters each) and so does NFC ("\u0958" as two), so the
key of a name of :data:`NAME_MAX` characters may be three times as long (it was a 500 on PostgreSQL)."""
TITLE_MAX: Final = 300
SHORT_TEXT_MAX: Final = 20_000
LONG_TEXT_MAX: Final = 1_000_000
POSITION_MAX: Final = 1_000_000
MEMBERS_MAX: Final = 200
"""The most ids one relation of one record holds (tags of a prompt, knowledge types of an output, ...)."""

_LOOKUP_TEXT: Final = {"name": NAME_MAX, "description": SHORT_TEXT_MAX}

TEXT_MAX: Final[Mapping[str, Mapping[str, int]]] = {
    "custom_gpt": {"name": NAME_MAX, "description": SHORT_TEXT_MAX, "instructions": LONG_TEXT_MAX},
    "prompt": {"title": TITLE_MAX, "body": LONG_TEXT_MAX, "description": SHORT_TEXT_MAX},
    "output": {"content": LONG_TEXT_MAX, "notes": SHORT_TEXT_MAX},
}
"""The most characters each text field of a replicated record holds; every other entity is a lookup (tag,
knowledge type, ...): a name and a description."""

NUMBER_RANGE: Final[Mapping[str, tuple[int, int]]] = {"position": (0, POSITION_MAX)}
"""The smallest and largest value of each whole-number field, by name (a lookup's place on ordered scales)."""

NOT_EMPTY: Final[Mapping[str, tuple[str, ...]]] = {"prompt": ("body",), "output": ("content",)}
"""Texts a record cannot be without (REST's ``min_length=1``): a prompt's text, an output."""


def missing_problem(entity: str, values: Mapping[str, object], *, creating: bool) -> tuple[str, str] | None:
    """(detail, field) of the first value ``values`` sets that REST refuses as missing, or None: a null
    whole-number field, an empty :data:`NOT_EMPTY` text (left out of a create too). Judged on what an edit
    sets, not on a whole record: one stored with such a value before 2026-11-27 still takes edits of its
    other fields. (A push of a null position was applied: the row stored 0, the state null, so replicas
    showed null and REST 0; an empty prompt text was stored.)"""
    for name in NUMBER_RANGE:
        if name in values and values[name] is None:
            return f"{entity}.{name} may not be null", name
    for name in NOT_EMPTY.get(entity, ()):
        if values.get(name) == "" or (creating and name not in values):
            return f"{entity}.{name} may not be empty", name
    return None


def limit_problem(entity: str, values: Mapping[str, object]) -> tuple[str, str] | None:
    """(detail, field) of the first value in ``values`` past its limit, or None. Values of another type are
    not judged here (the type checks say what is wrong with them)."""
    for name, limit in TEXT_MAX.get(entity, _LOOKUP_TEXT).items():
        value = values.get(name)
        if isinstance(value, str) and len(value) > limit:
            return f"{entity}.{name} is longer than {limit:,} characters ({len(value):,})", name
    for name, (low, high) in NUMBER_RANGE.items():
        value = values.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high:
            return f"{entity}.{name} must be between {low} and {high:,}", name
    for name, value in values.items():
        if isinstance(value, frozenset | set | list | tuple) and len(value) > MEMBERS_MAX:
            return f"{entity}.{name} holds more than {MEMBERS_MAX} ids ({len(value)})", name
    return None


def type_problem(entity: str, values: Mapping[str, object]) -> tuple[str, str] | None:
    """(detail, field) of the first text field holding something other than text, or whole-number field
    holding something other than a whole number, or None: a replica refuses what the server's push would
    (a title saved as the number 2024 was refused only by the server, and the edit came back as refused)."""
    for name in TEXT_MAX.get(entity, _LOOKUP_TEXT):
        value = values.get(name)
        if value is not None and not isinstance(value, str):
            return f"{entity}.{name} must be text, not {type(value).__name__}", name
    for name in NUMBER_RANGE:
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{entity}.{name} must be a whole number, not {type(value).__name__}", name
    return None
