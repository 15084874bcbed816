"""Runs syncs in the background (on demand and automatically) and keeps a truthful status.

The controller owns no network code: a :class:`BackgroundSync` runs the desktop ``SyncService`` off the GUI
thread — in the app a child process (``ProcessSync``, see ``desktop/sync_worker.py``: a thread of the GUI
process would compete with the GUI thread for the interpreter lock), or on a job-runner thread
(:class:`ThreadSync`) — and the controller turns what happens into a :class:`SyncStatus` for the status bar.
At most one sync runs at a time; the automatic timer only starts one when the account is set up and the
server answers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from outputhub.common.errors import OutputHubError
from outputhub.desktop.jobs.runner import JobRunner, ProgressCallback
from outputhub.desktop.services.sync import INDEX_PHASE, NO_SERVER_TEXT, progress_text
from outputhub.desktop.sync_worker import describe_error


class SyncPort(Protocol):
    """What the controller needs from ``outputhub.desktop.services.sync.SyncService``."""

    def configured(self) -> bool: ...

    def setup_problem(self) -> str | None: ...

    def last_synced(self) -> datetime | None: ...

    def reachable(self) -> bool: ...

    def needs_indexing(self) -> bool: ...

    def sync(self, *, progress: ProgressCallback, only_if_reachable: bool = False) -> Any: ...

    def conflict_news(self, report: Any) -> tuple[int, int]: ...


class BackgroundSync(Protocol):
    """Runs one sync off the GUI thread; the callbacks are called on the GUI thread. The outcome passed to
    ``on_done`` is the service's: a ``SyncReport``, ``False`` (server not reachable) or ``None`` (no server
    set up)."""

    @property
    def running(self) -> bool: ...

    def start(
        self,
        *,
        only_if_reachable: bool,
        on_progress: ProgressCallback,
        on_done: Callable[[Any], None],
        on_error: Callable[[Exception], None],
    ) -> None: ...

    def cancel(self, *, wait_ms: int) -> bool:
        """Stop the running sync without reporting it (blocking up to ``wait_ms``); True if one was."""
        ...


class ThreadSync:
    """The sync on a job-runner thread of this process (benchmarks: the way it ran before the sync
    process). It cannot be cancelled: the caller waits for the runner instead."""

    def __init__(self, *, service: SyncPort, runner: JobRunner) -> None:
        self._service = service
        self._runner = runner
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def start(
        self,
        *,
        only_if_reachable: bool,
        on_progress: ProgressCallback,
        on_done: Callable[[Any], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        service = self._service

        def run(progress: ProgressCallback) -> Any:
            return service.sync(progress=progress, only_if_reachable=only_if_reachable)

        def finish(callback: Callable[[Any], None]) -> Callable[[Any], None]:
            def done(value: Any) -> None:
                self._running = False
                callback(value)

            return done

        self._running = True
        self._runner.submit(
            "sync", run, on_done=finish(on_done), on_error=finish(on_error), on_progress=on_progress
        )

    def cancel(self, *, wait_ms: int) -> bool:
        return False


class SyncRunningError(OutputHubError):
    status = 409
    title = "A sync is running"
    type_slug = "sync-running"


@dataclass(frozen=True, slots=True)
class SyncStatus:
    state: str  # "offline" | "syncing" | "up_to_date" | "error" | "not_configured"
    text: str
    done: int = 0
    total: int = 0


class SyncController(QObject):
    status_changed = Signal(object)  # SyncStatus
    synced = Signal(object)  # the service's outcome (a SyncReport)
    stored = Signal()  # the sync's records are in the replica; it goes on indexing them for search

    def __init__(
        self,
        *,
        service: SyncPort,
        runner: JobRunner,
        background: BackgroundSync | None = None,
        interval_ms: int = 60_000,
        clock: Any = datetime.now,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._service = service
        self._runner = runner
        self._background: BackgroundSync = background or ThreadSync(service=service, runner=runner)
        self._clock = clock
        self._running = False
        self._paused = False
        self._generation = 0  # which sync the callbacks of a pre-check belong to
        self._gate = threading.Lock()  # ``syncs_paused`` is entered on a job-runner thread
        self._last_ok: datetime | None = None
        self.status = SyncStatus("not_configured", NO_SERVER_TEXT)
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
        service = self._service
        self._runner.submit(
            "check sync settings",
            lambda: (service.setup_problem(), service.last_synced()),
            on_done=self._configured,
        )

    def _configured(self, answer: tuple[str | None, datetime | None]) -> None:
        problem, last = answer
        if last is not None and self._last_ok is None:
            self._last_ok = last  # kept in the library: a sync before the app was closed counts
        if problem is not None:
            self._set(SyncStatus("not_configured", problem))
        elif self.status.state == "not_configured":
            done = f"Last synced {self._when(self._last_ok)}" if self._last_ok else "Not synced yet"
            self._set(SyncStatus("offline", f"{done}: press F5 or wait for the automatic sync"))

    def _when(self, moment: datetime) -> str:
        """``at 14:05`` (today, local time), else ``on 2026-11-28 at 14:05``."""
        now = self._clock()
        if moment.tzinfo is not None:
            moment = moment.astimezone(now.tzinfo) if now.tzinfo else moment.astimezone().replace(tzinfo=None)
        if moment.date() == now.date():
            return f"at {moment:%H:%M}"
        return f"on {moment:%Y-%m-%d} at {moment:%H:%M}"

    def sync_now(self) -> bool:
        """Start a sync (returns False when one is already running)."""
        return self._start(only_if_reachable=False)

    def sync_in_background(self) -> bool:
        return self._start(only_if_reachable=True)

    def _start(self, *, only_if_reachable: bool) -> bool:
        with self._gate:
            if self._running or self._paused:
                return False
            self._running = True
            self._generation += 1
            generation = self._generation
        self._set(SyncStatus("syncing", "Syncing…"))
        service = self._service

        def ready() -> bool | str:
            """A text: what keeps it from syncing (no server set up, logged out); False: not reachable (only
            asked for the automatic sync)."""
            if not service.configured():
                # logged out, but a large pull is left to index: the sync process indexes it and answers so
                return True if service.needs_indexing() else service.setup_problem() or NO_SERVER_TEXT
            if not only_if_reachable or service.reachable():
                return True
            # offline, but a large pull is left to index (the app was closed meanwhile): the sync process
            # indexes it and answers "not reachable"
            return service.needs_indexing()

        # checked here, on a runner thread, so that no sync process is started just to find that out
        # (the automatic sync asks every minute, also while offline)
        self._runner.submit(
            "check before syncing",
            ready,
            on_done=lambda answer: self._launch(generation, answer, only_if_reachable=only_if_reachable),
            on_error=lambda exc: self._failed(exc) if generation == self._generation else None,
        )
        return True

    def _launch(self, generation: int, ready: bool | str, *, only_if_reachable: bool) -> None:
        if generation != self._generation or not self._running:
            return  # cancelled meanwhile
        if ready is not True:
            self._finished(ready)
            return
        try:
            self._background.start(
                only_if_reachable=only_if_reachable,
                on_progress=self._progress,
                on_done=self._finished,
                on_error=self._failed,
            )
        except Exception as exc:  # e.g. the replica has no key to hand to the sync process
            self._failed(exc)

    def cancel(self, *, wait_ms: int = 5000) -> bool:
        """Stop a running sync (app shutdown); local edits stay queued. True if one was stopped (a sync on
        a thread cannot be: False, wait for the runner)."""
        if not self._running:
            return False
        if self._background.running and not self._background.cancel(wait_ms=wait_ms):
            return False
        with self._gate:
            self._running = False
            self._generation += 1
        self._set(SyncStatus("offline", "Sync stopped; local edits are kept and pushed by the next sync"))
        return True

    def shutdown(self, *, wait_ms: int = 5000) -> None:
        """No more syncs: stop the timer and a running sync process."""
        self.stop_automatic()
        self.cancel(wait_ms=wait_ms)

    @contextlib.contextmanager
    def syncs_paused(self) -> Iterator[None]:
        """No sync starts inside the block (any thread); refused while one runs. For work that must have
        the replica file to itself, such as changing its passphrase."""
        with self._gate:
            if self._running:
                raise SyncRunningError("a sync is running: try again when it has finished")
            self._paused = True
        try:
            yield
        finally:
            with self._gate:
                self._paused = False

    def _progress(self, phase: str, done: int, total: int) -> None:
        if not self._running:
            return
        if phase == INDEX_PHASE:  # pulled and stored: the lists can show the records while they are indexed
            if self.status.text.startswith("Syncing"):
                self.stored.emit()
            text = f"Indexing for search: {done:,} of {total:,}"
            self._set(SyncStatus("syncing", text, done, total))
            return
        text = f"Syncing: {progress_text(phase, done, total)}"
        self._set(SyncStatus("syncing", text, done, total))

    def _finished(self, outcome: Any) -> None:
        with self._gate:
            self._running = False
        now = self._clock()
        if outcome is None or isinstance(outcome, str):
            self._set(SyncStatus("not_configured", outcome or NO_SERVER_TEXT))
            return
        if outcome is False:
            since = f"; last synced {self._when(self._last_ok)}" if self._last_ok else ""
            self._set(SyncStatus("offline", f"Offline: server not reachable{since}"))
            return
        self._last_ok = now
        new, changed = self._service.conflict_news(outcome)
        extra = (f" · {new} new conflict(s)" if new else "") + (
            f" · {changed} conflict(s) changed" if changed else ""
        )
        extra += refused_text(getattr(outcome, "refused", None) or ())
        self._set(SyncStatus("up_to_date", f"Up to date at {now:%H:%M}{extra}"))
        self.synced.emit(outcome)

    def _failed(self, exc: Exception) -> None:
        with self._gate:
            self._running = False
        self._set(SyncStatus("error", f"Sync failed at {self._clock():%H:%M}: {describe_error(exc)}"))


def refused_text(refused: Sequence[Mapping[str, Any]]) -> str:
    """`` · 3 edits refused by the server (permission denied; see Conflicts)`` for a sync's refused edits:
    the sync itself went through, but these edits did not land, and saying only "Up to date" hid it."""
    if not refused:
        return ""
    reasons = sorted({str(r.get("reason") or "").split(":")[0].replace("-", " ") for r in refused} - {""})
    why = f"{', '.join(reasons)}; " if reasons else ""
    noun = "edit" if len(refused) == 1 else "edits"
    return f" · {len(refused)} {noun} refused by the server ({why}see Conflicts)"
