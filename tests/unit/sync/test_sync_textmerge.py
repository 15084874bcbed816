from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from outputhub.sync.engine import merge3

EXAMPLES = int(os.environ.get("OUTPUTHUB_HYPOTHESIS_EXAMPLES", "200"))


def test_edits_of_different_lines_merge_cleanly() -> None:
    result = merge3("a\nb\nc\nd", "A\nb\nc\nd", "a\nb\nc\nD")
    assert result.clean
    assert result.text == "A\nb\nc\nD"


def test_the_same_change_on_both_sides_is_taken_once() -> None:
    result = merge3("a\nb\nc", "a\nX\nc", "a\nX\nc\nd")
    assert result.clean
    assert result.text == "a\nX\nc\nd"


def test_overlapping_edits_conflict_and_keep_mine_in_place() -> None:
    result = merge3("a\nb\nc", "a\nmine\nc", "a\ntheirs\nc")
    assert not result.clean
    assert result.text == "a\nmine\nc"
    (hunk,) = result.conflicts
    assert (hunk.base, hunk.mine, hunk.theirs) == (("b",), ("mine",), ("theirs",))


def test_insertions_at_the_same_place_conflict() -> None:
    assert not merge3("a\nc", "a\nx\nc", "a\ny\nc").clean


def test_insertion_next_to_a_deleted_line_conflicts() -> None:
    assert not merge3("x\ny\nz", "x\nz", "x\ny\nw\nz").clean


def test_appending_to_a_text_without_final_newline_is_not_an_edit_of_the_last_line() -> None:
    result = merge3("a\nb", "A\nb", "a\nb\nc")
    assert result.clean
    assert result.text == "A\nb\nc"


def test_trivial_cases() -> None:
    assert merge3("", "", "x").text == "x"
    assert merge3("b", "x", "b").text == "x"
    assert merge3("b", "x", "x").text == "x"
    assert merge3("", "a", "b").conflicts


lines = st.lists(st.sampled_from(["a", "b", "c", "d", ""]), max_size=8)
texts = lines.map("\n".join)


@st.composite
def edited(draw: st.DrawFn, base: list[str], tag: str) -> list[str]:
    out = list(base)
    for n in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(out)))
        if out and draw(st.booleans()):
            del out[pos : pos + draw(st.integers(1, 2))]
        else:
            out.insert(pos, f"{tag}{n}")
    return out


@settings(derandomize=True, max_examples=EXAMPLES)
@given(base=texts, other=texts)
def test_one_sided_changes_are_taken(base: str, other: str) -> None:
    assert merge3(base, base, other).text == other
    assert merge3(base, other, base).text == other
    assert merge3(base, other, other).text == other
    assert merge3(base, other, base).clean


@settings(derandomize=True, max_examples=EXAMPLES)
@given(data=st.data(), base=lines)
def test_merge_is_symmetric_and_keeps_every_inserted_line(data: st.DataObject, base: list[str]) -> None:
    mine = data.draw(edited(base, "m"))
    theirs = data.draw(edited(base, "t"))
    forward = merge3("\n".join(base), "\n".join(mine), "\n".join(theirs))
    backward = merge3("\n".join(base), "\n".join(theirs), "\n".join(mine))
    assert forward.clean == backward.clean
    if forward.clean:
        assert forward.text == backward.text
        merged = forward.text.split("\n")
        inserted = {line for line in mine + theirs if line[:1] in ("m", "t")}
        assert inserted <= set(merged)
