"""The desktop app's composition root: ``outputhub desktop`` ends up in :func:`run`.

It builds the job runner, asks for the passphrase (create or unlock), wires the services over the opened
replica (``LocalLibrary`` for edits), the pages, the sync controller and the main window. Nothing else
constructs services or reads configuration.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import QApplication, QDialog

from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.jobs.sync_controller import BackgroundSync, SyncController, ThreadSync
from outputhub.desktop.jobs.sync_process import ProcessSync
from outputhub.desktop.services import vault
from outputhub.desktop.services.analytics import AnalyticsService
from outputhub.desktop.services.conflicts import ConflictService
from outputhub.desktop.services.editing import make_editor
from outputhub.desktop.services.library import LibraryService
from outputhub.desktop.services.sync import SyncService
from outputhub.desktop.storage import Replica
from outputhub.desktop.ui.analytics import AnalyticsPage
from outputhub.desktop.ui.catalog import CustomGptsPage, TaxonomyPage
from outputhub.desktop.ui.conflicts import ConflictsPage
from outputhub.desktop.ui.deleting import Deleter
from outputhub.desktop.ui.main_window import MainWindow, Pages
from outputhub.desktop.ui.outputs import OutputsPage
from outputhub.desktop.ui.prompts import PromptsPage
from outputhub.desktop.ui.settings import SettingsPage
from outputhub.desktop.ui.unlock import UnlockDialog

APP_NAME = "Output Hub"


@dataclass(frozen=True)
class DesktopSession:
    """What :func:`build_window` made; tests and the screenshot/bench scripts use it."""

    window: MainWindow
    runner: JobRunner
    library: LibraryService
    conflicts: ConflictService
    analytics: AnalyticsService
    sync: SyncService
    controller: SyncController

    def shutdown(self, *, wait_ms: int = 30_000) -> bool:
        """Stop syncing (a running sync process is stopped, see ``SyncController.cancel``) and wait for the
        background jobs; call before closing the replica. False if jobs were still running at the end."""
        self.controller.shutdown()
        return self.runner.wait_for_done(wait_ms)


def build_window(
    *,
    replica: Replica,
    runner: JobRunner,
    sync_interval_ms: int = 60_000,
    sync_in_process: bool = False,
) -> DesktopSession:
    """The main window over ``replica``. Syncs run in a child process (``desktop/sync_worker.py``) that
    opens the same file; ``sync_in_process=True`` runs them on a job-runner thread instead (benchmarks
    compare the two: on a thread the sync holds the GUI process's interpreter lock)."""
    editor = make_editor(replica)
    library = LibraryService(replica=replica, editor=editor)
    conflicts = ConflictService(replica=replica, editor=editor)
    analytics = AnalyticsService(replica=replica)
    sync = SyncService(replica=replica)
    background: BackgroundSync = (
        ThreadSync(service=sync, runner=runner)
        if sync_in_process
        else ProcessSync(replica_path=replica.path, key=replica.key_material, page_size=replica.page_size)
    )
    controller = SyncController(
        service=sync, runner=runner, background=background, interval_ms=sync_interval_ms
    )
    if isinstance(background, ProcessSync):
        background.setParent(controller)

    def change_passphrase(old: str, new: str, confirmation: str) -> None:
        with controller.syncs_paused():  # the sync process must not have the file open meanwhile
            vault.change_passphrase(replica=replica, old=old, new=new, confirmation=confirmation)

    deleter = Deleter(library=library, runner=runner)
    pages = Pages(
        prompts=PromptsPage(library=library, runner=runner, deleter=deleter),
        outputs=OutputsPage(library=library, runner=runner, deleter=deleter),
        custom_gpts=CustomGptsPage(library=library, runner=runner, deleter=deleter),
        taxonomy=TaxonomyPage(library=library, runner=runner, deleter=deleter),
        conflicts=ConflictsPage(conflicts=conflicts, runner=runner),
        analytics=AnalyticsPage(analytics=analytics, runner=runner),
        settings=SettingsPage(
            sync=sync,
            controller=controller,
            change_passphrase=change_passphrase,
            replica_path=str(replica.path),
            runner=runner,
        ),
    )
    window = MainWindow(
        pages=pages, sync=controller, deleter=deleter, title=f"{APP_NAME} — {replica.path.name}"
    )
    deleter.setParent(window)
    pages.settings.reload_all()  # starts automatic sync when an account is set up
    pages.conflicts.refresh()  # the conflict counter in the status bar
    return DesktopSession(window, runner, library, conflicts, analytics, sync, controller)


def unlock_dialog(*, path: Path, runner: JobRunner) -> UnlockDialog:
    return UnlockDialog(
        path=path,
        exists=vault.replica_exists(path),
        runner=runner,
        create=lambda passphrase, confirmation: vault.create_replica(
            path=path, passphrase=passphrase, confirmation=confirmation
        ),
        unlock=lambda passphrase: vault.unlock_replica(path=path, passphrase=passphrase),
        strength=vault.passphrase_strength,
    )


def settle_startup_objects() -> None:
    """Take what exists once the window is up (modules, Qt wrappers, the pages) out of the cyclic garbage
    collector's walks: it lives as long as the app anyway. A full collection walking it held the GUI thread
    for 100-280 ms (seen right after a big sync, when refreshing the lists set one off); now such a
    collection walks only what was made since. (Objects are still freed by reference counting.)"""
    gc.freeze()


def run(*, replica_path: Path, argv: list[str] | None = None) -> int:
    """Start the app on ``replica_path``; returns the process exit code."""
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName(APP_NAME)
    runner = JobRunner(max_threads=3)
    dialog = unlock_dialog(path=replica_path, runner=runner)
    if dialog.exec() != QDialog.DialogCode.Accepted or dialog.replica is None:
        runner.wait_for_done()
        return 1
    replica: Replica = dialog.replica
    try:
        session = build_window(replica=replica, runner=runner)
        session.window.show()
        settle_startup_objects()
        code = app.exec()
        session.shutdown(wait_ms=60_000)
        return int(code)
    finally:
        replica.close()
