"""Small reusable widgets: id pickers, checkable lists, the debounced search box, error text."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QCompleter,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QWidget,
)

from outputhub.common.errors import InvalidInputError, OutputHubError
from outputhub.sync.client import SyncError


def error_text(exc: BaseException) -> str:
    """What to tell the user about a failure, in words."""
    if isinstance(exc, InvalidInputError) and len(exc.errors) == 1:
        return exc.errors[0].message  # the field name prefix is for API clients, not a person
    if isinstance(exc, OutputHubError):
        return exc.detail
    if isinstance(exc, SyncError | ValueError):  # the sync client's errors and LocalEditError are in words
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def deleted_elsewhere(label: str) -> str:
    """What an editor says when a sync deleted the record it showed."""
    return f"“{label}” was deleted (on another device, or by a sync)"


class IdCombo(QComboBox):
    """A combo box of (id, label) entries with an optional empty first entry (``None``)."""

    def __init__(
        self, *, empty_label: str | None = "(any)", editable: bool = False, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self._empty_label = empty_label
        self._choices: list[tuple[str, str]] | None = None  # as last set (None: the items differ from them)
        self.setEditable(editable)
        if editable:
            self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
            self.lineEdit().setPlaceholderText(empty_label or "")
            completer = QCompleter(self.model(), self)
            completer.setFilterMode(Qt.MatchFlag.MatchContains)
            completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
            completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
            self.setCompleter(completer)
        self.set_choices([])

    def set_choices(self, choices: Iterable[tuple[str, str]], *, keep: bool = True) -> None:
        """Offer ``choices``, keeping the current entry (``keep``). The same choices again (each refresh of
        a page) change nothing: refilling re-measures every entry for the box's width on the GUI thread."""
        listed = list(choices)
        if keep and listed == self._choices:
            return
        self._choices = listed
        current = self.current_id() if keep and self.count() else None
        self.blockSignals(True)
        self.clear()
        if self._empty_label is not None:
            # an editable box shows the empty entry as a placeholder, so typing starts from nothing
            self.addItem("" if self.isEditable() else self._empty_label, None)
        for ident, label in listed:
            self.addItem(label, ident)
        self.blockSignals(False)
        self.set_current_id(current)

    def current_id(self) -> str | None:
        """The chosen entry's id. In an editable box, the entry shown when its text is still the entry's
        (two entries may share a label: looking the text up would pick the first, and an output edited
        under the second "Linux Terminal" moved to the first); else the entry whose label was typed, in
        the same case first."""
        if self.isEditable():
            text = self.currentText()
            index = self.currentIndex()
            if index >= 0 and self.itemText(index) == text:
                return self.itemData(index)  # type: ignore[no-any-return]
            index = self.findText(text, Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchCaseSensitive)
            if index < 0:
                index = self.findText(text, Qt.MatchFlag.MatchFixedString)
            if index < 0:
                return None
            return self.itemData(index)  # type: ignore[no-any-return]
        return self.currentData()  # type: ignore[no-any-return]

    def set_current_id(self, ident: str | None) -> None:
        index = self.findData(ident) if ident is not None else (0 if self._empty_label is not None else -1)
        self.setCurrentIndex(max(index, 0) if self.count() else -1)

    def ensure_choice(self, ident: str | None, label: str) -> None:
        """Offer ``ident`` even when it is not among the choices (a deleted entry an old record links to),
        so showing that record does not silently pick another entry."""
        if ident is not None and self.findData(ident) < 0:
            self.addItem(label, ident)
            self._choices = None


class CheckList(QListWidget):
    """A list of checkable (id, label) entries."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMaximumHeight(110)

    def set_choices(self, choices: Iterable[tuple[str, str]], *, checked: Sequence[str] = ()) -> None:
        keep = set(checked) or set(self.checked_ids())
        self.clear()
        for ident, label in choices:
            item = QListWidgetItem(label, self)
            item.setData(Qt.ItemDataRole.UserRole, ident)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if ident in keep else Qt.CheckState.Unchecked)

    def set_checked(self, ids: Iterable[str]) -> None:
        wanted = set(ids)
        for i in range(self.count()):
            item = self.item(i)
            on = item.data(Qt.ItemDataRole.UserRole) in wanted
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def choice_ids(self) -> set[str]:
        return {self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())}

    def checked_ids(self) -> list[str]:
        return [
            self.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.count())
            if self.item(i).checkState() == Qt.CheckState.Checked
        ]

    def check_label(self, label: str) -> None:
        for i in range(self.count()):
            if self.item(i).text() == label:
                self.item(i).setCheckState(Qt.CheckState.Checked)


class SearchBox(QLineEdit):
    """Emits ``search_changed`` once typing pauses for ``delay_ms`` (search as you type, debounced)."""

    search_changed = Signal(str)

    def __init__(self, *, placeholder: str, delay_ms: int = 200, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText(placeholder)
        self.setClearButtonEnabled(True)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(lambda: self.search_changed.emit(self.text()))
        self.textChanged.connect(lambda _text: self._timer.start())


def page_shortcut(
    page: QWidget, key: QKeySequence | QKeySequence.StandardKey | str, slot: Callable[[], object]
) -> QShortcut:
    """A shortcut active while the focus is inside ``page`` (pages share keys such as Ctrl+S)."""
    shortcut = QShortcut(QKeySequence(key), page)
    shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    shortcut.activated.connect(slot)
    return shortcut


class LeaveGuard:
    """Asks before an editor's unsaved changes are left for another record (a click in the list, New):
    **Save** (then go on), **Discard** (go on) or **Cancel** (stay). The box is window-modal and answered
    asynchronously (``box``: the open one). Choosing another row in the list used to drop what was typed,
    without a word (QA)."""

    def __init__(
        self, parent: QWidget, *, unsaved: Callable[[], str | None], save: Callable[[], None]
    ) -> None:
        self._parent = parent
        self._unsaved = unsaved  # the label of the record with unsaved changes, None when there are none
        self._save = save
        self._pending: tuple[Callable[[], None], Callable[[], None]] | None = None  # after the save
        self.box: QMessageBox | None = None
        self.buttons: dict[str, QAbstractButton] = {}

    def leave(self, then: Callable[[], None], *, stay: Callable[[], None]) -> None:
        label = self._unsaved()
        if label is None:
            then()
            return
        if self.box is not None:  # already asking: this request stays where it is
            stay()
            return
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Unsaved changes",
            f"Save your changes to \u201c{label}\u201d before leaving it?",
            parent=self._parent,
        )
        box.setObjectName("unsaved_changes")
        save = box.addButton("&Save", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("&Discard changes", QMessageBox.ButtonRole.DestructiveRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(save)
        box.setEscapeButton(cancel)
        self.buttons = {"save": save, "discard": discard, "cancel": cancel}
        box.finished.connect(lambda _result: self._answered(box, then, stay))
        self.box = box
        box.open()

    def choose(
        self,
        ident: str,
        *,
        current: str | None,
        open_record: Callable[[str], None],
        reselect: Callable[[str], None],
    ) -> None:
        """A row ``ident`` chosen in the list while ``current`` is on screen: open it, once unsaved changes
        are saved or let go (Cancel selects ``current`` again)."""
        if ident == current and self._unsaved() is not None:
            return  # back on the record being edited (a Cancel): keep the typing
        self.leave(
            lambda: open_record(ident), stay=lambda: reselect(current) if current is not None else None
        )

    def _answered(self, box: QMessageBox, then: Callable[[], None], stay: Callable[[], None]) -> None:
        clicked = box.clickedButton()
        buttons, self.box, self.buttons = self.buttons, None, {}
        box.deleteLater()
        if clicked is buttons["save"]:
            self._pending = (then, stay)
            self._save()
        elif clicked is buttons["discard"]:
            then()
        else:
            stay()

    def saved(self) -> bool:
        """The page's save went through: go where the user was going (True), if a save was asked for here."""
        pending, self._pending = self._pending, None
        if pending is None:
            return False
        pending[0]()
        return True

    def save_failed(self) -> None:
        """The save failed (its message is on show): stay, the changes still in the editor."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1]()
