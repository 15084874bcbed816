"""Three-way merge of text at line granularity (diff3), built on :mod:`difflib`.

The algorithm is the classic one analysed by Khanna, Kunal and Pierce ("A Formal Investigation of Diff3",
2007): match ``base`` against each side, call a base line *stable* when both sides kept it, and walk the
stable lines; between two stable lines lies an unstable chunk ``(base, mine, theirs)``:

- if one side left the chunk as in base, the other side's version is taken;
- if both sides made the same change, it is taken once;
- otherwise the chunk is a conflict.

An insertion next to a line the other side changed or deleted is in the same chunk and so is a conflict:
the merge is conservative, it never guesses an order for edits that touch each other. The result is
symmetric: ``merge3(b, x, y)`` and ``merge3(b, y, x)`` are both clean or both not, with the same text when
clean. ``difflib.SequenceMatcher`` is used with ``autojunk=False`` so the matching depends only on the texts.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class ConflictHunk:
    """One overlapping region: the base lines and each side's replacement."""

    base: tuple[str, ...]
    mine: tuple[str, ...]
    theirs: tuple[str, ...]


@dataclass(frozen=True)
class TextMerge:
    """The merged text (``mine``'s version of every conflicting hunk) and the conflicting hunks."""

    text: str
    conflicts: tuple[ConflictHunk, ...]

    @property
    def clean(self) -> bool:
        return not self.conflicts


def split_lines(text: str) -> list[str]:
    """Lines without their terminators; ``"\\n".join(split_lines(t)) == t`` for every ``t``.

    Splitting on ``"\\n"`` (rather than ``splitlines(keepends=True)``) means appending a line to a text
    without a final newline does not also "change" its former last line.
    """
    return text.split("\n")


def _matches(base: list[str], other: list[str]) -> dict[int, int]:
    matcher = difflib.SequenceMatcher(None, base, other, autojunk=False)
    pairs: dict[int, int] = {}
    for b_start, o_start, size in matcher.get_matching_blocks():
        for k in range(size):
            pairs[b_start + k] = o_start + k
    return pairs


def merge3_lines(base: list[str], mine: list[str], theirs: list[str]) -> tuple[list[str], list[ConflictHunk]]:
    in_mine, in_theirs = _matches(base, mine), _matches(base, theirs)
    out: list[str] = []
    hunks: list[ConflictHunk] = []
    i = j_mine = j_theirs = 0
    while True:
        k = i
        while k < len(base) and not (k in in_mine and k in in_theirs):
            k += 1
        end_mine, end_theirs = (in_mine[k], in_theirs[k]) if k < len(base) else (len(mine), len(theirs))
        chunk_base, chunk_mine = base[i:k], mine[j_mine:end_mine]
        chunk_theirs = theirs[j_theirs:end_theirs]
        if chunk_mine == chunk_base:
            out.extend(chunk_theirs)
        elif chunk_theirs == chunk_base or chunk_mine == chunk_theirs:
            out.extend(chunk_mine)
        else:
            hunks.append(ConflictHunk(tuple(chunk_base), tuple(chunk_mine), tuple(chunk_theirs)))
            out.extend(chunk_mine)
        if k >= len(base):
            return out, hunks
        out.append(base[k])
        i, j_mine, j_theirs = k + 1, end_mine + 1, end_theirs + 1


def merge3(base: str, mine: str, theirs: str) -> TextMerge:
    """Merge two texts edited from ``base``; see the module docstring for the rules."""
    if mine == theirs or theirs == base:
        return TextMerge(mine, ())
    if mine == base:
        return TextMerge(theirs, ())
    lines, hunks = merge3_lines(split_lines(base), split_lines(mine), split_lines(theirs))
    return TextMerge("\n".join(lines), tuple(hunks))
