"""Search as you type over a library too big to rank: pages, newest first, and a capped count in the status.

The storage thresholds are lowered with ``monkeypatch`` so a few hundred outputs act like 200,000.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from PySide6.QtCore import QModelIndex, Qt

from outputhub.desktop.storage import MatchCount, OutputRecord, Replica
from outputhub.desktop.storage import search as fulltext
from outputhub.desktop.ui.models import Column, LazyTableModel
from tests.qt.conftest import wait_idle
from tests.qt.support import seed

COLUMNS = (Column("n", "N", lambda n: n),)


def bulk(replica: Replica, prompt_id: str, count: int, text: str) -> list[str]:
    """``count`` outputs, oldest first; returns their ids newest first."""
    t0 = datetime.now(UTC) + timedelta(days=1)
    rows = [
        OutputRecord(
            id=f"00000000-0000-4000-8000-{i:012d}",
            org_id="local",
            prompt_id=prompt_id,
            content=f"{text} {i}",
            created_at=t0,
            updated_at=t0 + timedelta(seconds=i),
        )
        for i in range(count)
    ]
    replica.bulk_insert_outputs(rows)
    return [r.id for r in reversed(rows)]


def test_broad_search_pages_newest_first_with_a_capped_count(
    qtbot, replica: Replica, session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fulltext, "RANK_WINDOW", 100)
    monkeypatch.setattr(fulltext, "COUNT_CAP", 300)
    ids = seed(replica, outputs=0)
    newest_first = bulk(replica, ids["prompt"], 450, "walrus sighting")
    outputs = session.window.pages.outputs
    session.window.navigation.setCurrentRow(1)
    wait_idle(qtbot, session.runner)
    outputs.list.search.setFocus()
    qtbot.keyClicks(outputs.list.search, "walrus")
    qtbot.waitUntil(lambda: outputs.model.total is not None, timeout=5000)
    wait_idle(qtbot, session.runner)
    assert [r.id for r in outputs.model.rows()] == newest_first[:200]
    assert outputs.model.total == MatchCount(300, capped=True, ranked=False)
    status = outputs.list.status.text()
    assert status == "200 shown of 300+ matches, newest first (scroll for more)"
    outputs.list.table.scrollToBottom()  # the view asks for more, as when scrolling
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 400, timeout=5000)
    while outputs.model.canFetchMore(QModelIndex()):
        outputs.model.fetchMore(QModelIndex())
        wait_idle(qtbot, session.runner)
    assert [r.id for r in outputs.model.rows()] == newest_first

    outputs.list.search.clear()
    qtbot.keyClicks(outputs.list.search, "walrus 7*")  # selective: ranked, counted exactly
    qtbot.waitUntil(lambda: outputs.list.status.text() == "11 shown of 11 matches", timeout=5000)
    assert {r.excerpt for r in outputs.model.rows()} == {"walrus sighting 7"} | {
        f"walrus sighting {i}" for i in range(70, 80)
    }
    assert outputs.model.total == MatchCount(11, capped=False, ranked=True)


def test_the_counter_runs_once_after_the_first_page_and_stale_counts_are_dropped() -> None:
    calls: list[str] = []

    def loader(offset: int, limit: int, order_by: str, descending: bool) -> list[int]:
        calls.append(f"page {offset}")
        return list(range(offset, min(offset + limit, 25)))

    def counter() -> str:
        calls.append("count")
        return "25"

    model = LazyTableModel(COLUMNS, loader=loader, page_size=10)
    totals: list[object] = []
    model.total_changed.connect(totals.append)
    model.set_loader(loader, counter=counter)
    assert calls == ["page 0", "count"] and model.total == "25"
    model.fetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    assert calls == ["page 0", "count", "page 10", "page 20"], "counted once per listing"
    model._counted(model._generation - 1, "stale")  # a count for an older filter arrives late: ignored
    assert model.total == "25"
    model.sort(0, Qt.SortOrder.AscendingOrder)  # not sortable: nothing happens
    model.set_loader(loader)  # a listing without a counter
    assert model.total is None and totals[-1] is None


def test_a_failing_counter_leaves_the_rows_and_no_total() -> None:
    def loader(offset: int, limit: int, order_by: str, descending: bool) -> list[int]:
        return [1, 2]

    def counter() -> str:
        raise RuntimeError("no count today")

    model = LazyTableModel(COLUMNS, loader=loader, page_size=10)
    model.set_loader(loader, counter=counter)
    assert model.rowCount() == 2 and model.total is None


def test_the_excerpt_reads_only_the_head_of_an_output_and_says_the_same() -> None:
    import random

    from outputhub.desktop.services.library import _excerpt

    def whole(text: str, chars: int) -> str:  # what the list showed before: the whole text normalized
        flat = " ".join(text.split())
        return flat if len(flat) <= chars else flat[: chars - 1] + "…"

    rng = random.Random(4)
    for _ in range(3000):
        text = "".join(rng.choice("ab c\n\t  d") for _ in range(rng.randint(0, 1500)))
        for chars in (5, 60, 160):
            assert _excerpt(text, chars) == whole(text, chars)
    assert _excerpt(" " * 5000 + "late words") == "late words"
