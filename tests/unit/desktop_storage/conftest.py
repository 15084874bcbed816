"""Fixtures shared by the replica tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from replica_support import PASSPHRASE

from outputhub.desktop.storage import open_replica
from outputhub.desktop.storage.replica import Replica


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    """Two fresh replicas, for the same work done two ways."""
    first = open_replica(tmp_path / "first.ohr", passphrase=PASSPHRASE, create=True)
    second = open_replica(tmp_path / "second.ohr", passphrase=PASSPHRASE, create=True)
    try:
        yield first, second
    finally:
        first.close()
        second.close()
