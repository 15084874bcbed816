"""The GUI thread never waits on the replica, and does no more than it must, when lists refresh and the sync
reports progress (issue 4): a refresh after a sync reads off the GUI thread while the event loop keeps
ticking, keeps the old rows on show until the new ones are in and swaps them in place (no reset: scroll
position and selection kept), and a stream of progress updates neither restyles the status bar nor
repaints it more than ~10 times a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer

from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.jobs.sync_controller import SyncStatus
from outputhub.desktop.storage import OutputRecord, Replica
from outputhub.desktop.ui.main_window import SYNC_PROGRESS_MS
from outputhub.desktop.ui.models import Column, LazyTableModel, Role
from outputhub.desktop.ui.widgets import IdCombo
from tests.qt.conftest import wait_idle
from tests.qt.support import seed


@dataclass(frozen=True)
class Row:
    id: str
    name: str


COLUMNS = (Column("name", "Name", lambda r: r.name, "name"),)


class GatedLoader:
    """A page loader over ``data`` (newest first) that holds each call until ``gate`` is set, and records
    the thread and arguments of every call."""

    def __init__(self, data: list[Row]) -> None:
        self.data = data
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[tuple[int, int]] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, offset: int, limit: int, order_by: str, descending: bool) -> list[Row]:
        self.calls.append((offset, limit))
        self.threads.append(threading.current_thread())
        assert self.gate.wait(10)
        return self.data[offset : offset + limit]


class Probe:
    """A 10 ms timer on the GUI thread; ``worst`` is the longest it was served late."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self._last - 0.010)
        self._last = now

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()


@pytest.fixture
def runner() -> Iterator[JobRunner]:
    jobs = JobRunner(max_threads=2)
    yield jobs
    assert jobs.wait_for_done(10_000)


def rows(n: int, prefix: str = "r") -> list[Row]:
    return [Row(f"{prefix}{i:05d}", f"{prefix} {i:05d}") for i in range(n)]


def test_a_refresh_reads_off_the_gui_thread_and_swaps_the_rows_in_place(qtbot, runner) -> None:
    data = rows(450)
    loader = GatedLoader(data)
    model = LazyTableModel(COLUMNS, loader=loader, runner=runner, page_size=100)
    with qtbot.waitSignal(model.page_loaded, timeout=5000):
        model.set_loader(loader, key="all")
    for _ in range(2):  # the view scrolled down: three pages loaded
        with qtbot.waitSignal(model.page_loaded, timeout=5000):
            model.fetchMore(QModelIndex())
    assert model.rowCount() == 300
    selection = QItemSelectionModel(model)
    chosen = model.index(120, 0)
    selection.setCurrentIndex(chosen, QItemSelectionModel.SelectionFlag.ClearAndSelect)
    resets: list[int] = []
    shown_counts: list[int] = []
    model.modelReset.connect(lambda: resets.append(model.rowCount()))
    model.rowsRemoved.connect(lambda *_: shown_counts.append(model.rowCount()))

    loader.data = rows(7, prefix="new") + data  # a sync brought 7 newer rows
    loader.gate.clear()  # the replica is slow: the read is held
    probe = Probe()
    probe.start()
    model.set_loader(loader, key="all")  # the same listing (data changed)
    qtbot.wait(800)
    assert model.rowCount() == 300 and model.index(0, 0).data() == "r 00000", "old rows stay on show"
    assert model.loading and not model.canFetchMore(QModelIndex())
    loader.gate.set()
    qtbot.waitUntil(lambda: not model.loading, timeout=5000)
    probe.timer.stop()

    assert loader.calls[-1] == (0, 300), "as many rows as were loaded, in one read"
    assert loader.threads[-1] is not threading.main_thread()
    assert probe.worst < 0.4, f"the event loop stalled {probe.worst * 1000:.0f} ms during the read"
    assert model.rowCount() == 300 and model.index(0, 0).data() == "new 00000"
    assert resets == [] and shown_counts == [], "swapped in place: no reset, never fewer rows"
    current = selection.currentIndex()
    assert current.data(Role.ID) == "r00120" and current.row() == 127, "the current row follows its id"
    assert selection.isRowSelected(127, QModelIndex())
    assert model.canFetchMore(QModelIndex())


def test_a_new_listing_replaces_the_rows_in_one_reset_when_they_arrive(qtbot, runner) -> None:
    loader = GatedLoader(rows(250))
    model = LazyTableModel(COLUMNS, loader=loader, runner=runner, page_size=100)
    with qtbot.waitSignal(model.page_loaded, timeout=5000):
        model.set_loader(loader, key="all")
    counts: list[int] = []
    model.modelReset.connect(lambda: counts.append(model.rowCount()))
    model.rowsRemoved.connect(lambda *_: counts.append(-1))
    other = GatedLoader(rows(30, prefix="x"))
    other.gate.clear()
    model.set_loader(other, key="x only")
    qtbot.wait(100)
    assert model.rowCount() == 100 and counts == [], "no empty table while the new listing loads"
    other.gate.set()
    qtbot.waitUntil(lambda: not model.loading, timeout=5000)
    assert counts == [30] and other.calls == [(0, 100)]
    assert model.index(0, 0).data() == "x 00000" and not model.canFetchMore(QModelIndex())


def test_a_failed_refresh_shows_no_stale_rows(qtbot, runner) -> None:
    model = LazyTableModel(COLUMNS, loader=GatedLoader(rows(5)), runner=runner, page_size=100)
    with qtbot.waitSignal(model.page_loaded, timeout=5000):
        model.reload()

    def broken(offset: int, limit: int, order_by: str, descending: bool) -> list[Row]:
        raise RuntimeError("disk on fire")

    with qtbot.waitSignal(model.load_failed, timeout=5000):
        model.set_loader(broken)
    assert model.rowCount() == 0 and not model.loading


def many_outputs(
    replica: Replica, *, count: int, start: datetime, prefix: str, block: int, prompt_id: str
) -> None:
    replica.bulk_insert_outputs(
        OutputRecord(
            id=f"00000000-0000-4000-8000-{block:03d}{i:09d}",
            org_id="local",
            prompt_id=prompt_id,
            content=f"{prefix} output {i}",
            created_at=start,
            updated_at=start + timedelta(seconds=i),
        )
        for i in range(count)
    )


def test_the_list_refresh_after_a_sync_keeps_the_gui_thread_free(qtbot, replica, session) -> None:
    """A sync has written 5 newer outputs into a replica of 20,000; the refresh it sets off reads on a
    job-runner thread (made slow here: 0.8 s per read) while the event loop keeps serving a 10 ms timer,
    then shows the new rows with the selected output still selected."""
    prompt = seed(replica, outputs=0)["prompt"]
    t0 = datetime.now(UTC) + timedelta(days=1)  # after the seeded output
    many_outputs(replica, count=20_000, start=t0, prefix="old", block=1, prompt_id=prompt)
    window = session.window
    window.navigation.setCurrentRow(1)
    outputs = window.pages.outputs
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 200, timeout=10_000)
    wait_idle(qtbot, session.runner)
    outputs.list.table.selectRow(3)
    picked = outputs.model.index(3, 0).data(Role.ID)
    resets: list[int] = []
    outputs.model.modelReset.connect(lambda: resets.append(1))

    many_outputs(replica, count=5, start=t0 + timedelta(days=1), prefix="new", block=2, prompt_id=prompt)
    library = session.library
    real_list_outputs = library.list_outputs
    threads: list[threading.Thread] = []

    def slow_list_outputs(**kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        time.sleep(0.8)  # a busy disk
        return real_list_outputs(**kwargs)

    library.list_outputs = slow_list_outputs  # type: ignore[method-assign]
    probe = Probe()
    probe.start()
    session.controller.synced.emit(None)  # the sync finished: the window refreshes the visible list
    qtbot.waitUntil(lambda: outputs.model.index(0, 0).data() == "new output 4", timeout=10_000)
    wait_idle(qtbot, session.runner)
    probe.timer.stop()
    del library.list_outputs

    assert threads and all(t is not threading.main_thread() for t in threads)
    assert probe.worst < 0.4, f"the event loop stalled {probe.worst * 1000:.0f} ms during the refresh"
    assert outputs.model.rowCount() == 200 and resets == []
    selected = outputs.list.selected_ids()
    assert selected == [picked] and outputs.list.table.currentIndex().row() == 8


def test_sync_progress_neither_restyles_nor_floods_the_status_bar(qtbot, session, monkeypatch) -> None:
    wait_idle(qtbot, session.runner)  # the start-up's own status updates are in
    window = session.window
    label = window.sync_label
    styled: list[str] = []
    texts: list[str] = []
    real_style, real_text = label.setStyleSheet, label.setText
    monkeypatch.setattr(label, "setStyleSheet", lambda s: (styled.append(s), real_style(s)))
    monkeypatch.setattr(label, "setText", lambda t: (texts.append(t), real_text(t)))
    emit = session.controller.status_changed.emit

    emit(SyncStatus("syncing", "Syncing…"))
    assert len(styled) == 1 and texts == ["Syncing…"], "a new state shows at once"
    for done in range(1, 201):  # pages arriving much faster than 10 a second
        emit(SyncStatus("syncing", f"Syncing: pulled {done:,} of 200", done, 200))
    assert len(styled) == 1, "progress never restyles the label"
    assert len(texts) == 1, "progress within the throttle's window waits"
    qtbot.waitUntil(lambda: label.text() == "Syncing: pulled 200 of 200", timeout=2000)
    assert window.progress.value() == 200 and len(texts) == 2, "then only the newest shows"

    qtbot.wait(SYNC_PROGRESS_MS * 2)
    emit(SyncStatus("up_to_date", "Up to date at 12:00"))  # the same colour: no restyle, shown at once
    assert label.text() == "Up to date at 12:00" and len(styled) == 1 and window.progress.isHidden()
    emit(SyncStatus("error", "Sync failed at 12:01: boom"))
    assert label.text().endswith("boom") and len(styled) == 2
    emit(SyncStatus("error", "Sync failed at 12:02: boom"))
    assert len(styled) == 2


def test_the_same_choices_again_leave_a_combo_alone(qtbot) -> None:
    combo = IdCombo(empty_label="Tag: any")
    qtbot.addWidget(combo)
    combo.set_choices([("a", "alpha"), ("b", "beta")])
    combo.set_current_id("b")
    removed: list[int] = []
    combo.model().rowsRemoved.connect(lambda *_: removed.append(1))
    combo.set_choices([("a", "alpha"), ("b", "beta")])
    assert removed == [] and combo.current_id() == "b"
    combo.set_choices([("a", "alpha"), ("c", "gamma")])
    assert removed and combo.current_id() is None and combo.count() == 3
