"""Lookup names (tags, knowledge types, accuracy levels, development stages, GPT models, agent groups): how
one is stored and when two are the same name. One rule for every side: the server's unique index (the
``name_key`` column, one live name per key and organization), a sync push's merge of a lookup made offline
under a taken name, a replica's refusal of a rename to a taken name and the sync engine's deduplication
(``sync/engine/dedupe.py``). Pure functions: the sync engine may use them.

Unicode spells many letters two ways: "é" as one code point (U+00E9, NFC, what most keyboards give) or as
"e" followed by a combining acute accent (U+0301, NFD, what macOS input often gives). They look the same and
are the same name: a name is stored in NFC and without surrounding spaces (:func:`normalize_name`), and the
key compares NFC forms of the case-folded name (:func:`name_key`). Before 2026-11-29 the key was only
``strip().casefold()``: "Café" typed both ways was two tags, over REST and over sync (migration 0013 brings
the data written before in line).
"""

from __future__ import annotations

import unicodedata


def normalize_name(name: str) -> str:
    """``name`` as it is stored: without surrounding whitespace, in Unicode NFC."""
    return unicodedata.normalize("NFC", name.strip())


def name_key(name: str) -> str:
    """The uniqueness key of a lookup name: two names are one when their keys are equal (stripped,
    case-folded, NFC: "  CAFÉ" and "café" typed as e + U+0301 share the key "café"; NFC again after the case
    fold, which may write a letter in another form)."""
    return unicodedata.normalize("NFC", normalize_name(name).casefold())


_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def has_visible(name: str) -> bool:
    """Whether ``name`` shows anything: a character that is neither white space nor an invisible format
    character (U+200B ZERO WIDTH SPACE, U+2060 WORD JOINER, U+FEFF, ...). A tag named U+200B alone was taken:
    a blank entry in every list (QA)."""
    return any(unicodedata.category(ch) not in _INVISIBLE_CATEGORIES and not ch.isspace() for ch in name)
