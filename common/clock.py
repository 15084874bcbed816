"""Hybrid logical clock (HLC) timestamps: pure values and pure functions, no clock source.

An HLC (Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014) is a pair (wall time, counter) that stays
close to physical time yet respects causality: if event *a* happened before event *b* (same node, or *b* on a
node that had received *a*), then ``hlc(a) < hlc(b)``. Adding the node id makes the order total, so ties
between replicas break the same way everywhere.

This module never reads the real clock: callers pass ``now_ms`` (the composition root owns the clock source).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

WALL_DIGITS: Final = 15
COUNTER_DIGITS: Final = 6
MAX_WALL_MS: Final = 10**WALL_DIGITS - 1
MAX_COUNTER: Final = 10**COUNTER_DIGITS - 1
DEFAULT_MAX_DRIFT_MS: Final = 24 * 60 * 60 * 1000
"""How far a remote timestamp may run ahead of the local physical clock before it is refused (24 hours)."""


class ClockError(ValueError):
    """An HLC value or operation is invalid (bad encoding, counter overflow, out-of-range wall time)."""


class ClockDriftError(ClockError):
    """A remote timestamp is further ahead of the local physical clock than the allowed drift."""

    def __init__(self, *, remote_ms: int, now_ms: int, max_drift_ms: int) -> None:
        super().__init__(
            f"remote clock is {remote_ms - now_ms} ms ahead of the local clock (allowed: {max_drift_ms} ms)"
        )
        self.remote_ms = remote_ms
        self.now_ms = now_ms
        self.max_drift_ms = max_drift_ms


@dataclass(frozen=True, order=True, slots=True)
class HLC:
    """A hybrid logical clock timestamp, totally ordered by ``(wall_ms, counter, node)``."""

    wall_ms: int
    counter: int
    node: str

    def __post_init__(self) -> None:
        if isinstance(self.wall_ms, bool) or not isinstance(self.wall_ms, int):
            raise ClockError(f"wall_ms must be an int, got {self.wall_ms!r}")
        if isinstance(self.counter, bool) or not isinstance(self.counter, int):
            raise ClockError(f"counter must be an int, got {self.counter!r}")
        if not 0 <= self.wall_ms <= MAX_WALL_MS:
            raise ClockError(f"wall_ms out of range: {self.wall_ms}")
        if not 0 <= self.counter <= MAX_COUNTER:
            raise ClockError(f"counter out of range: {self.counter}")
        if not isinstance(self.node, str) or not self.node:
            raise ClockError("node must be a non-empty string")

    def encode(self) -> str:
        """Fixed-width text form whose lexicographic order is the HLC order (usable as a database key)."""
        return f"{self.wall_ms:0{WALL_DIGITS}d}-{self.counter:0{COUNTER_DIGITS}d}-{self.node}"

    @classmethod
    def decode(cls, text: str) -> HLC:
        parts = text.split("-", 2)
        if (
            len(parts) != 3
            or len(parts[0]) != WALL_DIGITS
            or len(parts[1]) != COUNTER_DIGITS
            or not parts[0].isdigit()
            or not parts[1].isdigit()
            or not parts[0].isascii()
            or not parts[1].isascii()
        ):
            raise ClockError(f"not an encoded HLC: {text!r}")
        return cls(int(parts[0]), int(parts[1]), parts[2])

    def __str__(self) -> str:
        return self.encode()


def after(version: HLC, *, node: str) -> HLC:
    """The first timestamp on ``node`` after ``version``: the next counter of its millisecond, or the next
    millisecond when ``version`` is the last of its own (:data:`MAX_COUNTER`). Any writer may meet a version
    at the last counter of its millisecond (another replica's, up to the allowed drift ahead): raising there
    made the record uneditable until the clock passed it (the server's edit after it was a 500, a replica's
    an uncaught error)."""
    if version.counter < MAX_COUNTER:
        return HLC(version.wall_ms, version.counter + 1, node)
    return HLC(version.wall_ms + 1, 0, node)


def tick(prev: HLC | None, *, now_ms: int, node: str) -> HLC:
    """The timestamp of a local event (an edit, or sending a message) on ``node``.

    ``prev`` is the node's last issued or received timestamp. The result is strictly greater than ``prev``
    and its wall part never goes backwards, even if the physical clock does (past the last counter of a
    millisecond it moves on to the next one).
    """
    if prev is None or now_ms > prev.wall_ms:
        return HLC(now_ms, 0, node)
    return after(prev, node=node)


def receive(
    local: HLC | None,
    remote: HLC,
    *,
    now_ms: int,
    node: str,
    max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
) -> HLC:
    """The timestamp of receiving ``remote`` on ``node``: strictly greater than both ``local`` and ``remote``.

    Raises :class:`ClockDriftError` if ``remote`` is more than ``max_drift_ms`` ahead of ``now_ms`` (a peer
    with a broken clock must not drag every replica's clock into the future).
    """
    if remote.wall_ms - now_ms > max_drift_ms:
        raise ClockDriftError(remote_ms=remote.wall_ms, now_ms=now_ms, max_drift_ms=max_drift_ms)
    newest = max(remote, local) if local is not None else remote
    if now_ms > newest.wall_ms:
        return HLC(now_ms, 0, node)
    # the next counter of the newest wall time seen (past its last counter, the next millisecond)
    top = max(t.counter for t in (local, remote) if t is not None and t.wall_ms == newest.wall_ms)
    return after(HLC(newest.wall_ms, top, node), node=node)
