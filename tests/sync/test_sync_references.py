"""A record a live record references is never left deleted: a delete that meets a reference it did not see
(an output made offline under a prompt deleted meanwhile, a tag added while another replica deleted it)
is overridden, as an edit overrides a delete, and kept as a delete conflict to resolve.

In-process app on SQLite and PostgreSQL, two replicas syncing through the real API.
"""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI

from outputhub.desktop.services.conflicts import ConflictService
from outputhub.server.api.sync.references import dangling_references
from outputhub.server.storage.database import set_tenant, unit_of_work
from tests.support.client import Org, seed_library
from tests.sync.support import Device, server_cli


def _dangling(app: FastAPI, org: Org) -> list[tuple[str, str, str, str]]:
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        return dangling_references(session, org_id=uuid.UUID(org.id))


def _settle(*devices: Device) -> None:
    for _ in range(2):
        for device in devices:
            report = device.sync()
            assert report.checksum_ok is not False


def _delete_conflicts(org: Org, record_id: str) -> list[dict[str, object]]:
    items = org.owner.get(f"{org.base}/sync/conflicts").json()
    return [c for c in items if c["record_id"] == record_id and c["kind"] == "delete"]


@pytest.mark.parametrize("deleter_first", [True, False], ids=["delete-first", "output-first"])
def test_an_output_made_offline_keeps_its_prompt_deleted_meanwhile(  # type: ignore[no-untyped-def]
    app, org, devices, deleter_first: bool
) -> None:
    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    laptop.library.delete("output", ids["output"])  # as the desktop deletes a prompt: its outputs first
    laptop.library.delete("prompt", ids["prompt"])
    made = desktop.library.create("output", {"prompt_id": ids["prompt"], "content": "written on the train"})
    first, second = (laptop, desktop) if deleter_first else (desktop, laptop)
    first.sync()
    second.sync()
    _settle(laptop, desktop)

    prompt = org.owner.get(f"{org.base}/prompts/{ids['prompt']}")
    assert prompt.status_code == 200, "the prompt an output was made under must stay"
    assert org.owner.get(f"{org.base}/outputs/{made}").json()["prompt_id"] == ids["prompt"]
    assert org.owner.get(f"{org.base}/outputs/{ids['output']}").status_code == 404  # its own delete stands
    assert len(_delete_conflicts(org, ids["prompt"])) == 1, "the overridden delete is kept as a conflict"
    assert _dangling(app, org) == []
    assert laptop.values() == desktop.values()
    shown = laptop.replica.get_prompt(id=ids["prompt"])
    assert shown is not None and not shown.deleted
    assert any(c.record_id == ids["prompt"] for c in laptop.open_conflicts())


@pytest.mark.parametrize("deleter_first", [True, False], ids=["delete-first", "tagging-first"])
def test_a_tag_added_while_another_replica_deleted_it_stays(  # type: ignore[no-untyped-def]
    app, org, devices, deleter_first: bool
) -> None:
    ids = seed_library(org)
    laptop, desktop = devices
    other = org.owner.post(f"{org.base}/prompts", json={"title": "Untagged", "body": "b"}).json()["id"]
    _settle(laptop, desktop)
    # the laptop deletes the tag and takes it off the records it knows (as the desktop and the CLI do)
    laptop.library.edit("prompt", ids["prompt"], {"tag_ids": []})
    laptop.library.edit("output", ids["output"], {"tag_ids": []})
    laptop.library.delete("tag", ids["tag"])
    desktop.library.edit("prompt", other, {"tag_ids": [ids["tag"]]})
    first, second = (laptop, desktop) if deleter_first else (desktop, laptop)
    first.sync()
    second.sync()
    _settle(laptop, desktop)

    tags = {t["id"] for t in org.owner.get(f"{org.base}/tags").json()["items"]}
    assert ids["tag"] in tags, "a tag still on a prompt must stay"
    assert org.owner.get(f"{org.base}/prompts/{other}").json()["tag_ids"] == [ids["tag"]]
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["tag_ids"] == []
    assert len(_delete_conflicts(org, ids["tag"])) == 1
    assert _dangling(app, org) == []
    assert laptop.values() == desktop.values()


def test_a_cascade_delete_meeting_an_edit_of_one_output_keeps_its_prompt(  # type: ignore[no-untyped-def]
    app, org, devices
) -> None:
    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    laptop.library.delete("output", ids["output"])
    laptop.library.delete("prompt", ids["prompt"])
    desktop.library.edit("output", ids["output"], {"notes": "still useful"})
    desktop.sync()
    laptop.sync()
    _settle(laptop, desktop)

    assert org.owner.get(f"{org.base}/outputs/{ids['output']}").json()["notes"] == "still useful"
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").status_code == 200
    assert len(_delete_conflicts(org, ids["output"])) == 1
    assert len(_delete_conflicts(org, ids["prompt"])) == 1
    assert _dangling(app, org) == []
    assert laptop.values() == desktop.values()


def test_a_kept_record_brings_back_what_it_references_in_turn(app, org, devices) -> None:  # type: ignore[no-untyped-def]
    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    # an older client deleted the prompt, its output and its tag without taking the tag off anything
    laptop.library.delete("output", ids["output"])
    laptop.library.delete("prompt", ids["prompt"])
    laptop.library.delete("tag", ids["tag"])
    desktop.library.create("output", {"prompt_id": ids["prompt"], "content": "made offline"})
    laptop.sync()
    desktop.sync()
    _settle(laptop, desktop)

    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["tag_ids"] == [ids["tag"]]
    assert ids["tag"] in {t["id"] for t in org.owner.get(f"{org.base}/tags").json()["items"]}
    assert _dangling(app, org) == []
    assert laptop.values() == desktop.values()


def test_a_delete_kept_as_the_resolution_takes_its_dependents_along(app, org, devices) -> None:  # type: ignore[no-untyped-def]
    """Keeping the delete of a prompt kept for an output made offline deletes that output too, as deleting a
    prompt with outputs does: the conflict is not opened again by the next sync."""
    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    laptop.library.delete("output", ids["output"])
    laptop.library.delete("prompt", ids["prompt"])
    made = desktop.library.create("output", {"prompt_id": ids["prompt"], "content": "written on the train"})
    laptop.sync()
    desktop.sync()
    _settle(laptop, desktop)
    (conflict,) = [c for c in laptop.open_conflicts() if c.record_id == ids["prompt"]]

    service = ConflictService(replica=laptop.replica, editor=laptop.library)
    service.resolve(conflict_id=conflict.id, choice="mine")
    _settle(laptop, desktop)

    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").status_code == 404
    assert org.owner.get(f"{org.base}/outputs/{made}").status_code == 404
    assert all(c["resolved_at"] for c in _delete_conflicts(org, ids["prompt"]))
    assert [c for c in laptop.open_conflicts() if c.record_id == ids["prompt"]] == []
    assert _dangling(app, org) == []
    assert laptop.values() == desktop.values()


def test_keep_referenced_repairs_what_older_servers_left(  # type: ignore[no-untyped-def]
    app, org, devices, monkeypatch
) -> None:
    """Before pushes kept referenced records alive, a sync delete of a tag left it on the records that had
    it: ``outputhub sync keep-referenced`` restores such records, each with its delete as a conflict."""
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from outputhub.server.api.base import allocate_revisions
    from outputhub.server.cli import app as cli
    from outputhub.server.storage.tables import Tag

    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    with unit_of_work(app.state.services.session_factory) as session:  # a delete as older servers stored it
        set_tenant(session, org_id=uuid.UUID(org.id))
        tag = session.get(Tag, uuid.UUID(ids["tag"]))
        assert tag is not None
        tag.deleted, tag.updated_at = True, datetime.now(UTC)
        tag.revision = allocate_revisions(session, org_id=uuid.UUID(org.id))
    assert len(_dangling(app, org)) == 2  # the prompt and the output name it

    result = server_cli(app, monkeypatch, "sync", "keep-referenced")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("restored 1 ")

    assert _dangling(app, org) == []
    assert ids["tag"] in {t["id"] for t in org.owner.get(f"{org.base}/tags").json()["items"]}
    assert len(_delete_conflicts(org, ids["tag"])) == 1
    _settle(laptop, desktop)
    assert laptop.values() == desktop.values()
    again = CliRunner().invoke(cli, ["sync", "keep-referenced"])
    assert again.exit_code == 0 and again.output.startswith("restored 0 "), again.output


@pytest.mark.parametrize("entity", ["prompt", "tag"])
def test_keeping_the_delete_through_the_api_takes_the_dependents_along(  # type: ignore[no-untyped-def]
    app, org, devices, entity: str
) -> None:
    """``POST .../sync/conflicts/{id}/resolve {"keep": "loser"}`` on a delete kept for a reference: the
    prompt's outputs go with it, the tag comes off its records, as a delete through the API does. As that
    delete, a prompt's outputs go only with ``cascade``: without it the resolution is refused (409 naming
    ``body.cascade`` and the count) and changes nothing; it deleted them without a word (QA)."""
    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    if entity == "prompt":
        made = desktop.library.create("output", {"prompt_id": ids["prompt"], "content": "made offline"})
        assert (
            org.owner.delete(f"{org.base}/prompts/{ids['prompt']}", params={"cascade": "true"}).status_code
            == 204
        )
    else:
        other = org.owner.post(f"{org.base}/prompts", json={"title": "Other", "body": "b"}).json()["id"]
        desktop.sync()
        desktop.library.edit("prompt", other, {"tag_ids": [ids["tag"]]})
        assert org.owner.delete(f"{org.base}/tags/{ids['tag']}").status_code == 204
    desktop.sync()
    target = ids[entity]
    (conflict,) = _delete_conflicts(org, target)
    assert not conflict["resolved_at"]

    url = f"{org.base}/sync/conflicts/{conflict['id']}/resolve"
    if entity == "prompt":
        refused = org.owner.post(url, json={"keep": "loser"})
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert "1 live output(s)" in problem["detail"] and "cascade=true" in problem["detail"]
        assert [e["field"] for e in problem["errors"]] == ["body.cascade"]
        assert org.owner.get(f"{org.base}/outputs/{made}").status_code == 200
        assert org.owner.get(f"{org.base}/prompts/{target}").status_code == 200
        assert [c["id"] for c in _delete_conflicts(org, target) if not c["resolved_at"]] == [conflict["id"]]
    kept = org.owner.post(url, json={"keep": "loser", "cascade": entity == "prompt"})
    assert kept.status_code == 200, kept.text
    if entity == "prompt":
        [record] = [
            a
            for a in org.owner.get(f"{org.base}/audit", params={"limit": 200}).json()["items"]
            if a["kind"] == "prompt.deleted" and (a.get("details") or {}).get("conflict") == conflict["id"]
        ]
        assert record["details"]["outputs_deleted"] == 1

    path = "prompts" if entity == "prompt" else "tags"
    assert org.owner.get(f"{org.base}/{path}/{target}").status_code == 404
    if entity == "prompt":
        assert org.owner.get(f"{org.base}/outputs/{made}").status_code == 404
    else:
        assert org.owner.get(f"{org.base}/prompts/{other}").json()["tag_ids"] == []
    assert _dangling(app, org) == []
    _settle(laptop, desktop)
    assert laptop.values() == desktop.values()
    assert not [c for c in laptop.open_conflicts() if c.record_id == target]


def test_a_deleted_tag_whose_name_was_taken_since_is_replaced_by_the_live_one(  # type: ignore[no-untyped-def]
    app, org, devices
) -> None:
    """Tag "python" deleted, a new "Python" made, and an offline replica puts the old one on a prompt: the old
    one cannot come back under a taken name, so the prompt is given the live "Python" instead."""
    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    desktop.library.edit("output", ids["output"], {"notes": "offline"})  # the desktop stays offline
    other = org.owner.post(f"{org.base}/prompts", json={"title": "Other", "body": "b"}).json()["id"]
    desktop.sync()  # knows "other" and the old tag, then goes offline
    assert org.owner.delete(f"{org.base}/tags/{ids['tag']}").status_code == 204
    fresh = org.owner.post(f"{org.base}/tags", json={"name": "Python"}).json()["id"]
    desktop.library.edit("prompt", other, {"tag_ids": [ids["tag"]]})
    desktop.sync()
    _settle(laptop, desktop)

    assert org.owner.get(f"{org.base}/prompts/{other}").json()["tag_ids"] == [fresh]
    assert org.owner.get(f"{org.base}/tags/{ids['tag']}").status_code == 404
    assert _dangling(app, org) == []
    assert laptop.values() == desktop.values()
    assert desktop.library.get("prompt", other)["tag_ids"] == [fresh]
