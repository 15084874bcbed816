"""Protocol 4: a push carries the pull. The answer to a push that asks for it holds the page of changes after
the replica's cursor, read once the push has committed, so a sync of a few edits is one request each way
instead of two (plus the check). Older servers, unreadable pages and old cursors fall back to a pull."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outputhub.server.api.sync import router
from outputhub.server.api.sync.service import purge_tombstones
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.sync.client.remote import HttpRemote
from tests.support.client import Org, new_org, seed_library
from tests.sync.support import Device, make_device


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request the sync clients send, as ``METHOD /last/path/part``."""
    sent: list[str] = []
    send = HttpRemote._send

    def logged(self: HttpRemote, method: str, url: str, **kwargs: Any) -> Any:
        sent.append(f"{method} /{url.rsplit('/', 1)[-1]}")
        return send(self, method, url, **kwargs)

    monkeypatch.setattr(HttpRemote, "_send", logged)
    return sent


@pytest.fixture
def devices(client: Any, tmp_path: Path) -> Iterator[tuple[Org, dict[str, str], Device, Device]]:
    org = new_org(client, name=f"Push with pull {uuid.uuid4().hex[:6]}")
    ids = seed_library(org)
    made = [
        make_device(tmp_path, name, http=client, base_url="", token=org.owner.token, org_id=org.id)
        for name in ("laptop", "desktop")
    ]
    try:
        for device in made:
            device.sync()
        yield org, ids, made[0], made[1]
    finally:
        for device in made:
            device.replica.close()


def test_a_sync_of_an_edit_is_one_push_that_brings_the_other_edits_back(  # type: ignore[no-untyped-def]
    devices, requests: list[str]
) -> None:
    org, ids, laptop, desktop = devices
    desktop.library.edit("prompt", ids["prompt"], {"description": "from the desktop"})
    desktop.sync()
    laptop.library.edit("prompt", ids["prompt"], {"title": "from the laptop"})
    requests.clear()
    report = laptop.sync()
    # no GET /changes and no GET /checksums: the push's answer brought the changes and the sums
    assert requests == ["POST /push"]
    assert report.pushed == 1 and report.pulled >= 1 and report.checksum_ok is True
    prompt = laptop.store.snapshot_values("prompt")[ids["prompt"]]
    assert (prompt["title"], prompt["description"]) == ("from the laptop", "from the desktop")
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == "from the laptop"
    desktop.sync()
    assert laptop.values() == desktop.values()


def test_the_page_with_a_push_is_the_pull_right_after_it(devices) -> None:  # type: ignore[no-untyped-def]
    org, ids, laptop, _desktop = devices
    cursor = laptop.store.cursor(server_url=laptop.remote.server_url, org_id=org.id)
    laptop.library.edit("prompt", ids["prompt"], {"title": "pushed with a pull"})
    changes = [op.change for op in laptop.store.pending(limit=10)]
    body = {"protocol": 4, "device": laptop.store.node_id, "changes": changes}
    answer = org.owner.post(f"{org.base}/sync/push", json={**body, "pull": {"since": cursor, "limit": 50}})
    assert answer.status_code == 200, answer.text
    pushed = answer.json()
    assert [r["status"] for r in pushed["results"]] == ["applied"]
    revision = pushed["results"][0]["revision"]
    page = pushed["changes"]
    assert [(r["id"], r["revision"]) for r in page["records"]] == [(ids["prompt"], revision)]
    assert page["records"][0]["data"]["title"] == "pushed with a pull"
    after = org.owner.get(
        f"{org.base}/sync/changes", params={"protocol": 4, "since": cursor, "limit": 50}
    ).json()
    assert page == after
    # replayed: the same answers, and the page as it is now
    again = org.owner.post(f"{org.base}/sync/push", json={**body, "pull": {"since": revision, "limit": 50}})
    assert again.json()["results"][0]["replayed"] is True
    assert again.json()["changes"]["records"] == [] and again.json()["changes"]["next_since"] == revision
    assert "checksums" not in pushed  # not asked for
    # with the check's sums: as GET /checksums gives them
    sums = org.owner.post(
        f"{org.base}/sync/push", json={**body, "pull": {"since": revision, "checksums": True}}
    ).json()["checksums"]
    assert sums == org.owner.get(f"{org.base}/sync/checksums").json()
    assert sums["revision"] == revision
    # no pull asked for: no page
    plain = org.owner.post(f"{org.base}/sync/push", json=body).json()
    assert "changes" not in plain and "checksums" not in plain and plain["results"][0]["replayed"] is True


def test_a_pull_with_a_push_needs_protocol_4(devices) -> None:  # type: ignore[no-untyped-def]
    org, _ids, laptop, _desktop = devices
    body = {"protocol": 3, "device": laptop.store.node_id, "changes": [], "pull": {"since": 0}}
    answer = org.owner.post(f"{org.base}/sync/push", json=body)
    assert answer.status_code == 422
    assert "body.pull" in answer.text and "protocol 4" in answer.text
    bad = org.owner.post(f"{org.base}/sync/push", json={**body, "protocol": 4, "pull": {"since": -1}})
    assert bad.status_code == 422 and "since" in bad.text


def test_a_protocol_3_server_gets_a_push_then_a_pull(  # type: ignore[no-untyped-def]
    devices, requests: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _org, ids, laptop, desktop = devices
    monkeypatch.setattr(router, "SUPPORTED_PROTOCOLS", frozenset({1, 2, 3}))
    desktop.library.edit("prompt", ids["prompt"], {"description": "desktop, protocol 3"})
    desktop.sync()
    laptop.library.edit("prompt", ids["prompt"], {"title": "laptop, protocol 3"})
    requests.clear()
    report = laptop.sync()
    assert laptop.remote.protocol == 3
    # refused once (protocol 4), pushed in protocol 3 without the pull, then pulled on its own
    assert requests == ["POST /push", "POST /push", "GET /changes", "GET /checksums"]
    assert report.checksum_ok is True
    prompt = laptop.store.snapshot_values("prompt")[ids["prompt"]]
    assert (prompt["title"], prompt["description"]) == ("laptop, protocol 3", "desktop, protocol 3")


def test_a_page_that_cannot_be_read_leaves_the_push_standing_and_the_client_pulls(  # type: ignore[no-untyped-def]
    devices, requests: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    org, ids, laptop, desktop = devices
    desktop.library.edit("prompt", ids["prompt"], {"description": "the desktop's"})
    desktop.sync()
    pull = router.service.pull
    calls: list[int] = []

    def failing_once(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected: the page cannot be read")
        return pull(*args, **kwargs)

    monkeypatch.setattr(router.service, "pull", failing_once)
    laptop.library.edit("prompt", ids["prompt"], {"title": "the laptop's"})
    requests.clear()
    report = laptop.sync()
    assert requests == ["POST /push", "GET /changes", "GET /checksums"]
    assert report.pushed == 1 and report.checksum_ok is True and not laptop.store.pending_count()
    prompt = laptop.store.snapshot_values("prompt")[ids["prompt"]]
    assert (prompt["title"], prompt["description"]) == ("the laptop's", "the desktop's")
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == "the laptop's"


def test_a_cursor_too_old_for_the_page_resyncs_and_keeps_the_edit(  # type: ignore[no-untyped-def]
    app, devices, requests: list[str]
) -> None:
    org, ids, laptop, _desktop = devices
    tag = org.owner.post(f"{org.base}/tags", json={"name": f"doomed-{uuid.uuid4().hex[:6]}"}).json()["id"]
    assert org.owner.delete(f"{org.base}/tags/{tag}").status_code == 204
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        assert purge_tombstones(
            session, org_id=uuid.UUID(org.id), before=datetime.now(UTC) + timedelta(1)
        ).records
        # a second purge, past the first one's retention, forgets what it purged: the horizon rises past it
        forget = datetime.now(UTC) + timedelta(1)
        assert purge_tombstones(session, org_id=uuid.UUID(org.id), before=forget).forgotten == 1
    laptop.library.edit("prompt", ids["prompt"], {"title": "edited behind the horizon"})
    requests.clear()
    report = laptop.sync()
    # the push stands without a page; the pull gets 410 and pulls everything again
    assert requests[:3] == ["POST /push", "GET /changes", "GET /changes"]
    assert report.full_resync is True and report.checksum_ok is True
    assert laptop.store.snapshot_values("prompt")[ids["prompt"]]["title"] == "edited behind the horizon"
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == (
        "edited behind the horizon"
    )


def test_what_a_purge_removed_comes_with_the_page_a_push_brings(  # type: ignore[no-untyped-def]
    app, devices, requests: list[str]
) -> None:
    """An up-to-date replica holding a tombstone the server then purges: the page its next push brings
    names it, the replica drops it, and the sums that came along match. One request; before the purge log,
    the sums disagreed and the replica pulled everything again."""
    org, ids, laptop, _desktop = devices
    tag = org.owner.post(f"{org.base}/tags", json={"name": f"doomed-{uuid.uuid4().hex[:6]}"}).json()["id"]
    assert org.owner.delete(f"{org.base}/tags/{tag}").status_code == 204
    laptop.sync()
    assert laptop.store.load("tag", tag) is not None
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        assert purge_tombstones(
            session, org_id=uuid.UUID(org.id), before=datetime.now(UTC) + timedelta(1)
        ).records
    laptop.library.edit("prompt", ids["prompt"], {"title": "edited after a purge"})
    requests.clear()
    report = laptop.sync()
    assert requests == ["POST /push"]
    assert report.purged == 1 and not report.repaired and report.checksum_ok is True
    assert laptop.store.load("tag", tag) is None


def test_a_replica_that_lost_a_record_is_repaired_from_the_sums_a_push_brought(  # type: ignore[no-untyped-def]
    devices, requests: list[str]
) -> None:
    org, ids, laptop, _desktop = devices
    laptop.store.drop("output", ids["output"])  # a replica that lost a row behind the sync's back
    laptop.library.edit("prompt", ids["prompt"], {"title": "edited on a damaged replica"})
    requests.clear()
    report = laptop.sync()
    # the sums came with the push; they disagree, so everything is pulled again and checked again
    assert requests[0] == "POST /push" and "GET /changes" in requests and requests[-1] == "GET /checksums"
    assert report.repaired is True and report.mismatched_tables == ["outputs"] and report.checksum_ok is True
    assert ids["output"] in laptop.store.snapshot_values("output")
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == (
        "edited on a damaged replica"
    )
