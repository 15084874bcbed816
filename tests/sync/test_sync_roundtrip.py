"""Devices syncing through the real API (in-process app on SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outputhub.desktop.services.conflicts import ConflictService, reapply_refused, sides_heading
from outputhub.desktop.services.library import LibraryService
from outputhub.desktop.services.sync import conflict_news
from outputhub.desktop.storage.sync_store import REJECTED_FIELD
from outputhub.desktop.storage.tables import to_timestamp
from outputhub.sync.client import LocalEditError, Merged, ServerUnreachableError
from tests.support.client import add_member, seed_library
from tests.support.feed import stale_feed_data
from tests.sync.support import make_device, server_cli, titles_in_conflict


def test_initial_sync_brings_the_library_and_both_replicas_agree(org, devices) -> None:  # type: ignore[no-untyped-def]
    ids = seed_library(org)
    laptop, desktop = devices
    report = laptop.sync()
    assert report.pulled >= 9 and report.checksum_ok is True
    desktop.sync()
    assert laptop.values() == desktop.values()
    prompt = laptop.library.get("prompt", ids["prompt"])
    assert prompt["title"] == "Linux Terminal" and prompt["tag_ids"] == [ids["tag"]]
    assert laptop.replica.get_output(id=ids["output"]).content == "/home/user"


def test_offline_edits_of_different_fields_both_survive(org, devices) -> None:  # type: ignore[no-untyped-def]
    ids = seed_library(org)
    laptop, desktop = devices
    laptop.sync()
    desktop.sync()
    laptop.library.edit("prompt", ids["prompt"], {"title": "Terminal (laptop)"})
    desktop.library.edit("prompt", ids["prompt"], {"description": "from the desktop"})
    laptop.sync()
    desktop.sync()
    laptop.sync()
    assert laptop.values() == desktop.values()
    server = org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()
    assert server["title"] == "Terminal (laptop)" and server["description"] == "from the desktop"
    assert laptop.open_conflicts() == []


def test_same_field_conflict_is_kept_listed_and_resolved_everywhere(org, devices) -> None:  # type: ignore[no-untyped-def]
    ids = seed_library(org)
    laptop, desktop = devices
    laptop.sync()
    desktop.sync()
    laptop.library.edit("prompt", ids["prompt"], {"title": "Laptop title"})
    desktop.library.edit("prompt", ids["prompt"], {"title": "Desktop title"})
    laptop.sync()
    report = desktop.sync()
    laptop.sync()
    assert report.conflicts_opened, "the second writer sees the conflict"
    server_conflicts = org.owner.get(f"{org.base}/sync/conflicts").json()
    assert len(server_conflicts) == 1
    conflict = server_conflicts[0]
    assert {conflict["winner"]["value"], conflict["loser"]["value"]} == {"Laptop title", "Desktop title"}
    [local] = laptop.open_conflicts()
    assert local.id == conflict["id"]
    assert {local.mine, local.theirs} == {"Laptop title", "Desktop title"}
    # an edited merge is checked as an edit is: the server would refuse these and the conflict come back
    for bad, said in (("   ", "is required"), (2024, "must be text"), ("x" * 301, "longer than")):
        with pytest.raises(LocalEditError, match=said):
            laptop.library.resolve_conflict("prompt", ids["prompt"], local.id, Merged(bad))
    assert [c.id for c in laptop.open_conflicts()] == [local.id]
    laptop.library.resolve_conflict("prompt", ids["prompt"], local.id, Merged("Merged title"))
    laptop.sync()
    desktop.sync()
    assert org.owner.get(f"{org.base}/sync/conflicts").json() == []
    assert desktop.open_conflicts() == [] and laptop.open_conflicts() == []
    assert desktop.library.get("prompt", ids["prompt"])["title"] == "Merged title"
    assert laptop.values() == desktop.values()


def test_conflicts_are_listed_in_pages(org, devices) -> None:  # type: ignore[no-untyped-def]
    """``GET .../sync/conflicts`` ignored ``limit`` and gave a busy organization's whole history in one answer
    of tens of MB (QA): ``limit`` and ``after`` (the previous page's last conflict) page it, oldest first, and
    the pages make up the whole list; an ``after`` that names no conflict is a 422 naming it."""
    laptop, desktop = devices
    made = [org.owner.post(f"{org.base}/tags", json={"name": f"paged {n}"}).json()["id"] for n in range(5)]
    laptop.sync()
    desktop.sync()
    for n, tag in enumerate(made):
        laptop.library.edit("tag", tag, {"description": f"laptop {n}"})
        desktop.library.edit("tag", tag, {"description": f"desktop {n}"})
    laptop.sync()
    desktop.sync()
    url = f"{org.base}/sync/conflicts"
    whole = org.owner.get(url).json()
    assert len(whole) == 5
    pages: list[list[dict[str, object]]] = []
    after: str | None = None
    for _ in range(5):  # (bounded: a list that ignores the paging never ends)
        params = {"limit": 2, **({"after": after} if after else {})}
        page = org.owner.get(url, params=params).json()
        if not page:
            break
        pages.append(page)
        after = str(page[-1]["id"])
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [c["id"] for p in pages for c in p] == [c["id"] for c in whole]
    unknown = org.owner.get(url, params={"after": "01a22909-0000-7000-8000-000000000000"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "query.after"


def test_a_replica_that_wrote_neither_side_is_told_so(client, org, devices, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Its "mine" is only the value in place: the desktop's Conflicts panel heads it so instead of "Mine
    (this computer)" (a user picking "keep mine" there kept someone else's edit believing it was theirs)."""
    ids = seed_library(org)
    laptop, desktop = devices
    titles_in_conflict(ids["prompt"], laptop, desktop)
    token = org.owner.token
    observer = make_device(tmp_path, "observer", http=client, base_url="", token=token, org_id=org.id)
    observer.sync()
    try:
        for device, written in ((desktop, "mine"), (observer, "neither")):
            [item] = ConflictService(replica=device.replica, editor=device.library).open_conflicts()
            assert item.written_here == written, device.name
        assert sides_heading("neither")[0].startswith("Mine (in place here; written on another computer)")
        assert sides_heading("mine") == ("Mine (this computer)", "Theirs (another computer)")
        [refused_heading, _reason] = sides_heading("mine", "rejected")
        assert "refused" in refused_heading
    finally:
        observer.replica.close()


def test_text_edits_merge_line_by_line(org, devices) -> None:  # type: ignore[no-untyped-def]
    ids = seed_library(org)
    laptop, desktop = devices
    org.owner.patch(f"{org.base}/prompts/{ids['prompt']}", json={"body": "one\ntwo\nthree\nfour\n"})
    laptop.sync()
    desktop.sync()
    laptop.library.edit("prompt", ids["prompt"], {"body": "ONE\ntwo\nthree\nfour\n"})
    desktop.library.edit("prompt", ids["prompt"], {"body": "one\ntwo\nthree\nFOUR\n"})
    laptop.sync()
    desktop.sync()
    laptop.sync()
    body = org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["body"]
    assert body == "ONE\ntwo\nthree\nFOUR\n"
    assert laptop.values() == desktop.values()


def test_long_text_is_stored_once_and_still_merges(org, devices) -> None:  # type: ignore[no-untyped-def]
    """The merge state keeps a long text equal to its column as a marker (the replica stores it once), and a
    state written once keeps none of its values (they are the row's); the three-way text merge still finds
    its base, and the whole replica agrees with the server."""
    ids = seed_library(org)
    laptop, desktop = devices
    lines = [f"line {n}: {'the quick brown fox jumps over the lazy dog ' * 2}" for n in range(6)]
    text = "\n".join(lines) + "\n"
    created = org.owner.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": text})
    assert created.status_code == 201, created.text
    output_id = created.json()["id"]
    laptop.sync()
    desktop.sync()

    def stored(device: Any) -> str:
        with device.replica.reading("inspect") as conn:
            row = conn.execute("SELECT field_clocks FROM outputs WHERE id = ?", (output_id,)).fetchone()
        return str(row[0])

    for device in devices:  # written once: the row's values, none repeated
        assert lines[3] not in stored(device) and ids["prompt"] not in stored(device)
        assert stored(device).endswith('"v":"="}}')
    laptop.library.edit("output", output_id, {"content": text.replace("line 0:", "LINE 0:")})
    desktop.library.edit("output", output_id, {"content": text.replace("line 5:", "LINE 5:")})
    laptop.sync()
    desktop.sync()
    laptop.sync()
    merged = org.owner.get(f"{org.base}/outputs/{output_id}").json()["content"]
    assert merged == text.replace("line 0:", "LINE 0:").replace("line 5:", "LINE 5:")
    assert laptop.replica.get_output(id=output_id).content == merged
    assert laptop.values() == desktop.values()
    assert not laptop.open_conflicts() and not desktop.open_conflicts()


def test_delete_against_concurrent_edit_restores_with_a_note(org, devices) -> None:  # type: ignore[no-untyped-def]
    ids = seed_library(org)
    laptop, desktop = devices
    laptop.sync()
    desktop.sync()
    laptop.library.delete("output", ids["output"])
    desktop.library.edit("output", ids["output"], {"notes": "still useful"})
    laptop.sync()
    desktop.sync()
    laptop.sync()
    server = org.owner.get(f"{org.base}/outputs/{ids['output']}")
    assert server.status_code == 200 and server.json()["notes"] == "still useful"
    kinds = {c["kind"] for c in org.owner.get(f"{org.base}/sync/conflicts").json()}
    assert kinds == {"delete"}
    assert laptop.values() == desktop.values()


def test_same_tag_created_offline_twice_is_merged(app, org, devices) -> None:  # type: ignore[no-untyped-def]
    ids = seed_library(org)
    laptop, desktop = devices
    laptop.sync()
    desktop.sync()
    tag_a = laptop.library.create("tag", {"name": "rust"})
    tag_b = desktop.library.create("tag", {"name": "Rust"})
    laptop.library.edit("prompt", ids["prompt"], {"tag_ids": [ids["tag"], tag_a]})
    desktop.library.edit("output", ids["output"], {"tag_ids": [ids["tag"], tag_b]})
    laptop.sync()
    desktop.sync()
    laptop.sync()
    tags = org.owner.get(f"{org.base}/tags").json()["items"]
    assert [t["name"] for t in tags].count("rust") + [t["name"] for t in tags].count("Rust") == 1
    survivor = next(t["id"] for t in tags if t["name"].lower() == "rust")
    assert survivor == tag_a
    out = org.owner.get(f"{org.base}/outputs/{ids['output']}").json()
    assert survivor in out["tag_ids"] and tag_b not in out["tag_ids"]
    assert laptop.values() == desktop.values()
    assert stale_feed_data(app.state.services.session_factory, org.id) == []


def test_viewer_edit_is_refused_kept_and_reverted(client, org, devices, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = seed_library(org)
    viewer = add_member(org, "viewer")
    device = make_device(tmp_path, "viewer", http=client, base_url="", token=viewer.token, org_id=org.id)
    device.sync()
    device.library.edit("prompt", ids["prompt"], {"title": "Viewer was here"})
    device.library.create("tag", {"name": "viewer's"})
    report = device.sync()
    assert [r["reason"] for r in report.refused] == [  # each says what it tried (an add said "edit": QA)
        "permission-denied: the viewer role may not edit records",
        "permission-denied: the viewer role may not create records",
    ]
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == "Linux Terminal"
    assert device.library.get("prompt", ids["prompt"])["title"] == "Linux Terminal"
    kept = next(c for c in device.open_conflicts() if c.record_id == ids["prompt"])
    assert kept.field == "_rejected" and kept.mine["values"] == {"title": "Viewer was here"}
    assert device.store.pending_count() == 0
    device.replica.close()


def test_a_viewers_refused_edits_are_reset_from_the_answer_without_a_request_each(  # type: ignore[no-untyped-def]
    client, org, tmp_path: Path, monkeypatch
) -> None:
    """The push's answer brings each record a refused op named, as the server has it (``refused_records``,
    ``null`` for a create it never stored): the replica shows them again without asking for each one (1,500
    refused edits made 1,500 requests and ran into the rate limit; found by QA)."""
    ids = seed_library(org)
    viewer = add_member(org, "viewer")
    device = make_device(tmp_path, "viewer", http=client, base_url="", token=viewer.token, org_id=org.id)
    device.sync()
    made = [device.library.create("tag", {"name": f"viewer tag {n}"}) for n in range(30)]
    device.library.edit("prompt", ids["prompt"], {"title": "Viewer was here"})
    device.library.edit("output", ids["output"], {"notes": "viewer notes"})
    asked: list[str] = []
    monkeypatch.setattr(device.remote, "record", lambda **kw: asked.append(kw["record_id"]))
    report = device.sync()
    assert len(report.refused) == 32 and asked == []
    assert device.library.get("prompt", ids["prompt"])["title"] == "Linux Terminal"
    assert device.library.get("output", ids["output"])["notes"] == ""
    for tag in made:
        with pytest.raises(LocalEditError):
            device.library.get("tag", tag)
    assert len(device.open_conflicts()) == 32
    assert device.store.out_of_step(limit=100) == []
    device.replica.close()


def test_a_record_left_showing_a_refused_edit_is_reset_at_the_next_sync(  # type: ignore[no-untyped-def]
    client, org, tmp_path: Path, monkeypatch
) -> None:
    """A sync that stopped after the server refused an edit but before the replica showed the record as
    the server has it (an older server's answer, then the request for the record lost) left the refused
    edit on screen for good: every later sync said nothing and the check passed (its revision is the
    server's; found by QA). The next sync shows it as the server has it."""
    ids = seed_library(org)
    viewer = add_member(org, "viewer")
    device = make_device(tmp_path, "viewer", http=client, base_url="", token=viewer.token, org_id=org.id)
    device.sync()
    made = device.library.create("tag", {"name": "never stored"})
    device.library.edit("prompt", ids["prompt"], {"title": "Viewer was here"})
    push = device.remote.push

    def older_server(**kwargs):  # type: ignore[no-untyped-def]
        answer = dict(push(**kwargs))
        answer.pop("refused_records", None)
        return answer

    def lost(**kwargs):  # type: ignore[no-untyped-def]
        raise ServerUnreachableError("injected: the request for the record was lost")

    monkeypatch.setattr(device.remote, "push", older_server)
    with monkeypatch.context() as patched:
        patched.setattr(device.remote, "record", lost)
        with pytest.raises(ServerUnreachableError):
            device.sync()
    assert device.library.get("prompt", ids["prompt"])["title"] == "Viewer was here"  # out of step
    assert device.store.pending_count() == 0 and len(device.open_conflicts()) == 2
    report = device.sync()
    assert report.reset == 2 and report.checksum_ok is True
    assert device.library.get("prompt", ids["prompt"])["title"] == "Linux Terminal"
    with pytest.raises(LocalEditError):
        device.library.get("tag", made)
    assert device.store.out_of_step(limit=100) == []
    assert len(device.open_conflicts()) == 2, "the refused edits stay kept"
    device.replica.close()


def test_replayed_push_is_a_noop(org, devices) -> None:  # type: ignore[no-untyped-def]
    ids = seed_library(org)
    laptop, _ = devices
    laptop.sync()
    laptop.library.edit("prompt", ids["prompt"], {"title": "Once"})
    [op] = laptop.store.pending(limit=10)
    first = laptop.remote.push(device=laptop.store.node_id, changes=[op.change])
    second = laptop.remote.push(device=laptop.store.node_id, changes=[op.change])
    assert first["results"][0]["status"] == "applied"
    assert second["results"][0]["replayed"] is True
    assert second["results"][0]["revision"] == first["results"][0]["revision"]
    versions = org.owner.get(f"{org.base}/prompts/{ids['prompt']}/versions").json()
    assert [v["title"] for v in versions].count("Once") == 1


def test_rest_edit_and_offline_edit_of_same_field_conflict(org, devices) -> None:  # type: ignore[no-untyped-def]
    ids = seed_library(org)
    laptop, _ = devices
    laptop.sync()
    laptop.library.edit("prompt", ids["prompt"], {"title": "Offline"})
    org.owner.patch(f"{org.base}/prompts/{ids['prompt']}", json={"title": "Online"})
    laptop.sync()
    conflicts = org.owner.get(f"{org.base}/sync/conflicts").json()
    assert len(conflicts) == 1
    values = {conflicts[0]["winner"]["value"], conflicts[0]["loser"]["value"]}
    assert values == {"Offline", "Online"}
    resolved = org.owner.post(
        f"{org.base}/sync/conflicts/{conflicts[0]['id']}/resolve", json={"keep": "loser"}
    )
    assert resolved.status_code == 200, resolved.text
    laptop.sync()
    title = org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"]
    assert title == conflicts[0]["loser"]["value"]
    assert laptop.library.get("prompt", ids["prompt"])["title"] == title
    assert laptop.open_conflicts() == []


def test_resolving_through_the_api_refuses_bad_values_naming_them(org, devices) -> None:  # type: ignore[no-untyped-def]
    """A value of the wrong shape is a 422 naming ``body.value`` (an object gave a bare invalid-change, a
    number named ``body.title``), ``null`` takes a reference away, and resolving a conflict twice is a 409
    (found by QA)."""
    ids = seed_library(org)
    laptop, _ = devices
    laptop.sync()
    stage = org.owner.post(f"{org.base}/development-stages", json={"name": "beta"}).json()["id"]
    laptop.sync()
    laptop.library.edit("prompt", ids["prompt"], {"title": "Offline", "development_stage_id": stage})
    other = org.owner.post(f"{org.base}/development-stages", json={"name": "gamma"}).json()["id"]
    online = {"title": "Online", "development_stage_id": other}
    org.owner.patch(f"{org.base}/prompts/{ids['prompt']}", json=online)
    laptop.sync()
    conflicts = {c["field"]: c for c in org.owner.get(f"{org.base}/sync/conflicts").json()}
    assert set(conflicts) == {"title", "development_stage_id"}
    title_url = f"{org.base}/sync/conflicts/{conflicts['title']['id']}/resolve"
    for value in ({"a": 1}, 5, ["x"]):
        r = org.owner.post(title_url, json={"value": value})
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["body.value"], r.text
    stage_url = f"{org.base}/sync/conflicts/{conflicts['development_stage_id']['id']}/resolve"
    taken_away = org.owner.post(stage_url, json={"value": None})
    assert taken_away.status_code == 200, taken_away.text
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["development_stage_id"] is None
    assert org.owner.post(title_url, json={"keep": "winner"}).status_code == 200
    again = org.owner.post(title_url, json={"keep": "loser"})
    assert again.status_code == 409, again.text
    assert again.json()["errors"][0]["field"] == "path.conflict_id"
    laptop.sync()
    assert laptop.open_conflicts() == []


def test_expired_cursor_resyncs_from_zero_and_keeps_local_edits(  # type: ignore[no-untyped-def]
    app, backend, client, org, devices, monkeypatch, tmp_path: Path
) -> None:


    ids = seed_library(org)
    laptop, desktop = devices
    # more than a page of records below the purge horizon (the devices pull 200 at a time): a resync from 0
    # walks pages whose cursors are below it (each expired, and the resync started again, forever; QA)
    items = [{"prompt_id": ids["prompt"], "content": f"bulk {n}"} for n in range(450)]
    assert org.owner.post(f"{org.base}/outputs/bulk", json={"items": items[:300]}).status_code == 201
    assert org.owner.post(f"{org.base}/outputs/bulk", json={"items": items[300:]}).status_code == 201
    laptop.sync()
    desktop.sync()
    doomed = org.owner.post(f"{org.base}/prompts", json={"title": "Doomed", "body": "x"}).json()["id"]
    # a tag deleted through sync, as the desktop deletes one: taken off the output, then deleted (a live
    # record naming it would keep it alive); the purge then drops it for good
    old_tag = org.owner.post(f"{org.base}/tags", json={"name": "old"}).json()["id"]
    linked = org.owner.patch(f"{org.base}/outputs/{ids['output']}", json={"tag_ids": [ids["tag"], old_tag]})
    assert linked.status_code == 200, linked.text
    laptop.sync()
    desktop.sync()
    laptop.library.edit("output", ids["output"], {"tag_ids": [ids["tag"]]})
    laptop.library.delete("tag", old_tag)
    laptop.sync()
    assert org.owner.get(f"{org.base}/outputs/{ids['output']}").json()["tag_ids"] == [ids["tag"]]
    assert old_tag not in {t["id"] for t in org.owner.get(f"{org.base}/tags").json()["items"]}
    assert org.owner.delete(f"{org.base}/prompts/{doomed}").status_code == 204
    laptop.sync()  # the laptop saw the delete; the desktop has been away
    desktop.library.edit("prompt", ids["prompt"], {"title": "Edited while away"})
    desktop.library.edit("prompt", doomed, {"title": "Edited a doomed prompt"})

    result = purge_now(app, monkeypatch, org)
    assert result.exit_code == 0, result.output
    assert "purged" in result.output and not result.output.startswith("purged 0 ")
    # the purge log names what went to every later pull (test_a_purge_reaches_every_replica_as_a_page);
    # a later purge forgets entries older than its retention, and cursors before them expire
    _forget_purges(app, monkeypatch, org)

    gone = org.owner.get(f"{org.base}/sync/changes", params={"protocol": 1, "since": 1})
    assert gone.status_code == 410 and gone.json()["type"].endswith("cursor-expired")
    report = desktop.sync()
    assert report.full_resync
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == "Edited while away"
    # the edit of the purged prompt could not be applied: it is kept as a refused edit, not dropped silently
    [kept] = [c for c in desktop.open_conflicts() if c.record_id == doomed]
    assert kept.field == "_rejected" and kept.mine["values"] == {"title": "Edited a doomed prompt"}
    assert desktop.replica.get_prompt(id=doomed) is None
    laptop_report = laptop.sync()  # its cursor is the horizon: it lacks nothing, but holds purged tombstones
    assert report.checksum_ok is True and laptop_report.checksum_ok is not False
    assert laptop.values() == desktop.values()
    owner = org.owner.token
    newcomer = make_device(tmp_path, "newcomer", http=client, base_url="", token=owner, org_id=org.id)
    first = newcomer.sync()  # a new replica after a purge: an initial sync of several pages
    assert first.checksum_ok is True and not first.full_resync
    assert newcomer.values() == laptop.values()
    assert stale_feed_data(app.state.services.session_factory, org.id, allow_missing=True) == []
    assert org.owner.get(f"{org.base}/outputs/{ids['output']}").json()["tag_ids"] == [ids["tag"]]
    assert laptop.library.get("output", ids["output"])["tag_ids"] == [ids["tag"]]


def test_a_purge_reaches_every_replica_as_a_page(  # type: ignore[no-untyped-def]
    app, client, org, devices, monkeypatch
) -> None:
    """A purge of long-deleted records logs what it removed at a revision of its own, and the next pull names
    them: an up-to-date replica drops the tombstones it holds, one that has been away since before the
    deletes drops the live copies, and neither pulls everything again. Before (QA, 2026-11-29), a purge told
    no replica anything: the up-to-date one's check did not match (it kept the purged tombstones) and it
    pulled all 54,742 records again; the one away got 410 and pulled everything too."""
    ids = seed_library(org)
    laptop, desktop = devices
    doomed = org.owner.post(f"{org.base}/prompts", json={"title": "Doomed", "body": "x"}).json()["id"]
    edited = org.owner.post(f"{org.base}/prompts", json={"title": "Edited away", "body": "y"}).json()["id"]
    old_tag = org.owner.post(f"{org.base}/tags", json={"name": "old"}).json()["id"]
    laptop.sync()
    desktop.sync()
    for url in (f"prompts/{doomed}", f"prompts/{edited}", f"tags/{old_tag}"):
        assert org.owner.delete(f"{org.base}/{url}").status_code == 204
    laptop.sync()  # holds the three tombstones; the desktop is away with the live records
    before_purge = laptop.store.cursor(server_url="", org_id=org.id)
    desktop.library.edit("prompt", ids["prompt"], {"title": "Edited while away"})
    desktop.library.edit("prompt", edited, {"title": "An edit of a record the server purges"})

    result = purge_now(app, monkeypatch, org)
    assert result.exit_code == 0 and result.output.startswith("purged 3 "), result.output
    page = org.owner.get(f"{org.base}/sync/changes", params={"protocol": 4, "since": before_purge}).json()
    assert page["records"] == [] and page["next_since"] == page["head"] > before_purge
    assert sorted((p["entity"], p["id"]) for p in page["purged"]) == sorted(
        [("prompts", doomed), ("prompts", edited), ("tags", old_tag)]
    )
    assert {p["revision"] for p in page["purged"]} == {page["head"]}, "at the purge's own revision"
    after = org.owner.get(f"{org.base}/sync/changes", params={"protocol": 4, "since": page["head"]}).json()
    assert after["purged"] == []

    up_to_date = laptop.sync()
    assert up_to_date.purged == 3 and up_to_date.pulled == 0
    assert not up_to_date.repaired and not up_to_date.full_resync and up_to_date.checksum_ok is True
    assert all(laptop.store.load(e, i) is None for e, i in (("prompt", doomed), ("tag", old_tag)))

    away = desktop.sync()
    assert not away.repaired and not away.full_resync and away.checksum_ok is True
    assert desktop.store.load("prompt", doomed) is None and desktop.store.load("tag", old_tag) is None
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == "Edited while away"
    # the edit of the purged prompt could not be applied: kept as a refused edit, not dropped silently
    [kept] = [c for c in desktop.open_conflicts() if c.record_id == edited]
    assert kept.field == "_rejected"
    assert kept.mine["values"] == {"title": "An edit of a record the server purges"}
    assert desktop.replica.get_prompt(id=edited) is None
    laptop.sync()
    assert laptop.values() == desktop.values()


def test_an_offline_delete_of_a_record_deleted_and_purged_meanwhile_is_no_refusal(  # type: ignore[no-untyped-def]
    app, org, devices, monkeypatch
) -> None:
    """A replica deletes a record offline; the server deletes it too and purges it before the replica
    syncs. The delete holds already: it was refused as not found, kept as a refused edit to resolve, and the
    CLI's sync ended with exit 5 (QA). It is answered noop, and the record goes."""
    ids = seed_library(org)
    laptop, desktop = devices
    doomed = org.owner.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "x"}).json()
    laptop.sync()
    desktop.sync()
    desktop.library.delete("output", doomed["id"])
    assert org.owner.delete(f"{org.base}/outputs/{doomed['id']}").status_code == 204
    purged = purge_now(app, monkeypatch, org)
    assert purged.exit_code == 0 and purged.output.startswith("purged 1 "), purged.output
    report = desktop.sync()
    assert report.refused == [] and report.pushed == 1
    assert not report.repaired and report.checksum_ok is True
    assert desktop.store.load("output", doomed["id"]) is None
    assert [c for c in desktop.open_conflicts() if c.record_id == doomed["id"]] == []
    laptop.sync()
    assert laptop.values() == desktop.values()


def test_a_record_made_again_with_a_purged_id_replaces_the_old_one_on_every_replica(  # type: ignore[no-untyped-def]
    app, client, org, devices, monkeypatch, tmp_path: Path
) -> None:
    """An output purged and then made again under the same id (a re-import of an export), after the purge
    log was forgotten: the replicas get 410 and walk. The walk merged each replica's copy of the old record
    into the new one, and every replica showed the old tags and notes, with conflicts the server did not
    have, while its check matched (QA, 2026-11-29). A walk now takes the server's state of every record that
    carries no local edit."""
    ids = seed_library(org)
    laptop, desktop = devices
    base = {"prompt_id": ids["prompt"], "content": "version 1", "notes": "old notes", "tag_ids": [ids["tag"]]}
    reused = org.owner.post(f"{org.base}/outputs", json=base).json()["id"]
    laptop.sync()
    desktop.sync()
    assert org.owner.delete(f"{org.base}/outputs/{reused}").status_code == 204
    laptop.sync()  # holds the tombstone; the desktop holds the live record
    purged = purge_now(app, monkeypatch, org)
    assert purged.exit_code == 0 and purged.output.startswith("purged 1 "), purged.output
    again = {"id": reused, "prompt_id": ids["prompt"], "content": "version 2"}
    made = org.owner.post(f"{org.base}/outputs", json=again)
    assert made.status_code == 201, made.text
    _forget_purges(app, monkeypatch, org)

    server = org.owner.get(f"{org.base}/outputs/{reused}").json()
    assert (server["content"], server["notes"], server["tag_ids"]) == ("version 2", "", [])
    token = org.owner.token
    newcomer = make_device(tmp_path, "newcomer", http=client, base_url="", token=token, org_id=org.id)
    try:
        newcomer.sync()
        for device in (laptop, desktop):
            report = device.sync()
            assert report.full_resync and report.checksum_ok is True
            shown = device.library.get("output", reused)
            assert (shown["content"], shown["notes"], shown["tag_ids"]) == ("version 2", "", []), device.name
            assert [c for c in device.open_conflicts() if c.record_id == reused] == [], device.name
            assert device.values() == newcomer.values(), device.name
    finally:
        newcomer.replica.close()


def purge_now(app: Any, monkeypatch: Any, org: Any) -> Any:
    """``outputhub sync purge-tombstones --older-than-days 0`` for ``org`` alone (the other tests'
    organizations share the database, and their tombstones made the counts depend on the order of tests)."""
    return server_cli(app, monkeypatch, "sync", "purge-tombstones", "--older-than-days", "0", "--org", org.id)


def _forget_purges(app: Any, monkeypatch: Any, org: Any) -> None:
    """A second purge, past the first one's log retention (0 days): the log is forgotten and the horizon
    rises past the first purge's revision (older cursors get 410)."""
    result = purge_now(app, monkeypatch, org)
    assert result.exit_code == 0 and result.output.startswith("purged 0 "), result.output
    assert "forgot " in result.output, "the log entries of the first purge, forgotten: said"


def test_closed_conflicts_are_kept_for_a_while_then_forgotten(org, devices) -> None:  # type: ignore[no-untyped-def]
    """The replica's conflicts table keeps a closed conflict for CLOSED_CONFLICTS_KEPT (90 days; `conflicts
    show` finds it, a sync tells a changed conflict from a new one by it) and forgets it when a later one
    closes, instead of keeping every conflict ever. Open conflicts stay, however old."""
    ids = seed_library(org)
    laptop, desktop = devices
    laptop.sync()
    desktop.sync()
    now = datetime.now(UTC)
    elsewhere = str(uuid.uuid4())

    def conflict_row(name: str, *, created: datetime, resolved: datetime | None) -> tuple[object, ...]:
        return (
            name,
            "prompt",
            elsewhere,  # a record this test's syncs never touch
            "title",
            '"b"',
            '"m"',
            '"t"',
            to_timestamp(created),
            None if resolved is None else to_timestamp(resolved),
        )

    with laptop.replica.writing("seed old conflicts") as conn:
        conn.executemany(
            "INSERT INTO conflicts (id, entity, record_id, field, base, mine, theirs, created_at, "
            "resolved_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                conflict_row(
                    "closed-long-ago", created=now - timedelta(days=200), resolved=now - timedelta(days=91)
                ),
                conflict_row(
                    "closed-lately", created=now - timedelta(days=200), resolved=now - timedelta(days=89)
                ),
                conflict_row("open-for-long", created=now - timedelta(days=400), resolved=None),
            ],
        )
    laptop.library.edit("prompt", ids["prompt"], {"title": "Laptop title"})
    desktop.library.edit("prompt", ids["prompt"], {"title": "Desktop title"})
    desktop.sync()
    laptop.sync()
    [opened] = [
        c for c in laptop.open_conflicts() if c.record_id == ids["prompt"] and c.id != "open-for-long"
    ]
    kept = {c.id for c in laptop.replica.list_conflicts(include_resolved=True)}
    assert {"closed-long-ago", "closed-lately", "open-for-long"} <= kept, (
        "nothing closed yet: nothing forgotten"
    )

    laptop.library.resolve_conflict("prompt", ids["prompt"], opened.id, Merged("Merged title"))
    kept = {c.id: c for c in laptop.replica.list_conflicts(include_resolved=True)}
    assert "closed-long-ago" not in kept
    assert {"closed-lately", "open-for-long", opened.id} <= set(kept)
    assert kept[opened.id].resolved_at is not None and kept["open-for-long"].resolved_at is None
    laptop.sync()
    desktop.sync()
    assert desktop.library.get("prompt", ids["prompt"])["title"] == "Merged title"


def test_a_reference_that_is_not_an_id_is_refused_as_it_is_typed(org, devices) -> None:  # type: ignore[no-untyped-def]
    """``--set tag_ids=oops`` is refused at once (the CLI's exit 5), naming the field, instead of being
    queued for a sync that can only refuse it; nothing is written."""
    ids = seed_library(org)
    laptop, _ = devices
    laptop.sync()
    before = laptop.values()
    for entity, values in (
        ("output", {"prompt_id": ids["prompt"], "content": "x", "tag_ids": "not-a-uuid"}),
        ("output", {"prompt_id": "garbage", "content": "x"}),
        ("prompt", {"title": "T", "body": "b", "development_stage_id": "??"}),
    ):
        with pytest.raises(LocalEditError, match="is not a record id"):
            laptop.library.create(entity, values)
    with pytest.raises(LocalEditError, match=r"prompt\.tag_ids"):
        laptop.library.edit("prompt", ids["prompt"], {"tag_ids": [ids["tag"], "nope"]})
    assert laptop.values() == before and laptop.store.pending_count() == 0
    laptop.library.edit("prompt", ids["prompt"], {"tag_ids": []})  # clearing a reference stays possible
    assert laptop.sync().pushed == 1


def test_two_edits_against_a_delete_report_one_new_conflict(org, devices) -> None:  # type: ignore[no-untyped-def]
    """The desktop edits a record twice offline while the laptop deletes it. The first pushed edit opens a
    delete conflict, the second replaces it with the conflict between the newer writes: the sync reports
    one new conflict (it said two) and one is open."""
    ids = seed_library(org)
    laptop, desktop = devices
    laptop.sync()
    desktop.sync()
    laptop.library.delete("prompt", ids["prompt"])
    laptop.sync()
    desktop.library.edit("prompt", ids["prompt"], {"title": "Edited offline"})
    desktop.library.edit("prompt", ids["prompt"], {"body": "and again"})
    report = desktop.sync()
    assert len(desktop.open_conflicts()) == 1
    assert conflict_news(desktop.replica, report.conflicts_opened, report.conflicts_closed) == (1, 0)
    assert desktop.library.get("prompt", ids["prompt"])["title"] == "Edited offline"


def test_a_lookup_made_offline_shows_the_position_the_server_shows(org, devices) -> None:  # type: ignore[no-untyped-def]
    """A tag created on a replica without a position is stored with position 0, as the REST API stores one:
    the replicas, the sync state and the REST answer agree (the replica said None, REST 0)."""
    laptop, desktop = devices
    tag = laptop.library.create("tag", {"name": "made offline"})
    laptop.sync()
    desktop.sync()
    assert org.owner.get(f"{org.base}/tags/{tag}").json()["position"] == 0
    assert laptop.library.get("tag", tag)["position"] == desktop.library.get("tag", tag)["position"] == 0


class _Pages:
    """An httpx transport to the app that notes each pull page asked for, ``(since, from_zero)``, and after
    ``allow`` of them refuses the connection (the link lost, the app killed)."""

    def __init__(self, client: Any, allow: int | None) -> None:
        self.client, self.allow = client, allow
        self.asked: list[tuple[int, bool]] = []

    def handle_request(self, request: Any) -> Any:
        import httpx

        if request.url.path.endswith("/sync/changes"):
            params = request.url.params
            self.asked.append((int(params["since"]), params.get("from_zero") == "true"))
            if self.allow is not None and len(self.asked) > self.allow:
                raise httpx.ConnectError("injected: the link is gone")
        return self.client._transport.handle_request(request)


def _sync_through(pages: _Pages, device: Any, org: Any) -> Any:
    import httpx

    from outputhub.sync.client import HttpRemote, SyncClient

    transport = httpx.MockTransport(pages.handle_request)
    with httpx.Client(transport=transport, base_url="http://testserver") as http:
        remote = HttpRemote("", token=org.owner.token, org_id=org.id, client=http)
        return SyncClient(device.store, remote, pull_page=100).sync()


def test_a_full_resync_cut_short_goes_on_where_it_stopped(  # type: ignore[no-untyped-def]
    app, client, org, devices, monkeypatch, tmp_path: Path
) -> None:
    """After a purge, a replica away since resyncs from 0 (a walk of every record, then those the server no
    longer has are dropped). Cut short mid-walk (the app closed, the link lost), the next sync started the
    walk from 0 again, every time: on a large library often interrupted, it never ended (QA). It goes on
    from the page where it stopped, asking with ``from_zero``, and still drops what the server purged."""
    ids = seed_library(org)
    laptop, desktop = devices
    items = [{"prompt_id": ids["prompt"], "content": f"bulk {n}"} for n in range(450)]
    assert org.owner.post(f"{org.base}/outputs/bulk", json={"items": items}).status_code == 201
    laptop.sync()
    desktop.sync()
    doomed = org.owner.post(f"{org.base}/prompts", json={"title": "Doomed", "body": "x"}).json()["id"]
    desktop.sync()
    assert org.owner.delete(f"{org.base}/prompts/{doomed}").status_code == 204
    laptop.sync()
    desktop.library.edit("prompt", ids["prompt"], {"title": "Edited while away"})
    result = purge_now(app, monkeypatch, org)
    assert result.exit_code == 0, result.output
    _forget_purges(app, monkeypatch, org)

    cut = _Pages(client, allow=3)
    with pytest.raises(ServerUnreachableError):
        _sync_through(cut, desktop, org)  # the expired pull, two pages of the walk; then the link goes
    expired, first, second, third = cut.asked
    assert expired[0] > 0 and first == (0, False) and second[1] and third[1]
    stopped_at = desktop.store.cursor(server_url="", org_id=org.id)
    assert stopped_at == third[0] > 0, "the two pages applied, with their cursor"
    assert desktop.store.walking(server_url="", org_id=org.id)
    rest = _Pages(client, allow=None)
    report = _sync_through(rest, desktop, org)
    assert rest.asked[0] == (stopped_at, True), "went on where it stopped, past the purge horizon"
    assert all(since > 0 for since, _ in rest.asked), "not from 0 again"
    assert report.full_resync and report.checksum_ok is True
    assert desktop.replica.get_prompt(id=doomed) is None, "what the server purged is dropped"
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == "Edited while away"
    laptop.sync()
    assert laptop.values() == desktop.values()
    assert not desktop.store.walking(server_url="", org_id=org.id)


def _purged_library(app: Any, org: Any, monkeypatch: Any) -> int:
    """450 outputs and a purged prompt in ``org``: its horizon is above 0. Returns how many records the
    server has."""
    ids = seed_library(org)
    items = [{"prompt_id": ids["prompt"], "content": f"bulk {n}"} for n in range(450)]
    assert org.owner.post(f"{org.base}/outputs/bulk", json={"items": items}).status_code == 201
    doomed = org.owner.post(f"{org.base}/prompts", json={"title": "Doomed", "body": "x"}).json()["id"]
    assert org.owner.delete(f"{org.base}/prompts/{doomed}").status_code == 204
    result = purge_now(app, monkeypatch, org)
    assert result.exit_code == 0, result.output
    _forget_purges(app, monkeypatch, org)
    sums = org.owner.get(f"{org.base}/sync/checksums").json()["tables"]
    return sum(int(t["count"]) for t in sums.values())


def test_a_first_sync_cut_short_after_a_purge_goes_on_where_it_stopped(  # type: ignore[no-untyped-def]
    app, client, org, monkeypatch, tmp_path: Path
) -> None:
    """A new replica's first sync, killed after a few pages in an organization that had a purge: the next
    sync asked for the stored cursor without ``from_zero``, got 410 (below the horizon) and pulled every
    record again as a full resync (QA, 2026-11-29). It goes on from the page where it stopped."""
    records = _purged_library(app, org, monkeypatch)
    new = make_device(tmp_path, "new", http=client, base_url="", token=org.owner.token, org_id=org.id)
    try:
        cut = _Pages(client, allow=2)
        with pytest.raises(ServerUnreachableError):
            _sync_through(cut, new, org)
        assert cut.asked[:2] == [(0, False), (cut.asked[1][0], True)] and cut.asked[1][0] > 0
        stopped_at = new.store.cursor(server_url="", org_id=org.id)
        assert stopped_at == cut.asked[2][0] > 0
        kept = sum(t.count for t in new.store.checksums().values())
        assert 0 < kept < records

        rest = _Pages(client, allow=None)
        report = _sync_through(rest, new, org)
        assert rest.asked[0] == (stopped_at, True), "went on where it stopped, past the purge horizon"
        assert all(since > 0 and walk for since, walk in rest.asked), rest.asked
        assert not report.full_resync and report.checksum_ok is True
        assert report.pulled == records - kept, "every record pulled once"
        assert not new.store.pulling_from_zero(server_url="", org_id=org.id)
    finally:
        new.replica.close()


def test_a_first_sync_with_an_offline_edit_after_a_purge_pulls_each_page_once(  # type: ignore[no-untyped-def]
    app, client, org, monkeypatch, tmp_path: Path
) -> None:
    """A new replica with an edit made before its first sync: the push brings the first page from 0 with
    it, and the pages after it were asked for without ``from_zero``: past a purge, 410, and every record was
    pulled again as a full resync (QA, 2026-11-29)."""
    records = _purged_library(app, org, monkeypatch)
    new = make_device(tmp_path, "new", http=client, base_url="", token=org.owner.token, org_id=org.id)
    try:
        new.library.create("tag", {"name": "made before the first sync"})
        pages = _Pages(client, allow=None)
        report = _sync_through(pages, new, org)
        assert pages.asked and all(since > 0 and walk for since, walk in pages.asked), pages.asked
        assert not report.full_resync and report.checksum_ok is True
        assert report.pushed == 1 and report.pulled == records + 1  # its own tag comes back with the rest
    finally:
        new.replica.close()


def test_resolving_one_of_two_conflicts_on_a_field_names_the_one_it_opens(  # type: ignore[no-untyped-def]
    client, org, devices, tmp_path
) -> None:
    """Three machines give a title offline: the server holds two conflicts on it. Resolving one through the
    API leaves the third value standing against the resolution, a new conflict: the answer names it (it
    named none, and the caller had to list the conflicts again to find it; QA)."""
    ids = seed_library(org)
    laptop, desktop = devices
    third = make_device(tmp_path, "third", http=client, base_url="", token=org.owner.token, org_id=org.id)
    try:
        for device in (laptop, desktop, third):
            device.sync()
        for device in (laptop, desktop, third):
            device.library.edit("prompt", ids["prompt"], {"title": f"{device.name} title"})
        for device in (laptop, desktop, third):
            device.sync()
        before = [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["field"] == "title"]
        assert len(before) == 2, before
        url = f"{org.base}/sync/conflicts/{before[0]['id']}/resolve"
        answer = org.owner.post(url, json={"keep": "loser"})
        assert answer.status_code == 200, answer.text
        after = [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["field"] == "title"]
        still_open = {c["id"] for c in after}
        assert before[0]["id"] not in still_open
        opened = set(answer.json()["conflicts"])
        assert opened == still_open - {c["id"] for c in before}, (answer.json(), after)
        # every title written is in place, in an open conflict, or the one the resolution set aside
        kept = {c["winner"]["value"] for c in after} | {c["loser"]["value"] for c in after}
        title = org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"]
        set_aside = before[0]["winner"]["value"]
        assert {"laptop title", "desktop title", "third title"} <= kept | {title, set_aside}
    finally:
        third.replica.close()


def test_a_record_made_offline_with_a_tag_purged_meanwhile_is_made_again_without_it(  # type: ignore[no-untyped-def]
    app, org, devices, monkeypatch
) -> None:
    """A prompt made offline with a tag that was deleted and purged before the replica synced is refused
    (the tag is gone for good). Making it again (``--keep mine``) was refused as it was made ("there is no
    tag ... in this replica"), so the prompt could only be dropped (QA). It is made again without the tag."""
    laptop, desktop = devices
    tag = org.owner.post(f"{org.base}/tags", json={"name": "short-lived"}).json()["id"]
    kept_tag = org.owner.post(f"{org.base}/tags", json={"name": "kept"}).json()["id"]
    laptop.sync()
    values = {"title": "Made offline", "body": "b", "tag_ids": [tag, kept_tag]}
    prompt = laptop.library.create("prompt", values)
    assert org.owner.delete(f"{org.base}/tags/{tag}").status_code == 204
    purged = purge_now(app, monkeypatch, org)
    assert purged.exit_code == 0 and purged.output.startswith("purged 1 "), purged.output
    [refused] = laptop.sync().refused
    assert refused["id"] == prompt and refused["reason"].startswith("unknown-reference"), refused
    [kept] = [c for c in laptop.open_conflicts() if c.field == REJECTED_FIELD]
    with laptop.replica.transaction():
        said = reapply_refused(laptop.library, kept)
        laptop.replica.resolve_conflict(id=kept.id)
    assert said == f"prompt {prompt} created again (left out: tag {tag}, which no longer exists)"
    assert laptop.sync().refused == []
    served = org.owner.get(f"{org.base}/prompts/{prompt}").json()
    assert (served["title"], served["tag_ids"]) == ("Made offline", [kept_tag])
    desktop.sync()
    assert laptop.values() == desktop.values()


def _remade(device: Any, *, reverse: bool = False) -> list[str]:
    """Every refused edit of ``device`` made again (``conflicts resolve --all --keep mine --refused``), in
    the order they were made (``reverse``: the other way round, as one by one a user may)."""
    said: list[str] = []
    for _ in range(2):  # what cannot be made yet (an edit of a record whose create comes later) next round
        refused = [c for c in device.open_conflicts() if c.field == REJECTED_FIELD]
        for kept in sorted(refused, key=lambda c: str(c.mine.get("hlc") or ""), reverse=reverse):
            try:
                with device.replica.transaction():
                    said.append(reapply_refused(device.library, kept))
                    device.replica.resolve_conflict(id=kept.id)
            except LocalEditError:
                continue
    return said


@pytest.mark.parametrize("offline", ["edit", "delete"])
def test_an_edit_refused_then_made_again_keeps_what_others_wrote_meanwhile(  # type: ignore[no-untyped-def]
    client, org, tmp_path: Path, offline: str
) -> None:
    """An editor's offline edit is refused (demoted meanwhile) and another editor edits the same record; once
    promoted again, the edit is made again (``--keep mine``). It was made on the record as it was then, over
    the other editor's edit it had never seen: their line of the text, their tag, their edit of a record it
    deleted were gone without a conflict anywhere (QA). It is made on the base it was first made on: the text
    merges, the tags add up, and the edit beats the delete, as they would have had the server taken it."""
    ids = seed_library(org)
    editor = add_member(org, "editor")
    output = org.owner.post(
        f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "c1\nc2\nc3\nc4\nc5\n"}
    ).json()["id"]
    t1, t2 = (org.owner.post(f"{org.base}/tags", json={"name": n}).json()["id"] for n in ("t1", "t2"))
    ours = make_device(tmp_path, "demoted", http=client, base_url="", token=editor.token, org_id=org.id)
    theirs = make_device(tmp_path, "other", http=client, base_url="", token=org.owner.token, org_id=org.id)
    try:
        for device in (ours, theirs):
            device.sync()
        if offline == "edit":
            ours.library.edit("output", output, {"content": "C1-by-A\nc2\nc3\nc4\nc5\n", "tag_ids": [t1]})
        else:
            ours.library.delete("output", output)
        theirs.library.edit("output", output, {"content": "c1\nc2\nc3\nc4\nC5-by-B\n", "tag_ids": [t2]})
        theirs.sync()
        member = f"{org.base}/members/{editor.user_id}"
        assert org.owner.patch(member, json={"role": "viewer"}).status_code == 200
        assert [r["reason"].split(":")[0] for r in ours.sync().refused] == ["permission-denied"]
        assert org.owner.patch(member, json={"role": "editor"}).status_code == 200
        [said] = _remade(ours)
        assert "made again" in said or "deleted again" in said, said
        assert ours.sync().refused == []
        theirs.sync()
        ours.sync()
        served = org.owner.get(f"{org.base}/outputs/{output}")
        assert served.status_code == 200, "an edit made concurrently beats the delete"
        if offline == "edit":
            body = served.json()
            assert body["content"] == "C1-by-A\nc2\nc3\nc4\nC5-by-B\n"
            assert sorted(body["tag_ids"]) == sorted([t1, t2])
        else:
            assert served.json()["content"] == "c1\nc2\nc3\nc4\nC5-by-B\n"
            conflicts = org.owner.get(f"{org.base}/sync/conflicts").json()
            assert [c["field"] for c in conflicts if c["record_id"] == output] == ["_deleted"]
        assert ours.values() == theirs.values()
    finally:
        for device in (ours, theirs):
            device.replica.close()


@pytest.mark.parametrize("reverse", [False, True], ids=["in their order", "the other way round"])
def test_refused_edits_made_again_in_their_order_leave_a_deleted_record_deleted(  # type: ignore[no-untyped-def]
    client, org, tmp_path: Path, reverse: bool
) -> None:
    """A demoted editor offline deletes a knowledge type (which takes it off an output), then the output's
    prompt with its outputs; all are refused. Made again in their order, the output ends deleted: its
    untagging made again is this replica's own write, which the delete made again after it supersedes, not
    a write the delete never saw (which would bring the output back, as an edit beats a delete). Made again
    after the delete, the untagging is moot and said so (QA: ``--all`` left it open and exited 5)."""
    ids = seed_library(org)
    editor = add_member(org, "editor")
    ours = make_device(tmp_path, "demoted", http=client, base_url="", token=editor.token, org_id=org.id)
    try:
        ours.sync()
        library = LibraryService(replica=ours.replica, editor=ours.library)
        library.delete_records(entity="knowledge_type", ids=[ids["knowledge"]])
        library.delete_records(entity="prompt", ids=[ids["prompt"]])  # with its output
        member = f"{org.base}/members/{editor.user_id}"
        assert org.owner.patch(member, json={"role": "viewer"}).status_code == 200
        refused = ours.sync().refused
        deleted = {("output", ids["output"]), ("prompt", ids["prompt"])}
        assert {(r["entity"], r["id"]) for r in refused} >= deleted, refused
        assert org.owner.patch(member, json={"role": "editor"}).status_code == 200
        said = _remade(ours, reverse=reverse)
        assert len(said) == len(refused), said
        if reverse:  # the untagging, made again after the delete that followed it, is held by that delete
            assert f"output {ids['output']}: a later refused edit made again holds its fields" in said, said
        assert ours.sync().refused == []
        gone = (f"outputs/{ids['output']}", f"prompts/{ids['prompt']}", f"knowledge-types/{ids['knowledge']}")
        for path in gone:
            assert org.owner.get(f"{org.base}/{path}").status_code == 404, path
        assert ours.open_conflicts() == []
    finally:
        ours.replica.close()


@pytest.mark.parametrize("reverse", [False, True], ids=["in their order", "the other way round"])
def test_two_refused_edits_of_one_field_made_again_end_with_the_newer(  # type: ignore[no-untyped-def]
    client, org, tmp_path: Path, reverse: bool
) -> None:
    """A demoted editor offline makes a tag, edits its description, then sets a prompt's title to T1, then
    to T2; all are refused. Made again in their order, the tag's edit follows its create and T2 follows T1.
    Made again newest first, T1 superseded T2 and T2 was gone without a conflict (QA); then they were a
    conflict, T2 made on no common ancestor with the record (QA again). T2 was made on top of T1: made again
    first, it holds the title, and T1, made again after, is held by it. Either way: T2, no conflict."""
    ids = seed_library(org)
    editor = add_member(org, "editor")
    ours = make_device(tmp_path, "demoted", http=client, base_url="", token=editor.token, org_id=org.id)
    try:
        ours.sync()
        member = f"{org.base}/members/{editor.user_id}"
        assert org.owner.patch(member, json={"role": "viewer"}).status_code == 200
        tag = ours.library.create("tag", {"name": "made offline"})
        ours.library.edit("tag", tag, {"description": "then described"})
        ours.library.edit("prompt", ids["prompt"], {"title": "T1"})
        ours.library.edit("prompt", ids["prompt"], {"title": "T2"})
        assert len(ours.sync().refused) == 4
        assert org.owner.patch(member, json={"role": "editor"}).status_code == 200
        _remade(ours, reverse=reverse)
        assert ours.sync().refused == []
        served = org.owner.get(f"{org.base}/tags/{tag}").json()
        conflicts = org.owner.get(f"{org.base}/sync/conflicts").json()
        title = org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"]
        assert served["description"] == "then described" and conflicts == [] and title == "T2", conflicts
    finally:
        ours.replica.close()


@pytest.mark.parametrize("order", ["in their order", "the other way round", "the first dropped"])
def test_chains_of_refused_edits_made_again_end_as_their_user_left_them(  # type: ignore[no-untyped-def]
    client, org, tmp_path: Path, order: str
) -> None:
    """A demoted editor offline edits a prompt's body twice (different lines), and edits, deletes and restores
    another prompt; all are refused. Made again in any order, the record ends as the user left it: the
    restored prompt live with its edit (made again newest first, the delete came last and deleted it: the
    restore and the edit were lost; QA), the body with both lines, no conflict (the second edit made first
    had no common ancestor with the record: a conflict, with the body both edits replaced as a side; QA).
    Dropping the first edit (``--keep theirs``) leaves the second on the record, without a conflict."""
    ids = seed_library(org)
    editor = add_member(org, "editor")
    other = org.owner.post(f"{org.base}/prompts", json={"title": "S", "body": "s"}).json()["id"]
    ours = make_device(tmp_path, "demoted", http=client, base_url="", token=editor.token, org_id=org.id)
    try:
        ours.sync()
        member = f"{org.base}/members/{editor.user_id}"
        assert org.owner.patch(member, json={"role": "viewer"}).status_code == 200
        body = "l1\nl2\nl3\nl4\nl5\n"
        assert org.owner.patch(f"{org.base}/prompts/{ids['prompt']}", json={"body": body}).status_code == 200
        ours.sync()
        ours.library.edit("prompt", ids["prompt"], {"body": "x1\nl2\nl3\nl4\nl5\n"})
        ours.library.edit("prompt", ids["prompt"], {"body": "x1\nl2\nx3\nl4\nl5\n"})
        ours.library.edit("prompt", other, {"title": "S-edit"})
        ours.library.delete("prompt", other)
        ours.library.restore("prompt", other)
        assert len(ours.sync().refused) == 5
        assert org.owner.patch(member, json={"role": "editor"}).status_code == 200
        if order == "the first dropped":
            edits = [c for c in ours.open_conflicts() if c.field == REJECTED_FIELD]
            first = min((c for c in edits if c.record_id == ids["prompt"]), key=lambda c: str(c.mine["hlc"]))
            ours.replica.resolve_conflict(id=first.id)
        _remade(ours, reverse=order == "the other way round")
        assert ours.sync().refused == []
        served = org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()
        assert served["body"] == "x1\nl2\nx3\nl4\nl5\n"
        restored = org.owner.get(f"{org.base}/prompts/{other}")
        assert restored.status_code == 200 and restored.json()["title"] == "S-edit"
        assert org.owner.get(f"{org.base}/sync/conflicts").json() == []
        assert ours.open_conflicts() == []
    finally:
        ours.replica.close()
