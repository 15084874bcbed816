"""Run one sync in a child process (``outputhub.desktop.sync_worker``) and report back on the GUI thread.

``QProcess`` delivers the worker's JSON lines through the event loop, so the GUI thread only parses a
short line per pulled page; the sync's Python work runs on the child's own interpreter lock. The request
(replica path and key) goes over the child's stdin, never its command line or environment.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from PySide6.QtCore import QObject, QProcess

from outputhub.desktop.sync_worker import EXIT_CANCELLED, MODULE, SyncRequest
from outputhub.sync.client import SyncError, SyncReport

log = logging.getLogger(__name__)

WORKER_PULL_PAGE: Final = 500
"""Records per pull request in the worker. The GUI thread no longer shares an interpreter lock with the
sync, so small pages (200, for the GIL) are not needed; but each page is applied in one write transaction,
and a GUI edit made meanwhile waits for it (on a job-runner thread, never the GUI thread). Measured with
5,000 outputs on a loaded 2-core machine: pages of 200 / 500 / 1000 gave 951 / 1,225 / 1,399 rows/s and
held the write lock up to 293 / 523 / 750 ms."""
CANCEL_WAIT_MS: Final = 5000
_Callbacks = tuple[Callable[[str, int, int], None], Callable[[Any], None], Callable[[Exception], None]]


def worker_command() -> list[str]:
    """This interpreter running the worker module (``-P``: the working directory is not put on the path)."""
    return [sys.executable, "-P", "-m", MODULE]


class SyncWorkerError(SyncError):
    """A failure the sync process reported (``kind``: its exception class), or the process failing."""

    def __init__(self, message: str, *, kind: str = "") -> None:
        super().__init__(message)
        self.detail = message
        self.kind = kind


def outcome_of(event: dict[str, Any]) -> Any:
    """The controller's outcome for a worker's final ``done`` event: a ``SyncReport``, ``False`` (server
    not reachable) or ``None`` (no server set up)."""
    outcome = event.get("outcome")
    if outcome == "synced":
        fields = set(SyncReport.__dataclass_fields__)
        return SyncReport(**{k: v for k, v in (event.get("report") or {}).items() if k in fields})
    if outcome == "unreachable":
        return False
    if outcome == "not_configured":
        return None
    raise SyncWorkerError(f"the sync process answered {outcome!r}", kind="protocol")


class ProcessSync(QObject):
    """Starts the worker for one sync at a time; ``cancel`` stops it (closing its stdin, then killing)."""

    def __init__(
        self,
        *,
        replica_path: Path,
        key: Callable[[], bytes],
        pull_page: int = WORKER_PULL_PAGE,
        page_size: int = 0,
        command: Sequence[str] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._replica_path = Path(replica_path)
        self._key = key
        self._pull_page = pull_page
        self._page_size = page_size  # the replica file's, as the app opened it (0: unknown)
        self._command = list(command) if command is not None else worker_command()
        self._process: QProcess | None = None
        self._final: dict[str, Any] | None = None
        self._stderr = bytearray()
        self._callbacks: _Callbacks | None = None  # (on_progress, on_done, on_error) of the running sync

    @property
    def running(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int:
        """The worker's process id while it runs, else 0."""
        return int(self._process.processId()) if self._process is not None else 0

    def start(
        self,
        *,
        only_if_reachable: bool,
        on_progress: Callable[[str, int, int], None],
        on_done: Callable[[Any], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        if self._process is not None:
            raise RuntimeError("a sync process is already running")
        request = SyncRequest(
            self._replica_path, self._key(), only_if_reachable, self._pull_page, self._page_size
        )
        process = QProcess(self)
        process.setProgram(self._command[0])
        process.setArguments(self._command[1:])
        process.setProcessChannelMode(QProcess.ProcessChannelMode.SeparateChannels)
        process.readyReadStandardOutput.connect(self._read_events)
        process.readyReadStandardError.connect(self._read_diagnostics)
        process.finished.connect(self._exited)
        process.errorOccurred.connect(self._failed_to_start)
        self._process, self._final, self._stderr = process, None, bytearray()
        self._callbacks = (on_progress, on_done, on_error)
        process.start()
        if self._process is process:  # (a failure to start may already have been reported)
            process.write(request.encode())  # buffered until the process has started; stdin stays open

    def _read_events(self) -> None:
        process = self._process
        if process is None:
            return
        while process.canReadLine():
            line = bytes(process.readLine().data()).strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                log.warning("sync worker: unreadable line %r", line[:200])
                continue
            if event.get("event") == "progress":
                if self._callbacks is not None:
                    self._callbacks[0](str(event["phase"]), int(event["done"]), int(event.get("total") or 0))
            elif event.get("event") in ("done", "failed"):
                self._final = event

    def _read_diagnostics(self) -> None:
        if self._process is not None:
            self._stderr += bytes(self._process.readAllStandardError().data())
            del self._stderr[:-20_000]  # keep the tail

    def _exited(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read_events()
        self._read_diagnostics()
        callbacks, final, stderr = self._callbacks, self._final, self._stderr.decode("utf-8", "replace")
        self._release()
        if stderr.strip():
            log.warning("sync worker (exit %s) said:\n%s", code, stderr.strip())
        if callbacks is None:
            return
        _, on_done, on_error = callbacks
        if final is not None and final.get("event") == "failed":
            message = str(final.get("message") or "the sync failed")
            on_error(SyncWorkerError(message, kind=str(final.get("error", ""))))
            return
        if final is not None:
            try:
                outcome = outcome_of(final)
            except SyncWorkerError as exc:
                on_error(exc)
                return
            on_done(outcome)
            return
        how = "crashed" if status == QProcess.ExitStatus.CrashExit else f"exited with status {code}"
        last = stderr.strip().splitlines()[-1:] or [""]
        detail = f": {last[0]}" if last[0] else ""
        on_error(SyncWorkerError(f"the sync process {how} before finishing{detail}", kind="exit"))

    def _failed_to_start(self, error: QProcess.ProcessError) -> None:
        if error != QProcess.ProcessError.FailedToStart or self._process is None:
            return  # crashes and exits are handled by ``_exited``
        message = self._process.errorString()
        callbacks = self._callbacks
        self._release()
        if callbacks is not None:
            callbacks[2](SyncWorkerError(f"cannot start the sync process: {message}", kind="start"))

    def _release(self) -> None:
        process, self._process, self._callbacks = self._process, None, None
        if process is not None:
            for signal in (
                process.readyReadStandardOutput,
                process.readyReadStandardError,
                process.finished,
                process.errorOccurred,
            ):
                signal.disconnect()
            process.deleteLater()

    def cancel(self, *, wait_ms: int = CANCEL_WAIT_MS) -> bool:
        """Stop the running sync, if any, without reporting it; blocks up to ``wait_ms`` (then kills).

        Closing the worker's stdin makes it roll back and exit; a kill is safe as well (a pulled page and
        its cursor are one transaction; the outbox keeps every edit until the server answered for it).
        Returns True when a sync was stopped."""
        process = self._process
        if process is None:
            return False
        self._callbacks = None
        process.closeWriteChannel()
        if not process.waitForFinished(wait_ms):
            log.warning("the sync process did not stop within %d ms: killing it", wait_ms)
            process.kill()
            process.waitForFinished(2000)
        elif process.exitCode() not in (0, EXIT_CANCELLED):
            log.info("the cancelled sync process exited with status %d", process.exitCode())
        self._release()
        return True
