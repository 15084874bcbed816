"""The search backlog (migration 0003): a large pulled page stores its outputs without indexing their text,
and the catch-up indexes them after the sync. Meanwhile edits, deletes, purges and new rows must keep the
external-content FTS5 index sound (it must never be told to delete a row it was not given), and at the end
the replica must be exactly what indexing at once gives: rows, search results, integrity."""

from __future__ import annotations

import dataclasses
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replica_support import ORG, PASSPHRASE, output
from test_replica_pull_apply import PROMPT, WORDS, _apply_pages, _contents, _searches, pulled_outputs

from outputhub.desktop.storage import open_replica, tables
from outputhub.desktop.storage import sync_store as store_module
from outputhub.desktop.storage.replica import Replica


def test_a_large_pulled_page_is_indexed_after_the_sync_as_at_once(
    replicas: tuple[Replica, Replica], monkeypatch: pytest.MonkeyPatch
) -> None:
    deferred, at_once = replicas
    items = pulled_outputs(store_module.DEFER_INDEX_ROWS + 100)
    pages = [
        items[:30],
        items[30 : 30 + store_module.DEFER_INDEX_ROWS],
        items[30 + store_module.DEFER_INDEX_ROWS :],
    ]
    _apply_pages(deferred, pages)
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "DEFER_INDEX_ROWS", 10**9)
        _apply_pages(at_once, pages)

    # the first page (30) was indexed as stored; the large one and the page after it wait
    waiting = len(items) - 30
    assert deferred.search_backlog() == waiting and at_once.search_backlog() == 0
    count = deferred.count_output_matches("harbour")
    live_waiting = sum(1 for item in items[30:] if not item.deleted)
    assert count.unindexed == live_waiting < waiting, "a search would find none of the tombstones"
    assert at_once.count_output_matches("harbour").unindexed == 0
    assert count.count < at_once.count_output_matches("harbour").count, "the search cannot see them yet"
    rows = _contents(deferred)
    assert rows.pop("search_backlog") == [("outputs", 30)]
    assert rows == {k: v for k, v in _contents(at_once).items() if k != "search_backlog"}, "all rows are in"

    reports: list[tuple[int, int]] = []
    assert deferred.catch_up_search_index(rows=128, progress=lambda d, t: reports.append((d, t))) == waiting
    assert reports[0] == (0, waiting) and reports[-1] == (waiting, waiting)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports) and len(reports) == 1 + -(-waiting // 128)
    assert deferred.search_backlog() == 0 and deferred.catch_up_search_index() == 0
    assert _searches(deferred) == _searches(at_once)
    assert _contents(deferred) == _contents(at_once)
    assert deferred.verify_integrity() == []


def test_an_everyday_pull_is_searchable_at_once(replicas: tuple[Replica, Replica]) -> None:
    replica, _ = replicas
    items = pulled_outputs(store_module.DEFER_INDEX_ROWS - 1)
    _apply_pages(replica, [items])
    assert replica.search_backlog() == 0
    assert replica.search_outputs("harbour", limit=5)


def test_a_check_indexes_the_backlog_first(replicas: tuple[Replica, Replica]) -> None:
    """The full-text integrity check compares the index with its table: a backlog is not damage."""
    replica, _ = replicas
    _apply_pages(replica, [pulled_outputs(store_module.DEFER_INDEX_ROWS)])
    assert replica.search_backlog() > 0
    assert replica.verify_integrity() == []
    assert replica.search_backlog() == 0


def test_a_check_that_cannot_index_the_backlog_says_so_and_reports_no_damage(
    replicas: tuple[Replica, Replica],
) -> None:
    """Another process holding the write lock: the catch-up cannot run, and the index check would take the
    rows it has not indexed for damage ("database disk image is malformed"; QA)."""
    replica, _ = replicas
    _apply_pages(replica, [pulled_outputs(store_module.DEFER_INDEX_ROWS)])
    waiting = replica.search_backlog()
    with open_replica(replica.path, passphrase=PASSPHRASE) as other, other.transaction():
        other.set_setting(key="holding", value="the write lock")
        problems = replica.verify_integrity()
    # (the index check itself writes: the prompts' says the lock was held, in words)
    assert problems == [
        problems[0],
        f"output index: not checked, {waiting:,} records not indexed for search yet",
        "prompt index: database is locked",
    ]
    assert problems[0].startswith("search backlog: cannot begin a transaction: the replica is locked")
    assert not any("malformed" in p for p in problems)
    assert replica.verify_integrity() == [] and replica.search_backlog() == 0


# -- edits while the backlog waits: a property test against a plain model of the outputs ------------------

_NEW_WORDS = ("zebra", "walrus", "falcon")
_OP = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, 39), st.sampled_from(WORDS + _NEW_WORDS)),
    st.tuples(st.just("delete"), st.integers(0, 39), st.just("")),
    st.tuples(st.just("purge"), st.integers(0, 39), st.just("")),
    st.tuples(st.just("add"), st.integers(0, 0), st.sampled_from(_NEW_WORDS)),
    st.tuples(st.just("pull"), st.integers(1, 12), st.just("")),
    st.tuples(st.just("index"), st.integers(1, 15), st.just("")),
)


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(_OP, max_size=25))
def test_edits_during_the_backlog_keep_the_index_sound(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, ops: list[tuple[str, int, str]]
) -> None:
    monkeypatch.setattr(store_module, "DEFER_INDEX_ROWS", 8)
    items = pulled_outputs(200)
    pulled = 0
    with open_replica(tmp_path_factory.mktemp("r") / "r.ohr", passphrase=PASSPHRASE, create=True) as replica:
        _apply_pages(replica, [items[:6], items[6:20]])  # 6 indexed at once, then a backlog of 14
        pulled = 20
        assert replica.search_backlog() == 14

        def ids() -> list[str]:
            return sorted(r.id for r in replica.list_outputs(limit=10_000))

        for op, n, word in ops:
            present = ids()
            if op == "pull":  # more pulled pages: a small one joins the backlog while there is one
                _apply_pages(replica, [items[pulled : pulled + n]])
                pulled += n
            elif op == "index":  # one step of the catch-up, as a sync worker stopped midway leaves it
                with replica.writing("index") as conn:
                    tables.index_backlog(conn, tables.OUTPUTS, rows=n)
            elif op == "add":
                replica.upsert_output(record=output(PROMPT, id=str(uuid.uuid4()), org_id=ORG, content=word))
            elif present:
                target = present[n % len(present)]
                if op == "edit":
                    record = replica.get_output(id=target)
                    assert record is not None
                    replica.upsert_output(
                        record=dataclasses.replace(record, content=f"{word} {record.content}")
                    )
                else:
                    replica.delete_output(id=target, purge=op == "purge")
            # at any moment a hit is a live output whose text has the word now (never a stale entry)
            live = {r.id: r.content for r in replica.list_outputs(limit=10_000)}
            for probe in ("harbour", "zebra"):
                hits = {h.id for h in replica.search_outputs(probe, limit=10_000, snippets=False)}
                assert all(probe in _words(live[h]) for h in hits), (op, probe)

        replica.catch_up_search_index(rows=7)
        assert replica.search_backlog() == 0
        assert replica.verify_integrity() == []
        live = {r.id: r.content for r in replica.list_outputs(limit=10_000)}
        for probe in (*WORDS, *_NEW_WORDS):
            hits = {h.id for h in replica.search_outputs(probe, limit=10_000, snippets=False)}
            assert hits == {i for i, text in live.items() if probe in _words(text)}, probe
