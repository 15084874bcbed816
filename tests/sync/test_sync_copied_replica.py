"""Two copies of one replica file (a restored backup beside the live file, or over it) editing the same field.
They shared a node id, so with a clock that had pulled a time ahead both copies stamped their edits alike,
and the server took the second for the first: the second copy's edit was lost without a trace (found by
QA). Each open of a replica now writes as ``<its node id>.<random suffix>``; its own writes are still told
by the part before the dot, so "mine" in a conflict stays right after a copy or a move."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from outputhub.desktop.storage.replica import open_replica
from outputhub.sync.engine.edits import same_replica
from tests.support.client import Org, seed_library
from tests.sync.support import PASSPHRASE, make_device, titles_in_conflict


def test_every_open_writes_under_its_own_id_of_the_replica(tmp_path: Path) -> None:
    original = tmp_path / "library.ohr"
    with open_replica(original, passphrase=PASSPHRASE, create=True) as replica:
        first, base = replica.node_id, replica.node_base
    with open_replica(original, passphrase=PASSPHRASE) as replica:
        assert replica.node_base == base and replica.node_id != first
        assert same_replica(replica.node_id, first) and same_replica(replica.node_id, base)
    copy = tmp_path / "restored" / "library.ohr"
    copy.parent.mkdir()
    shutil.copy2(original, copy)
    with open_replica(copy, passphrase=PASSPHRASE) as replica:
        assert replica.node_base == base and replica.node_id != first
    assert not same_replica(first, "0123456789abcdef0123456789abcdef.00000000")


def _pulled_a_time_ahead(client, org: Org, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A seeded organization; replica "a" has pulled an edit made on a clock 3 h ahead, so its own clock
    now runs at that time, and is closed (ready to copy). Returns the ids, a device maker and the device
    whose clock is ahead."""
    ids = seed_library(org)

    def device(name: str, now_ms=None):  # type: ignore[no-untyped-def]
        return make_device(
            tmp_path, name, http=client, base_url="", token=org.owner.token, org_id=org.id, now_ms=now_ms
        )

    ahead = device("ahead", now_ms=lambda: int(time.time() * 1000) + 3 * 3600 * 1000)
    a = device("a")
    a.sync()
    ahead.sync()
    ahead.library.edit("prompt", ids["prompt"], {"title": "from a clock 3 h ahead"})
    ahead.sync()
    a.sync()
    a.replica.close()
    return ids, device, ahead


def test_both_copies_edits_of_one_field_are_kept_with_a_clock_ahead(  # type: ignore[no-untyped-def]
    client, org: Org, tmp_path: Path
) -> None:
    ids, device, ahead = _pulled_a_time_ahead(client, org, tmp_path)
    shutil.copy2(tmp_path / "a.ohr", tmp_path / "b.ohr")  # the backup, restored beside it
    a, b = device("a"), device("b")
    assert a.store.node_id != b.store.node_id
    a.library.edit("prompt", ids["prompt"], {"title": "from copy A"})
    b.library.edit("prompt", ids["prompt"], {"title": "from copy B"})
    a.sync()
    b.sync()
    a.sync()
    served = org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"]
    losers = [c["loser"]["value"] for c in org.owner.get(f"{org.base}/sync/conflicts").json()]
    assert {served, *losers} >= {"from copy A", "from copy B"}, "one copy's edit was lost"
    assert a.values() == b.values()
    for d in (a, b, ahead):
        d.replica.close()


def test_a_backup_restored_over_the_live_file_keeps_both_edits(  # type: ignore[no-untyped-def]
    client, org: Org, tmp_path: Path
) -> None:
    """The same over the live file: same path, same file id, so nothing about the file tells it apart."""
    ids, device, ahead = _pulled_a_time_ahead(client, org, tmp_path)
    shutil.copyfile(tmp_path / "a.ohr", tmp_path / "backup.ohr")
    a = device("a")
    a.library.edit("prompt", ids["prompt"], {"title": "edited on the live file"})
    a.sync()
    a.replica.close()
    shutil.copyfile(tmp_path / "backup.ohr", tmp_path / "a.ohr")  # restored over it
    a = device("a")
    a.library.edit("prompt", ids["prompt"], {"title": "edited on the restored file"})
    a.sync()
    served = org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"]
    losers = [c["loser"]["value"] for c in org.owner.get(f"{org.base}/sync/conflicts").json()]
    assert {served, *losers} >= {"edited on the live file", "edited on the restored file"}
    for d in (a, ahead):
        d.replica.close()


def test_keep_mine_after_the_replica_moved_keeps_what_it_wrote(  # type: ignore[no-untyped-def]
    client, org: Org, devices, tmp_path: Path
) -> None:
    """QA: after a move (when a move meant a new node id), keep mine kept the other side's text."""
    ids = seed_library(org)
    laptop, desktop = devices
    titles_in_conflict(ids["prompt"], laptop, desktop)  # the desktop's newer title stands
    laptop.sync()  # the conflict is there on both
    laptop.replica.close()
    (tmp_path / "laptop.ohr").rename(tmp_path / "moved.ohr")
    moved = make_device(tmp_path, "moved", http=client, base_url="", token=org.owner.token, org_id=org.id)
    try:
        [conflict] = moved.open_conflicts()
        assert conflict.mine == "Laptop title"
        moved.library.resolve_conflict("prompt", ids["prompt"], conflict.id, "mine")
        assert moved.library.get("prompt", ids["prompt"])["title"] == "Laptop title"
        moved.sync()
        assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == "Laptop title"
    finally:
        moved.replica.close()
