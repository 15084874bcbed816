"""Item models without windows: lazy paging, roles, sorting, stale pages, and the real service as loader."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from PySide6.QtCore import QModelIndex, Qt

from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.services.editing import make_editor
from outputhub.desktop.services.library import LibraryService, OutputFilter
from outputhub.desktop.storage import OutputRecord, Replica
from outputhub.desktop.ui.models import Column, LazyTableModel, Role
from outputhub.desktop.ui.outputs import OUTPUT_COLUMNS
from tests.qt.support import seed


@dataclass(frozen=True)
class Row:
    id: str
    name: str
    size: int


COLUMNS = (
    Column("name", "Name", lambda r: r.name, "name"),
    Column("size", "Size", lambda r: r.size, "size"),
    Column("shout", "Shout", lambda r: r.name.upper()),
)
DATA = [Row(f"id{i:03d}", f"row {i:03d}", i) for i in range(450)]


def loader_over(data: list[Row], calls: list[tuple[int, int, str, bool]]):
    def load(offset: int, limit: int, order_by: str, descending: bool) -> list[Row]:
        calls.append((offset, limit, order_by, descending))
        ordered = sorted(data, key=lambda r: getattr(r, order_by), reverse=descending)
        return ordered[offset : offset + limit]

    return load


def test_pages_are_fetched_only_when_asked_and_stop_at_the_end() -> None:
    calls: list[tuple[int, int, str, bool]] = []
    model = LazyTableModel(COLUMNS, loader=loader_over(DATA, calls), page_size=200, order_by="name")
    model.reload()
    assert model.rowCount() == 200 and calls == [(0, 200, "name", True)]
    assert model.canFetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    assert model.rowCount() == 450
    assert not model.canFetchMore(QModelIndex()), "a short page means the end"
    model.fetchMore(QModelIndex())
    assert len(calls) == 3


def test_named_columns_and_roles() -> None:
    model = LazyTableModel(COLUMNS, page_size=10)
    model.set_rows(DATA[:3])
    assert model.columnCount() == 3 and model.rowCount() == 3
    assert [model.headerData(i, Qt.Orientation.Horizontal) for i in range(3)] == ["Name", "Size", "Shout"]
    index = model.index(1, model.column_index("shout"))
    assert index.data() == "ROW 001"
    assert index.data(Role.ID) == "id001"
    assert index.data(Role.ROW) == DATA[1]
    assert model.index(2, 1).data(Role.SORT) == 2
    assert model.index(2, 1).data(Qt.ItemDataRole.TextAlignmentRole) is not None  # numbers align right
    assert model.row_of("id002") == 2 and model.row_of("nope") is None


def test_sorting_a_sortable_column_reloads_in_that_order_and_others_are_ignored() -> None:
    calls: list[tuple[int, int, str, bool]] = []
    model = LazyTableModel(COLUMNS, loader=loader_over(DATA, calls), page_size=100, order_by="name")
    model.reload()
    model.sort(1, Qt.SortOrder.AscendingOrder)
    assert calls[-1] == (0, 100, "size", False)
    assert model.index(0, 1).data() == "0"
    before = len(calls)
    model.sort(2, Qt.SortOrder.AscendingOrder)  # "Shout" has no sort key
    assert len(calls) == before


def test_pages_of_an_old_generation_are_dropped(qtbot) -> None:
    runner = JobRunner(max_threads=1)
    slow_calls: list[tuple[int, int, str, bool]] = []
    model = LazyTableModel(
        COLUMNS, loader=loader_over(DATA, slow_calls), runner=runner, page_size=50, order_by="size"
    )
    with qtbot.waitSignal(model.page_loaded, timeout=5000):
        model.reload()
    with qtbot.waitSignal(model.page_loaded, timeout=5000):
        model.set_loader(loader_over(DATA[:5], []))  # a new filter
    assert model.rowCount() == 5
    # a page requested for the previous filter arrives after a reload: ignored
    model._append(model._generation - 1, DATA[100:150])
    assert model.rowCount() == 5
    assert runner.wait_for_done(5000)


def test_loader_errors_end_paging_and_are_reported() -> None:
    def broken(offset: int, limit: int, order_by: str, descending: bool) -> list[Row]:
        raise RuntimeError("disk on fire")

    model = LazyTableModel(COLUMNS, loader=broken)
    seen: list[object] = []
    model.load_failed.connect(seen.append)
    model.reload()
    assert len(seen) == 1 and "disk on fire" in str(seen[0])
    assert model.rowCount() == 0 and not model.canFetchMore(QModelIndex())


def test_output_model_over_the_real_replica_pages_filters_and_sorts(replica: Replica) -> None:
    ids = seed(replica, outputs=0)
    t0 = datetime.now(UTC) + timedelta(days=1)  # after the seeded output
    replica.bulk_insert_outputs(
        OutputRecord(
            id=f"00000000-0000-4000-8000-{i:012d}",
            org_id="local",
            prompt_id=ids["prompt"] if i % 3 else ids["other_prompt"],
            content=f"bulk output {i}",
            accuracy_level_id=ids["accurate"] if i % 2 else None,
            tag_ids=(ids["tag_sql"],) if i % 5 == 0 else (),
            created_at=t0,
            updated_at=datetime.fromtimestamp(t0.timestamp() + i, UTC),
        )
        for i in range(1000)
    )
    library = LibraryService(replica=replica, editor=make_editor(replica))

    def loader_for(flt: OutputFilter):
        return lambda offset, limit, order_by, desc: library.list_outputs(
            filter=flt, order_by=order_by, descending=desc, offset=offset, limit=limit
        )

    model = LazyTableModel(OUTPUT_COLUMNS, loader=loader_for(OutputFilter()), page_size=200)
    model.reload()
    assert model.rowCount() == 200
    excerpt = model.column_index("excerpt")
    assert model.index(0, excerpt).data() == "bulk output 999", "newest first"
    assert model.index(0, model.column_index("prompt")).data() == "SQL tutor"  # 999 % 3 == 0
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
    assert model.rowCount() == 1001  # and the seeded one

    model.set_loader(loader_for(OutputFilter(prompt_id=ids["other_prompt"], tag_id=ids["tag_sql"])))
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
    expected = [i for i in range(1000) if i % 3 == 0 and i % 5 == 0]
    assert model.rowCount() == len(expected)
    assert {r.tags for r in model.rows()} == {"sql"}

    model.set_loader(loader_for(OutputFilter(accuracy_level_id=ids["accurate"])))
    model.sort(model.column_index("updated_at"), Qt.SortOrder.AscendingOrder)
    assert model.index(0, excerpt).data() == "bulk output 1"
    assert model.index(0, model.column_index("accuracy")).data() == "Accurate"

    model.set_loader(loader_for(OutputFilter(query="output 77*")))
    assert {r.excerpt for r in model.rows()} >= {"bulk output 77", "bulk output 770", "bulk output 779"}
    assert not model.canFetchMore(QModelIndex())
