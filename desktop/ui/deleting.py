"""Deleting prompts, outputs, custom GPTs and taxonomy entries, the same way on every list: confirm, delete,
undo.

The pages ask the one :class:`Deleter` (made by the composition root) to delete the selected rows. It asks the
library what that would do (a prompt takes its outputs with it), shows a confirmation that names the items,
deletes through the library service (``LocalLibrary`` tombstones, so the deletes sync) and keeps the last
deletion for **Undo** (the status-bar button or Ctrl+Z), which restores exactly what was deleted. A taxonomy
entry (tag, knowledge type, ...) is also taken off the prompts, outputs and custom GPTs that use it, as the
server does; Undo puts it back on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QAbstractButton, QMessageBox, QPushButton, QWidget

from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.services.library import Deletion, DeletionPlan, LibraryService
from outputhub.desktop.ui.listpage import ListPane
from outputhub.desktop.ui.widgets import error_text

NOUNS: Final = {
    "prompt": ("prompt", "prompts"),
    "output": ("output", "outputs"),
    "custom_gpt": ("custom GPT", "custom GPTs"),
    "tag": ("tag", "tags"),
    "knowledge_type": ("knowledge type", "knowledge types"),
    "accuracy_level": ("accuracy level", "accuracy levels"),
    "development_stage": ("development stage", "development stages"),
    "gpt_model": ("GPT model", "GPT models"),
    "agent_group": ("agent group", "agent groups"),
}
NAMED_AT_MOST: Final = 8  # a confirmation lists this many names, then "and N more"


def noun(entity: str, count: int) -> str:
    singular, plural = NOUNS.get(entity, (entity.replace("_", " "), entity.replace("_", " ") + "s"))
    return singular if count == 1 else plural


def describe(entity: str, labels: Sequence[str]) -> str:
    """``the prompt “Linux Terminal”`` or ``3 outputs``."""
    if len(labels) == 1:
        return f"the {noun(entity, 1)} “{labels[0]}”"
    return f"{len(labels):,} {noun(entity, len(labels))}"


def confirmation_text(plan: DeletionPlan) -> tuple[str, str]:
    """The question and the details of a delete confirmation."""
    question = f"Delete {describe(plan.entity, plan.labels)}?"
    details: list[str] = []
    if len(plan.labels) > 1:
        named = [f"• {label}" for label in plan.labels[:NAMED_AT_MOST]]
        if len(plan.labels) > NAMED_AT_MOST:
            named.append(f"… and {len(plan.labels) - NAMED_AT_MOST:,} more")
        details.append("\n".join(named))
    one = len(plan.labels) == 1
    if plan.outputs_deleted_too:
        n = plan.outputs_deleted_too
        outputs = f"{n:,} {noun('output', n)} {'is' if n == 1 else 'are'}"
        details.append(f"Its {outputs} deleted with it." if one else f"Their {outputs} deleted with them.")
    if plan.outputs_linked:
        n = plan.outputs_linked
        details.append(
            f"{n:,} {noun('output', n)} {'names' if n == 1 else 'name'} {'it' if one else 'them'} and "
            f"{'keeps' if n == 1 else 'keep'} showing the name."
        )
    if plan.used_by:
        users = counted(plan.used_by)
        details.append(
            f"{'It is' if one else 'They are'} used by {users}; "
            f"{'it is' if one else 'they are'} taken off {'it' if _total(plan.used_by) == 1 else 'them'}."
        )
    details.append("You can undo this right after (Undo in the status bar, or Ctrl+Z).")
    return question, "\n\n".join(details)


def _total(counts: Sequence[tuple[str, int]]) -> int:
    return sum(n for _, n in counts)


def counted(counts: Sequence[tuple[str, int]]) -> str:
    """``1 prompt, 3 outputs and 1 custom GPT``."""
    parts = [f"{n:,} {noun(entity, n)}" for entity, n in counts if n]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def deleted_text(deletion: Deletion) -> str:
    extra = len(deletion.records) - len(deletion.labels)
    more = f" and {extra:,} {noun('output', extra)}" if deletion.entity == "prompt" and extra else ""
    unlinked = deletion.unlinked_counts()
    if unlinked:
        more += f" (taken off {counted(unlinked)})"
    return f"Deleted {describe(deletion.entity, deletion.labels)}{more}."


class Deleter(QObject):
    """Confirm, delete and undo for the Prompts, Outputs, Custom GPTs and Taxonomy pages (one per window)."""

    deleted = Signal(object)  # Deletion
    restored = Signal(object)  # Deletion
    overridden = Signal(object)  # Deletion: a sync brought back what it deleted (an edit elsewhere won)
    changed = Signal(object)  # frozenset of the entity names written
    failed = Signal(str)  # what went wrong, in words

    def __init__(self, *, library: LibraryService, runner: JobRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._runner = runner
        self._busy = False
        self.confirmation: QMessageBox | None = None
        self.confirm_button: QAbstractButton | None = None
        self.last: Deletion | None = None  # what Undo restores

    @property
    def can_undo(self) -> bool:
        return self.last is not None and not self._busy

    def request(self, entity: str, ids: Sequence[str], *, parent: QWidget) -> bool:
        """Ask to delete ``ids`` (the selected rows); False when nothing is selected or a delete is on."""
        if not ids or self._busy or self.confirmation is not None:
            return False
        library, wanted = self._library, tuple(ids)
        self._busy = True
        self._runner.submit(
            "plan deletion",
            lambda: library.plan_deletion(entity=entity, ids=wanted),
            on_done=lambda plan: self._confirm(plan, parent),
            on_error=self._failed,
        )
        return True

    def _confirm(self, plan: DeletionPlan, parent: QWidget) -> None:
        question, details = confirmation_text(plan)
        box = QMessageBox(
            QMessageBox.Icon.Warning, f"Delete {noun(plan.entity, len(plan.ids))}", question, parent=parent
        )
        box.setObjectName("delete_confirmation")
        box.setInformativeText(details)
        confirm = box.addButton("&Delete", QMessageBox.ButtonRole.DestructiveRole)
        confirm.setObjectName("confirm_delete")
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(confirm)  # Delete, Enter: quick, and Undo is right there
        box.setEscapeButton(cancel)
        box.finished.connect(lambda _result: self._answered(box, plan))
        self.confirmation, self.confirm_button = box, confirm
        box.open()

    def _answered(self, box: QMessageBox, plan: DeletionPlan) -> None:
        confirmed = box.clickedButton() is self.confirm_button
        self.confirmation = self.confirm_button = None
        box.deleteLater()
        if not confirmed:
            self._busy = False
            return
        library = self._library
        self._runner.submit(
            "delete",
            lambda: library.delete_records(entity=plan.entity, ids=plan.ids),
            on_done=self._deleted,
            on_error=self._failed,
        )

    def _deleted(self, deletion: Deletion) -> None:
        self._busy = False
        self.last = deletion
        self.deleted.emit(deletion)
        self.changed.emit(deletion.entities)

    def undo(self) -> bool:
        """Restore what the last delete removed (False when there is nothing to undo)."""
        deletion = self.last
        if deletion is None or self._busy:
            return False
        self._busy = True
        self.last = None
        library = self._library
        self._runner.submit(
            "undo delete",
            lambda: library.restore_records(deletion=deletion),
            on_done=lambda _count: self._restored(deletion),
            on_error=lambda exc: self._undo_failed(deletion, exc),
        )
        return True

    def check_overridden(self) -> None:
        """After a sync: forget the Undo of a delete that an edit made elsewhere has overridden (the records
        are back, each with a delete conflict); its message and button told a story no longer true."""
        deletion = self.last
        if deletion is None or self._busy:
            return
        library = self._library

        def answered(back: bool) -> None:
            if back and self.last is deletion:
                self.last = None
                self.overridden.emit(deletion)

        self._runner.submit(
            "check the last delete", lambda: library.overridden(deletion=deletion), on_done=answered
        )

    def _restored(self, deletion: Deletion) -> None:
        self._busy = False
        self.restored.emit(deletion)
        self.changed.emit(deletion.entities)

    def _undo_failed(self, deletion: Deletion, exc: Exception) -> None:
        self.last = deletion  # still undoable once the cause is fixed
        self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self._busy = False
        self.failed.emit(error_text(exc))


def delete_controls(*, pane: ListPane, deleter: Deleter, entity: str, page: QWidget) -> QPushButton:
    """The same Delete on every list: a button, the table's context menu and the Delete key (while the
    table has the focus), each deleting the selected rows after the confirmation."""

    def request() -> None:
        deleter.request(entity, pane.selected_ids(), parent=page)

    pane.add_row_action(
        "De&lete…", request, name=f"delete_{entity}_action", shortcut=QKeySequence.StandardKey.Delete
    )
    button = QPushButton("De&lete…", objectName=f"delete_{entity}")
    button.setToolTip(f"Delete the selected {noun(entity, 2)} (Delete key in the list; Ctrl+Z undoes)")
    button.setEnabled(False)
    button.clicked.connect(request)
    pane.selection_changed.connect(lambda: button.setEnabled(bool(pane.selected_ids())))
    return button
