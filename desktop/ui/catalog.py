"""The Custom GPTs page and the Taxonomy page (the six lookup tables)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from outputhub.common.limits import POSITION_MAX
from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.services.editing import LOOKUP_KINDS
from outputhub.desktop.services.library import (
    CustomGptFilter,
    CustomGptRow,
    Deletion,
    LibraryService,
    LookupRow,
    Taxonomy,
)
from outputhub.desktop.storage import CustomGptRecord, LookupKind
from outputhub.desktop.ui.deleting import Deleter, delete_controls
from outputhub.desktop.ui.listpage import ListPane
from outputhub.desktop.ui.models import Column, LazyTableModel
from outputhub.desktop.ui.widgets import (
    CheckList,
    IdCombo,
    LeaveGuard,
    deleted_elsewhere,
    error_text,
    page_shortcut,
)

CUSTOM_GPT_COLUMNS: tuple[Column[CustomGptRow], ...] = (
    Column("name", "Name", lambda r: r.name, "name"),
    Column("gpt_model", "GPT model", lambda r: r.gpt_model, width=100),
    Column("agent_groups", "Agent groups", lambda r: r.agent_groups, width=130),
    Column("updated_at", "Updated", lambda r: r.updated_at, "updated_at", width=125),
    Column("status", "Sync", lambda r: r.status, "local_status", width=65),
)
LOOKUP_COLUMNS: tuple[Column[LookupRow], ...] = (
    Column("name", "Name", lambda r: r.name, width=160),
    Column("description", "Description", lambda r: r.description),
    Column("position", "Position", lambda r: r.position, width=70),
    Column("status", "Sync", lambda r: r.status, width=70),
)
KIND_LABELS = {
    LookupKind.TAGS: "Tags",
    LookupKind.KNOWLEDGE_TYPES: "Knowledge types",
    LookupKind.ACCURACY_LEVELS: "Accuracy levels",
    LookupKind.DEVELOPMENT_STAGES: "Development stages",
    LookupKind.GPT_MODELS: "GPT models",
    LookupKind.AGENT_GROUPS: "Agent groups",
}


class CustomGptsPage(QWidget):
    changed = Signal(object)

    def __init__(
        self, *, library: LibraryService, runner: JobRunner, deleter: Deleter, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._library = library
        self._runner = runner
        self._current_id: str | None = None
        self._loaded: CustomGptRecord | None = None  # as shown when opened: saving writes what changed since
        self._wanted: str | None = None
        self.model: LazyTableModel[CustomGptRow] = LazyTableModel(
            CUSTOM_GPT_COLUMNS, runner=runner, order_by="name", descending=False, parent=self
        )
        self.list = ListPane(
            self.model,
            placeholder="Filter custom GPTs by name…",
            filters=(("agent_group_id", "Agent group"),),
            stretch_column="name",
            multi_select=True,
            parent=self,
        )
        self.list.search.search_changed.connect(lambda _t: self.refresh())
        self.list.filters_changed.connect(self.refresh)
        self.list.selected.connect(self._select)
        self.list.activated.connect(lambda _id: self.name.setFocus())
        self.delete_button = delete_controls(pane=self.list, deleter=deleter, entity="custom_gpt", page=self)
        self.leave_guard = LeaveGuard(self, unsaved=self._unsaved_label, save=self.save)
        deleter.deleted.connect(self._deleted)
        self.name = QLineEdit(objectName="gpt_name")
        self.gpt_model = IdCombo(empty_label="(none)")
        self.agent_groups = CheckList()
        self.description = QLineEdit(objectName="gpt_description")
        self.instructions = QPlainTextEdit(objectName="gpt_instructions")
        self.message = QLabel(objectName="gpt_message")
        save, new = QPushButton("&Save", objectName="gpt_save"), QPushButton("&New custom GPT")
        save.clicked.connect(self.save)
        new.clicked.connect(self.new)
        form = QFormLayout()
        form.addRow("&Name", self.name)
        form.addRow("GPT &model", self.gpt_model)
        form.addRow("&Agent groups", self.agent_groups)
        form.addRow("&Description", self.description)
        form.addRow("&Instructions", self.instructions)
        editor = QWidget()
        editor_layout = QVBoxLayout(editor)
        editor_layout.addLayout(form, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.message, 1)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(new)
        buttons.addWidget(save)
        editor_layout.addLayout(buttons)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.list)
        splitter.addWidget(editor)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        page_shortcut(self, QKeySequence.StandardKey.Save, self.save)

    def refresh(self) -> None:
        flt = CustomGptFilter(self.list.search.text(), self.list.filter_value("agent_group_id"))
        library = self._library
        self.model.set_loader(
            lambda offset, limit, order_by, desc: library.list_custom_gpts(
                filter=flt, order_by=order_by, descending=desc, offset=offset, limit=limit
            )
        )

    def reload_all(self) -> None:
        self._runner.submit("load taxonomy", self._library.taxonomy, on_done=self._fill_taxonomy)
        self.refresh()
        # the custom GPT on screen, if not being edited, shows what a sync changed meanwhile
        if self._loaded is not None and self._editor_values() == self._values_of(self._loaded):
            self.open(self._loaded.id)

    def _fill_taxonomy(self, taxonomy: Taxonomy) -> None:
        groups = [(e.id, e.name) for e in taxonomy.of(LookupKind.AGENT_GROUPS)]
        self.list.filters["agent_group_id"].set_choices(groups)
        self.agent_groups.set_choices(groups)
        self.gpt_model.set_choices([(e.id, e.name) for e in taxonomy.of(LookupKind.GPT_MODELS)])

    def new(self) -> None:
        def start() -> None:
            self._clear_editor()
            self.message.setText("New custom GPT")
            self.name.setFocus()

        self.leave_guard.leave(start, stay=lambda: None)

    def _unsaved_label(self) -> str | None:
        """The name of the custom GPT on screen when it has changes not saved yet, else None."""
        if self._loaded is not None:
            edited = self._editor_values() != self._values_of(self._loaded)
            return (self._loaded.name or "this custom GPT") if edited else None
        typed = self.name.text().strip() or self.instructions.toPlainText().strip()
        return (self.name.text().strip() or "the new custom GPT") if typed else None

    def _select(self, ident: str) -> None:
        self.leave_guard.choose(
            ident, current=self._current_id, open_record=self.open, reselect=self.list.select_id
        )

    def _clear_editor(self) -> None:
        self._current_id = None
        self._loaded = None
        for edit in (self.name, self.description):
            edit.clear()
        self.instructions.clear()
        self.gpt_model.set_current_id(None)
        self.agent_groups.set_checked(())
        self.message.clear()

    def _deleted(self, deletion: Deletion) -> None:
        if self._current_id is not None and ("custom_gpt", self._current_id) in deletion.records:
            self._clear_editor()  # the editor no longer shows a deleted custom GPT

    def open(self, ident: str) -> None:
        self._wanted = ident
        self._runner.submit(
            "open custom GPT", lambda: self._library.get_custom_gpt(id=ident), on_done=self._show
        )

    def _show(self, record: CustomGptRecord) -> None:
        if record.id != self._wanted:
            return
        if record.deleted:  # deleted elsewhere and synced
            self._clear_editor()
            self.message.setText(deleted_elsewhere(record.name))
            return
        self._current_id = record.id
        self._loaded = record
        self.name.setText(record.name)
        self.description.setText(record.description)
        self.instructions.setPlainText(record.instructions)
        self.gpt_model.set_current_id(record.gpt_model_id)
        self.agent_groups.set_checked(record.agent_group_ids)
        self.message.setText(record.local_status.value)

    def _editor_values(self) -> dict[str, Any]:
        return {
            "name": self.name.text(),
            "description": self.description.text(),
            "instructions": self.instructions.toPlainText(),
            "gpt_model_id": self.gpt_model.current_id(),
            "agent_group_ids": sorted(self.agent_groups.checked_ids()),
        }

    @staticmethod
    def _values_of(record: CustomGptRecord) -> dict[str, Any]:
        return {
            "name": record.name,
            "description": record.description,
            "instructions": record.instructions,
            "gpt_model_id": record.gpt_model_id,
            "agent_group_ids": sorted(record.agent_group_ids),
        }

    def save(self) -> None:
        # only what was changed here since it was shown is written (see PromptsPage.save)
        ident, original = self._current_id, self._loaded
        values = self._editor_values()
        self._runner.submit(
            "save custom GPT",
            lambda: self._library.save_custom_gpt(id=ident, original=original, **values),
            on_done=self._saved,
            on_error=self._save_failed,
        )

    def _save_failed(self, exc: Exception) -> None:
        self.message.setText(error_text(exc))
        self.leave_guard.save_failed()

    def _saved(self, ident: str) -> None:
        self._current_id = ident
        self.message.setText("Saved")
        self.changed.emit(frozenset({"custom_gpt"}))
        if not self.leave_guard.saved():  # else on to the one the user chose meanwhile
            self.open(ident)  # what was stored: the edit merged with what a sync brought meanwhile


class TaxonomyPage(QWidget):
    """Tags, knowledge types, accuracy levels, development stages, GPT models and agent groups."""

    changed = Signal(object)

    def __init__(
        self, *, library: LibraryService, runner: JobRunner, deleter: Deleter, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._library = library
        self._runner = runner
        self._deleter = deleter
        self._current_id: str | None = None
        self._loaded: LookupRow | None = None  # as shown when opened: saving writes what changed since
        self.kind = QComboBox(objectName="taxonomy_kind")
        for kind, label in KIND_LABELS.items():
            self.kind.addItem(label, kind)
        self.kind.currentIndexChanged.connect(lambda _i: (self.new(), self.refresh()))
        self.model: LazyTableModel[LookupRow] = LazyTableModel(LOOKUP_COLUMNS, runner=runner, parent=self)
        self.list = ListPane(
            self.model,
            placeholder="Filter by name…",
            stretch_column="description",
            multi_select=True,
            parent=self,
        )
        self.list.search.search_changed.connect(lambda _t: self.refresh())
        self.list.selected.connect(self._select)
        self.list.add_row_action(
            "De&lete…", self.delete, name="delete_lookup_action", shortcut=QKeySequence.StandardKey.Delete
        )
        deleter.deleted.connect(self._deleted)
        self.name = QLineEdit(objectName="lookup_name")
        self.description = QLineEdit(objectName="lookup_description")
        self.position = QSpinBox(objectName="lookup_position")
        self.position.setRange(0, POSITION_MAX)  # the server's limit: a larger one is shown as it is
        self.message = QLabel(objectName="lookup_message")
        self.leave_guard = LeaveGuard(self, unsaved=self._unsaved_label, save=self.save)
        self.save_button = save = QPushButton("&Save", objectName="lookup_save")
        self.new_button = new = QPushButton("&Add new", objectName="lookup_new")
        self.delete_button = delete = QPushButton("De&lete…", objectName="lookup_delete")
        delete.setToolTip("Delete the selected entries (Delete key in the list; Ctrl+Z undoes)")
        save.clicked.connect(self.save)
        new.clicked.connect(self.new)
        delete.clicked.connect(self.delete)
        delete.setEnabled(False)
        self.list.selection_changed.connect(lambda: delete.setEnabled(bool(self.list.selected_ids())))
        form = QFormLayout()
        form.addRow("&Name", self.name)
        form.addRow("D&escription", self.description)
        form.addRow("&Position", self.position)
        editor = QWidget()
        editor_layout = QVBoxLayout(editor)
        editor_layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.message, 1)
        buttons.addWidget(delete)
        buttons.addWidget(new)
        buttons.addWidget(save)
        editor_layout.addLayout(buttons)
        editor_layout.addStretch(1)
        top = QHBoxLayout()
        top.addWidget(QLabel("&Kind", buddy=self.kind))
        top.addWidget(self.kind)
        top.addStretch(1)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.list)
        splitter.addWidget(editor)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter)

    def current_kind(self) -> LookupKind:
        return LookupKind(self.kind.currentData())

    def refresh(self) -> None:
        kind, needle, library = self.current_kind(), self.list.search.text().strip().lower(), self._library

        def load(offset: int, limit: int, _order: str, _desc: bool) -> list[LookupRow]:
            rows = library.lookup_rows(kind=kind, offset=offset, limit=limit)
            return [r for r in rows if needle in r.name.lower()] if needle else rows

        self.model.set_loader(load)

    def reload_all(self) -> None:
        self.refresh()
        if self._loaded is not None:  # the entry on screen, if not being edited, shows what a sync changed
            self._reload_entry(self._loaded.id)

    def _editor_values(self) -> tuple[str, str, int]:
        return (self.name.text(), self.description.text(), self.position.value())

    def open(self, ident: str) -> None:
        row = self.model.row_of(ident)
        if row is None:
            return
        self._show_entry(self.model.row_at(row))

    def _unsaved_label(self) -> str | None:
        """The name of the entry on screen when it has changes not saved yet, else None."""
        shown = self._loaded
        if shown is not None:
            edited = self._editor_values() != (shown.name, shown.description, shown.position)
            return (shown.name or "this entry") if edited else None
        typed = self.name.text().strip() or self.description.text().strip()
        return (self.name.text().strip() or "the new entry") if typed else None

    def _select(self, ident: str) -> None:
        self.leave_guard.choose(
            ident, current=self._current_id, open_record=self.open, reselect=self.list.select_id
        )

    def _reload_entry(self, ident: str) -> None:
        """Show the entry ``ident`` as stored now, if the editor still shows it unedited."""
        shown = self._loaded
        if shown is None or shown.id != ident:
            return
        if self._editor_values() != (shown.name, shown.description, shown.position):
            return
        self._fetch_entry(self.current_kind(), ident, lambda entry: self._reloaded(entry, shown))

    def _fetch_entry(self, kind: LookupKind, ident: str, on_done: Callable[[LookupRow | None], None]) -> None:
        """The entry as stored now (None: gone or deleted), read on the job runner."""
        self._runner.submit(
            "reload entry", lambda: self._library.lookup_row(kind=kind, id=ident), on_done=on_done
        )

    def _reloaded(self, entry: LookupRow | None, shown: LookupRow) -> None:
        if self._loaded is not shown:  # another entry was opened meanwhile
            return
        if entry is None:  # deleted elsewhere and synced
            self._clear_editor()
            self.message.setText(deleted_elsewhere(shown.name))
            return
        self._show_entry(entry)

    def _show_entry(self, entry: LookupRow) -> None:
        self._current_id = entry.id
        self._loaded = entry
        self.name.setText(entry.name)
        self.description.setText(entry.description)
        self.position.setValue(entry.position)
        self.message.setText(entry.status)

    def new(self) -> None:
        self._clear_editor()
        self.name.setFocus()

    def _clear_editor(self) -> None:
        self._current_id = None
        self._loaded = None
        self.name.clear()
        self.description.clear()
        self.position.setValue(0)
        self.message.setText(f"New entry in {KIND_LABELS[self.current_kind()].lower()}")

    def save(self) -> None:
        kind, ident, original = self.current_kind(), self._current_id, self._loaded
        name, description, position = self._editor_values()
        self._runner.submit(
            "save lookup",
            lambda: self._library.save_lookup(
                kind=kind,
                id=ident,
                name=name,
                description=description,
                position=position,
                original=original if ident is not None else None,
            ),
            on_done=lambda saved: self._saved(saved, kind),
            on_error=self._save_failed,
        )

    def _save_failed(self, exc: Exception) -> None:
        self.message.setText(error_text(exc))
        self.leave_guard.save_failed()

    def current_entity(self) -> str:
        kind = self.current_kind()
        return next(e for e, k in LOOKUP_KINDS.items() if k is kind)

    def delete(self) -> bool:
        """Delete the selected entries (else the one in the editor) after the confirmation; Undo restores
        them and puts them back on the prompts, outputs and custom GPTs that used them."""
        ids = self.list.selected_ids() or ([self._current_id] if self._current_id else [])
        return self._deleter.request(self.current_entity(), ids, parent=self)

    def _deleted(self, deletion: Deletion) -> None:
        if self._current_id is not None and (deletion.entity, self._current_id) in deletion.records:
            self._clear_editor()  # the editor no longer shows a deleted entry

    def _saved(self, ident: str, kind: LookupKind) -> None:
        self._done("Saved", kind)
        if self.leave_guard.saved():  # on to the entry the user chose meanwhile
            return
        if kind is self.current_kind():  # what was stored: the edit merged with what a sync brought
            self._fetch_entry(kind, ident, self._saved_entry)

    def _saved_entry(self, entry: LookupRow | None) -> None:
        if entry is not None and (self._current_id in (None, entry.id)):
            self._show_entry(entry)
            self.message.setText("Saved")

    def _done(self, text: str, kind: LookupKind) -> None:
        self.message.setText(text)
        self.changed.emit(frozenset({next(e for e, k in LOOKUP_KINDS.items() if k is kind)}))
