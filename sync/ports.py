"""What the sync client needs from a replica store and from a server (``typing.Protocol`` interfaces).

The desktop's encrypted replica implements :class:`ReplicaStore` (``desktop/storage/sync_store.py``); the
HTTP client in ``sync/client/remote.py`` implements :class:`Remote`. Tests wrap either to inject faults.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from outputhub.common.clock import HLC
from outputhub.common.sync import PullAlong
from outputhub.sync.engine import Change, RecordState
from outputhub.sync.protocol import expand_state_wire


@dataclass(frozen=True)
class LocalRecord:
    """A record as the replica holds it: its merge state, the server revision it was last synced at, and
    whether it has local changes not yet acknowledged."""

    entity: str
    record_id: str
    state: RecordState
    revision: int | None
    pending: bool


class RemoteItem:
    """One record from the pull feed: engine entity, id, server revision, tombstone, the read-shape data
    and the wire form of its merge state (``state``: in full; ``wire``: the compact form it was pulled in,
    which stands for ``state`` given ``data`` (``sync.protocol.expand_state``), or None when it came in
    full).

    Made with ``wire`` and no ``state``, the full state is expanded from it on first use: a pulled record
    new to the replica is stored in the compact form it came in and never needs the full one (expanding
    cost more than decoding the record). The caller checks such a ``wire`` when it makes the item
    (``sync.protocol.check_uniform``), so the expansion cannot fail later.

    ``staged``: what the store's :meth:`ReplicaStore.prepare_remote` made of the item ahead of applying it
    (opaque to the sync layer; None until then)."""

    __slots__ = ("_state", "data", "deleted", "entity", "record_id", "revision", "staged", "wire")

    def __init__(
        self,
        entity: str,
        record_id: str,
        revision: int,
        deleted: bool,
        data: Mapping[str, Any],
        state: Mapping[str, Any] | None = None,
        wire: Mapping[str, Any] | None = None,
    ) -> None:
        if state is None and wire is None:
            raise TypeError("a RemoteItem needs its state, in full or compact (wire)")
        self.entity = entity
        self.record_id = record_id
        self.revision = revision
        self.deleted = deleted
        self.data = data
        self.wire = wire
        self._state = state
        self.staged: object = None

    @property
    def state(self) -> Mapping[str, Any]:
        if self._state is None:
            assert self.wire is not None
            self._state = expand_state_wire(self.entity, self.wire, self.data)
        return self._state

    def _key(self) -> tuple[object, ...]:
        return (self.entity, self.record_id, self.revision, self.deleted, self.data, self.state, self.wire)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteItem) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"RemoteItem({self.entity!r}, {self.record_id!r}, revision={self.revision}, "
            f"deleted={self.deleted})"
        )


@dataclass(frozen=True)
class Outgoing:
    op_id: str
    entity: str
    record_id: str
    change: Mapping[str, Any]
    base_revision: int | None
    attempts: int = 0


@dataclass
class ApplyResult:
    changed: int = 0
    opened: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    max_version: HLC | None = None

    def saw(self, version: HLC | None) -> None:
        """A pulled state's newest version: kept if it is the newest so far."""
        if version is not None and (self.max_version is None or version > self.max_version):
            self.max_version = version


class TableSums(NamedTuple):
    """What the check compares per table (the server's ``TableChecksum``, from the replica's rows)."""

    count: int
    revision_sum: int
    digest: str | None
    newest: str | None
    """``'<id>:<revision>'`` of the record with the highest revision (the smallest id among its records)."""


class ReplicaStore(Protocol):
    @property
    def node_id(self) -> str: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def replayable_transaction(self) -> AbstractContextManager[None]:
        """A transaction of writes the protocol can redo: acknowledging pushed operations (a replayed op id
        gets its first answer again) and applying pulled pages together with their cursor (pulled again). The
        store may commit it without waiting for the disk; a crash or power cut may undo it, whole."""
        ...

    def bulk_apply(self) -> AbstractContextManager[None]:
        """Around a pull of many pages (its transactions inside): the store may move housekeeping off the
        committing thread meanwhile (the replica copies its write-ahead log back into the file on a thread of
        its own). Changes nothing the pull stores."""
        ...

    def org_id(self) -> str: ...

    def last_hlc(self) -> HLC | None: ...

    def save_hlc(self, hlc: HLC) -> None: ...

    def load(self, entity: str, record_id: str) -> LocalRecord | None: ...

    def save_local(self, state: RecordState, change: Change, *, base_revision: int | None) -> None:
        """A local edit: the record's new state and the outbox entry, in one transaction."""
        ...

    def prepare_remote(self, items: Sequence[RemoteItem], *, org_id: str) -> None:
        """Work on a pulled page that needs no database, done ahead of :meth:`apply_remote` (on the pull's
        prefetch thread, while the previous page is being applied); kept in each item's ``staged``. Must not
        touch the store's connection or state; doing nothing is correct."""
        ...

    def apply_remote(self, items: Sequence[RemoteItem]) -> ApplyResult:
        """Merge pulled records (join of states) and store them; in the caller's transaction."""
        ...

    def replace_with_remote(self, item: RemoteItem | None, *, entity: str, record_id: str) -> None:
        """Reset one record to the server's state (``None``: the server never had it)."""
        ...

    def remap(self, entity: str, from_id: str, to_id: str) -> int: ...

    def pending(self, *, limit: int) -> list[Outgoing]: ...

    def pending_count(self) -> int: ...

    def out_of_step(self, *, limit: int) -> list[tuple[str, str]]:
        """(entity, id) of up to ``limit`` records showing local changes that no pending op carries."""
        ...

    def acknowledge(self, op_ids: Sequence[str]) -> None: ...

    def record_failure(self, op_ids: Sequence[str], error: str) -> None: ...

    def add_rejection(self, *, op: Outgoing, reason: str) -> None: ...

    def walking(self, *, server_url: str, org_id: str) -> bool:
        """A full pull (from revision 0: a resync after the cursor expired, or a repair) of this server and
        organization was started and has not ended: the next pull goes on with it."""
        ...

    def start_walk(self, *, server_url: str, org_id: str) -> None:
        """A full pull begins: the cursor goes to 0 and the records it has seen are forgotten."""
        ...

    def pulling_from_zero(self, *, server_url: str, org_id: str) -> bool:
        """A pull that started at revision 0 (an initial sync, a walk) of this server and organization has
        pages left: its cursor is a page boundary of that pull, and the next pull goes on with it."""
        ...

    def note_pull_from_zero(self, *, server_url: str, org_id: str, going_on: bool) -> None:
        """With a page of a pull that started at 0 (in the page's transaction): whether pages are left."""
        ...

    def note_walked(self, records: Sequence[tuple[str, str]]) -> None:
        """``(entity, id)`` of records a full pull brought (in the transaction of their page)."""
        ...

    def walked(self) -> dict[str, set[str]]:
        """The ids, by entity, of every record the full pull under way has brought."""
        ...

    def end_walk(self) -> None:
        """The full pull is over (its records not seen dropped): nothing more to go on with."""
        ...

    def cursor(self, *, server_url: str, org_id: str) -> int: ...

    def set_cursor(self, *, server_url: str, org_id: str, cursor: int) -> None: ...

    def checksums(self, *, full: bool = False) -> dict[str, TableSums]: ...

    def record_ids(self, entity: str) -> Iterator[str]: ...

    def drop(self, entity: str, record_id: str) -> None: ...

    def drop_purged(self, purged: Sequence[tuple[str, str, int]]) -> tuple[int, list[str]]:
        """Drop the records the server purged (``(entity, record_id, revision of the purge)``, from a pulled
        page) that the replica last had before that revision and that carry no local edit, and close their
        open conflicts; how many went, and the conflicts closed."""
        ...


class Remote(Protocol):
    """The server's sync endpoints (see docs/sync-protocol.md)."""

    @property
    def server_url(self) -> str: ...

    @property
    def org_id(self) -> str: ...

    def pull(
        self,
        *,
        since: int,
        limit: int,
        from_zero: bool = False,
        decoding: AbstractContextManager[object] | None = None,
    ) -> Mapping[str, Any]:
        """A page of changes after ``since``; ``from_zero``: it continues a pull that started at 0 (an
        initial sync or a full resync), which a purge of tombstones does not expire. ``decoding``: entered
        while the answer is decoded, not while it is awaited (the pull takes turns with its store: see
        ``SyncClient.pull``)."""
        ...

    def push(
        self,
        *,
        device: str,
        changes: Sequence[Mapping[str, Any]],
        pull: PullAlong | None = None,
    ) -> Mapping[str, Any]:
        """Push ``changes``; with ``pull``, the answer may also carry the first page of changes after
        ``pull.since``, as read right after the push (``changes``: protocol 4; absent from older servers),
        and with ``pull.checksums`` the check's sums read after it (``checksums``)."""
        ...

    def record(self, *, entity: str, record_id: str) -> Mapping[str, Any] | None: ...

    def checksums(self, *, full: bool = False) -> Mapping[str, Any]: ...
