"""Devices for sync tests: a real encrypted replica, the local library and the sync client over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from outputhub.common.clock import tick
from outputhub.common.ids import new_id_text
from outputhub.desktop.storage import open_replica
from outputhub.desktop.storage.replica import Replica
from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from outputhub.sync.client import HttpRemote, LocalLibrary, SyncClient, SyncReport
from outputhub.sync.engine import DEFAULT_SCHEMA, make_create, make_edit, merge_change
from outputhub.sync.protocol import ENTITY_TABLES

PASSPHRASE = "correct horse battery staple"


@dataclass
class Device:
    """One workstation: its replica, its edits and its sync client."""

    name: str
    replica: Replica
    store: ReplicaSyncStore
    library: LocalLibrary
    remote: HttpRemote
    client: SyncClient

    def sync(self) -> SyncReport:
        return self.client.sync()

    def values(self) -> dict[str, dict[str, Any]]:
        return {entity: self.store.snapshot_values(entity) for entity in ENTITY_TABLES}

    def open_conflicts(self) -> list[Any]:
        return self.replica.list_conflicts()


def make_device(
    tmp: Path,
    name: str,
    *,
    http: httpx.Client,
    base_url: str,
    token: str,
    org_id: str,
    now_ms: Callable[[], int] | None = None,
) -> Device:
    replica = open_replica(tmp / f"{name}.ohr", passphrase=PASSPHRASE, create=True)
    store = ReplicaSyncStore(replica)
    store.attach(org_id=org_id)
    library = LocalLibrary(store, now_ms=now_ms) if now_ms else LocalLibrary(store)
    remote = HttpRemote(base_url, token=token, org_id=org_id, client=http)
    return Device(name, replica, store, library, remote, SyncClient(store, remote, pull_page=200))


def titles_in_conflict(prompt: str, laptop: Device, desktop: Device) -> None:
    """Both devices synced, then each gives ``prompt`` a title offline ("Laptop title", "Desktop title"),
    and both sync in that order: the desktop's newer title stands, the conflict is on the desktop (and on
    the server)."""
    laptop.sync()
    desktop.sync()
    laptop.library.edit("prompt", prompt, {"title": "Laptop title"})
    desktop.library.edit("prompt", prompt, {"title": "Desktop title"})
    laptop.sync()
    desktop.sync()


def server_cli(app: Any, monkeypatch: Any, *args: str) -> Any:
    """Run ``outputhub <args>`` (the server's CLI) against ``app``'s database; returns the click result."""
    from typer.testing import CliRunner

    from outputhub.server.cli import app as cli

    settings = app.state.services.settings
    monkeypatch.setenv("OUTPUTHUB_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("OUTPUTHUB_DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("OUTPUTHUB_DATABASE_URL", raising=False)
    return CliRunner().invoke(cli, list(args))


def as_an_older_replica(device: Device, entity: str, record_id: str, values: dict[str, Any]) -> None:
    """Create (or edit) a record on ``device`` as a replica made before names were normalized did: the
    values as typed, straight into its state and outbox (no ``LocalLibrary`` checks)."""
    store = device.store
    record = store.load(entity, record_id)
    hlc = tick(store.last_hlc(), now_ms=int(time.time() * 1000), node=store.node_id)
    store.save_hlc(hlc)
    op_id = new_id_text()
    if record is None:
        change = make_create(
            entity, record_id, values, schema=DEFAULT_SCHEMA, node=store.node_id, hlc=hlc, op_id=op_id
        )
    else:
        made = make_edit(
            record.state, values, schema=DEFAULT_SCHEMA, node=store.node_id, hlc=hlc, op_id=op_id
        )
        assert made is not None
        change = made
    state = merge_change(record.state if record else None, change, DEFAULT_SCHEMA).state
    with store.transaction():
        store.save_local(state, change, base_revision=record.revision if record else None)
