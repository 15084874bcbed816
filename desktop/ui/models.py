"""Qt item models: lazily fetched tables with named columns and roles. Tested without windows.

A :class:`LazyTableModel` asks its *page loader* (a service call such as
``LibraryService.list_outputs``) for ``page_size`` rows at a time when the view scrolls near the end
(``canFetchMore`` / ``fetchMore``). With a :class:`~outputhub.desktop.jobs.JobRunner` the loader runs on a
worker thread and the rows are appended when they arrive, so the GUI thread never waits on the disk;
without one (tests, tiny tables) it runs inline. Reloading (new filter, new sort, data changed) starts a new
*generation*: pages still in flight for an older one are dropped.

A loader may come with a *counter* (``set_loader(loader, counter=...)``): how many rows the whole listing
has, e.g. a search's capped ``MatchCount``. It runs once per generation, after the first page has arrived
(so the rows come first), and its result is announced with ``total_changed``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Generic, TypeVar

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)

from outputhub.desktop.jobs import JobRunner

T = TypeVar("T")
AnyIndex = QModelIndex | QPersistentModelIndex
PageLoader = Callable[[int, int, str, bool], Sequence[Any]]  # (offset, limit, order_by, descending)
Counter = Callable[[], object]  # the total of the listing (shown with str()), or None when unknown


class Role(IntEnum):
    ROW = Qt.ItemDataRole.UserRole + 1  # the row object itself
    ID = Qt.ItemDataRole.UserRole + 2  # the row's ``id``
    SORT = Qt.ItemDataRole.UserRole + 3  # the raw value of the cell


@dataclass(frozen=True)
class Column(Generic[T]):
    key: str
    title: str
    value: Callable[[T], object]
    sort_key: str | None = None  # the replica column to order by; None: not sortable
    tooltip: Callable[[T], str] | None = None
    width: int | None = None  # initial width in pixels; None: the view's default (or stretch)


def display(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M")
    return str(value)


class LazyTableModel(QAbstractTableModel, Generic[T]):
    loading_changed = Signal(bool)
    page_loaded = Signal(int)  # rows now held
    load_failed = Signal(object)
    total_changed = Signal(object)  # the counter's result (None: unknown or being counted)

    def __init__(
        self,
        columns: Sequence[Column[T]],
        *,
        loader: PageLoader | None = None,
        runner: JobRunner | None = None,
        page_size: int = 200,
        order_by: str = "updated_at",
        descending: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._columns = tuple(columns)
        self._loader = loader
        self._counter: Counter | None = None
        self._total: object = None
        self._counting = False
        self._runner = runner
        self._page_size = page_size
        self._rows: list[T] = []
        self._exhausted = loader is None
        self._loading = False
        self._generation = 0
        self._order_by = order_by
        self._descending = descending

    # --- configuration -------------------------------------------------------------------------------------

    @property
    def columns(self) -> tuple[Column[T], ...]:
        return self._columns

    def column_index(self, key: str) -> int:
        return next(i for i, c in enumerate(self._columns) if c.key == key)

    @property
    def loading(self) -> bool:
        return self._loading

    @property
    def order(self) -> tuple[str, bool]:
        return self._order_by, self._descending

    @property
    def total(self) -> object:
        """The counter's latest result for the current listing (None: no counter, or not counted yet)."""
        return self._total

    def set_loader(self, loader: PageLoader, *, counter: Counter | None = None) -> None:
        self._loader = loader
        self._counter = counter
        self.reload()

    def set_rows(self, rows: Sequence[T]) -> None:
        """Replace every row (no lazy loading): for small tables computed in one go."""
        self._generation += 1
        self.beginResetModel()
        self._loader = None
        self._counter = None
        self._set_total(None)
        self._rows = list(rows)
        self._exhausted = True
        self._set_loading(False)
        self.endResetModel()

    def reload(self) -> None:
        """Forget the rows and fetch the first page again (new filter, sort or data)."""
        self._generation += 1
        self.beginResetModel()
        self._rows = []
        self._exhausted = self._loader is None
        self._counting = False
        self._set_total(None)
        self._set_loading(False)
        self.endResetModel()
        if not self._exhausted:
            self.fetchMore(QModelIndex())

    def row_at(self, row: int) -> T:
        return self._rows[row]

    def rows(self) -> list[T]:
        return list(self._rows)

    def row_of(self, ident: str) -> int | None:
        for i, row in enumerate(self._rows):
            if getattr(row, "id", None) == ident:
                return i
        return None

    # --- lazy fetching -------------------------------------------------------------------------------------

    def canFetchMore(self, parent: AnyIndex = QModelIndex()) -> bool:  # noqa: N802
        return not parent.isValid() and not self._exhausted and not self._loading

    def fetchMore(self, parent: AnyIndex = QModelIndex()) -> None:  # noqa: N802
        if parent.isValid() or self._exhausted or self._loading or self._loader is None:
            return
        loader, offset, limit = self._loader, len(self._rows), self._page_size
        order_by, descending, generation = self._order_by, self._descending, self._generation
        self._set_loading(True)

        def load() -> Sequence[Any]:
            return loader(offset, limit, order_by, descending)

        if self._runner is None:
            try:
                page = load()
            except Exception as exc:
                self._failed(generation, exc)
            else:
                self._append(generation, page)
        else:
            self._runner.submit(
                "load page",
                load,
                on_done=lambda page: self._append(generation, page),
                on_error=lambda exc: self._failed(generation, exc),
            )

    def _append(self, generation: int, page: Sequence[Any]) -> None:
        if generation != self._generation:
            return
        self._set_loading(False)
        if len(page) < self._page_size:
            self._exhausted = True
        if page:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(page) - 1)
            self._rows.extend(page)
            self.endInsertRows()
        self.page_loaded.emit(len(self._rows))
        self._count(generation)

    def _count(self, generation: int) -> None:
        """Run the counter once per generation (after its first page), inline or on the runner."""
        counter = self._counter
        if counter is None or self._counting:
            return
        self._counting = True
        if self._runner is None:
            try:
                total = counter()
            except Exception as exc:
                self._failed_count(generation, exc)
            else:
                self._counted(generation, total)
        else:
            self._runner.submit(
                "count rows",
                counter,
                on_done=lambda total: self._counted(generation, total),
                on_error=lambda exc: self._failed_count(generation, exc),
            )

    def _counted(self, generation: int, total: object) -> None:
        if generation == self._generation:
            self._set_total(total)

    def _failed_count(self, generation: int, exc: Exception) -> None:
        if generation == self._generation:
            self._set_total(None)  # the rows are there; only the total is unknown

    def _set_total(self, total: object) -> None:
        if total is not self._total:
            self._total = total
            self.total_changed.emit(total)

    def _failed(self, generation: int, exc: Exception) -> None:
        if generation != self._generation:
            return
        self._exhausted = True
        self._set_loading(False)
        self.load_failed.emit(exc)

    def _set_loading(self, loading: bool) -> None:
        if loading != self._loading:
            self._loading = loading
            self.loading_changed.emit(loading)

    # --- QAbstractTableModel ----------------------------------------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._columns)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        row = self._rows[index.row()]
        column = self._columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return display(column.value(row))
        if role == Qt.ItemDataRole.ToolTipRole:
            return column.tooltip(row) if column.tooltip else display(column.value(row))
        if role == Role.ROW:
            return row
        if role == Role.ID:
            return getattr(row, "id", None)
        if role == Role.SORT:
            return column.value(row)
        if role == Qt.ItemDataRole.TextAlignmentRole and isinstance(column.value(row), int):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self._columns[section].title
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        key = self._columns[column].sort_key
        if key is None:
            return
        descending = order == Qt.SortOrder.DescendingOrder
        if (key, descending) == (self._order_by, self._descending):
            return
        self._order_by, self._descending = key, descending
        if self._loader is None:
            self.beginResetModel()
            self._rows.sort(key=lambda r: _sort_value(self._columns[column].value(r)), reverse=descending)
            self.endResetModel()
        else:
            self.reload()


def _sort_value(value: object) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value if not isinstance(value, str) else value.lower())
