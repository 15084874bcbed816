"""``outputhub replica conflicts list``: both sides of a conflict on its line."""

from __future__ import annotations

from datetime import UTC, datetime

from outputhub.desktop.replica_cli import LIST_VALUE_CHARS, _sides
from outputhub.desktop.storage.records import ConflictRecord
from outputhub.sync.engine import TOMBSTONE


def conflict(field: str, mine: object, theirs: object) -> ConflictRecord:
    return ConflictRecord(
        id="c",
        entity="prompt",
        record_id="r",
        field=field,
        base=None,
        mine=mine,
        theirs=theirs,
        created_at=datetime.now(UTC),
        resolved_at=None,
    )


def test_a_field_conflict_shows_both_values() -> None:
    assert _sides(conflict("title", "Mine", "Theirs")) == "mine 'Mine' / theirs 'Theirs'"
    assert _sides(conflict("tag_ids", ["a"], [])) == "mine ['a'] / theirs []"


def test_long_values_are_cut_on_one_line() -> None:
    line = _sides(conflict("body", "first line\nsecond line " + "x" * 100, "short"))
    mine = line.removeprefix("mine ").split(" / theirs ")[0]
    assert len(mine) == LIST_VALUE_CHARS and mine.endswith("…") and "\n" not in line
    assert line.endswith(" / theirs 'short'")


def test_a_delete_against_an_edit_says_who_deleted() -> None:
    assert _sides(conflict(TOMBSTONE, True, False)) == "mine deleted / theirs edited"
    assert _sides(conflict(TOMBSTONE, False, True)) == "mine edited / theirs deleted"
