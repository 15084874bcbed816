"""The pull applies consecutive pages in one transaction while the next page is already there (fewer commits:
each commit rewrites the pages it touched in the replica's random-key indexes), never while waiting for the
server; a failure rolls back only the open transaction, and the next pull completes the replica."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest

from outputhub.common.clock import HLC
from outputhub.common.sync import PullAlong
from outputhub.desktop.storage import open_replica
from outputhub.desktop.storage.replica import Replica
from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from outputhub.sync.client import SyncClient, SyncReport
from outputhub.sync.client import client as client_module
from outputhub.sync.engine import DEFAULT_SCHEMA, make_create, merge_change
from outputhub.sync.ports import ApplyResult, RemoteItem
from outputhub.sync.protocol import state_to_wire

PASSPHRASE = "pull groups"
ORG = str(uuid.UUID(int=1))
SERVER = "http://server.test"


def feed(count: int) -> list[dict[str, Any]]:
    """Pull records of ``count`` outputs, revisions 1..count."""
    records: list[dict[str, Any]] = []
    for n in range(count):
        record_id = str(uuid.UUID(int=1000 + n))
        values = {"prompt_id": str(uuid.UUID(int=2)), "content": f"pulled output number {n} " * (1 + n % 9)}
        change = make_create(
            "output",
            record_id,
            values,
            schema=DEFAULT_SCHEMA,
            node="server",
            hlc=HLC(1_700_000_000_000 + n, 0, "server"),
            op_id=f"op-{n}",
        )
        state = merge_change(None, change, DEFAULT_SCHEMA).state
        data = {"id": record_id, "revision": n + 1, "created_at": "2026-11-26T08:00:00.000000Z", **values}
        records.append(
            {
                "entity": "outputs",
                "id": record_id,
                "revision": n + 1,
                "deleted": False,
                "data": data,
                "state": state_to_wire(state),
            }
        )
    return records


class FeedRemote:
    """The pull endpoint over a fixed feed (``delay_s``: each page takes that long to arrive;
    ``decode_s``: and that long to decode, in the client's ``decoding`` context, ``decoding_now`` set)."""

    def __init__(
        self, records: Sequence[dict[str, Any]], *, delay_s: float = 0.0, decode_s: float = 0.0
    ) -> None:
        self.records = list(records)
        self.delay_s = delay_s
        self.decode_s = decode_s
        self.decoding_now = False
        self.decoded = 0  # pages decoded in a context the client gave
        self.on_pull: Any = None

    @property
    def server_url(self) -> str:
        return SERVER

    @property
    def org_id(self) -> str:
        return ORG

    def pull(
        self,
        *,
        since: int,
        limit: int,
        from_zero: bool = False,
        decoding: AbstractContextManager[object] | None = None,
    ) -> Mapping[str, Any]:
        if self.on_pull is not None:
            self.on_pull(since)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.decode_s:
            with decoding or nullcontext():
                self.decoding_now = True
                time.sleep(self.decode_s)
                self.decoding_now = False
            self.decoded += decoding is not None
        page = [r for r in self.records if r["revision"] > since][:limit]
        next_since = page[-1]["revision"] if page else since
        return {
            "records": page,
            "next_since": next_since,
            "has_more": next_since < len(self.records),
            "head": len(self.records),
        }

    def push(
        self, *, device: str, changes: Sequence[Mapping[str, Any]], pull: PullAlong | None = None
    ) -> Mapping[str, Any]:
        raise AssertionError("nothing to push")

    def record(self, *, entity: str, record_id: str) -> Mapping[str, Any] | None:
        raise AssertionError("not used")

    def checksums(self, *, full: bool = False) -> Mapping[str, Any]:
        raise AssertionError("not used")


class CountingStore(ReplicaSyncStore):
    """Counts the transactions the pull opens; applying takes ``apply_s`` (so the next page is there), and
    ``fail_at`` makes applying the page holding that revision fail."""

    def __init__(self, replica: Replica, *, apply_s: float = 0.0, fail_at: int | None = None) -> None:
        super().__init__(replica)
        self.transactions = 0
        self.bulk = 0
        self.apply_s = apply_s
        self.fail_at = fail_at
        self.staged: list[bool] = []  # per applied output: whether its row came built ahead
        self.watch: FeedRemote | None = None  # pages applied while it decoded one are counted in overlapped
        self.overlapped = 0

    def replayable_transaction(self) -> AbstractContextManager[None]:
        self.transactions += 1
        return super().replayable_transaction()

    def bulk_apply(self) -> AbstractContextManager[None]:
        self.bulk += 1
        return super().bulk_apply()

    def apply_remote(self, items: Sequence[RemoteItem]) -> ApplyResult:
        watched = self.watch is not None and self.watch.decoding_now
        time.sleep(self.apply_s)
        if self.watch is not None:
            self.overlapped += watched or self.watch.decoding_now
        self.staged += [i.staged is not None for i in items if i.entity == "output"]
        result = super().apply_remote(items)
        if self.fail_at is not None and any(i.revision == self.fail_at for i in items):
            raise RuntimeError("injected: applying this page failed")
        return result


class EagerClient(SyncClient):
    """Decodes pages without waiting for its turn (``SyncClient._fetch``), so that the next page is there as
    soon as one is applied: the grouping rules, alone."""

    def _fetch(
        self, *, since: int, walk: bool = False, turns: AbstractContextManager[object] | None = None
    ) -> tuple[Mapping[str, Any], list[RemoteItem]]:
        return super()._fetch(since=since, walk=walk)


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    opened = open_replica(tmp_path / "replica.ohr", passphrase=PASSPHRASE, create=True)
    try:
        yield opened
    finally:
        opened.close()


def _store(replica: Replica, **options: Any) -> CountingStore:
    store = CountingStore(replica, **options)
    store.attach(org_id=ORG)
    store.transactions = 0
    return store


def test_ready_pages_share_a_transaction(replica: Replica, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "PULL_GROUP_ROWS", 7)
    store = _store(replica, apply_s=0.05)
    report = SyncReport()
    EagerClient(store, FeedRemote(feed(30)), pull_page=3).pull(report)  # 10 pages

    assert report.pulled == 30 and report.cursor == 30
    assert store.bulk == 1  # a pull of many pages: the replica checkpoints on a thread meanwhile
    assert store.staged == [True] * 30  # every output's row was built on the prefetch thread
    assert store.transactions == 4  # 3 + 3 + 3 + 1 pages: each group stops at 7 records or more
    assert store.cursor(server_url=SERVER, org_id=ORG) == 30
    assert store.replica.count_live(table="outputs") == 30
    assert store.replica.verify_integrity() == []
    assert {h.id for h in store.replica.search_outputs("number", limit=100)} == {r["id"] for r in feed(30)}


def test_decoding_a_page_and_applying_one_take_turns(replica: Replica) -> None:
    """The prefetch thread decodes the next page while the store waits, not while it applies one (the two
    would contend for the GIL: see ``SyncClient._fetch``); the wait for the server still overlaps."""
    store = _store(replica, apply_s=0.03)
    remote = FeedRemote(feed(24), decode_s=0.03)
    store.watch = remote
    report = SyncReport()
    SyncClient(store, remote, pull_page=3).pull(report)  # 8 pages

    assert report.pulled == 24 and store.cursor(server_url=SERVER, org_id=ORG) == 24
    assert remote.decoded == 8  # every page was decoded in the client's turn
    assert store.overlapped == 0  # and never while a page was applied


def test_a_page_that_is_not_there_yet_commits_first(replica: Replica, tmp_path: Path) -> None:
    store = _store(replica)
    remote = FeedRemote(feed(12), delay_s=0.3)
    visible: dict[int, int] = {}

    def look(since: int) -> None:  # runs in the prefetch thread while the client waits for this page
        if since:
            time.sleep(0.15)
            other = open_replica(tmp_path / "replica.ohr", passphrase=PASSPHRASE)
            try:
                visible[since] = other.count_live(table="outputs")
            finally:
                other.close()

    remote.on_pull = look
    SyncClient(store, remote, pull_page=4).pull(SyncReport())

    assert store.transactions == 3  # one per page: none was there when the previous one was applied
    assert visible == {4: 4, 8: 8}  # another connection saw each page committed while the next one came


def test_a_failure_rolls_back_the_open_transaction_and_the_next_pull_completes(
    replica: Replica, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "PULL_GROUP_ROWS", 7)
    records = feed(30)
    store = _store(replica, apply_s=0.05, fail_at=20)  # page 19..21: the third group (19..27)
    with pytest.raises(RuntimeError, match="injected"):
        EagerClient(store, FeedRemote(records), pull_page=3).pull(SyncReport())

    # the first two groups (pages up to revision 18) are committed, the failing group is not
    assert store.cursor(server_url=SERVER, org_id=ORG) == 18
    assert store.replica.count_live(table="outputs") == 18

    store.fail_at = None
    report = SyncReport()
    SyncClient(store, FeedRemote(records), pull_page=3).pull(report)
    assert report.pulled == 12 and store.cursor(server_url=SERVER, org_id=ORG) == 30

    fresh = open_replica(tmp_path / "fresh.ohr", passphrase=PASSPHRASE, create=True)
    try:
        reference = _store(fresh)
        SyncClient(reference, FeedRemote(records), pull_page=30).pull(SyncReport())
        assert store.snapshot_values("output") == reference.snapshot_values("output")
        assert store.replica.verify_integrity() == []
    finally:
        fresh.close()


def test_a_cancel_while_waiting_keeps_the_applied_pages(replica: Replica) -> None:
    """An error from the server (or a cancel) arrives while a group is open: the pages applied are kept."""
    store = _store(replica, apply_s=0.05)
    remote = FeedRemote(feed(12))

    def fail_third(since: int) -> None:
        if since >= 8:
            raise ConnectionError("injected: the server went away")

    remote.on_pull = fail_third
    with pytest.raises(ConnectionError):
        SyncClient(store, remote, pull_page=4).pull(SyncReport())
    assert store.cursor(server_url=SERVER, org_id=ORG) == 8
    assert store.replica.count_live(table="outputs") == 8


def test_a_pull_of_one_page_leaves_the_checkpoints_to_the_commit(replica: Replica) -> None:
    store = _store(replica)
    report = SyncReport()
    SyncClient(store, FeedRemote(feed(5)), pull_page=10).pull(report)
    assert report.pulled == 5 and store.bulk == 0


def test_a_failing_pull_does_not_wait_for_the_page_on_its_way(replica: Replica) -> None:
    """A pull that ends with an error (a failed apply here; Ctrl+C alike) while the next page is still on its
    way leaves at once: it used to wait for that request, up to the read timeout when the server had stopped
    answering (QA). The request left behind finishes on its own, writing nothing."""
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    def stuck(since: int) -> None:  # the server stops answering after the first page
        if since:
            entered.set()
            release.wait(timeout=20)
            finished.set()

    class Failing(CountingStore):  # fails applying the first page once the second one was asked for
        def apply_remote(self, items: Sequence[RemoteItem]) -> ApplyResult:
            entered.wait(timeout=20)
            return super().apply_remote(items)

    remote = FeedRemote(feed(9))
    remote.on_pull = stuck
    store = Failing(replica, fail_at=2)
    store.attach(org_id=ORG)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            SyncClient(store, remote, pull_page=3).pull(SyncReport())
        assert entered.is_set() and not finished.is_set()  # it did not wait for the stuck request
    finally:
        release.set()
    assert finished.wait(timeout=20)
    assert store.cursor(server_url=SERVER, org_id=ORG) == 0  # the failed page was rolled back
    assert store.replica.count_live(table="outputs") == 0
