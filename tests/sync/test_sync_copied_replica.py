"""Two copies of one replica file (a restored backup beside the live file) editing the same field. They
shared a node id, so with a clock that had pulled a time ahead both copies stamped their edits alike, and
the server took the second for the first: the second copy's edit was lost without a trace (found by QA).
A replica opened somewhere other than where it was last opened now takes a new node id."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from outputhub.desktop.storage.replica import open_replica
from tests.support.client import Org, seed_library
from tests.sync.support import PASSPHRASE, make_device


def test_a_copy_of_a_replica_takes_a_node_id_of_its_own(tmp_path: Path) -> None:
    original = tmp_path / "library.ohr"
    with open_replica(original, passphrase=PASSPHRASE, create=True) as replica:
        first = replica.node_id
    with open_replica(original, passphrase=PASSPHRASE) as replica:
        assert replica.node_id == first  # opened where it was: the same node
    copy = tmp_path / "restored" / "library.ohr"
    copy.parent.mkdir()
    shutil.copy2(original, copy)
    with open_replica(copy, passphrase=PASSPHRASE) as replica:
        assert replica.node_id != first
        copied = replica.node_id
    with open_replica(copy, passphrase=PASSPHRASE) as replica:
        assert replica.node_id == copied
    with open_replica(original, passphrase=PASSPHRASE) as replica:
        assert replica.node_id == first


def test_both_copies_edits_of_one_field_are_kept_with_a_clock_ahead(  # type: ignore[no-untyped-def]
    client, org: Org, tmp_path: Path
) -> None:
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
    a.sync()  # a's clock now runs at the time it pulled
    a.replica.close()
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
