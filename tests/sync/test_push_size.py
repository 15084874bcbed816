"""Pushes that would be too large for the server's request limit (the test app takes 1 MiB bodies).

A replica that collected many long outputs offline must still sync: the client sends smaller batches when
the server refuses one as too large. A single change the server refuses at any size is kept as a refused
edit, and the changes queued after it are pushed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outputhub.common.limits import LONG_TEXT_MAX
from outputhub.desktop.storage.sync_store import REJECTED_FIELD
from outputhub.server.settings import Settings
from outputhub.sync.client import RequestTooLargeError
from outputhub.sync.client.remote import HttpRemote
from tests.conftest import app_client, make_settings
from tests.support.client import Org, new_org, seed_library
from tests.sync.support import Device, make_device


@pytest.fixture
def pushes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The status of every push the sync clients send."""
    statuses: list[int] = []
    send = HttpRemote._send

    def logged(self: HttpRemote, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = send(self, method, url, **kwargs)
        except RequestTooLargeError:
            statuses.append(413)
            raise
        if url.endswith("/push"):
            statuses.append(response.status_code)
        return response

    monkeypatch.setattr(HttpRemote, "_send", logged)
    return statuses


@pytest.fixture
def laptop(client: Any, tmp_path: Path) -> Iterator[tuple[Org, dict[str, str], Device]]:
    org = new_org(client, name=f"Push size {uuid.uuid4().hex[:6]}")
    ids = seed_library(org)
    device = make_device(tmp_path, "laptop", http=client, base_url="", token=org.owner.token, org_id=org.id)
    try:
        device.sync()
        yield org, ids, device
    finally:
        device.replica.close()


def served_contents(org: Org) -> set[str]:
    items = org.owner.get(f"{org.base}/outputs", params={"limit": 200}).json()["items"]
    return {i["content"] for i in items}


def test_many_long_outputs_made_offline_sync_in_smaller_batches(laptop, pushes: list[int]) -> None:  # type: ignore[no-untyped-def]
    org, ids, device = laptop
    contents = [f"output {n}: " + "a long answer. " * 2_700 for n in range(60)]  # ~40 KB each, ~2.4 MB
    for content in contents:
        device.library.create("output", {"prompt_id": ids["prompt"], "content": content})

    report = device.sync()

    assert report.pushed == 60 and report.refused == []
    assert device.store.pending_count() == 0
    assert set(contents) <= served_contents(org)
    assert pushes[0] == 413 and pushes[-1] == 200, "the first batch was refused, smaller ones went through"
    assert report.checksum_ok


def test_one_change_too_large_for_the_server_is_kept_and_the_rest_syncs(laptop, pushes: list[int]) -> None:  # type: ignore[no-untyped-def]
    org, ids, device = laptop
    huge = "é" * 600_000  # within the field's 1,000,000 characters, but 1.2 MB of UTF-8: over the 1 MiB limit
    big = device.library.create("output", {"prompt_id": ids["prompt"], "content": huge})
    after = [
        device.library.create("output", {"prompt_id": ids["prompt"], "content": f"queued after it {n}"})
        for n in range(3)
    ]

    report = device.sync()

    assert [(r["id"], r["reason"].split(":")[0]) for r in report.refused] == [(big, "too-large")]
    assert report.pushed == 3
    assert {f"queued after it {n}" for n in range(3)} <= served_contents(org)
    assert huge not in served_contents(org)
    assert device.store.pending_count() == 0
    # nothing is lost: the refused edit is kept, with what it held, for the user to see and act on
    [kept] = [c for c in device.replica.list_conflicts() if c.field == REJECTED_FIELD]
    assert kept.record_id == big and kept.mine["values"]["content"] == huge
    assert all(device.store.load("output", i) is not None for i in after)
    assert 413 in pushes


@pytest.mark.parametrize(
    "character",
    [
        pytest.param("\U0001f642", id="4 bytes of UTF-8 each"),
        pytest.param("\x01", id="6 bytes of JSON each"),
    ],
)
def test_a_text_at_its_length_limit_is_edited_from_a_replica(tmp_path: Path, character: str) -> None:
    """With the server's default limits: an output of 1,000,000 characters could be made, but its edit carries
    the text and the base it was made on, over the 5 MiB every request may have; it was refused at every
    sync (too-large), while a REST PATCH of the same text was taken (QA). A push may be larger."""
    settings = make_settings("sqlite", tmp=tmp_path / "server", pg_url=None).model_copy(
        update={"max_body_bytes": Settings().max_body_bytes, "max_push_bytes": Settings().max_push_bytes}
    )
    with app_client(settings) as client:
        org = new_org(client)
        ids = seed_library(org)
        device = make_device(tmp_path, "d", http=client, base_url="", token=org.owner.token, org_id=org.id)
        try:
            device.sync()
            text = character * (LONG_TEXT_MAX - 4) + "\nend"
            output = device.library.create("output", {"prompt_id": ids["prompt"], "content": text})
            assert device.sync().refused == []
            edited = text.replace("\nend", "\nEND")
            device.library.edit("output", output, {"content": edited})
            report = device.sync()
            assert report.refused == [] and report.pushed == 1
            assert org.owner.get(f"{org.base}/outputs/{output}").json()["content"] == edited
        finally:
            device.replica.close()
