"""A searchable, filterable, sortable list backed by a :class:`LazyTableModel` (the left half of a page)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QEvent, QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from outputhub.desktop.ui.models import LazyTableModel, Role
from outputhub.desktop.ui.widgets import IdCombo, SearchBox, error_text


class ListPane(QWidget):
    """Search box + filter combos + table. ``selected`` carries the id of the current row, ``activated``
    the id of a row double-clicked or confirmed with Enter; ``selection_changed`` fires when the set of
    selected rows changes (``multi_select``: Shift/Ctrl-click select several)."""

    selected = Signal(str)
    activated = Signal(str)
    filters_changed = Signal()
    selection_changed = Signal()

    def __init__(
        self,
        model: LazyTableModel[Any],
        *,
        placeholder: str,
        filters: Sequence[tuple[str, str]] = (),
        stretch_column: str | None = None,
        multi_select: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.search = SearchBox(placeholder=placeholder, parent=self)
        self.search.setObjectName("search")
        self.filters: dict[str, IdCombo] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.search)
        if filters:
            row = QHBoxLayout()
            for key, label in filters:
                combo = IdCombo(empty_label=f"{label}: any", parent=self)
                combo.setObjectName(f"filter_{key}")
                combo.setToolTip(f"Show only rows with this {label.lower()}")
                combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
                combo.currentIndexChanged.connect(lambda _i: self.filters_changed.emit())
                self.filters[key] = combo
                row.addWidget(combo)
            row.addStretch(1)
            layout.addLayout(row)
        self.table = QTableView(self)
        self.table.setModel(model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(
            QAbstractItemView.SelectionMode.ExtendedSelection
            if multi_select
            else QAbstractItemView.SelectionMode.SingleSelection
        )
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.table.installEventFilter(self)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self._stretch = model.column_index(stretch_column) if stretch_column is not None else None
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        order_by, descending = model.order
        for i, column in enumerate(model.columns):
            if column.sort_key == order_by:  # before enabling sorting, which sorts by the indicator at once
                header.setSortIndicator(
                    i, Qt.SortOrder.DescendingOrder if descending else Qt.SortOrder.AscendingOrder
                )
        self.table.setSortingEnabled(True)
        self._layout_columns()
        model.modelReset.connect(self._layout_columns)
        model.modelReset.connect(self.table.scrollToTop)  # a new listing starts at its top
        layout.addWidget(self.table, 1)
        self.status = QLabel(self)
        self.status.setObjectName("list_status")
        layout.addWidget(self.status)
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)
        self.table.selectionModel().selectionChanged.connect(lambda _s, _d: self.selection_changed.emit())
        model.modelReset.connect(self.selection_changed.emit)
        model.layoutChanged.connect(lambda *_: self.selection_changed.emit())  # rows refreshed in place
        self.table.doubleClicked.connect(self._double_clicked)
        model.page_loaded.connect(self._show_count)
        model.total_changed.connect(lambda _total: model.loading or self._show_count(model.rowCount()))
        model.loading_changed.connect(lambda loading: loading and self.status.setText("Loading…"))
        model.load_failed.connect(lambda exc: self.status.setText(f"Could not load: {error_text(exc)}"))

    def _layout_columns(self) -> None:
        header = self.table.horizontalHeader()
        for i, column in enumerate(self.model.columns):
            if i == self._stretch:
                header.setSectionResizeMode(i, QHeaderView.ResizeMode.Stretch)
            else:
                header.setSectionResizeMode(i, QHeaderView.ResizeMode.Interactive)
                if column.width is not None:
                    header.resizeSection(i, column.width)

    def filter_value(self, key: str) -> str | None:
        return self.filters[key].current_id()

    def _show_count(self, rows: int) -> None:
        more = self.model.canFetchMore(QModelIndex())
        text = f"{rows:,} shown"
        total = self.model.total  # a search's capped MatchCount, when the page has a counter
        if total is not None:
            text += f" of {total} matches" + ("" if getattr(total, "ranked", True) else ", newest first")
            unindexed = getattr(total, "unindexed", 0)
            if unindexed:  # a large pull being indexed: the search cannot see those records yet
                text += f"; {unindexed:,} more still being indexed for search"
        self.status.setText(text + (" (scroll for more)" if more else ""))

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        ident = current.data(Role.ID) if current.isValid() else None
        if ident:
            self.selected.emit(ident)

    def _double_clicked(self, index: QModelIndex) -> None:
        ident = index.data(Role.ID)
        if ident:
            self.activated.emit(ident)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        """Enter / Return on the table opens the current row (like a double click)."""
        if (
            watched is self.table
            and event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        ):
            current = self.table.currentIndex()
            if current.isValid():
                self._double_clicked(current)
                return True
        return super().eventFilter(watched, event)

    def add_row_action(
        self,
        text: str,
        slot: Callable[[], object],
        *,
        name: str,
        shortcut: QKeySequence | QKeySequence.StandardKey | None = None,
    ) -> QAction:
        """An action on the selected rows: in the table's context menu and, with ``shortcut``, a key that
        works while the table has the focus (so Delete in a text box still deletes text)."""
        action = QAction(text, self.table)
        action.setObjectName(name)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        action.triggered.connect(lambda _checked=False: slot())
        self.table.addAction(action)
        return action

    def selected_ids(self) -> list[str]:
        """The ids of the selected rows, top to bottom."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        ids = (self.model.index(row, 0).data(Role.ID) for row in rows)
        return [ident for ident in ids if ident]

    def select_id(self, ident: str) -> None:
        row = self.model.row_of(ident)
        if row is None:
            return
        already = self.table.currentIndex().row() == row
        self.table.selectRow(row)
        if already:  # no currentRowChanged: open it anyway
            self.selected.emit(ident)
