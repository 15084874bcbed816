"""Full-text search stays in step with the tables and never chokes on what users type."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from replica_support import PASSPHRASE, new_id, output, prompt

from outputhub.desktop.storage import Replica, open_replica
from outputhub.desktop.storage.search import match_expression


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    with open_replica(tmp_path / "r.db", passphrase=PASSPHRASE, create=True) as opened:
        yield opened


def ids(replica: Replica, query: str) -> set[str]:
    return {hit.id for hit in replica.search(query, limit=100)}


def test_prompt_index_follows_insert_update_delete(replica: Replica) -> None:
    record = prompt(title="Pelican briefing", body="Summarize the migration of pelicans")
    replica.upsert_prompt(record=record)
    assert ids(replica, "pelican") == {record.id}
    assert ids(replica, "briefing") == {record.id}

    replica.upsert_prompt(
        record=dataclasses.replace(record, title="Albatross briefing", body="Seabirds only")
    )
    assert ids(replica, "pelican") == set()
    assert ids(replica, "albatross") == {record.id}

    # sync bookkeeping does not disturb the index
    replica.upsert_prompt(
        record=dataclasses.replace(record, title="Albatross briefing", body="Seabirds only", revision=7)
    )
    assert ids(replica, "albatross") == {record.id}

    replica.delete_prompt(id=record.id)  # tombstone: hidden from search
    assert ids(replica, "albatross") == set()
    replica.delete_prompt(id=record.id, purge=True)
    assert ids(replica, "albatross") == set()
    assert replica.verify_integrity() == []


def test_output_index_follows_insert_update_delete(replica: Replica) -> None:
    parent = prompt()
    replica.upsert_prompt(record=parent)
    first = output(parent.id, content="The quick brown fox")
    second = output(parent.id, content="A lazy dog sleeps")
    replica.upsert_output(record=first)
    replica.bulk_insert_outputs([second])
    assert ids(replica, "fox") == {first.id}
    assert ids(replica, "dog") == {second.id}
    replica.upsert_output(record=dataclasses.replace(first, content="The quick red panda"))
    assert ids(replica, "fox") == set()
    assert ids(replica, "panda") == {first.id}
    replica.delete_output(id=second.id, purge=True)
    assert ids(replica, "dog") == set()
    assert replica.verify_integrity() == []


def test_results_carry_snippets_and_rank_best_first(replica: Replica) -> None:
    strong = prompt(title="kestrel kestrel", body="kestrel hunting notes")
    weak = prompt(title="birds", body="a long text " * 40 + "kestrel")
    for record in (strong, weak):
        replica.upsert_prompt(record=record)
    hits = replica.search("kestrel", mark_start="<b>", mark_end="</b>")
    assert [hit.id for hit in hits] == [strong.id, weak.id]
    assert "<b>kestrel</b>" in hits[0].snippet
    assert hits[0].rank <= hits[1].rank


def test_filters_limit_and_prefix(replica: Replica) -> None:
    mine = prompt(body="photosynthesis explained")
    theirs = prompt(org_id=new_id(), body="photosynthesis for kids")
    for record in (mine, theirs):
        replica.upsert_prompt(record=record)
    replica.upsert_output(record=output(mine.id, content="photosynthetic bacteria"))
    assert ids(replica, "photosynth*") == {mine.id, theirs.id} | {
        h.id for h in replica.search("photosynthetic", limit=5)
    }
    assert {h.id for h in replica.search("photosynthesis", org_id=theirs.org_id)} == {theirs.id}
    assert {h.entity for h in replica.search("photosynth*", entities=("output",))} == {"output"}
    assert len(replica.search("photosynth*", limit=1)) == 1
    assert replica.search("photosynth*", limit=0) == []
    assert replica.search("photosynth*", entities=()) == []


def test_diacritics_are_folded(replica: Replica) -> None:
    record = prompt(body="A naïve café résumé")
    replica.upsert_prompt(record=record)
    assert ids(replica, "naive cafe") == {record.id}
    assert ids(replica, "RÉSUMÉ") == {record.id}


ODD_QUERIES = [
    'foo"',
    '"',
    '""',
    "AND",
    "OR",
    "NOT",
    "foo AND",
    "AND foo OR NOT",
    "NEAR(",
    "NEAR(foo bar)",
    "title:foo",
    "body:",
    "-foo",
    "^foo",
    "foo*bar",
    "*",
    "**",
    "(",
    ")",
    "(foo OR",
    "{foo}",
    "'",
    "'; DROP TABLE prompts; --",
    "\x00",
    "foo\x00bar",
    "",
    "   ",
    "\t\n",
    "+",
    "foo + bar",
    "x" * 5000,
    " ".join(["word"] * 500),
    "😀",
    "日本語",
    "rank:1",
    "prompts_fts",
]


@pytest.mark.parametrize("query", ODD_QUERIES)
def test_odd_user_queries_never_raise(replica: Replica, query: str) -> None:
    replica.upsert_prompt(record=prompt(title="foo AND bar", body="NEAR the title: foo bar baz"))
    hits = replica.search(query)
    assert isinstance(hits, list)


def test_operators_are_plain_words(replica: Replica) -> None:
    with_and = prompt(body="salt AND pepper")
    without = prompt(body="salt pepper")
    for record in (with_and, without):
        replica.upsert_prompt(record=record)
    assert ids(replica, "salt AND") == {with_and.id}  # "AND" is a word here, not an operator
    assert ids(replica, 'pepper"') == {with_and.id, without.id}
    assert ids(replica, "-pepper") == {with_and.id, without.id}


def test_match_expression_quotes_every_term() -> None:
    assert match_expression('foo" AND bar*') == '"foo""" "AND" "bar"*'
    assert match_expression("  ") is None
    assert match_expression("() * -") is None


def test_large_match_sets_are_listed_newest_first_without_tombstones(replica: Replica) -> None:
    from outputhub.desktop.storage.search import RANK_WINDOW

    p = prompt()
    replica.upsert_prompt(record=p)
    strong_old = output(p.id, content="heron heron heron heron heron")  # best bm25, but the oldest row
    rows = [output(p.id, content=f"a heron note {i} with filler words") for i in range(RANK_WINDOW + 50)]
    newest = output(p.id, content="heron heron heron newest")
    dead = output(p.id, content="heron heron heron heron heron heron")
    replica.bulk_insert_outputs([strong_old, *rows, newest, dead])
    replica.delete_output(id=dead.id)
    hits = replica.search("heron", limit=5, entities=("output",))
    assert [h.id for h in hits] == [newest.id, *(r.id for r in reversed(rows[-4:]))], "newest first"
    assert {h.rank for h in hits} == {0.0}, "too many matches to rank"
    assert "[heron]" in hits[0].snippet
    count = replica.count_output_matches("heron")
    assert count.capped and not count.ranked and str(count) == "1,000+"
