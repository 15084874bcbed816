"""Fixtures of the sync tests: an organization and two devices (laptop, desktop) attached to it, through the
in-process app on SQLite and PostgreSQL (``client``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import Org, new_org
from tests.sync.support import Device, make_device


@pytest.fixture
def org(client) -> Org:  # type: ignore[no-untyped-def]
    return new_org(client, name="Sync")


@pytest.fixture
def devices(client, org: Org, tmp_path: Path) -> Iterator[list[Device]]:  # type: ignore[no-untyped-def]
    made = [
        make_device(tmp_path, name, http=client, base_url="", token=org.owner.token, org_id=org.id)
        for name in ("laptop", "desktop")
    ]
    yield made
    for device in made:
        device.replica.close()
