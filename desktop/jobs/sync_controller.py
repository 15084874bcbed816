"""Runs syncs in the background (on demand and automatically) and keeps a truthful status.

The controller owns no network code: it calls the desktop ``SyncService`` on a worker thread through the
job runner and turns what happens into a :class:`SyncStatus` for the status bar. At most one sync runs at a
time; the automatic timer only starts one when the account is set up and the server answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from outputhub.desktop.jobs.runner import JobRunner, ProgressCallback


class SyncPort(Protocol):
    """What the controller needs from ``outputhub.desktop.services.sync.SyncService``."""

    def configured(self) -> bool: ...

    def sync(self, *, progress: ProgressCallback, only_if_reachable: bool = False) -> Any: ...


@dataclass(frozen=True, slots=True)
class SyncStatus:
    state: str  # "offline" | "syncing" | "up_to_date" | "error" | "not_configured"
    text: str
    done: int = 0
    total: int = 0


def describe_error(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
    return str(detail)


class SyncController(QObject):
    status_changed = Signal(object)  # SyncStatus
    synced = Signal(object)  # the service's outcome (a SyncReport)

    def __init__(
        self,
        *,
        service: SyncPort,
        runner: JobRunner,
        interval_ms: int = 60_000,
        clock: Any = datetime.now,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._service = service
        self._runner = runner
        self._clock = clock
        self._running = False
        self._last_ok: datetime | None = None
        self.status = SyncStatus("not_configured", "Offline: no server set up (Settings)")
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.sync_in_background)

    @property
    def running(self) -> bool:
        return self._running

    def start_automatic(self) -> None:
        self.timer.start()

    def stop_automatic(self) -> None:
        self.timer.stop()

    def _set(self, status: SyncStatus) -> None:
        self.status = status
        self.status_changed.emit(status)

    def refresh_configuration(self) -> None:
        """Re-evaluate the "not configured" state after the settings changed."""
        if self._running:
            return
        self._runner.submit("check sync settings", self._service.configured, on_done=self._configured)

    def _configured(self, configured: bool) -> None:
        if not configured:
            self._set(SyncStatus("not_configured", "Offline: no server set up (Settings)"))
        elif self.status.state == "not_configured":
            self._set(SyncStatus("offline", "Not synced yet: press F5 or wait for the automatic sync"))

    def sync_now(self) -> bool:
        """Start a sync (returns False when one is already running)."""
        return self._start(only_if_reachable=False)

    def sync_in_background(self) -> bool:
        return self._start(only_if_reachable=True)

    def _start(self, *, only_if_reachable: bool) -> bool:
        if self._running:
            return False
        self._running = True
        self._set(SyncStatus("syncing", "Syncing…"))
        service = self._service

        def run(progress: ProgressCallback) -> Any:
            if not service.configured():
                return None
            return service.sync(progress=progress, only_if_reachable=only_if_reachable)

        self._runner.submit(
            "sync", run, on_done=self._finished, on_error=self._failed, on_progress=self._progress
        )
        return True

    def _progress(self, phase: str, done: int, total: int) -> None:
        if not self._running:
            return
        text = f"Syncing: {phase} {done:,} of {total:,}" if total else f"Syncing: {phase}…"
        self._set(SyncStatus("syncing", text, done, total))

    def _finished(self, outcome: Any) -> None:
        self._running = False
        now = self._clock()
        if outcome is None:
            self._set(SyncStatus("not_configured", "Offline: no server set up (Settings)"))
            return
        if outcome is False:
            since = f"; last synced at {self._last_ok:%H:%M}" if self._last_ok else ""
            self._set(SyncStatus("offline", f"Offline: server not reachable{since}"))
            return
        self._last_ok = now
        conflicts = len(set(getattr(outcome, "conflicts_opened", ())))
        extra = f" · {conflicts} new conflict(s)" if conflicts else ""
        self._set(SyncStatus("up_to_date", f"Up to date at {now:%H:%M}{extra}"))
        self.synced.emit(outcome)

    def _failed(self, exc: Exception) -> None:
        self._running = False
        self._set(SyncStatus("error", f"Sync failed at {self._clock():%H:%M}: {describe_error(exc)}"))
