"""Run blocking service calls (disk, network, sync) on a thread pool; results come back as signals.

A view never calls a service directly: it submits a named job and passes the callbacks to run on the GUI
thread. Worker threads only run the function; they never touch a widget. ``progress`` lets a long job (a
sync) report ``(phase, done, total)``; it is delivered on the GUI thread too.
"""

from __future__ import annotations

import itertools
import logging
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]


class _JobSignals(QObject):
    succeeded = Signal(object)
    failed = Signal(object)
    progressed = Signal(str, int, int)
    finished = Signal()


class Job(QRunnable):
    """One call of ``fn`` on a worker thread. Its signals live on the GUI thread (queued delivery)."""

    def __init__(self, name: str, fn: Callable[..., Any], *, wants_progress: bool) -> None:
        super().__init__()
        self.name = name
        self._fn = fn
        self._wants_progress = wants_progress
        self.signals = _JobSignals()
        self.setAutoDelete(False)

    def _report(self, phase: str, done: int, total: int) -> None:
        self.signals.progressed.emit(phase, done, total)

    def run(self) -> None:
        try:
            result = self._fn(progress=self._report) if self._wants_progress else self._fn()
        except Exception as exc:
            log.debug("job %s failed:\n%s", self.name, traceback.format_exc())
            self.signals.failed.emit(exc)
        else:
            self.signals.succeeded.emit(result)
        finally:
            self.signals.finished.emit()


class JobRunner(QObject):
    """Submits jobs to a ``QThreadPool``; ``busy_changed`` tells how many are running."""

    busy_changed = Signal(int)
    job_failed = Signal(str, object)  # every failure, for a status bar / log

    def __init__(self, *, max_threads: int = 2, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._running: dict[int, Job] = {}
        self._ids = itertools.count(1)

    @property
    def running(self) -> int:
        return len(self._running)

    def submit(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Job:
        """Run ``fn()`` (or ``fn(progress=...)`` when ``on_progress`` is given) on a worker thread."""
        job = Job(name, fn, wants_progress=on_progress is not None)
        key = next(self._ids)
        self._running[key] = job
        if on_done is not None:
            job.signals.succeeded.connect(on_done)
        if on_error is not None:
            job.signals.failed.connect(on_error)
        job.signals.failed.connect(lambda exc, n=name: self.job_failed.emit(n, exc))
        if on_progress is not None:
            job.signals.progressed.connect(on_progress)
        job.signals.finished.connect(lambda k=key: self._forget(k))
        self._pool.start(job)
        self.busy_changed.emit(len(self._running))
        return job

    @Slot()
    def _forget(self, key: int) -> None:
        self._running.pop(key, None)
        self.busy_changed.emit(len(self._running))

    def wait_for_done(self, msecs: int = 30_000) -> bool:
        """Block until every job has finished (shutdown and tests only, never from an event handler)."""
        return self._pool.waitForDone(msecs)
