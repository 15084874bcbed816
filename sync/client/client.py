"""One sync round: push the outbox, pull what changed, check the replica against the server.

Durability: a local edit and its outbox entry are one transaction; an outbox entry leaves only when the
server has answered for it (replaying an op id is a no-op on the server, so a lost answer is harmless); each
pulled page is applied together with its cursor in one transaction, which consecutive pages may share (a crash
mid-apply re-pulls the pages of that transaction). Both kinds of bookkeeping can be redone, so they commit
without waiting for the disk (``ReplicaStore.replayable_transaction``): a power cut may undo them, never an
edit (a local edit and its outbox entry commit durably).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import orjson

from outputhub.common.sync import PullAlong
from outputhub.sync.client.errors import CursorExpiredError, RequestTooLargeError, SyncError
from outputhub.sync.engine import ChangeKind
from outputhub.sync.ports import Outgoing, Remote, RemoteItem, ReplicaStore
from outputhub.sync.protocol import ENTITY_TABLES, TABLE_ENTITIES, check_uniform, expand_state_wire

T = TypeVar("T")

PULL_GROUP_ROWS: Final = 20000
"""Pulled records applied in one transaction at most while the next page is already there (see ``pull``;
:data:`PULL_GROUP_SECONDS` usually ends a transaction first). Storing 100k pulled outputs: 7.9k rows/s
committed every 5,000, 9.4k every 10,000, 9.6k every 20,000 (docs/benchmarks.md)."""
PULL_GROUP_SECONDS: Final = 1.0
"""A transaction takes no further page after this long (the replica's write lock: GUI edits wait for it)."""

PUSH_BATCH_BYTES: Final = 4 * 1024 * 1024
"""A push sends changes up to about this many bytes of JSON at once (and at most ``push_batch`` of them): the
server refuses bodies over its ``max_body_bytes`` (5 MiB by default) with 413. A server that refuses a batch
anyway (a lower limit) gets batches half the size, down to one change; one change it still refuses is kept
as a refused edit, so the changes queued after it are not held up."""

Progress = Callable[[str, int, int | None], None]
"""``(phase, done, total)``: phase is ``push`` or ``pull``; total may be unknown (None)."""


def _in_background(fetch: Callable[..., T], **kwargs: Any) -> Future[T]:
    """``fetch(**kwargs)`` on a thread of its own (the pull's prefetch thread), its outcome in the future.

    A daemon thread, which nobody waits for when the pull ends with an error: a pull interrupted (Ctrl+C, a
    failed apply) while the next page was on its way used to wait for that request to finish, up to the read
    timeout (30 s) when the server had stopped answering (QA), and the process could not exit before either.
    What such a thread still does once nobody waits is harmless: it reads the network and decodes, and writes
    nothing to the replica (``ReplicaStore.prepare_remote`` only builds rows in memory). The pull starts the
    next fetch only once it has taken the previous one's result, so one runs at a time."""
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fetch(**kwargs))
        except BaseException as exc:  # handed to the pull, which raises it
            future.set_exception(exc)

    threading.Thread(target=run, name="outputhub-pull", daemon=True).start()
    return future


@dataclass(frozen=True)
class PulledAlong:
    """What the answer to a push brought besides its results (protocol 4)."""

    caught_up: bool = False
    """A page came and nothing more follows it: the replica has everything up to the server's head then."""
    checksums: Mapping[str, Any] | None = None
    """The check's sums, read after that page (only when caught up and asked for)."""


@dataclass
class SyncReport:
    pushed: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    pulled: int = 0
    conflicts_opened: list[str] = field(default_factory=list)
    conflicts_closed: list[str] = field(default_factory=list)
    full_resync: bool = False
    repaired: bool = False
    checksum_ok: bool | None = None
    mismatched_tables: list[str] = field(default_factory=list)
    cursor: int = 0
    reset: int = 0
    """Records shown as the server has them again after the sync that refused their edits stopped short."""
    purged: int = 0
    """Records the server purged (long-deleted) that this sync dropped from the replica."""


def _item(record: dict[str, Any]) -> RemoteItem:
    entity = TABLE_ENTITIES[record["entity"]]
    data = record.get("data") or {}
    wire = record.get("state") or {}
    state: Mapping[str, Any] | None = None
    if "u" in wire:  # protocol 3's uniform form: checked now, expanded only if the apply needs it
        check_uniform(entity, wire, data.get)
    else:
        state = expand_state_wire(entity, wire, data)  # protocol 2's text markers
    return RemoteItem(
        entity=entity,
        record_id=str(record["id"]),
        revision=int(record["revision"]),
        deleted=bool(record["deleted"]),
        data=data,
        state=state,
        wire=None if state is wire else wire,
    )


def _page_along(answer: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, list[RemoteItem]]:
    """The page a push's answer carries (protocol 4) and its records, or (None, []) when it carries none.
    A page whose records cannot be read is left for :meth:`SyncClient.pull` to fetch again and report."""
    page = answer.get("changes")
    if not isinstance(page, Mapping):
        return None, []
    try:
        return page, [_item(r) for r in page.get("records", [])]
    except (KeyError, TypeError, ValueError):  # ProtocolError is a ValueError
        return None, []


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_state: list[bool] = []  # whether the collector was on when the outermost pause began


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while pages are decoded and applied.

    A page is hundreds of thousands of small containers that live until applied; the collector would walk
    them (and the rest of a big process's heap) again and again: decoding a page measured 3-5x slower in a
    process holding a server app than in a fresh one. Decoded JSON holds no reference cycles, so reference
    counting frees it all the same; the collector resumes (and catches up) when the last pause ends."""
    global _gc_pauses
    with _gc_lock:
        _gc_pauses += 1
        if _gc_pauses == 1:
            was_enabled = gc.isenabled()
            gc.disable()
            _gc_state.append(was_enabled)
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_state.pop():
                gc.enable()


class _Ask:
    """The server's version of a record is not at hand: ask for it."""


ASK: Final = _Ask()

OUT_OF_STEP_PER_SYNC: Final = 200
"""At most this many out-of-step records are shown as the server has them per sync, a request each (the
rest at the next sync): a server limits how many requests a client makes a minute."""


def _refused_records(answer: Mapping[str, Any]) -> dict[tuple[str, str], RemoteItem | None]:
    """The records the refused ops of a push named, as the server had them after it, by (entity, id): what
    a server that sends ``refused_records`` said (an older one sends nothing: each is asked for)."""
    out: dict[tuple[str, str], RemoteItem | None] = {}
    for entry in answer.get("refused_records") or ():
        record = entry.get("record")
        out[(str(entry["entity"]), str(entry["id"]))] = _item(dict(record)) if record is not None else None
    return out


def _within(batch: list[Outgoing], budget: int) -> tuple[list[Outgoing], int]:
    """The first changes of ``batch`` that fit in ``budget`` bytes of JSON (at least one), and their size in
    bytes (about what they add to a push's body)."""
    total = 0
    for n, op in enumerate(batch):
        size = len(orjson.dumps(op.change))
        if total + size > budget and n > 0:
            return batch[:n], total
        total += size
    return batch, total


class SyncClient:
    def __init__(
        self,
        store: ReplicaStore,
        remote: Remote,
        *,
        push_batch: int = 500,
        push_batch_bytes: int = PUSH_BATCH_BYTES,
        pull_page: int = 1000,
        full_check: bool = False,
    ) -> None:
        self.store = store
        self.remote = remote
        self.full_check = full_check
        self.push_batch = push_batch
        self.push_batch_bytes = push_batch_bytes
        self.pull_page = pull_page

    def sync(self, progress: Progress | None = None) -> SyncReport:
        report = SyncReport()
        # a full pull cut short goes on first in pull() (the push's page would skip the walk's
        # record-keeping), and so does any pull from 0 cut short (the push's page would ask without
        # from_zero: 410 past a purge)
        server, org = self.remote.server_url, self.remote.org_id
        going_on = self.store.walking(server_url=server, org_id=org) or self.store.pulling_from_zero(
            server_url=server, org_id=org
        )
        along = self.push(report, progress, pull=not going_on, checksums=not self.full_check)
        if not along.caught_up:
            self.pull(report, progress)
        self.repair_out_of_step(report)
        self.verify(report, progress, checksums=along.checksums if along.caught_up else None)
        return report

    # -- push ----------------------------------------------------------------------------------------------

    def push(
        self,
        report: SyncReport,
        progress: Progress | None = None,
        *,
        pull: bool = False,
        checksums: bool = False,
    ) -> PulledAlong:
        """Push the outbox in batches. ``pull``: the last batch asks for the changes after the replica's
        cursor too (protocol 4: one request where a push and a pull took two), and with ``checksums`` for the
        check's sums read after them; its answer's page is applied in the transaction that acknowledges the
        batch. ``caught_up`` when that page left nothing more to pull (the caller skips :meth:`pull`); not
        when there was nothing to push, or the server sent no page (an older server, a cursor it no longer
        serves) or said more follows."""
        total = self.store.pending_count()
        done = 0
        refused_records: set[tuple[str, str]] = set()
        along = PulledAlong()
        while True:
            batch, size = _within(self.store.pending(limit=self.push_batch), self.push_batch_bytes)
            if not batch:
                break
            along_with = (
                PullAlong(
                    since=self.store.cursor(server_url=self.remote.server_url, org_id=self.remote.org_id),
                    limit=self.pull_page,
                    checksums=checksums,
                )
                if pull and done + len(batch) >= total
                else None
            )
            try:
                with collector_paused():
                    answer = self.remote.push(
                        device=self.store.node_id, changes=[o.change for o in batch], pull=along_with
                    )
            except RequestTooLargeError as exc:
                if len(batch) > 1:  # this server takes less at once: half as much, and again if need be
                    self.push_batch_bytes = max(1, size // 2)
                    continue
                # one change the server will not take in any batch: kept as a refused edit, and the
                # changes queued after it go on
                with self.store.replayable_transaction():
                    self._refuse(batch[0], f"too-large: {exc}", report, refused_records)
                    self.store.acknowledge([batch[0].op_id])
                done += 1
                continue
            except SyncError as exc:
                self.store.record_failure([o.op_id for o in batch], str(exc))
                raise
            results = {r["op_id"]: r for r in answer.get("results", [])}
            answered: list[Outgoing] = [o for o in batch if o.op_id in results]
            if not answered:
                raise SyncError("the server answered none of the pushed changes; they stay queued")
            page, items = _page_along(answer) if along_with is not None else (None, [])
            moved = self._moved_edits(answered, results)
            current = _refused_records(answer)
            with collector_paused(), self.store.replayable_transaction():
                for op in answered:
                    result = results[op.op_id]
                    if result.get("status") == "refused":
                        error = result.get("error") or {}
                        reason = f"{error.get('code', 'refused')}: {error.get('detail', '')}"
                        self._refuse(op, reason, report, refused_records)
                    elif result.get("conflicts") or result.get("resolved"):
                        # news only what this replica did not show already: its own edit made the
                        # conflicts it opens here at once, and closed those it resolves (a sync after a
                        # resolution said "1 open conflict(s) changed" of a list it left as it was; QA)
                        local = self.store.load(op.entity, op.record_id)
                        shown = {c.id for c in local.state.conflicts} if local is not None else set()
                        report.conflicts_opened.extend(
                            c for c in result.get("conflicts") or [] if c not in shown
                        )
                        for closed in result.get("resolved") or []:
                            # a later op of this push closed it (the same record edited twice against a
                            # delete): it never reached the user, so it is neither new nor replaced
                            if closed in report.conflicts_opened:
                                report.conflicts_opened.remove(closed)
                            elif closed in shown:
                                report.conflicts_closed.append(closed)
                self.store.acknowledge([o.op_id for o in answered])
                for key in sorted(refused_records & current.keys()):
                    # the server's copy came with the answer: shown again with the refused edit kept
                    self._reset(*key, current[key])
                    refused_records.discard(key)
                for (entity, record_id), remote in moved.items():
                    local = self.store.load(entity, record_id)
                    if local is not None and not local.pending:
                        self.store.replace_with_remote(remote, entity=entity, record_id=record_id)
                if page is not None:
                    assert along_with is not None
                    report.cursor = self._apply_page(
                        page, items, report, progress, start=along_with.since, from_zero=along_with.since == 0
                    )
            caught_up = page is not None and not page.get("has_more")
            sums = answer.get("checksums") if caught_up else None
            along = PulledAlong(caught_up, sums if isinstance(sums, Mapping) else None)
            report.pushed += len(answered)
            done += len(answered)
            if progress:
                progress("push", done, max(total, done))
        for entity, record_id in sorted(refused_records):
            self._reset(entity, record_id)
        return along

    def _moved_edits(
        self, answered: Sequence[Outgoing], results: Mapping[str, Mapping[str, Any]]
    ) -> dict[tuple[str, str], RemoteItem | None]:
        """Edits of a lookup the server had merged into another, which it applied to the surviving one
        (``remapped_to`` on an update): the merged record, as the server has it, by (entity, id). Read before
        the answer is applied, which then shows the record as the server does (its tombstone) instead of
        merging the moved edit into it again (that would restore it here and nowhere else)."""
        moved: dict[tuple[str, str], RemoteItem | None] = {}
        for op in answered:
            result = results[op.op_id]
            if result.get("status") == "refused" or not result.get("remapped_to"):
                continue
            if op.change.get("kind") != ChangeKind.UPDATE.value or (op.entity, op.record_id) in moved:
                continue
            remote = self.remote.record(entity=ENTITY_TABLES[op.entity], record_id=op.record_id)
            moved[(op.entity, op.record_id)] = _item(dict(remote)) if remote is not None else None
        return moved

    def _refuse(
        self, op: Outgoing, reason: str, report: SyncReport, refused_records: set[tuple[str, str]]
    ) -> None:
        """Keep a change the server will not take as a refused edit (in the caller's transaction); its record
        is shown as the server has it once the push is done."""
        self.store.add_rejection(op=op, reason=reason)
        report.refused.append({"op_id": op.op_id, "entity": op.entity, "id": op.record_id, "reason": reason})
        refused_records.add((op.entity, op.record_id))

    def _reset(self, entity: str, record_id: str, remote: RemoteItem | _Ask | None = ASK) -> None:
        """After a refused edit: show the server's version of the record again (the edit is kept in a
        rejection record); ``remote``: that version, when the push's answer brought it (``None``: the server
        has no such record), else it is asked for."""
        local = self.store.load(entity, record_id)
        if local is not None and local.pending:
            return
        if remote is ASK:
            fetched = self.remote.record(entity=ENTITY_TABLES[entity], record_id=record_id)
            remote = _item(dict(fetched)) if fetched is not None else None
        assert not isinstance(remote, _Ask)
        self.store.replace_with_remote(remote, entity=entity, record_id=record_id)

    def repair_out_of_step(self, report: SyncReport, *, limit: int = OUT_OF_STEP_PER_SYNC) -> None:
        """Records that show local changes no pending op carries (the server refused them and the sync
        stopped before the record was shown as the server has it): shown as the server has them now. Run
        after the pull, which brings every record whose acknowledged edits the server took; what is still
        out of step then is what the server did not take. Without this such a record kept showing the
        refused edit for good, and no check noticed (its revision is the server's)."""
        for entity, record_id in self.store.out_of_step(limit=limit):
            self._reset(entity, record_id)
            report.reset += 1

    # -- pull ----------------------------------------------------------------------------------------------

    def pull(self, report: SyncReport, progress: Progress | None = None, *, full: bool = False) -> None:
        """Pull what changed since the stored cursor (``full``: everything) and apply it. Pages are applied in
        transactions together with their cursor. Consecutive pages share a transaction while the next page has
        already arrived, the transaction holds fewer than :data:`PULL_GROUP_ROWS` records and is younger than
        :data:`PULL_GROUP_SECONDS`: every commit rewrites (encrypted) each page it touched in the replica's
        random-key indexes (record ids, link tables) and full-text segments, so a 100k initial sync in pages
        of 1,000 committed one by one wrote 8x the replica's size to disk, grouped by 5,000 4x (and committing
        every 10,000 instead of 5,000 stores 1.2x faster). A transaction never waits for the network, so the
        replica's write lock is held only while applying. A crash undoes the pages of the open transaction;
        they are pulled again. A pull of more than one page runs in the store's bulk mode
        (:meth:`ReplicaStore.bulk_apply`: the replica's checkpoints on a thread of their own).

        A full pull (``full``, or the resync after the cursor expired) is a *walk*: every record from
        revision 0, then the records it did not bring are dropped (purged on the server). The store keeps
        which records it brought, page by page with the cursor, so a walk cut short goes on at the next
        pull from where it stopped (its pages ask with ``from_zero``: their cursors are below the purge
        horizon); it started again from 0 at every sync, and one often interrupted never ended (QA). Any
        other pull from 0 cut short (an initial sync killed, or one whose first page came with a push) goes
        on with ``from_zero`` too (:meth:`ReplicaStore.pulling_from_zero`): in an organization that had a
        purge it was answered 410 and pulled everything again (QA, 2026-11-29). Records purged while such a
        pull was cut short are named by the page that covers the purge (``purged``) and dropped."""
        server, org = self.remote.server_url, self.remote.org_id
        walking = self.store.walking(server_url=server, org_id=org)
        if full:
            self.store.start_walk(server_url=server, org_id=org)
            walking = True
        cursor = self.store.cursor(server_url=server, org_id=org)
        if walking:
            report.full_resync = report.full_resync or not full
        # this pull's pages are one of a pull from 0 (their cursors may lie below the purge horizon)
        from_zero = cursor == 0 or walking or self.store.pulling_from_zero(server_url=server, org_id=org)
        start = cursor
        turns = threading.Lock()  # decoding a page and applying one take turns (see _fetch)
        grouped = 0  # records applied in the open transaction
        opened = 0.0  # when it began
        bulking = False
        with (
            collector_paused(),
            ExitStack() as bulk,  # the store's bulk mode from the second page on (left after the last commit)
            ExitStack() as group,  # the open transaction, if any: an exception leaving rolls it back
        ):
            pending: Future[tuple[Mapping[str, Any], list[RemoteItem]]] = _in_background(
                self._fetch, since=cursor, walk=from_zero and cursor > 0, turns=turns
            )
            while True:
                if grouped and (
                    grouped >= PULL_GROUP_ROWS
                    or time.monotonic() - opened >= PULL_GROUP_SECONDS
                    # commit rather than hold the write lock while waiting (for the server, or for the turn
                    # to decode: the commit holds no GIL and overlaps the decoding; waiting for the decoding
                    # to group two pages stored 100k outputs at 20.3-22.4k rows/s, against 22.1-24.9k)
                    or not pending.done()
                ):
                    group.close()
                    grouped = 0
                try:
                    page, items = pending.result()
                except CursorExpiredError:
                    group.close()
                    grouped = 0
                    if start == 0:  # a pull from 0 cannot expire (an older server said so mid-walk: no loop)
                        raise
                    report.full_resync = True
                    self.store.start_walk(server_url=server, org_id=org)
                    cursor, start, walking, from_zero = 0, 0, True, True
                    pending = _in_background(self._fetch, since=0, turns=turns)
                    continue
                except BaseException:
                    group.close()  # the pages applied so far are consistent with their cursor: keep them
                    raise
                if page.get("has_more"):
                    # fetch the next page while this one is applied (server and replica work at once)
                    pending = _in_background(
                        self._fetch, since=int(page["next_since"]), walk=from_zero, turns=turns
                    )
                    if not bulking:
                        bulk.enter_context(self.store.bulk_apply())
                        bulking = True
                if not grouped:
                    group.enter_context(self.store.replayable_transaction())
                    opened = time.monotonic()
                # no savepoint per page: SQLite would journal every page it touches (a failure rolls the
                # whole transaction back, and the pages in it are pulled again)
                with turns:
                    cursor = self._apply_page(page, items, report, progress, start=start, from_zero=from_zero)
                    if walking:  # with the page and its cursor, in their transaction
                        self.store.note_walked([(item.entity, item.record_id) for item in items])
                grouped += max(len(items), 1)
                if not page.get("has_more"):
                    break
            group.close()
        report.cursor = cursor
        if walking:
            self._drop_unseen(self.store.walked())
            self.store.end_walk()

    def _apply_page(
        self,
        page: Mapping[str, Any],
        items: list[RemoteItem],
        report: SyncReport,
        progress: Progress | None,
        *,
        start: int,
        from_zero: bool = False,
    ) -> int:
        """Apply one pulled page and store its cursor (in the caller's transaction); the new cursor.
        ``from_zero``: the page is one of a pull that started at 0 (noted with the cursor while pages are
        left, so that the pull goes on with ``from_zero`` if it is cut short)."""
        gone = page.get("purged")
        if gone:
            # before the page's records: a purged id written again after the purge (a later revision) stays
            dropped, closed = self.store.drop_purged(
                [
                    (TABLE_ENTITIES[p["entity"]], str(p["id"]), int(p["revision"]))
                    for p in gone
                    if p.get("entity") in TABLE_ENTITIES
                ]
            )
            report.purged += dropped
            report.conflicts_closed.extend(closed)
        result = self.store.apply_remote(items)
        for remap in page.get("remaps", []):
            self.store.remap(remap["entity"], str(remap["from_id"]), str(remap["to_id"]))
        cursor = int(page["next_since"])
        self.store.set_cursor(server_url=self.remote.server_url, org_id=self.remote.org_id, cursor=cursor)
        if from_zero:
            server, org = self.remote.server_url, self.remote.org_id
            self.store.note_pull_from_zero(server_url=server, org_id=org, going_on=bool(page.get("has_more")))
        report.pulled += len(items)
        report.conflicts_opened.extend(c for c in result.opened if c not in report.conflicts_opened)
        report.conflicts_closed.extend(result.closed)
        if progress:
            head = page.get("head")
            progress("pull", cursor - start, (int(head) - start) if head else None)
        return cursor

    def _fetch(
        self, *, since: int, walk: bool = False, turns: AbstractContextManager[object] | None = None
    ) -> tuple[Mapping[str, Any], list[RemoteItem]]:
        """A page and its records as :class:`RemoteItem` (compact states expanded): run on the prefetch
        thread, so that the server's reading and sending the next page overlaps applying this one.
        ``walk``: the page continues a pull that started at 0 (its cursor may be below the purge horizon).

        ``turns``: held while decoding (the JSON, the items, the store's preparation), and by the pull while
        it applies a page, so that the two take turns instead of contending for the GIL. Applying inserts
        row by row (``executemany``), and SQLite gives the GIL back at every row; while this thread ran
        Python, each row then waited for the interpreter's switch interval (5 ms) to get it again (the
        convoy effect), and the two threads together were slower than in turns: initial sync of 100k
        outputs 19.3-21.5k rows/s without, 21.3-23.4k with (docs/benchmarks.md, eighteenth session). The
        wait for the server and the commits (which hold no GIL) still overlap the other thread's work."""
        page = self.remote.pull(since=since, limit=self.pull_page, from_zero=walk, decoding=turns)
        with turns or nullcontext():
            items = [_item(r) for r in page.get("records", [])]
            if self.store is not None and items:
                self.store.prepare_remote(items, org_id=self.remote.org_id)
        return page, items

    def _drop_unseen(self, seen: dict[str, set[str]]) -> None:
        """After a full pull: records the server no longer has (purged) and with no local edit go."""
        for entity in ENTITY_TABLES:
            present = seen.get(entity, set())
            for record_id in list(self.store.record_ids(entity)):
                if record_id in present:
                    continue
                local = self.store.load(entity, record_id)
                if local is not None and not local.pending and local.revision is not None:
                    self.store.drop(entity, record_id)

    # -- invariants ----------------------------------------------------------------------------------------

    def verify(
        self,
        report: SyncReport,
        progress: Progress | None = None,
        *,
        full: bool | None = None,
        checksums: Mapping[str, Any] | None = None,
    ) -> None:
        """Compare per-table counts and revision sums (and with ``full`` digests of every (id, revision)) with
        the server; on a mismatch, pull everything again (the join keeps local edits) and report it.
        ``checksums``: the server's sums as a push's answer brought them (not full ones), used instead of
        asking for them first."""
        if self.store.pending_count():
            return
        full = self.full_check if full is None else full
        for _ in range(3):
            remote = checksums if checksums is not None and not full else self.remote.checksums(full=full)
            checksums = None
            if int(remote.get("revision", 0)) <= report.cursor:
                break
            self.pull(report, progress)  # someone pushed meanwhile: catch up first
        mismatched = self._mismatched(remote, full=full)
        if mismatched:
            report.repaired = True
            report.mismatched_tables = mismatched
            self.pull(report, progress, full=True)
            mismatched = self._mismatched(self.remote.checksums(full=full), full=full)
        report.checksum_ok = not mismatched
        if mismatched:
            report.mismatched_tables = mismatched

    def _mismatched(self, remote: Any, *, full: bool) -> list[str]:
        local = self.store.checksums(full=full)
        out: list[str] = []
        for table, summary in (remote.get("tables") or {}).items():
            count, total, digest, newest = local.get(table, (0, 0, None, None))
            if (
                count != summary["count"]
                or total != summary["revision_sum"]
                or (full and digest != summary["digest"])
                # a server that sends it (2026-11-30 on): a restored one that took other records under the
                # revisions this replica had pulled after its backup (the counts and sums can agree; QA)
                or ("newest" in summary and newest != summary["newest"])
            ):
                out.append(table)
        return out
