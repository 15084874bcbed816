"""The main window: navigation, the pages, shortcuts and the truthful sync status bar."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QWidget,
)

from outputhub.desktop.jobs.sync_controller import SyncController, SyncStatus
from outputhub.desktop.services.library import Deletion
from outputhub.desktop.ui.analytics import AnalyticsPage
from outputhub.desktop.ui.catalog import CustomGptsPage, TaxonomyPage
from outputhub.desktop.ui.conflicts import ConflictsPage
from outputhub.desktop.ui.deleting import Deleter, deleted_text, describe
from outputhub.desktop.ui.outputs import OutputsPage
from outputhub.desktop.ui.prompts import PromptsPage
from outputhub.desktop.ui.settings import SettingsPage

STYLE = """
QListWidget#navigation {
    background: #263238; color: #eceff1; border: none; font-size: 11pt; padding-top: 8px;
}
QListWidget#navigation::item { padding: 9px 14px; }
QListWidget#navigation::item:selected { background: #37474f; color: white; border-left: 3px solid #4fc3f7; }
QTableView { gridline-color: #e0e0e0; selection-background-color: #bbdefb; selection-color: black; }
QHeaderView::section { background: #f5f5f5; padding: 4px; border: none; border-bottom: 1px solid #ddd; }
QStatusBar QLabel#sync_status { padding: 0 6px; }
"""


SYNC_PROGRESS_MS = 100  # the sync's progress shows at most this often (a state change at once)


class Page(Protocol):
    def reload_all(self) -> None: ...


@dataclass(frozen=True)
class Pages:
    prompts: PromptsPage
    outputs: OutputsPage
    custom_gpts: CustomGptsPage
    taxonomy: TaxonomyPage
    conflicts: ConflictsPage
    analytics: AnalyticsPage
    settings: SettingsPage


class MainWindow(QMainWindow):
    NAMES = ("Prompts", "Outputs", "Custom GPTs", "Taxonomy", "Conflicts", "Analytics", "Settings")

    def __init__(
        self, *, pages: Pages, sync: SyncController, deleter: Deleter, title: str = "Output Hub"
    ) -> None:
        super().__init__()
        self.setWindowTitle(title)
        self.resize(1280, 800)
        self.setStyleSheet(STYLE)
        self.pages = pages
        self.sync = sync
        self._pages: list[QWidget] = [
            pages.prompts,
            pages.outputs,
            pages.custom_gpts,
            pages.taxonomy,
            pages.conflicts,
            pages.analytics,
            pages.settings,
        ]
        self._stale = set(range(len(self._pages)))
        self.navigation = QListWidget(objectName="navigation")
        self.navigation.setFixedWidth(190)
        self.navigation.setIconSize(QSize(0, 0))
        self.stack = QStackedWidget()
        for i, (name, page) in enumerate(zip(self.NAMES, self._pages, strict=True)):
            item = QListWidgetItem(name, self.navigation)
            item.setToolTip(f"{name} (Ctrl+{i + 1})")
            self.stack.addWidget(page)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.navigation)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.navigation.currentRowChanged.connect(self.show_page)

        self.sync_label = QLabel(objectName="sync_status")
        self.progress = QProgressBar(objectName="sync_progress")
        self.progress.setMaximumWidth(220)
        self.progress.setMaximumHeight(14)
        self.progress.hide()
        self.conflict_label = QLabel(objectName="conflict_count")
        self.undo_label = QLabel(objectName="undo_status")
        self.undo_button = QPushButton("&Undo", objectName="undo_delete")
        self.undo_button.setToolTip("Restore what was just deleted (Ctrl+Z)")
        self.undo_button.setFlat(True)
        self.undo_button.hide()
        self.statusBar().addWidget(self.sync_label, 1)
        self.statusBar().addPermanentWidget(self.undo_label)
        self.statusBar().addPermanentWidget(self.undo_button)
        self.statusBar().addPermanentWidget(self.conflict_label)
        self.statusBar().addPermanentWidget(self.progress)
        self._sync_state = ""  # the state on show
        self._sync_next: SyncStatus | None = None  # a progress update waiting for the throttle
        self._sync_throttle = QTimer(self, singleShot=True, interval=SYNC_PROGRESS_MS)
        self._sync_throttle.timeout.connect(self._show_next_sync_status)
        sync.status_changed.connect(self.show_sync_status)
        sync.synced.connect(lambda _report: self.data_changed(frozenset({"*"})))
        sync.synced.connect(lambda _report: self.deleter.check_overridden())
        sync.stored.connect(lambda: self.data_changed(frozenset({"*"})))  # shown while indexed for search
        self.show_sync_status(sync.status)
        pages.conflicts.count_changed.connect(self._show_conflict_count)
        for page in (pages.prompts, pages.outputs, pages.custom_gpts, pages.taxonomy, pages.conflicts):
            page.changed.connect(self.data_changed)
        self.deleter = deleter
        deleter.changed.connect(self.data_changed)
        deleter.deleted.connect(self._show_deleted)
        deleter.restored.connect(self._show_restored)
        deleter.failed.connect(self._show_delete_failed)
        deleter.overridden.connect(self._show_overridden)
        self.undo_button.clicked.connect(self.undo)

        for i in range(len(self._pages)):
            self._global(f"Ctrl+{i + 1}", lambda i=i: self.navigation.setCurrentRow(i))
        self._global("Ctrl+F", self.focus_search)
        self._global("Ctrl+Shift+V", self.capture_output)
        self._global("F5", sync.sync_now)
        self._global("Ctrl+Q", self.close)
        # text boxes keep Ctrl+Z for their own typing (they take the key first); elsewhere it undoes a delete
        self._global(QKeySequence.StandardKey.Undo, self.undo)
        self.navigation.setCurrentRow(0)

    def _global(self, key: str | QKeySequence.StandardKey, slot: object) -> None:
        shortcut = QShortcut(QKeySequence(key), self)
        shortcut.setContext(Qt.ShortcutContext.ApplicationShortcut)
        shortcut.activated.connect(slot)  # type: ignore[arg-type]

    def show_page(self, index: int) -> None:
        if index < 0:
            return
        self.stack.setCurrentIndex(index)
        # Settings reads the login each time: a sync may have found it gone without changing any record
        # (the page still said "Logged in as ..." after "your login has expired"; QA)
        if index in self._stale or self._pages[index] is self.pages.settings:
            self._stale.discard(index)
            self._pages[index].reload_all()  # type: ignore[attr-defined]

    def data_changed(self, entities: frozenset[str]) -> None:
        """Something was written (an edit here, a sync): refresh the visible page, the others when shown."""
        self._stale = set(range(len(self._pages))) - {self.stack.currentIndex()}
        current = self.stack.currentWidget()
        if "conflict" not in entities and current is not self.pages.conflicts:
            # keeps the conflict counter truthful, also while Settings is shown (the first sync after a
            # login ran there, and the conflicts it brought went uncounted until another page was shown)
            self.pages.conflicts.refresh()
        if current is self.pages.settings:
            return
        current.reload_all()  # type: ignore[attr-defined]

    def focus_search(self) -> None:
        pane = getattr(self.stack.currentWidget(), "list", None)
        if pane is not None:
            pane.search.setFocus()
            pane.search.selectAll()

    def capture_output(self) -> None:
        self.navigation.setCurrentRow(1)
        self.pages.outputs.capture()

    def show_sync_status(self, status: SyncStatus) -> None:
        """A new state shows at once; progress within a sync at most every ``SYNC_PROGRESS_MS`` (the
        newest wins), so a fast stream of pages costs the GUI thread no more than ~10 updates a second."""
        self._sync_next = status
        if status.state != self._sync_state or not self._sync_throttle.isActive():
            self._show_next_sync_status()

    def _show_next_sync_status(self) -> None:
        status, self._sync_next = self._sync_next, None
        if status is None:
            return
        if status.state == "syncing":
            self._sync_throttle.start()  # the next progress update waits for it
        self._sync_state = status.state
        colors = {"error": "#b00020", "offline": "#6d4c41", "not_configured": "#6d4c41"}
        style = f"color: {colors.get(status.state, '#1b5e20')}"
        if style != self.sync_label.styleSheet():  # setting one re-polishes the label: only on a change
            self.sync_label.setStyleSheet(style)
        self.sync_label.setText(status.text)
        if status.state == "syncing" and status.total:
            self.progress.setRange(0, status.total)
            self.progress.setValue(status.done)
            self.progress.show()
        elif status.state == "syncing":
            self.progress.setRange(0, 0)
            self.progress.show()
        else:
            self.progress.hide()

    def undo(self) -> None:
        """Undo the last delete (the status-bar button, Ctrl+Z outside text boxes)."""
        if self.deleter.undo():
            self.undo_button.hide()
            self.undo_label.setText("Restoring…")

    def _show_deleted(self, deletion: Deletion) -> None:
        self.undo_label.setStyleSheet("")
        self.undo_label.setText(deleted_text(deletion))
        self.undo_button.show()

    def _show_restored(self, deletion: Deletion) -> None:
        self.undo_label.setStyleSheet("")
        self.undo_label.setText(f"Restored {describe(deletion.entity, deletion.labels)}.")
        self.undo_button.hide()

    def _show_overridden(self, deletion: Deletion) -> None:
        self.undo_label.setStyleSheet("")
        self.undo_label.setText(
            f"The delete of {describe(deletion.entity, deletion.labels)} was overridden by an edit made "
            "elsewhere: it is back (see Conflicts)."
        )
        self.undo_button.hide()

    def _show_delete_failed(self, message: str) -> None:
        self.undo_label.setStyleSheet("color: #b00020")
        self.undo_label.setText(message)
        self.undo_button.setVisible(self.deleter.can_undo)

    def _show_conflict_count(self, count: int) -> None:
        self.conflict_label.setText(f"⚠ {count} conflict(s) to resolve" if count else "")
        item = self.navigation.item(4)
        item.setText(f"Conflicts ({count})" if count else "Conflicts")
