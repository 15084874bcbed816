"""The desktop's sync in a process of its own: ``python -m outputhub.desktop.sync_worker``.

Why a process: a sync spends its time in Python (decoding pulled pages, merging, SQLite calls) and, on a
thread of the GUI process, holds the interpreter lock long enough to freeze the window (up to ~100 ms per
stall while pulling 10k rows). A child process has its own interpreter; the GUI only reads its progress.

Both processes open the same replica file. It is in WAL mode, so the GUI's reads never wait for the
worker; a GUI edit (always on a job-runner thread, never on the GUI thread) that arrives while the worker
applies a pulled page waits for that page's transaction (SQLite's busy timeout, 5 s) and then goes
through. Killing the worker at any point is safe: a pulled page and its cursor are one transaction, an
outbox entry leaves only when the server has answered for it.

Protocol, JSON lines (UTF-8) on stdin/stdout; nothing secret on the command line or in the environment
(other local users can read both):

- stdin, first line, the request: ``{"protocol": 1, "replica": "<path>", "key": "<base64 key bytes>",
  "only_if_reachable": false, "pull_page": 1000}``. The app keeps stdin open afterwards: end of file (the
  app closed it to cancel, or the app died) stops the sync, rolling back the transaction in progress.
- stdout, events: ``{"event": "progress", "phase": "pull", "done": 1200, "total": 4000}`` (total 0 when
  unknown) while syncing, then one final ``{"event": "done", "outcome": "synced", "report": {...}}`` (a
  ``SyncReport``), ``{"event": "done", "outcome": "unreachable"}`` (``only_if_reachable`` and no answer),
  ``{"event": "done", "outcome": "not_configured"}``, or ``{"event": "failed", "error": "<exception class>",
  "message": "<in words>"}``.
- stderr: diagnostics (a traceback for an unexpected failure) for the app's log.

Exit status: 0 done, 1 failed, 2 bad request, 3 cancelled. The server address, the tokens (refreshed here
when they expire, written back to the replica) and the organization come from the replica's settings, as
for a sync on a thread (``SyncService.sync``).
"""

from __future__ import annotations

import _thread
import base64
import binascii
import json
import os
import sys
import threading
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Final

PROTOCOL: Final = 1
MODULE: Final = "outputhub.desktop.sync_worker"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_BAD_REQUEST: Final = 2
EXIT_CANCELLED: Final = 3
CANCEL_GRACE_S: Final = 2.0
"""After a cancel, how long the worker waits for the sync to unwind (roll back, close) before it exits hard
(it may be blocked in a network read; a hard exit is safe too)."""


@dataclass(frozen=True, slots=True)
class SyncRequest:
    replica: Path
    key: bytes
    only_if_reachable: bool = False
    pull_page: int = 1000
    page_size: int = 0
    """The replica file's page size as the app opened it (0: unknown); the worker tries it first."""

    def encode(self) -> bytes:
        """The request line the app writes to the worker's stdin."""
        body = {
            "protocol": PROTOCOL,
            "replica": str(self.replica),
            "key": base64.b64encode(self.key).decode("ascii"),
            "only_if_reachable": self.only_if_reachable,
            "pull_page": self.pull_page,
            "page_size": self.page_size,
        }
        return json.dumps(body).encode("utf-8") + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> SyncRequest:
        try:
            body = json.loads(line)
            if not isinstance(body, dict) or body.get("protocol") != PROTOCOL:
                raise ValueError(f"expected a protocol {PROTOCOL} request")
            key = base64.b64decode(str(body["key"]), validate=True)
            page = int(body.get("pull_page", 1000))
            if not key or page < 1:
                raise ValueError("empty key or page size below 1")
            page_size = int(body.get("page_size", 0))
            return cls(
                Path(str(body["replica"])), key, bool(body.get("only_if_reachable", False)), page, page_size
            )
        except (KeyError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed request: {type(exc).__name__}") from None


def describe_error(exc: BaseException) -> str:
    """An exception in words: its ``detail`` (the project's errors), else its message, else its class."""
    detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
    return str(detail)


class _Events:
    """Writes one JSON object per line to ``stream`` (from any thread)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, default=str).encode("utf-8") + b"\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # the app is gone: nobody to tell


def run(request: SyncRequest, events: _Events) -> dict[str, Any]:
    """Open the replica, sync, close it; returns the final event. Raises what the sync raises."""
    from outputhub.desktop.services.sync import SyncService
    from outputhub.desktop.storage import open_replica

    def progress(phase: str, done: int, total: int) -> None:
        events.emit({"event": "progress", "phase": phase, "done": done, "total": total})

    replica = open_replica(request.replica, key=request.key, page_size=request.page_size or None)
    try:
        service = SyncService(replica=replica, pull_page=request.pull_page)
        if not service.configured():  # logged out: what a large pull left is indexed all the same
            service.index(progress)
            return {"event": "done", "outcome": "not_configured"}
        outcome = service.sync(progress=progress, only_if_reachable=request.only_if_reachable)
        if outcome is False:
            return {"event": "done", "outcome": "unreachable"}
        return {"event": "done", "outcome": "synced", "report": asdict(outcome)}
    finally:
        replica.close()


class _CancelWatch:
    """End of stdin cancels: interrupt the sync (the transaction in progress rolls back), and exit hard if
    it has not unwound in time. ``finish`` closes the window in which a cancel can still interrupt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finished = threading.Event()

    def watch(self, fd: int) -> None:
        # the raw descriptor, not ``sys.stdin``: a daemon thread blocked inside a buffered reader holds
        # its lock, and the interpreter aborts when it cannot take that lock at exit
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        with self._lock:
            if self._finished.is_set():
                return
            _thread.interrupt_main()
        if not self._finished.wait(CANCEL_GRACE_S):
            os._exit(EXIT_CANCELLED)

    def finish(self) -> None:
        with self._lock:
            self._finished.set()


def main(stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None, *, watch_stdin: bool = True) -> int:
    stdin = stdin if stdin is not None else sys.stdin.buffer
    events = _Events(stdout if stdout is not None else sys.stdout.buffer)
    try:
        request = SyncRequest.decode(stdin.readline())
    except ValueError as exc:
        events.emit({"event": "failed", "error": "BadRequest", "message": str(exc)})
        return EXIT_BAD_REQUEST
    cancel = _CancelWatch()
    if watch_stdin:
        threading.Thread(
            target=cancel.watch, args=(stdin.fileno(),), name="cancel-watch", daemon=True
        ).start()
    try:
        try:
            final, code = run(request, events), EXIT_OK
        except Exception as exc:
            final, code = _failure(exc), EXIT_FAILED
        cancel.finish()
        events.emit(final)
        return code
    except KeyboardInterrupt:  # cancelled (or Ctrl+C in the terminal that started the app)
        cancel.finish()
        return EXIT_CANCELLED


def _failure(exc: Exception) -> dict[str, Any]:
    from outputhub.common.errors import OutputHubError
    from outputhub.sync.client import SyncError

    if not isinstance(exc, OutputHubError | SyncError):
        traceback.print_exc(file=sys.stderr)  # a bug, not a condition to tell in words: keep the trace
    return {"event": "failed", "error": type(exc).__name__, "message": describe_error(exc)}


if __name__ == "__main__":
    status = main()
    if status == EXIT_CANCELLED:
        os._exit(status)  # the transaction is rolled back; do not wait for a prefetch blocked in a read
    raise SystemExit(status)
