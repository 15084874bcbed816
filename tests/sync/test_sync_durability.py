"""A sync's own bookkeeping commits without waiting for the disk; local edits stay durable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from tests.support.client import new_org, seed_library
from tests.sync.support import make_device


def _level(store: ReplicaSyncStore) -> int:
    with store.replica.reading("read the commit durability") as conn:
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])


def test_acknowledging_and_pulling_are_replayable_and_edits_durable(  # type: ignore[no-untyped-def]
    client, tmp_path: Path
) -> None:
    org = new_org(client, name="Durability")
    ids = seed_library(org)
    device = make_device(tmp_path, "laptop", http=client, base_url="", token=org.owner.token, org_id=org.id)
    store = device.store
    levels: list[int] = []
    plain = store.replayable_transaction

    @contextmanager
    def watched() -> Iterator[None]:
        with plain():
            levels.append(_level(store))
            yield

    def replayable() -> AbstractContextManager[None]:
        return watched()

    store.replayable_transaction = replayable  # type: ignore[method-assign]
    edits: list[int] = []
    durable = store.transaction

    @contextmanager
    def watched_edit() -> Iterator[None]:
        with durable():
            edits.append(_level(store))
            yield

    store.transaction = watched_edit  # type: ignore[method-assign]
    try:
        assert device.sync().pulled >= 9
        pulls = len(levels)
        assert pulls >= 1 and set(levels) == {1}  # NORMAL: applied pages with their cursor
        device.library.edit("prompt", ids["prompt"], {"title": "Durable edit"})
        assert edits and set(edits) == {2}  # FULL: the edit and its outbox entry are committed durably
        report = device.sync()
        assert report.pushed == 1
        assert len(levels) > pulls and set(levels) == {1}  # the acknowledgement too
        assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == "Durable edit"
        assert store.pending_count() == 0 and _level(store) == 2
    finally:
        device.replica.close()
