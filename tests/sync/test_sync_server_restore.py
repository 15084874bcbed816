"""A server restored from a backup, on the embedded SQLite (the whole database file copied back, the server
restarted on it, as an operator restores one).

Records made after the backup are gone from the server; a replica that had pulled them must not go on
showing them as synced, or miss what the restored server took since. When the restored server had since
taken as many new records as the replica had pulled after the backup, under the same revisions, the check's
counts and revision sums agreed and the replica stayed different for good; with Redis, the check's cached
answer from before the restore had the replica that did match repaired at every sync (QA). The check's
``newest`` record per table tells them apart, and the check is no longer cached."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from outputhub.server.settings import Settings
from tests.conftest import app_client, make_settings
from tests.support.client import Org, new_org
from tests.sync.support import Device, make_device


def _copy(source: Path, target: Path) -> None:
    """The whole database, page by page (SQLite's online backup)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def _devices(tmp_path: Path, client, org: Org) -> list[Device]:  # type: ignore[no-untyped-def]
    return [
        make_device(tmp_path, name, http=client, base_url="", token=org.owner.token, org_id=org.id)
        for name in ("a", "b")
    ]


def _titles(device: Device) -> set[str]:
    return {v["title"] for v in device.values()["prompt"].values() if not v.get("deleted")}


def test_a_replica_ahead_of_a_restored_server_is_repaired(tmp_path: Path) -> None:
    data = tmp_path / "server"
    settings: Settings = make_settings("sqlite", tmp=data, pg_url=None)
    database = data / "outputhub.sqlite3"
    backup = tmp_path / "backup.sqlite3"
    with app_client(settings) as client:
        org = new_org(client)
        a, b = _devices(tmp_path, client, org)
        b.library.create("prompt", {"title": "before the backup", "body": "x"})
        b.sync()
        a.sync()
        _copy(database, backup)
        for n in range(3):
            a.library.create("prompt", {"title": f"after the backup {n}", "body": "x"})
        assert a.sync().refused == []
        for device in (a, b):
            device.replica.close()
    _copy(backup, database)  # the server restored, then started again
    with app_client(settings) as client:
        org.owner.client = client
        a, b = _devices(tmp_path, client, org)
        try:
            for n in range(3):
                b.library.create("prompt", {"title": f"after the restore {n}", "body": "x"})
            assert b.sync().refused == []
            listed = org.owner.get(f"{org.base}/prompts", params={"limit": 100}).json()["items"]
            served = {p["title"] for p in listed}
            assert served == {"before the backup"} | {f"after the restore {n}" for n in range(3)}
            report = a.sync()
            assert report.repaired and report.checksum_ok, report
            assert _titles(a) == _titles(b) == served
            again = a.sync()
            assert not again.repaired and again.checksum_ok
        finally:
            for device in (a, b):
                device.replica.close()
