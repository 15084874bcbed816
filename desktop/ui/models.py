"""Qt item models: lazily fetched tables with named columns and roles. Tested without windows.

A :class:`LazyTableModel` asks its *page loader* (a service call such as
``LibraryService.list_outputs``) for ``page_size`` rows at a time when the view scrolls near the end
(``canFetchMore`` / ``fetchMore``). With a :class:`~outputhub.desktop.jobs.JobRunner` the loader runs on a
worker thread and the rows are appended when they arrive, so the GUI thread never waits on the disk;
without one (tests, tiny tables) it runs inline. The text of every cell is worked out with its page, on the
worker (``Column.value`` must be a pure function of the row), so painting only looks strings up.

Reloading (new filter, new sort, data changed) starts a new *generation*: pages still in flight for an
older one are dropped. The rows on show stay until the new ones have arrived and are then replaced in one
step, so a view never flashes empty (nor hides and shows its scroll bar, each a relayout and a repaint)
in between. A new listing (another filter or order) replaces them with a model reset. The same listing
with new data (``refresh()``, or ``set_loader`` with a ``key`` equal to the one on show: after an edit or
a sync) re-reads as many rows as are loaded (up to ``refresh_limit``) and swaps them in place, without a
reset: the view keeps its scroll position, and the selection and current row follow their rows by ``id``.

A loader may come with a *counter* (``set_loader(loader, counter=...)``): how many rows the whole listing
has, e.g. a search's capped ``MatchCount``. It runs once per generation, after the first page has arrived
(so the rows come first), and its result is announced with ``total_changed``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Generic, TypeVar

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QModelRoleDataSpan,
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
Cells = tuple[str, ...]  # the displayed text of a row, one string per column


class Role(IntEnum):
    ROW = Qt.ItemDataRole.UserRole + 1  # the row object itself
    ID = Qt.ItemDataRole.UserRole + 2  # the row's ``id``
    SORT = Qt.ItemDataRole.UserRole + 3  # the raw value of the cell


@dataclass(frozen=True)
class Column(Generic[T]):
    key: str
    title: str
    value: Callable[[T], object]  # pure: it runs on a worker thread
    sort_key: str | None = None  # the replica column to order by; None: not sortable
    tooltip: Callable[[T], str] | None = None
    width: int | None = None  # initial width in pixels; None: the view's default (or stretch)


def display(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M")
    return str(value)


def cells_of(columns: Sequence[Column[Any]], rows: Sequence[Any]) -> list[Cells]:
    """The displayed text of ``rows`` (worked out on the worker thread for loaded pages)."""
    return [tuple(display(column.value(row)) for column in columns) for row in rows]


_DISPLAY = int(Qt.ItemDataRole.DisplayRole)
# a view asks for some ten roles per cell and paint; all but these are answered at once with None
_OTHER_ROLES = frozenset(
    int(role)
    for role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.TextAlignmentRole, Role.ROW, Role.ID, Role.SORT)
)


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
        refresh_limit: int = 2000,
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
        self._refresh_limit = max(refresh_limit, page_size)
        self._rows: list[T] = []
        self._cells: list[Cells] = []
        self._key: Hashable | None = None  # the listing asked for last (``set_loader(key=...)``)
        self._shown_key: Hashable | None = None  # the listing whose rows are on show
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

    def set_loader(
        self, loader: PageLoader, *, counter: Counter | None = None, key: Hashable | None = None
    ) -> None:
        """List with ``loader`` from now on. ``key`` names the listing (e.g. its filter): equal to the one
        on show, this is the same listing with new data, swapped in place as by ``refresh``; otherwise (or
        without a key) a new listing, shown from its first page with a model reset."""
        same = key is not None and key == self._shown_key and bool(self._rows)
        self._loader = loader
        self._counter = counter
        self._key = key
        self._start(keep_position=same)

    def set_rows(self, rows: Sequence[T]) -> None:
        """Replace every row (no lazy loading): for small tables computed in one go."""
        self._generation += 1
        self.beginResetModel()
        self._loader = None
        self._counter = None
        self._key = self._shown_key = None
        self._set_total(None)
        self._rows = list(rows)
        self._cells = cells_of(self._columns, self._rows)
        self._exhausted = True
        self._set_loading(False)
        self.endResetModel()

    def reload(self) -> None:
        """A new listing (new filter or sort): fetch its first page, which replaces the rows on arrival."""
        self._start(keep_position=False)

    def refresh(self) -> None:
        """The same listing with new data (an edit, a sync): re-read the loaded rows off the GUI thread and
        swap them in place, keeping the scroll position and the selection."""
        self._start(keep_position=bool(self._rows) and self._key == self._shown_key)

    def _start(self, *, keep_position: bool) -> None:
        self._generation += 1
        self._counting = False
        if self._loader is None:
            self.beginResetModel()
            self._rows, self._cells = [], []
            self._shown_key = None
            self._exhausted = True
            self._set_total(None)
            self._set_loading(False)
            self.endResetModel()
            return
        self._exhausted = False
        self._set_loading(True)  # (the rows on show stay until the new ones are here)
        self._set_total(None)
        limit = self._page_size
        if keep_position:  # as many rows as are loaded, in whole pages
            pages = -(-len(self._rows) // self._page_size)
            limit = min(pages * self._page_size, self._refresh_limit)
        self._request(0, limit, replace=True, keep_position=keep_position)

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
        self._request(len(self._rows), self._page_size, replace=False, keep_position=False)

    def _request(self, offset: int, limit: int, *, replace: bool, keep_position: bool) -> None:
        """Load ``limit`` rows from ``offset`` (and their text) on the runner; append them, or replace
        the rows with them (``replace``: the first page of a new generation)."""
        loader, columns = self._loader, self._columns
        assert loader is not None
        order_by, descending, generation, key = self._order_by, self._descending, self._generation, self._key
        self._set_loading(True)

        def load() -> tuple[list[Any], list[Cells]]:
            rows = list(loader(offset, limit, order_by, descending))
            return rows, cells_of(columns, rows)

        def arrived(page: tuple[list[Any], list[Cells]]) -> None:
            rows, cells = page
            if replace:
                self._replace(generation, rows, cells, limit=limit, key=key, keep_position=keep_position)
            else:
                self._append(generation, rows, cells)

        def failed(exc: Exception) -> None:
            self._failed(generation, exc, clear=replace)

        if self._runner is None:
            try:
                page = load()
            except Exception as exc:
                failed(exc)
            else:
                arrived(page)
        else:
            self._runner.submit("load page", load, on_done=arrived, on_error=failed)

    def _append(self, generation: int, page: Sequence[Any], cells: list[Cells] | None = None) -> None:
        if generation != self._generation:
            return
        self._set_loading(False)
        if len(page) < self._page_size:
            self._exhausted = True
        if page:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(page) - 1)
            self._rows.extend(page)
            self._cells.extend(cells if cells is not None else cells_of(self._columns, page))
            self.endInsertRows()
        self.page_loaded.emit(len(self._rows))
        self._count(generation)

    def _replace(
        self,
        generation: int,
        rows: list[T],
        cells: list[Cells],
        *,
        limit: int,
        key: Hashable | None,
        keep_position: bool,
    ) -> None:
        if generation != self._generation:
            return
        self._set_loading(False)
        self._exhausted = len(rows) < limit
        if keep_position and self._rows:
            self._swap(rows, cells)
        else:
            self.beginResetModel()
            self._rows, self._cells = rows, cells
            self.endResetModel()
        self._shown_key = key
        self.page_loaded.emit(len(self._rows))
        self._count(generation)

    def _swap(self, rows: list[T], cells: list[Cells]) -> None:
        """Replace the rows in place: rows inserted or removed at the end for the difference in count, and
        a layout change in between that moves the persistent indexes (the view's selection and current
        row) to where their rows are now, by id. Cost: O(rows loaded) in Python, one repaint."""
        old, new = len(self._rows), len(rows)
        if new > old:
            self.beginInsertRows(QModelIndex(), old, new - 1)
            self._rows.extend(rows[old:])
            self._cells.extend(cells[old:])
            self.endInsertRows()
        self.layoutAboutToBeChanged.emit()
        before = self._rows
        self._rows = list(rows) + before[new:]  # (the count changes only outside the layout change)
        self._cells = list(cells) + self._cells[new:]
        persistent = self.persistentIndexList()
        if persistent:
            where: dict[object, int] = {}
            for i, row in enumerate(rows):
                where.setdefault(getattr(row, "id", None), i)
            moved = []
            for index in persistent:
                at = index.row()
                ident = getattr(before[at], "id", None)  # rows without ids keep their place
                to = where.get(ident) if ident is not None else (at if at < new else None)
                moved.append(self.index(to, index.column()) if to is not None else QModelIndex())
            self.changePersistentIndexList(persistent, moved)
        self.layoutChanged.emit()
        if new < old:
            self.beginRemoveRows(QModelIndex(), new, old - 1)
            del self._rows[new:]
            del self._cells[new:]
            self.endRemoveRows()

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

    def _failed(self, generation: int, exc: Exception, *, clear: bool = False) -> None:
        if generation != self._generation:
            return
        if clear and self._rows:  # the listing asked for could not be read: show none of another one
            self.beginResetModel()
            self._rows, self._cells = [], []
            self._shown_key = None
            self.endResetModel()
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
        # called ~10 times per visible cell and paint: the common answers first, no work for the rest
        if role != _DISPLAY and role not in _OTHER_ROLES:
            return None
        row_number = index.row()
        if not index.isValid() or row_number >= len(self._rows):
            return None
        if role == _DISPLAY:
            return self._cells[row_number][index.column()]
        row = self._rows[row_number]
        column = self._columns[index.column()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return column.tooltip(row) if column.tooltip else self._cells[row_number][index.column()]
        if role == Role.ROW:
            return row
        if role == Role.ID:
            return getattr(row, "id", None)
        if role == Role.SORT:
            return column.value(row)
        if role == Qt.ItemDataRole.TextAlignmentRole and isinstance(column.value(row), int):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def multiData(self, index: AnyIndex, roleDataSpan: QModelRoleDataSpan) -> None:  # noqa: N802, N803
        """All the roles a delegate asks for to paint a cell (seven) in one call: one crossing into Python,
        and one take of the interpreter lock, per cell instead of one per role."""
        row_number = index.row()
        if not index.isValid() or row_number >= len(self._rows):
            return
        for i in range(len(roleDataSpan)):
            role_data = roleDataSpan[i]
            role = role_data.role()
            if role == _DISPLAY:
                role_data.setData(self._cells[row_number][index.column()])
            elif role in _OTHER_ROLES:
                role_data.setData(self.data(index, role))

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
            value = self._columns[column].value
            pairs = sorted(
                zip(self._rows, self._cells, strict=True),
                key=lambda pair: _sort_value(value(pair[0])),
                reverse=descending,
            )
            self._rows = [row for row, _ in pairs]
            self._cells = [cells for _, cells in pairs]
            self.endResetModel()
        else:
            self.reload()


def _sort_value(value: object) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value if not isinstance(value, str) else value.lower())
