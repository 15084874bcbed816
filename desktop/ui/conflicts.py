"""The Conflicts panel: each open conflict with base, mine and theirs side by side and a merge suggestion."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.services.conflicts import ConflictItem, ConflictService
from outputhub.desktop.ui.listpage import ListPane
from outputhub.desktop.ui.models import Column, LazyTableModel
from outputhub.desktop.ui.widgets import error_text

CONFLICT_COLUMNS: tuple[Column[ConflictItem], ...] = (
    Column("entity", "Kind", lambda c: c.entity.replace("_", " "), width=90),
    Column("record", "Record", lambda c: c.record_label),
    Column("field", "Field", lambda c: field_label(c), width=120),
    Column("created_at", "Since", lambda c: c.created_at, width=125),
)


def field_label(item: ConflictItem) -> str:
    return "deleted vs edited" if item.kind == "existence" else item.field


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=1)


def side_text(kind: str, value: Any) -> str:
    """A side of a conflict in words; a delete-vs-edit conflict's sides are the record's fate."""
    if kind == "existence":
        return "Deleted" if value else "Kept (edited)"
    return as_text(value)


def from_text(kind: str, text: str) -> Any:
    if kind == "text":
        return text
    if kind == "set":
        stripped = text.strip()
        if stripped.startswith("["):
            return frozenset(json.loads(stripped))
        return frozenset(part.strip() for part in stripped.replace("\n", ",").split(",") if part.strip())
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pane(title: str, name: str) -> tuple[QLabel, QPlainTextEdit]:
    label = QLabel(f"<b>{title}</b>")
    edit = QPlainTextEdit(objectName=name)
    edit.setFont(QFont("DejaVu Sans Mono", 10))
    edit.setReadOnly(True)
    return label, edit


class ConflictsPage(QWidget):
    changed = Signal(object)
    count_changed = Signal(int)

    def __init__(
        self, *, conflicts: ConflictService, runner: JobRunner, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._service = conflicts
        self._runner = runner
        self._current: ConflictItem | None = None
        self.model: LazyTableModel[ConflictItem] = LazyTableModel(CONFLICT_COLUMNS, parent=self)
        self.list = ListPane(
            self.model, placeholder="Filter conflicts…", stretch_column="record", parent=self
        )
        self.list.search.search_changed.connect(lambda _t: self.refresh())
        self.list.selected.connect(self.show_conflict)
        grid = QGridLayout()
        self.base_label, self.base = _pane("Base (before both edits)", "conflict_base")
        self.mine_label, self.mine = _pane("Mine (this computer)", "conflict_mine")
        self.theirs_label, self.theirs = _pane("Theirs (server)", "conflict_theirs")
        for column, (label, edit) in enumerate(
            ((self.base_label, self.base), (self.mine_label, self.mine), (self.theirs_label, self.theirs))
        ):
            grid.addWidget(label, 0, column)
            grid.addWidget(edit, 1, column)
        self.suggestion_note = QLabel(objectName="conflict_note")
        self.suggestion_note.setWordWrap(True)
        self.merged = QPlainTextEdit(objectName="conflict_merged")
        self.merged.setFont(QFont("DejaVu Sans Mono", 10))
        self.keep_mine = QPushButton("Keep &mine", objectName="keep_mine")
        self.keep_theirs = QPushButton("Keep &theirs", objectName="keep_theirs")
        self.save_merged = QPushButton("&Save merged", objectName="save_merged")
        self.message = QLabel(objectName="conflict_message")
        self.message.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.message, 1)
        for button in (self.keep_mine, self.keep_theirs, self.save_merged):
            button.setEnabled(False)
            buttons.addWidget(button)
        self.title = QLabel(objectName="conflict_title")
        self.title.setWordWrap(True)
        detail = QWidget()
        detail_layout = QVBoxLayout(detail)
        detail_layout.addWidget(self.title)
        detail_layout.addLayout(grid, 2)
        detail_layout.addWidget(QLabel("<b>Merged</b> (suggestion; edit it, then Save merged)"))
        detail_layout.addWidget(self.suggestion_note)
        detail_layout.addWidget(self.merged, 1)
        detail_layout.addLayout(buttons)
        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.addWidget(self.list)
        splitter.addWidget(detail)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.keep_mine.clicked.connect(lambda: self.resolve("mine"))
        self.keep_theirs.clicked.connect(lambda: self.resolve("theirs"))
        self.save_merged.clicked.connect(lambda: self.resolve("merged"))

    def refresh(self) -> None:
        needle = self.list.search.text().strip().lower()
        self._runner.submit(
            "load conflicts",
            self._service.open_conflicts,
            on_done=lambda items: self._fill(items, needle),
            on_error=lambda exc: self.message.setText(error_text(exc)),
        )

    def reload_all(self) -> None:
        self.refresh()

    def _fill(self, items: list[ConflictItem], needle: str) -> None:
        self.count_changed.emit(len(items))
        if needle:
            items = [c for c in items if needle in c.record_label.lower() or needle in c.field.lower()]
        self.model.set_rows(items)
        self.list.status.setText(f"{len(items)} open conflict(s)" if items else "No open conflicts")
        if self._current is not None and self.model.row_of(self._current.id) is None:
            self._show(None)
        if items and self._current is None:
            self.list.table.selectRow(0)

    def show_conflict(self, ident: str) -> None:
        row = self.model.row_of(ident)
        self._show(self.model.row_at(row) if row is not None else None)

    def _show(self, item: ConflictItem | None) -> None:
        self._current = item
        for button in (self.keep_mine, self.keep_theirs, self.save_merged):
            button.setEnabled(item is not None)
        if item is None:
            for edit in (self.base, self.mine, self.theirs, self.merged):
                edit.clear()
            self.title.clear()
            self.suggestion_note.clear()
            return
        existence = item.kind == "existence"
        what = "deleted here and edited elsewhere, or the other way round" if existence else None
        self.title.setText(
            f"<b>{item.entity.replace('_', ' ')} “{item.record_label}”</b>: "
            + (what if what else f"field <i>{item.field}</i>")
        )
        self.base.setPlainText("Existed" if existence else as_text(item.base))
        self.mine.setPlainText(side_text(item.kind, item.mine))
        self.theirs.setPlainText(side_text(item.kind, item.theirs))
        self.merged.setPlainText("" if existence else as_text(item.suggestion))
        self.merged.setReadOnly(existence)  # a record is kept or deleted: nothing to merge
        self.save_merged.setEnabled(not existence)
        self.suggestion_note.setText(item.suggestion_note)
        self.message.clear()

    def resolve(self, choice: str) -> None:
        item = self._current
        if item is None:
            return
        merged = from_text(item.kind, self.merged.toPlainText()) if choice == "merged" else None
        for button in (self.keep_mine, self.keep_theirs, self.save_merged):
            button.setEnabled(False)
        self._runner.submit(
            "resolve conflict",
            lambda: self._service.resolve(conflict_id=item.id, choice=choice, merged=merged),  # type: ignore[arg-type]
            on_done=lambda _r: self._resolved(item),
            on_error=self._failed,
        )

    def _resolved(self, item: ConflictItem) -> None:
        self.message.setText(f"Resolved “{item.record_label}” ({field_label(item)})")
        self._current = None
        self.changed.emit(frozenset({item.entity, "conflict"}))
        self.refresh()

    def _failed(self, exc: Exception) -> None:
        self.message.setText(error_text(exc))
        for button in (self.keep_mine, self.keep_theirs, self.save_merged):
            button.setEnabled(self._current is not None)
        if self._current is not None and self._current.kind == "existence":
            self.save_merged.setEnabled(False)
