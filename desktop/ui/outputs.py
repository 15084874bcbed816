"""The Outputs page (list with a filter for every relation, search as you type) and the capture dialog."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.services.library import (
    Choice,
    Deletion,
    LibraryService,
    OutputDetail,
    OutputFilter,
    OutputRow,
    Taxonomy,
)
from outputhub.desktop.storage import LookupKind, OutputRecord
from outputhub.desktop.ui.deleting import Deleter, delete_controls
from outputhub.desktop.ui.listpage import ListPane
from outputhub.desktop.ui.models import Column, LazyTableModel
from outputhub.desktop.ui.widgets import CheckList, IdCombo, error_text

OUTPUT_COLUMNS: tuple[Column[OutputRow], ...] = (
    Column("excerpt", "Output", lambda r: r.excerpt),
    Column("prompt", "Prompt", lambda r: r.prompt, width=115),
    Column("gpt_model", "Model", lambda r: r.gpt_model, width=65),
    Column("custom_gpt", "Custom GPT", lambda r: r.custom_gpt, width=100),
    Column("accuracy", "Accuracy", lambda r: r.accuracy, width=105),
    Column("knowledge_types", "Knowledge", lambda r: r.knowledge_types, width=75),
    Column("tags", "Tags", lambda r: r.tags, width=80),
    Column("updated_at", "Updated", lambda r: r.updated_at, "updated_at", width=118),
    Column("status", "Sync", lambda r: r.status, "local_status", width=60),
)
OUTPUT_FILTERS = (
    ("prompt_id", "Prompt"),
    ("custom_gpt_id", "Custom GPT"),
    ("gpt_model_id", "Model"),
    ("accuracy_level_id", "Accuracy"),
    ("knowledge_type_id", "Knowledge"),
    ("tag_id", "Tag"),
)


@dataclass(frozen=True, slots=True)
class Pickers:
    """Everything the capture dialog and the filters offer."""

    taxonomy: Taxonomy
    prompts: list[Choice]
    custom_gpts: list[Choice]


def load_pickers(library: LibraryService) -> Pickers:
    return Pickers(library.taxonomy(), library.prompt_choices(), library.custom_gpt_choices())


def _pairs(entries: object) -> list[tuple[str, str]]:
    return [(e.id, getattr(e, "name", None) or getattr(e, "label", "")) for e in entries]  # type: ignore[attr-defined]


class CaptureDialog(QDialog):
    """Paste an output and link it: prompt, custom GPT / GPT model, accuracy, knowledge types, tags.

    Opens with the clipboard text pasted and the prompt box focused (type a few letters, Enter); Ctrl+Enter
    saves from anywhere in the dialog.
    """

    captured = Signal(str)  # a new output's id
    edited = Signal(str)  # an edited output's id (only when something changed)

    def __init__(
        self,
        *,
        library: LibraryService,
        runner: JobRunner,
        pickers: Pickers,
        prompt_id: str | None = None,
        editing: OutputDetail | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit the output" if editing else "Capture an output")
        self.resize(720, 620)
        self._library = library
        self._runner = runner
        self.original: OutputRecord | None = editing.record if editing else None
        self.content = QPlainTextEdit(objectName="capture_content")
        self.content.setPlaceholderText("Paste the LLM output here")
        self.content.setFont(QFont("DejaVu Sans Mono", 10))
        clip = ""
        if editing is None:
            clip = QGuiApplication.clipboard().text() if QGuiApplication.clipboard() else ""
            if clip.strip():
                self.content.setPlainText(clip)
        t = pickers.taxonomy
        self.prompt = IdCombo(empty_label=None, editable=True)
        self.prompt.setObjectName("capture_prompt")
        self.prompt.set_choices(_pairs(pickers.prompts))
        self.prompt.setCurrentIndex(-1)
        if prompt_id:
            self.prompt.set_current_id(prompt_id)
        self.custom_gpt = IdCombo(empty_label="(none)", editable=True)
        self.custom_gpt.setObjectName("capture_custom_gpt")
        self.custom_gpt.set_choices(_pairs(pickers.custom_gpts))
        self.gpt_model = IdCombo(empty_label="(none)", editable=True)
        self.gpt_model.setObjectName("capture_gpt_model")
        self.gpt_model.set_choices(_pairs(t.of(LookupKind.GPT_MODELS)))
        self.accuracy = IdCombo(empty_label="(not rated)")
        self.accuracy.setObjectName("capture_accuracy")
        self.accuracy.set_choices(
            _pairs(sorted(t.of(LookupKind.ACCURACY_LEVELS), key=lambda e: (-(e.score or 0), e.position)))
        )
        self.knowledge_types = CheckList()
        self.knowledge_types.setObjectName("capture_knowledge_types")
        self.knowledge_types.set_choices(_pairs(t.of(LookupKind.KNOWLEDGE_TYPES)))
        self.tags = CheckList()
        self.tags.setObjectName("capture_tags")
        self.tags.set_choices(_pairs(sorted(t.of(LookupKind.TAGS), key=lambda e: e.name.lower())))
        self.notes = QLineEdit(objectName="capture_notes")
        self.message = QLabel(objectName="capture_message")
        self.message.setStyleSheet("color: #b00020")
        self.message.setWordWrap(True)

        form = QFormLayout()
        form.addRow("&Prompt", self.prompt)
        form.addRow("Custom &GPT", self.custom_gpt)
        form.addRow("GPT &model", self.gpt_model)
        form.addRow("&Accuracy", self.accuracy)
        form.addRow("&Knowledge types", self.knowledge_types)
        form.addRow("&Tags", self.tags)
        form.addRow("&Notes", self.notes)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setObjectName("capture_save")
        self.save_button.setToolTip("Save (Ctrl+Enter)")
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("&Output", buddy=self.content))
        layout.addWidget(self.content, 1)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.save)
        QShortcut(QKeySequence("Ctrl+Enter"), self, self.save)
        if editing is not None:
            self._fill(editing)
            self.content.setFocus()
        else:
            (self.content if not clip.strip() else self.prompt).setFocus()

    def _fill(self, editing: OutputDetail) -> None:
        """Show the output being edited; links to deleted entries stay shown (and kept) as they are."""
        r = editing.record
        self.content.setPlainText(r.content)
        self.prompt.ensure_choice(r.prompt_id, editing.prompt_title or "(deleted prompt)")
        self.prompt.set_current_id(r.prompt_id)
        self.custom_gpt.ensure_choice(r.custom_gpt_id, editing.custom_gpt_name or "(deleted custom GPT)")
        self.custom_gpt.set_current_id(r.custom_gpt_id)
        self.gpt_model.ensure_choice(r.gpt_model_id, "(deleted GPT model)")
        self.gpt_model.set_current_id(r.gpt_model_id)
        self.accuracy.ensure_choice(r.accuracy_level_id, "(deleted accuracy level)")
        self.accuracy.set_current_id(r.accuracy_level_id)
        self.knowledge_types.set_checked(r.knowledge_type_ids)
        self.tags.set_checked(r.tag_ids)
        self.notes.setText(r.notes)
        self.save_button.setToolTip("Save the changed fields (Ctrl+Enter)")

    def _checked(self, checks: CheckList, original: tuple[str, ...]) -> list[str]:
        """The ticked ids plus the original ones the list does not offer (deleted entries stay linked)."""
        return sorted(set(checks.checked_ids()) | (set(original) - checks.choice_ids()))

    def save(self) -> None:
        original = self.original
        values = {
            "content": self.content.toPlainText(),
            "prompt_id": self.prompt.current_id(),
            "custom_gpt_id": self.custom_gpt.current_id(),
            "gpt_model_id": self.gpt_model.current_id(),
            "accuracy_level_id": self.accuracy.current_id(),
            "knowledge_type_ids": self.knowledge_types.checked_ids(),
            "tag_ids": self.tags.checked_ids(),
            "notes": self.notes.text(),
        }
        self.save_button.setEnabled(False)
        library = self._library
        if original is None:
            self._runner.submit(
                "capture output",
                lambda: library.capture_output(**values),
                on_done=self._saved,
                on_error=self._failed,
            )
            return
        values["knowledge_type_ids"] = self._checked(self.knowledge_types, original.knowledge_type_ids)
        values["tag_ids"] = self._checked(self.tags, original.tag_ids)
        self._runner.submit(
            "edit output",
            lambda: library.update_output(id=original.id, original=original, **values),
            on_done=lambda changed: self._edited(original.id, changed),
            on_error=self._failed,
        )

    def _saved(self, ident: str) -> None:
        self.captured.emit(ident)
        self.accept()

    def _edited(self, ident: str, changed: bool) -> None:
        if changed:
            self.edited.emit(ident)
        self.accept()

    def _failed(self, exc: Exception) -> None:
        self.save_button.setEnabled(True)
        self.message.setText(error_text(exc))


class OutputsPage(QWidget):
    changed = Signal(object)

    def __init__(
        self, *, library: LibraryService, runner: JobRunner, deleter: Deleter, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._library = library
        self._runner = runner
        self._pickers: Pickers | None = None
        self.dialog: CaptureDialog | None = None
        self._wanted: str | None = None
        self.model: LazyTableModel[OutputRow] = LazyTableModel(OUTPUT_COLUMNS, runner=runner, parent=self)
        self.list = ListPane(
            self.model,
            placeholder="Search outputs…  Ctrl+F",
            filters=OUTPUT_FILTERS,
            stretch_column="excerpt",
            multi_select=True,
            parent=self,
        )
        self.list.search.search_changed.connect(lambda _t: self.refresh())
        self.list.filters_changed.connect(self.refresh)
        self.list.selected.connect(self.show_output)
        self.list.activated.connect(self.edit)
        self.capture_button = QPushButton("&Capture output…", objectName="capture_output")
        self.capture_button.setToolTip("Paste and link an LLM output (Ctrl+Shift+V)")
        self.capture_button.clicked.connect(self.capture)
        self.edit_button = QPushButton("&Edit…", objectName="edit_output")
        self.edit_button.setToolTip("Edit the selected output (Enter or double-click in the list)")
        self.edit_button.setEnabled(False)
        self.edit_button.clicked.connect(self.edit_selected)
        self.list.add_row_action("&Edit…", self.edit_selected, name="edit_output_action")
        self.delete_button = delete_controls(pane=self.list, deleter=deleter, entity="output", page=self)
        self.list.selection_changed.connect(
            lambda: self.edit_button.setEnabled(len(self.list.selected_ids()) == 1)
        )
        deleter.deleted.connect(self._deleted)
        self.detail = QPlainTextEdit(objectName="output_detail")
        self.detail.setReadOnly(True)
        self.detail.setFont(QFont("DejaVu Sans Mono", 10))
        self.detail_meta = QLabel(objectName="output_meta")
        self.detail_meta.setWordWrap(True)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        top = QHBoxLayout()
        top.addWidget(self.detail_meta, 1)
        top.addWidget(self.capture_button)
        actions = QHBoxLayout()
        actions.addStretch(1)
        actions.addWidget(self.edit_button)
        actions.addWidget(self.delete_button)
        right_layout.addLayout(top)
        right_layout.addLayout(actions)
        right_layout.addWidget(self.detail, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.list)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([1000, 240])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def current_filter(self) -> OutputFilter:
        return OutputFilter(
            query=self.list.search.text(), **{k: self.list.filter_value(k) for k, _ in OUTPUT_FILTERS}
        )

    def refresh(self) -> None:
        flt = self.current_filter()
        library = self._library
        self.model.set_loader(
            lambda offset, limit, order_by, desc: library.list_outputs(
                filter=flt, order_by=order_by, descending=desc, offset=offset, limit=limit
            ),
            counter=lambda: library.count_output_matches(filter=flt),  # "… of 1,000+ matches" while searching
            key=flt,  # the same filter again (data changed): refreshed in place, position and selection kept
        )

    def load_pickers(self) -> None:
        self._runner.submit("load pickers", lambda: load_pickers(self._library), on_done=self._fill_pickers)

    def _fill_pickers(self, pickers: Pickers) -> None:
        self._pickers = pickers
        t = pickers.taxonomy
        f = self.list.filters
        f["prompt_id"].set_choices(_pairs(pickers.prompts))
        f["custom_gpt_id"].set_choices(_pairs(pickers.custom_gpts))
        f["gpt_model_id"].set_choices(_pairs(t.of(LookupKind.GPT_MODELS)))
        f["accuracy_level_id"].set_choices(_pairs(t.of(LookupKind.ACCURACY_LEVELS)))
        f["knowledge_type_id"].set_choices(_pairs(t.of(LookupKind.KNOWLEDGE_TYPES)))
        f["tag_id"].set_choices(_pairs(sorted(t.of(LookupKind.TAGS), key=lambda e: e.name.lower())))

    def reload_all(self) -> None:
        self.load_pickers()
        self.refresh()

    def show_output(self, ident: str) -> None:
        self._wanted = ident
        self._runner.submit("open output", lambda: self._library.get_output(id=ident), on_done=self._show)

    def _deleted(self, deletion: Deletion) -> None:
        if self._wanted is not None and ("output", self._wanted) in deletion.records:
            self._wanted = None
            self.detail.clear()
            self.detail_meta.clear()

    def _show(self, record: OutputRecord) -> None:
        if record.id != self._wanted:
            return
        self.detail.setPlainText(record.content)
        row = next((r for r in self.model.rows() if r.id == record.id), None)
        if row is not None:
            bits = [
                f"<b>{row.prompt}</b>",
                row.gpt_model,
                row.custom_gpt,
                row.accuracy,
                row.knowledge_types,
                row.tags,
            ]
            self.detail_meta.setText(" · ".join(b for b in bits if b))

    def capture(self, *, prompt_id: str | None = None) -> None:
        """Open the capture dialog (once the pickers are loaded)."""
        if self._pickers is None:
            self._runner.submit(
                "load pickers",
                lambda: load_pickers(self._library),
                on_done=lambda p: (self._fill_pickers(p), self._open_dialog(prompt_id)),
            )
        else:
            self._open_dialog(prompt_id)

    def edit_selected(self) -> None:
        selected = self.list.selected_ids()
        if len(selected) == 1:
            self.edit(selected[0])

    def edit(self, ident: str) -> None:
        """Open the capture dialog filled with the output ``ident`` (Enter or double-click on its row)."""
        if self.dialog is not None and self.dialog.isVisible():
            return
        library = self._library

        def load() -> tuple[Pickers, OutputDetail]:
            return load_pickers(library), library.output_detail(id=ident)

        self._runner.submit(
            "open output for editing",
            load,
            on_done=lambda loaded: (self._fill_pickers(loaded[0]), self._open_dialog(None, loaded[1])),
            on_error=lambda exc: self.detail_meta.setText(error_text(exc)),
        )

    def _open_dialog(self, prompt_id: str | None, editing: OutputDetail | None = None) -> None:
        assert self._pickers is not None
        self.dialog = CaptureDialog(
            library=self._library,
            runner=self._runner,
            pickers=self._pickers,
            prompt_id=prompt_id,
            editing=editing,
            parent=self,
        )
        self.dialog.captured.connect(lambda _id: self.changed.emit(frozenset({"output"})))
        self.dialog.edited.connect(self._edited)
        self.dialog.open()

    def _edited(self, ident: str) -> None:
        self._wanted = ident  # the detail pane shows the saved version once the list has reloaded
        self.changed.emit(frozenset({"output"}))
        self.show_output(ident)
