"""``outputhub replica conflicts list``: both sides of a conflict on its line."""

from __future__ import annotations

from datetime import UTC, datetime

from outputhub.desktop.replica_cli import LIST_VALUE_CHARS, _sides
from outputhub.desktop.services.conflicts import suggest
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


def test_the_merge_suggestion_names_mine_as_the_headings_do() -> None:
    """The suggestion said "yours" is suggested on a replica that wrote neither side (QA): its note names
    mine the way the sides' headings do (:func:`sides_heading`), by who wrote the sides."""
    overlapping = ("a\nb\n", "a\nmine\n", "a\ntheirs\n")
    for written, words in (
        ("mine", "mine (this computer)"),
        ("neither", "mine (in place here; written on another computer)"),
        ("both", "mine (in place; both written on this computer)"),
    ):
        _value, note = suggest("scalar", "a", "b", "c", written=written)
        assert note == f"A single value: {words} is suggested; pick theirs if it is the right one."
        merged, note = suggest("text", *overlapping, written=written)
        assert "mine" in merged and note == f"1 overlapping passage(s): {words} kept there, review it."
        assert "your" not in note
    assert "this computer" in suggest("scalar", "a", "b", "c")[1]  # by default: a side written here
