"""A side-by-side line diff of two texts (for prompt version history), built on :mod:`difflib`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

DiffKind = Literal["same", "changed", "added", "removed"]


@dataclass(frozen=True, slots=True)
class SideBySideRow:
    kind: DiffKind
    left_no: int | None  # 1-based line numbers; None where the side has no line
    left: str
    right_no: int | None
    right: str


def side_by_side(old: str, new: str) -> list[SideBySideRow]:
    a, b = old.splitlines(), new.splitlines()
    rows: list[SideBySideRow] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pairs = zip(range(i1, i2), range(j1, j2), strict=True)
            rows += [SideBySideRow("same", i + 1, a[i], j + 1, b[j]) for i, j in pairs]
        elif tag == "delete":
            rows += [SideBySideRow("removed", i + 1, a[i], None, "") for i in range(i1, i2)]
        elif tag == "insert":
            rows += [SideBySideRow("added", None, "", j + 1, b[j]) for j in range(j1, j2)]
        else:
            for k in range(max(i2 - i1, j2 - j1)):
                i, j = i1 + k, j1 + k
                rows.append(
                    SideBySideRow(
                        "changed",
                        i + 1 if i < i2 else None,
                        a[i] if i < i2 else "",
                        j + 1 if j < j2 else None,
                        b[j] if j < j2 else "",
                    )
                )
    return rows
