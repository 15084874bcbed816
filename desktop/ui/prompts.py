"""The Prompts page: list (search, filters, sort) and the editor with version history and diffs."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QKeySequence
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.services.diff import SideBySideRow
from outputhub.desktop.services.library import (
    Deletion,
    LibraryService,
    PromptDetail,
    PromptFilter,
    PromptRow,
    Taxonomy,
)
from outputhub.desktop.storage import LookupKind
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

PROMPT_COLUMNS: tuple[Column[PromptRow], ...] = (
    Column("title", "Title", lambda r: r.title, "title", tooltip=lambda r: r.snippet or r.title),
    Column("stage", "Stage", lambda r: r.stage, width=110),
    Column("tags", "Tags", lambda r: r.tags, width=130),
    Column("updated_at", "Updated", lambda r: r.updated_at, "updated_at", width=125),
    Column("status", "Sync", lambda r: r.status, "local_status", width=70),
)
DIFF_COLORS = {"changed": "#fff4d6", "added": "#e3f6e3", "removed": "#fbe3e3", "same": None}


class PromptsPage(QWidget):
    changed = Signal(object)  # frozenset of entity names

    def __init__(
        self, *, library: LibraryService, runner: JobRunner, deleter: Deleter, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._library = library
        self._runner = runner
        self._current: PromptDetail | None = None
        self._wanted: str | None = None
        self.model: LazyTableModel[PromptRow] = LazyTableModel(PROMPT_COLUMNS, runner=runner, parent=self)
        self.list = ListPane(
            self.model,
            placeholder="Search prompts (title and text)…  Ctrl+F",
            filters=(("development_stage_id", "Stage"), ("tag_id", "Tag")),
            stretch_column="title",
            multi_select=True,
            parent=self,
        )
        self.list.search.search_changed.connect(lambda _t: self.refresh())
        self.list.filters_changed.connect(self.refresh)
        self.list.selected.connect(self._select)
        self.list.activated.connect(lambda _id: self.title.setFocus())
        self.delete_button = delete_controls(pane=self.list, deleter=deleter, entity="prompt", page=self)
        self.leave_guard = LeaveGuard(self, unsaved=self._unsaved_label, save=self.save)
        deleter.deleted.connect(self._deleted)

        # editor
        self.title = QLineEdit(objectName="prompt_title")
        self.stage = IdCombo(empty_label="(no stage)")
        self.stage.setObjectName("prompt_stage")
        self.tags = CheckList()
        self.tags.setObjectName("prompt_tags")
        self.description = QLineEdit(objectName="prompt_description")
        self.body = QPlainTextEdit(objectName="prompt_body")
        self.body.setFont(QFont("DejaVu Sans Mono", 10))
        self.body.setPlaceholderText("The prompt text…")
        self.save_button = QPushButton("&Save", objectName="save_prompt")
        self.save_button.setToolTip("Save (Ctrl+S)")
        self.new_button = QPushButton("&New prompt", objectName="new_prompt")
        self.new_button.setToolTip("New prompt (Ctrl+N)")
        self.message = QLabel(objectName="prompt_message")
        self.message.setWordWrap(True)
        form = QFormLayout()
        form.addRow("&Title", self.title)
        form.addRow("S&tage", self.stage)
        form.addRow("Ta&gs", self.tags)
        form.addRow("&Description", self.description)
        editor = QWidget()
        editor_layout = QVBoxLayout(editor)
        editor_layout.addLayout(form)
        editor_layout.addWidget(self.body, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.message, 1)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.new_button)
        buttons.addWidget(self.save_button)
        editor_layout.addLayout(buttons)

        # history
        self.from_version = IdCombo(empty_label=None)
        self.from_version.setObjectName("diff_from")
        self.to_version = IdCombo(empty_label=None)
        self.to_version.setObjectName("diff_to")
        self.diff = QTableWidget(0, 4, objectName="diff_table")
        self.diff.setHorizontalHeaderLabels(["#", "Older version", "#", "Newer version"])
        self.diff.verticalHeader().setVisible(False)
        self.diff.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        header = self.diff.horizontalHeader()
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        history = QWidget()
        history_layout = QVBoxLayout(history)
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Compare version"))
        pick.addWidget(self.from_version)
        pick.addWidget(QLabel("with"))
        pick.addWidget(self.to_version)
        pick.addStretch(1)
        history_layout.addLayout(pick)
        history_layout.addWidget(self.diff, 1)
        self.from_version.currentIndexChanged.connect(lambda _i: self.show_diff())
        self.to_version.currentIndexChanged.connect(lambda _i: self.show_diff())

        self.tabs = QTabWidget()
        self.tabs.addTab(editor, "&Edit")
        self.tabs.addTab(history, "&History")
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.list)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([620, 430])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self.save_button.clicked.connect(self.save)
        self.new_button.clicked.connect(self.new_prompt)
        page_shortcut(self, QKeySequence.StandardKey.Save, self.save)
        page_shortcut(self, QKeySequence("Ctrl+N"), self.new_prompt)
        self.new_prompt()

    # --- loading ----------------------------------------------------------------------------------------

    def current_filter(self) -> PromptFilter:
        return PromptFilter(
            query=self.list.search.text(),
            development_stage_id=self.list.filter_value("development_stage_id"),
            tag_id=self.list.filter_value("tag_id"),
        )

    def refresh(self) -> None:
        flt = self.current_filter()
        library = self._library
        self.model.set_loader(
            lambda offset, limit, order_by, desc: library.list_prompts(
                filter=flt, order_by=order_by, descending=desc, offset=offset, limit=limit
            ),
            counter=lambda: library.count_prompt_matches(filter=flt),  # "… of 1,000+ matches" while searching
            key=flt,  # the same filter again (data changed): refreshed in place, position and selection kept
        )

    def load_taxonomy(self) -> None:
        self._runner.submit("load taxonomy", self._library.taxonomy, on_done=self._fill_taxonomy)

    def _fill_taxonomy(self, taxonomy: Taxonomy) -> None:
        stages = [(e.id, e.name) for e in taxonomy.of(LookupKind.DEVELOPMENT_STAGES)]
        tags = [(e.id, e.name) for e in sorted(taxonomy.of(LookupKind.TAGS), key=lambda e: e.name.lower())]
        # a stage picked or a tag ticked and not saved yet stays as it is (it was set back to the loaded
        # prompt's at every sync or visit of the page, silently)
        edited = self._current is not None and self._editor_values() != self._loaded_values()
        self.list.filters["development_stage_id"].set_choices(stages)
        self.list.filters["tag_id"].set_choices(tags)
        self.stage.set_choices(stages)
        self.tags.set_choices(tags)
        if self._current is not None and not edited:
            self.stage.set_current_id(self._current.prompt.development_stage_id)
            self.tags.set_checked(self._current.prompt.tag_ids)

    def reload_all(self) -> None:
        self.load_taxonomy()
        self.refresh()
        # the prompt on screen, if not being edited, shows what a sync or another page changed meanwhile
        if self._current is not None and self._editor_values() == self._loaded_values():
            self.open_prompt(self._current.prompt.id)

    # --- editing ------------------------------------------------------------------------------------------

    def new_prompt(self) -> None:
        def start() -> None:
            self._clear_editor()
            self.title.setFocus()

        self.leave_guard.leave(start, stay=lambda: None)

    def _unsaved_label(self) -> str | None:
        """The title of the prompt on screen when it has changes not saved yet, else None."""
        if self._current is not None:
            edited = self._editor_values() != self._loaded_values()
            return (self._current.prompt.title or "this prompt") if edited else None
        title = self.title.text().strip()
        typed = title or self.body.toPlainText().strip() or self.description.text().strip()
        return (title or "the new prompt") if typed else None

    def _select(self, ident: str) -> None:
        current = self._current.prompt.id if self._current is not None else None
        self.leave_guard.choose(
            ident, current=current, open_record=self.open_prompt, reselect=self.list.select_id
        )

    def _clear_editor(self) -> None:
        self._current = None
        self.title.clear()
        self.description.clear()
        self.body.clear()
        self.stage.set_current_id(None)
        self.tags.set_checked(())
        self.from_version.set_choices([], keep=False)
        self.to_version.set_choices([], keep=False)
        self.diff.setRowCount(0)
        self.message.setText("New prompt")
        self.tabs.setCurrentIndex(0)

    def open_prompt(self, ident: str) -> None:
        self._wanted = ident  # the last one asked for wins, whatever order the answers come in
        self._runner.submit(
            "open prompt",
            lambda: self._library.prompt_detail(id=ident),
            on_done=self._show_prompt,
            on_error=lambda exc: self.message.setText(error_text(exc)),
        )

    def _show_prompt(self, detail: PromptDetail) -> None:
        if detail.prompt.id != self._wanted:
            return
        if detail.prompt.deleted:  # deleted elsewhere and synced: not shown as if it were still there
            self._clear_editor()
            self.message.setText(deleted_elsewhere(detail.prompt.title))
            return
        self._current = detail
        p = detail.prompt
        self.title.setText(p.title)
        self.description.setText(p.description)
        self.body.setPlainText(p.body)
        self.stage.set_current_id(p.development_stage_id)
        self.tags.set_checked(p.tag_ids)
        self.message.setText(f"Version {p.version} · {p.local_status.value}")
        choices = [(v.id, f"v{v.version} · {v.title}") for v in detail.versions]
        self.from_version.set_choices(choices, keep=False)
        self.to_version.set_choices(choices, keep=False)
        if len(choices) >= 2:
            self.from_version.setCurrentIndex(len(choices) - 2)
        self.to_version.setCurrentIndex(len(choices) - 1)
        self.show_diff()

    def _editor_values(self) -> dict[str, object]:
        return {
            "title": self.title.text(),
            "body": self.body.toPlainText(),
            "description": self.description.text(),
            "development_stage_id": self.stage.current_id(),
            "tag_ids": sorted(self.tags.checked_ids()),
        }

    def _loaded_values(self) -> dict[str, object]:
        """The prompt as the editor showed it when loaded, with the stage and tags it could show: before
        the taxonomy is in, neither its stage nor its tags are among the choices."""
        assert self._current is not None
        p = self._current.prompt
        stage = p.development_stage_id
        return {
            "title": p.title,
            "body": p.body,
            "description": p.description,
            "development_stage_id": stage if stage is not None and self.stage.findData(stage) >= 0 else None,
            "tag_ids": sorted(set(p.tag_ids) & self.tags.choice_ids()),
        }

    def save(self) -> None:
        # only what was changed here since the prompt was shown is written: a field a sync changed meanwhile
        # keeps the synced value instead of being set back to the one on screen
        original = self._current.prompt if self._current else None
        ident = original.id if original else None
        values = self._editor_values()
        self.save_button.setEnabled(False)
        self.message.setText("Saving…")
        self._runner.submit(
            "save prompt",
            lambda: self._library.save_prompt(id=ident, original=original, **values),  # type: ignore[arg-type]
            on_done=self._saved,
            on_error=self._save_failed,
        )

    def _saved(self, ident: str) -> None:
        self._wanted = ident
        self.save_button.setEnabled(True)
        self.message.setText("Saved")
        self.changed.emit(frozenset({"prompt"}))
        if not self.leave_guard.saved():  # else on to the prompt the user chose meanwhile
            self.open_prompt(ident)

    def _deleted(self, deletion: Deletion) -> None:
        if self._current is not None and ("prompt", self._current.prompt.id) in deletion.records:
            self._clear_editor()  # the editor no longer shows a deleted prompt

    def _save_failed(self, exc: Exception) -> None:
        self.save_button.setEnabled(True)
        self.message.setText(error_text(exc))
        self.leave_guard.save_failed()

    # --- history ----------------------------------------------------------------------------------------

    def show_diff(self) -> None:
        if self._current is None:
            return
        versions = {v.id: v for v in self._current.versions}
        old, new = (
            versions.get(self.from_version.current_id() or ""),
            versions.get(self.to_version.current_id() or ""),
        )
        if old is None or new is None:
            self.diff.setRowCount(0)
            return
        self._fill_diff(self._library.diff_versions(old=old, new=new))

    def _fill_diff(self, rows: list[SideBySideRow]) -> None:
        self.diff.setRowCount(len(rows))
        for i, row in enumerate(rows):
            color = DIFF_COLORS[row.kind]
            cells = (row.left_no or "", row.left, row.right_no or "", row.right)
            for j, value in enumerate(cells):
                item = QTableWidgetItem(str(value))
                if color and (j in (1, 3)):
                    item.setBackground(QBrush(QColor(color)))
                self.diff.setItem(i, j, item)
