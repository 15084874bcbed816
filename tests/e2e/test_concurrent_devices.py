"""Devices syncing at the same time against a real ``outputhub serve --workers 2`` on PostgreSQL.

Four workstations (each its own encrypted replica and HTTP client, in threads) edit the same two prompts and
sync after every edit, while REST edits of the same records come in: every sync succeeds (no deadlock, no
5xx), every local write ends up known to the server's state, and at the end every replica equals the
server. The requests of different devices really interleave here, across two server processes, which the
sequential state machine (tests/sync) cannot produce.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from outputhub.common.clock import HLC
from outputhub.sync.protocol import state_from_wire
from tests.e2e.support import new_account, serving
from tests.sync.support import Device, make_device

pytestmark = pytest.mark.postgres
PASSWORD = "a long password for the crowd"
FIELDS = ("title", "description", "body")


@pytest.fixture(scope="module")
def server(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(pg_url, tmp_path_factory.mktemp("serve-2"), workers=2) as base:
        yield base


def test_devices_syncing_at_once_lose_no_edit(server: str, tmp_path: Path) -> None:
    account = new_account(
        server, email=f"crowd-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, org_name="Crowd"
    )
    token, headers, org = account.token, account.headers, account.org_id
    base = f"{server}/api/v1/orgs/{org}"
    prompts = [
        httpx.post(f"{base}/prompts", json={"title": f"P{n}", "body": "a\nb\nc\nd"}, headers=headers).json()[
            "id"
        ]
        for n in range(2)
    ]
    devices: list[Device] = []
    for n in range(4):
        http = httpx.Client(base_url=server, timeout=60)
        device = make_device(tmp_path, f"device-{n}", http=http, base_url="", token=token, org_id=org)
        device.sync()
        devices.append(device)

    writes: dict[str, set[HLC]] = {p: set() for p in prompts}
    errors: list[str] = []
    lock = threading.Lock()

    def work(seed: int, device: Device) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=60) as rest:
            for step in range(12):
                prompt_id, field = rng.choice(prompts), rng.choice(FIELDS)
                value = f"{device.name} {step}" if field != "body" else f"a\nb\n{device.name} {step}\nd"
                try:
                    assert device.library.edit("prompt", prompt_id, {field: value})
                    written = device.store.last_hlc()
                    assert written is not None
                    with lock:
                        writes[prompt_id].add(written)
                    if rng.random() < 0.2:  # someone edits the same record in the web API meanwhile
                        rest.patch(
                            f"{base}/prompts/{prompt_id}",
                            json={"description": f"from the API, {device.name} {step}"},
                            headers=headers,
                        ).raise_for_status()
                    device.sync()
                except Exception as exc:  # collected: the assertion below names every failure
                    with lock:
                        errors.append(f"{device.name} step {step}: {exc!r}")

    threads = [threading.Thread(target=work, args=(n, d)) for n, d in enumerate(devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors

    for _ in range(2):  # quiescence: everyone has pushed everything, then pulls what the others pushed
        for device in devices:
            report = device.sync()
            assert report.checksum_ok
    for prompt_id in prompts:
        record = httpx.get(f"{base}/sync/records/prompt/{prompt_id}", headers=headers).json()
        state = state_from_wire("prompt", prompt_id, record["state"])
        lost = writes[prompt_id] - state.known_versions
        assert not lost, f"writes the server's state does not know: {sorted(v.encode() for v in lost)}"
        served = httpx.get(f"{base}/prompts/{prompt_id}", headers=headers).json()
        assert {f: served[f] for f in FIELDS} == {f: state.values[f] for f in FIELDS}
        for device in devices:
            assert device.store.pending_count() == 0
            shown = device.values()["prompt"][prompt_id]
            assert {f: shown[f] for f in FIELDS} == {f: served[f] for f in FIELDS}, device.name
