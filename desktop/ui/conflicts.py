"""The Conflicts panel: each open conflict with base, mine and theirs side by side and a merge suggestion."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

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

from outputhub.common.errors import InvalidInputError
from outputhub.common.ids import canonical_id
from outputhub.common.names import name_key
from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.services.conflicts import (
    ConflictItem,
    ConflictService,
    TakenAlong,
    references_of,
    sides_heading,
)
from outputhub.desktop.ui.deleting import noun
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
    """The field in words: ``development stage`` for ``development_stage_id``, ``tags`` for ``tag_ids``."""
    if item.kind == "existence":
        return "deleted vs in use" if item.kept_in_use else "deleted vs edited"
    if item.kind == "rejected":
        return "refused by the server"
    return _field_words(item.field)


def _field_words(name: str) -> str:
    if name.endswith("_ids"):
        name = name.removesuffix("_ids") + "s"
    return name.removesuffix("_id").replace("_", " ")


def as_text(value: Any, labels: Mapping[str, str] | None = None) -> str:
    """A side or a suggestion as the panes show it. With ``labels`` (a field naming other records), each id
    as its name with the id after it, one per line."""
    if value is None:
        return ""
    if labels:
        if isinstance(value, str):
            return _named(value, labels)
        if isinstance(value, list | tuple | set | frozenset):
            return "\n".join(sorted((_named(str(v), labels) for v in value), key=str.lower))
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=1)


def _named(ident: str, labels: Mapping[str, str]) -> str:
    label = labels.get(ident, ident)
    return ident if label == ident else f"{label}  [{ident}]"


def side_text(item: ConflictItem, value: Any) -> str:
    """A side of a conflict in words; a delete-vs-edit conflict's sides are the record's fate."""
    if item.kind == "existence":
        if value:
            return "Deleted"
        return f"Kept: in use by {item.kept_in_use}" if item.kept_in_use else "Kept (edited)"
    if item.kind == "rejected" and isinstance(value, dict):
        if "reason" in value:  # the server's side: why it refused
            return f"Refused: {value['reason']}"
        values = value.get("values") or {}
        lines = [f"Your {value.get('kind') or 'edit'} of this {item.entity.replace('_', ' ')}"]
        for name, v in sorted(values.items()):
            shown = as_text(v, item.labels if name in references_of(item.entity) else None)
            lines.append(f"{_field_words(name)}: {shown}".replace("\n", "\n    "))
        return "\n".join(lines)
    return as_text(value, item.labels)


_ID_AT_END: Final = re.compile(r"\[([^\[\]]+)\]\s*$")


def from_text(item: ConflictItem, text: str) -> Any:
    """The value an edited merge stands for, of the field's own type: a text as typed; entries of a
    field naming other records by the names shown (or ids); a number for a number; any other single value
    as text (a title typed as 2024 stays the text "2024"). Raises ``InvalidInputError`` naming ``merged``."""
    if item.kind == "text":
        return text
    if item.is_reference:
        chosen = [_entry(line, item.labels) for line in text.splitlines() if line.strip()]
        if item.kind == "set":
            return frozenset(chosen)
        if len(chosen) > 1:
            raise InvalidInputError("merged", "this field names one entry: leave one line (or none)")
        return chosen[0] if chosen else None
    if item.kind == "set":
        stripped = text.strip()
        if stripped.startswith("["):
            return frozenset(json.loads(stripped))
        return frozenset(part.strip() for part in stripped.replace("\n", ",").split(",") if part.strip())
    sides = [v for v in (item.base, item.mine, item.theirs) if v is not None]
    if sides and all(isinstance(v, int) and not isinstance(v, bool) for v in sides):
        try:
            return int(text.strip())
        except ValueError:
            raise InvalidInputError("merged", "a whole number is expected here") from None
    return text.strip()


def _entry(line: str, labels: Mapping[str, str]) -> str:
    """The id a line of an edited merge names: ``Name  [id]`` as shown, a bare id, or a name shown."""
    line = line.strip()
    found = _ID_AT_END.search(line)
    ident = canonical_id(found.group(1) if found else line)
    if ident is not None:
        return ident
    key = name_key(line)  # as lookup names compare: "Café" typed as e + U+0301, or in upper case, names it
    named = [i for i, label in labels.items() if name_key(label) == key]
    if len(named) == 1:
        return named[0]
    raise InvalidInputError(
        "merged", f"“{line}” is not one of the entries shown: write a name as shown, or an id"
    )


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
        self._suggested = ""  # what the Merged box was filled with: anything else there is the user's typing
        self._keep_message = False
        self.model: LazyTableModel[ConflictItem] = LazyTableModel(CONFLICT_COLUMNS, parent=self)
        self.list = ListPane(
            self.model, placeholder="Filter conflicts…", stretch_column="record", parent=self
        )
        self.list.search.search_changed.connect(lambda _t: self.refresh())
        self.list.selected.connect(self.show_conflict)
        grid = QGridLayout()
        self.base_label, self.base = _pane("Base (before both edits)", "conflict_base")
        self.mine_label, self.mine = _pane(sides_heading("mine")[0], "conflict_mine")
        self.theirs_label, self.theirs = _pane(sides_heading("mine")[1], "conflict_theirs")
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
        # the list gets half: at 1280x800 a quarter showed one or two conflicts above the panes (QA)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
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

    def typed_merge(self) -> str | None:
        """What the user typed into Merged for the conflict shown, or None when it holds the suggestion."""
        if self._current is None or self.merged.isReadOnly():
            return None
        text = self.merged.toPlainText()
        return text if text != self._suggested else None

    def _fill(self, items: list[ConflictItem], needle: str) -> None:
        self.count_changed.emit(len(items))
        if needle:
            items = [c for c in items if needle in c.record_label.lower() or needle in c.field.lower()]
        previous, typed = self._current, self.typed_merge()
        self.model.set_rows(items)
        self.list.status.setText(f"{len(items)} open conflict(s)" if items else "No open conflicts")
        if previous is not None and self.model.row_of(previous.id) is None:
            # a side was edited again (here or elsewhere, brought by a sync): the conflict between the newer
            # writes took its place under a new id. A merge being typed stays, on that one (the panel reset
            # it to the new suggestion without a word; QA)
            where = (previous.entity, previous.record_id, previous.field)
            successor = next((c for c in items if (c.entity, c.record_id, c.field) == where), None)
            row = self.model.row_of(successor.id) if successor is not None else None
            if row is not None:
                self.list.table.selectRow(row)
            self._show(successor)  # after the selection (which may show it too): the typing goes on top
            if successor is not None and typed is not None:
                self.merged.setPlainText(typed)
                self.message.setText(
                    "This conflict changed: a side was edited again. Your merge is kept below; check it "
                    "against the sides as they are now."
                )
            elif typed is not None:
                self.message.setText(
                    "The conflict you were merging was closed by the sync (resolved or edited elsewhere); "
                    "your merge was not saved."
                )
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
            self._suggested = ""
            self.title.clear()
            self.suggestion_note.clear()
            return
        existence = item.kind == "existence"
        what = None
        if existence:
            what = (
                "deleted on one computer while records came to use it on another"
                if item.kept_in_use
                else "deleted here and edited elsewhere, or the other way round"
            )
        self.title.setText(
            f"<b>{item.entity.replace('_', ' ')} “{item.record_label}”</b>: "
            + (what if what else f"field <i>{field_label(item)}</i>")
        )
        self.base.setPlainText("Existed" if existence else as_text(item.base, item.labels))
        mine_heading, theirs_heading = sides_heading(item.written_here, item.kind)
        self.mine_label.setText(f"<b>{mine_heading}</b>")
        self.theirs_label.setText(f"<b>{theirs_heading}</b>")
        self.mine.setPlainText(side_text(item, item.mine))
        self.theirs.setPlainText(side_text(item, item.theirs))
        self.merged.setPlainText("" if existence else as_text(item.suggestion, item.labels))
        fixed = existence or item.kind == "rejected"  # kept or deleted, made again or dropped: no merge
        if item.kind == "rejected":
            self.merged.clear()
        self._suggested = self.merged.toPlainText()
        self.merged.setReadOnly(fixed)
        self.save_merged.setEnabled(not fixed)
        self.suggestion_note.setText(item.suggestion_note)
        if not self._keep_message:
            self.message.clear()
        self._keep_message = False

    def resolve(self, choice: str) -> None:
        item = self._current
        if item is None:
            return
        try:
            merged = from_text(item, self.merged.toPlainText()) if choice == "merged" else None
        except InvalidInputError as exc:
            self.message.setText(error_text(exc))
            return
        for button in (self.keep_mine, self.keep_theirs, self.save_merged):
            button.setEnabled(False)
        self._runner.submit(
            "resolve conflict",
            lambda: self._service.resolve(conflict_id=item.id, choice=choice, merged=merged),  # type: ignore[arg-type]
            on_done=lambda taken: self._resolved(item, taken),
            on_error=self._failed,
        )

    def _resolved(self, item: ConflictItem, taken: TakenAlong | None = None) -> None:
        said = f"Resolved “{item.record_label}” ({field_label(item)})"
        if taken is not None and taken.deleted:  # a kept delete took them along: say so (QA)
            said += f"; deleted with it: {len(taken.deleted)} {noun('output', len(taken.deleted))}"
        if taken is not None and taken.unlinked:
            said += f"; taken off {len(taken.unlinked)} record(s)"
        self.message.setText(said)
        self._keep_message = True  # the next conflict shown after the list's refresh keeps saying so
        self._current = None
        self.changed.emit(frozenset({item.entity, "conflict"}))
        self.refresh()

    def _failed(self, exc: Exception) -> None:
        self.message.setText(error_text(exc))
        for button in (self.keep_mine, self.keep_theirs, self.save_merged):
            button.setEnabled(self._current is not None)
        if self._current is not None and self._current.kind in ("existence", "rejected"):
            self.save_merged.setEnabled(False)
