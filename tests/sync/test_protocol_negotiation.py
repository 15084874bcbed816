"""A client meets an older server: it speaks the newest protocol both know, and loses nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from outputhub.server.api.sync import router
from outputhub.sync.client import ProtocolMismatchError
from outputhub.sync.client.remote import common_protocol
from tests.support.client import new_org, seed_library
from tests.sync.support import make_device


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("unsupported sync protocol 3; this server speaks [1, 2]", 2),
        ("query.protocol: unsupported sync protocol 3; this server speaks [1]", 1),
        ("unsupported sync protocol 3; this server speaks [7, 9]", None),
        ("something else went wrong", None),
    ],
)
def test_the_common_protocol_is_read_from_the_refusal(detail: str, expected: int | None) -> None:
    assert common_protocol(detail, ours=frozenset({1, 2, 3})) == expected


def test_an_older_server_is_spoken_to_in_its_newest_protocol(  # type: ignore[no-untyped-def]
    client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(client, name="Older server")
    ids = seed_library(org)
    monkeypatch.setattr(router, "SUPPORTED_PROTOCOLS", frozenset({1, 2}))  # a server from before protocol 3
    made = [
        make_device(tmp_path, name, http=client, base_url="", token=org.owner.token, org_id=org.id)
        for name in ("laptop", "desktop")
    ]
    try:
        laptop, desktop = made
        report = laptop.sync()
        assert laptop.remote.protocol == 2
        assert report.pulled >= 9 and report.checksum_ok is True
        laptop.library.edit("prompt", ids["prompt"], {"title": "Edited on a protocol 2 server"})
        laptop.sync()
        desktop.sync()
        assert desktop.remote.protocol == 2
        assert laptop.values() == desktop.values()
        assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == (
            "Edited on a protocol 2 server"
        )
    finally:
        for device in made:
            device.replica.close()


def test_a_server_with_no_common_protocol_is_refused_clearly(  # type: ignore[no-untyped-def]
    client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(client, name="Future server")
    monkeypatch.setattr(router, "SUPPORTED_PROTOCOLS", frozenset({7}))
    device = make_device(tmp_path, "laptop", http=client, base_url="", token=org.owner.token, org_id=org.id)
    try:
        with pytest.raises(ProtocolMismatchError, match="speak different sync protocols"):
            device.sync()
    finally:
        device.replica.close()
