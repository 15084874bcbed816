"""How search scales: ranked when selective, newest first when not, paged, filtered and counted (capped).

The thresholds are lowered with ``monkeypatch`` so that small replicas exercise the large-library plans.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from replica_support import PASSPHRASE, new_id, output, prompt

from outputhub.desktop.storage import MatchCount, OutputRecord, Replica, open_replica
from outputhub.desktop.storage import search as fulltext


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    with open_replica(tmp_path / "r.db", passphrase=PASSPHRASE, create=True) as opened:
        yield opened


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fulltext, "RANK_WINDOW", 10)
    monkeypatch.setattr(fulltext, "COUNT_CAP", 25)
    monkeypatch.setattr(fulltext, "_CHUNK", 7)


def fill(replica: Replica, contents: list[str], **changes: object) -> list[OutputRecord]:
    """Outputs in this order (so the last is the newest), under one prompt."""
    parent = prompt()
    replica.upsert_prompt(record=parent)
    rows = [output(parent.id, content=text, **changes) for text in contents]
    replica.bulk_insert_outputs(rows)
    return rows


def every_page(replica: Replica, query: str, *, size: int, **filters: str) -> list[str]:
    found: list[str] = []
    while True:
        page = replica.search_outputs(query, limit=size, offset=len(found), snippets=False, **filters)
        found += [hit.id for hit in page]
        if len(page) < size:
            return found


def test_a_selective_query_is_ranked_and_pages_through_the_ranking(replica: Replica) -> None:
    rows = fill(replica, [("owl " * (1 + i % 4)) + f"filler text {i}" for i in range(40)])
    hits = replica.search_outputs("owl", limit=40)
    assert all(hit.rank < 0 for hit in hits), "bm25 scores"
    assert [h.rank for h in hits] == sorted(h.rank for h in hits)
    assert {h.id for h in hits} == {r.id for r in rows}
    assert every_page(replica, "owl", size=6) == [h.id for h in hits], "pages follow the same ranking"
    assert replica.count_output_matches("owl") == MatchCount(40, capped=False, ranked=True)


@pytest.mark.usefixtures("small_window")
def test_a_broad_query_lists_newest_first_and_pages_without_gaps(replica: Replica) -> None:
    rows = fill(replica, [f"common word {i}" for i in range(60)])
    for dead in rows[50:55]:
        replica.delete_output(id=dead.id)
    live_newest_first = [r.id for r in reversed(rows) if r not in rows[50:55]]
    first = replica.search_outputs("common", limit=8)
    assert [h.id for h in first] == live_newest_first[:8]
    assert {h.rank for h in first} == {0.0}
    assert first[0].snippet == "[common] word 59"
    assert every_page(replica, "common word", size=8) == live_newest_first
    assert replica.search_outputs("common", limit=8, offset=100) == []
    count = replica.count_output_matches("common")
    assert count == MatchCount(25, capped=True, ranked=False) and str(count) == "25+"


@pytest.mark.usefixtures("small_window")
def test_a_rare_word_with_a_very_common_one_is_not_ranked(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bm25 would read the common word's whole posting list: over the budget, newest first instead."""
    monkeypatch.setattr(fulltext, "RANK_BUDGET", 30)
    rows = fill(replica, [f"the {'rare ' if i % 10 == 0 else ''}item {i}" for i in range(100)])
    rare = [r.id for r in reversed(rows) if "rare" in r.content]
    assert [h.rank for h in replica.search_outputs("rare", limit=20)] != [0.0] * len(rare), "alone: ranked"
    hits = replica.search_outputs("the rare", limit=20)
    assert [h.id for h in hits] == rare and {h.rank for h in hits} == {0.0}
    assert replica.count_output_matches("the rare") == MatchCount(10, capped=False, ranked=False)


@pytest.mark.usefixtures("small_window")
@pytest.mark.parametrize("window", [10, 100], ids=["newest-first", "ranked"])
@pytest.mark.parametrize("query", ["kiwi", "kiwi*", "ki*"])
def test_filters_apply_to_every_plan_and_to_the_count(
    replica: Replica, monkeypatch: pytest.MonkeyPatch, query: str, window: int
) -> None:
    monkeypatch.setattr(fulltext, "RANK_WINDOW", window)
    tag, other_tag = new_id(), new_id()
    parent = prompt()
    replica.upsert_prompt(record=parent)
    rows = [
        output(
            parent.id,
            content=f"kiwi{'fruit' if i % 2 else ''} note {i}" + " kiwi" * (i % 5),
            tag_ids=(tag,) if i % 3 == 0 else (other_tag,),
            gpt_model_id="m1" if i % 4 == 0 else "m2",
        )
        for i in range(48)
    ]
    replica.bulk_insert_outputs(rows)
    replica.delete_output(id=rows[45].id)  # tagged, but a tombstone
    unfiltered = every_page(replica, query, size=5)  # the order without filters
    has_word = [query != "kiwi" or i % 2 == 0 or i % 5 > 0 for i in range(48)]  # "kiwifruit" is not "kiwi"
    matching = {r.id: r for i, r in enumerate(rows) if has_word[i] and i != 45}
    assert len(unfiltered) == len(set(unfiltered)) and set(unfiltered) == set(matching)
    tagged = [i for i in unfiltered if tag in matching[i].tag_ids]
    assert every_page(replica, query, size=4, tag_id=tag) == tagged, "same order, filtered"
    both = [i for i in tagged if matching[i].gpt_model_id == "m1"]
    assert every_page(replica, query, size=4, tag_id=tag, gpt_model_id="m1") == both
    ranked = len(matching) + 1 <= window  # (+1: the tombstone is still in the index)
    assert {h.rank < 0 for h in replica.search_outputs(query, tag_id=tag)} == {ranked}
    assert replica.count_output_matches(query, tag_id=tag) == MatchCount(
        len(tagged), capped=False, ranked=ranked
    )
    assert replica.search_outputs(query, prompt_id=new_id()) == []
    assert replica.count_output_matches(query, prompt_id=new_id()).count == 0


@pytest.mark.usefixtures("small_window")
def test_a_filtered_broad_search_examines_a_bounded_number_of_matches(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fulltext, "FILTER_SCAN", 20)
    monkeypatch.setattr(fulltext, "COUNT_SCAN", 30)
    tag = new_id()
    rows = fill(replica, [f"lynx sighting {i}" for i in range(50)])
    replica.upsert_output(record=dataclasses.replace(rows[0], tag_ids=(tag,)))  # the oldest: beyond the scan
    replica.upsert_output(record=dataclasses.replace(rows[45], tag_ids=(tag,)))
    assert [h.id for h in replica.search_outputs("lynx", tag_id=tag)] == [rows[45].id]
    assert replica.count_output_matches("lynx", tag_id=tag) == MatchCount(1, capped=True, ranked=False)
    monkeypatch.setattr(fulltext, "COUNT_SCAN", 50)
    assert replica.count_output_matches("lynx", tag_id=tag) == MatchCount(2, capped=False, ranked=False)
    assert [h.id for h in replica.search_outputs("lynx sighting 0", tag_id=tag)] == [rows[0].id], (
        "a narrower query finds it"
    )


def test_prefix_queries_rank_page_and_mark_the_matched_words(replica: Replica) -> None:
    rows = fill(replica, ["photosynthesis in leaves", "photosynthetic bacteria", "photography tips"])
    hits = replica.search_outputs("photosynth*", limit=10)
    assert {h.id for h in hits} == {rows[0].id, rows[1].id}
    assert {h.snippet for h in hits} == {"[photosynthesis] in leaves", "[photosynthetic] bacteria"}
    assert [h.id for h in replica.search_outputs("photo*", limit=2, offset=2)] == [
        h.id for h in replica.search_outputs("photo*", limit=3)
    ][2:]


def test_search_follows_tombstones_restores_and_synced_rows(replica: Replica) -> None:
    (row,) = fill(replica, ["a quokka smiles"])
    replica.delete_output(id=row.id)
    assert replica.search_outputs("quokka") == [] and replica.count_output_matches("quokka").count == 0
    replica.upsert_output(record=dataclasses.replace(row, deleted=False))  # restored (e.g. by undo)
    assert [h.id for h in replica.search_outputs("quokka")] == [row.id]
    synced_tombstone = dataclasses.replace(row, id=new_id(), deleted=True)  # as a pull writes it
    replica.bulk_insert_outputs([synced_tombstone])
    assert [h.id for h in replica.search_outputs("quokka")] == [row.id]
    replica.delete_output(id=row.id, purge=True)
    assert replica.search_outputs("quokka") == []
    assert replica.verify_integrity() == []


def test_mixed_search_lists_ranked_hits_before_newest_first_ones(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fulltext, "RANK_WINDOW", 3)
    titled = prompt(title="Gecko facts", body="about geckos")
    replica.upsert_prompt(record=titled)
    rows = [output(titled.id, content=f"gecko log {i}") for i in range(5)]
    replica.bulk_insert_outputs(rows)
    hits = replica.search("gecko", limit=4)
    assert [(h.entity, h.id) for h in hits] == [("prompt", titled.id)] + [
        ("output", r.id) for r in reversed(rows[2:])
    ]
    assert [h.id for h in replica.search("gecko", limit=2, offset=2)] == [rows[3].id, rows[2].id]


def test_prompt_search_filters_and_counts(replica: Replica) -> None:
    stage, tag = new_id(), new_id()
    match = prompt(title="Walrus report", development_stage_id=stage, tag_ids=(tag,))
    other = prompt(title="Walrus notes", development_stage_id=stage)
    replica.upsert_prompt(record=match)
    replica.upsert_prompt(record=other)
    assert [h.id for h in replica.search_prompts("walrus", tag_id=tag)] == [match.id]
    assert {h.id for h in replica.search_prompts("walrus", development_stage_id=stage)} == {
        match.id,
        other.id,
    }
    assert replica.count_prompt_matches("walrus") == MatchCount(2, capped=False, ranked=True)
    assert replica.count_prompt_matches("  ") == MatchCount(0, capped=False, ranked=True)


def test_get_many_keeps_the_order_asked_for(replica: Replica) -> None:
    rows = fill(replica, ["one", "two", "three"])
    asked = [rows[2].id, new_id(), rows[0].id, rows[2].id]
    assert [r.id for r in replica.get_outputs(ids=asked)] == [rows[2].id, rows[0].id]
    assert replica.get_outputs(ids=[]) == []
    parent = replica.get_prompt(id=rows[0].prompt_id)
    assert parent is not None
    replica.delete_prompt(id=parent.id)  # a deleted prompt still names its outputs
    assert replica.prompt_titles(ids=[parent.id, new_id()]) == {parent.id: parent.title}


def test_repeated_words_and_unknown_filters() -> None:
    assert fulltext.query_terms("Owl owl owl*") == ['"Owl"', '"owl"', '"owl"*']
    with pytest.raises(ValueError, match="no column"):
        fulltext.row_conditions("output", equals={"nope": "x"})
    with pytest.raises(ValueError, match="no link"):
        fulltext.row_conditions("prompt", linked={"knowledge_type_ids": "x"})
