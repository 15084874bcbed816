"""A replica refuses, as the edit is made, what the server would refuse or repair at the next sync: a
reference it adds to a record it does not have live, an empty required field, the restore of a lookup the
server merged into another; a reference to such a merged lookup is written as the surviving one.

In-process app on SQLite and PostgreSQL, two replicas syncing through the real API.
"""

from __future__ import annotations

import re
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import pytest

from outputhub.common.clock import HLC, MAX_COUNTER
from outputhub.common.ids import new_id_text
from outputhub.desktop.services.conflicts import reapply_refused
from outputhub.desktop.services.library import LibraryService
from outputhub.desktop.storage.sync_store import REJECTED_FIELD
from outputhub.sync.client import LocalEditError, SyncReport
from outputhub.sync.engine import DEFAULT_SCHEMA, Merged, make_edit
from outputhub.sync.protocol import change_to_wire
from tests.support.client import Org, seed_library
from tests.sync.support import Device, as_an_older_replica, make_device, server_cli


def _settle(*devices: Device) -> None:
    for _ in range(2):
        for device in devices:
            report = device.sync()
            assert report.checksum_ok is not False
            assert report.refused == [], report.refused


def _made_on_both(laptop: Device, desktop: Device, theirs: str = "ML") -> tuple[str, str]:
    """The desktop makes the tag ``theirs`` and syncs; the laptop makes one of the same name offline and has
    not synced: its tag will be merged into the desktop's. Returns (the laptop's, the desktop's). (Another
    spelling of the name is a conflict too: ``test_the_same_lookup_made_offline_in_two_spellings...``.)"""
    surviving = desktop.library.create("tag", {"name": theirs})
    _settle(desktop)
    return laptop.library.create("tag", {"name": theirs.strip()}), surviving


def _merged_tag(laptop: Device, desktop: Device) -> tuple[str, str]:
    """Both replicas make a tag "ml" offline; the desktop's reaches the server first and stays, the laptop's
    is merged into it. Returns (merged, surviving)."""
    merged, surviving = _made_on_both(laptop, desktop, "ML ")
    _settle(desktop, laptop)
    assert laptop.library.get("tag", merged)["deleted"] is True
    assert laptop.library.get("tag", surviving)["deleted"] is False
    return merged, surviving


def test_a_reference_to_a_merged_lookup_is_written_as_the_one_it_was_merged_into(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    merged, surviving = _merged_tag(laptop, desktop)

    assert laptop.library.edit("prompt", ids["prompt"], {"tag_ids": [ids["tag"], merged]})
    assert laptop.library.get("prompt", ids["prompt"])["tag_ids"] == sorted([ids["tag"], surviving])
    made = laptop.library.create("output", {"prompt_id": ids["prompt"], "content": "c", "tag_ids": [merged]})
    assert laptop.library.get("output", made)["tag_ids"] == [surviving]
    # naming it again changes nothing: the record holds the survivor already
    assert not laptop.library.edit("prompt", ids["prompt"], {"tag_ids": [ids["tag"], merged]})
    _settle(laptop, desktop)

    served = org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()
    assert sorted(served["tag_ids"]) == sorted([ids["tag"], surviving])
    assert org.owner.get(f"{org.base}/outputs/{made}").json()["tag_ids"] == [surviving]
    assert laptop.values() == desktop.values()


def test_a_merged_lookup_is_not_restored(org: Org, devices: list[Device]) -> None:  # type: ignore[no-untyped-def]
    laptop, desktop = devices
    merged, surviving = _merged_tag(laptop, desktop)
    pending = laptop.store.pending_count()
    with pytest.raises(LocalEditError, match=f"merged into tag {surviving} \\('ML'\\)"):
        laptop.library.restore("tag", merged)
    assert laptop.library.get("tag", merged)["deleted"] is True
    assert laptop.store.pending_count() == pending
    _settle(laptop, desktop)
    assert laptop.values() == desktop.values()

    # the one it was merged into deleted since: naming the merged one is refused, saying so
    desktop.library.delete("tag", surviving)
    _settle(desktop, laptop)
    prompt = laptop.library.create("prompt", {"title": "P", "body": "b"})
    with pytest.raises(LocalEditError, match=rf"merged into tag {surviving} \('ML'\), which is deleted"):
        laptop.library.edit("prompt", prompt, {"tag_ids": [merged]})
    with pytest.raises(LocalEditError, match="restore and use that one"):
        laptop.library.restore("tag", merged)


@pytest.mark.parametrize("apart", [False, True], ids=["in-one-push", "create-pushed-before"])
def test_an_edit_of_a_lookup_made_before_it_was_merged_moves_onto_the_survivor(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device], apart: bool
) -> None:
    laptop, desktop = devices
    mine, surviving = _made_on_both(laptop, desktop, "ML ")
    if apart:  # the create reached the server (and was merged) before the laptop learnt of it
        laptop.client.push(SyncReport())
        assert laptop.library.get("tag", mine)["deleted"] is False
    laptop.library.edit("tag", mine, {"description": "machine learning, in the laptop's words"})
    report = laptop.sync()
    assert report.refused == [], "the edit was refused (name taken) and lost"
    assert report.conflicts_opened == []
    _settle(laptop, desktop)

    # "ML " is stored as "ML", as REST stores names
    served = org.owner.get(f"{org.base}/tags/{surviving}").json()
    assert (served["name"], served["description"]) == ("ML", "machine learning, in the laptop's words")
    assert org.owner.get(f"{org.base}/tags/{mine}").status_code == 404
    assert laptop.library.get("tag", mine)["deleted"] is True, "the merged record is not restored here alone"
    assert laptop.library.get("tag", surviving)["description"] == served["description"]
    assert laptop.values() == desktop.values()
    assert laptop.open_conflicts() == [] and desktop.open_conflicts() == []
    merged_message = f"cannot be edited: it was merged into tag {surviving} \\('ML'\\)"
    with pytest.raises(LocalEditError, match=merged_message):
        laptop.library.edit("tag", mine, {"description": "again"})


def test_a_rename_of_a_merged_lookup_is_a_conflict_on_the_survivors_name(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    laptop, desktop = devices
    mine, surviving = _made_on_both(laptop, desktop)
    laptop.library.edit("tag", mine, {"name": "machine learning"})
    assert laptop.sync().refused == []
    _settle(laptop, desktop)

    # both names were given to the same tag at once: the newer stands, the other is kept in a conflict
    assert org.owner.get(f"{org.base}/tags/{surviving}").json()["name"] == "machine learning"
    conflicts = [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == surviving]
    assert [(c["field"], c["loser"]["value"]) for c in conflicts] == [("name", "ML")]
    assert laptop.values() == desktop.values()


def test_a_lookup_made_and_deleted_offline_does_not_delete_the_one_it_was_merged_into(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    laptop, desktop = devices
    mine, surviving = _made_on_both(laptop, desktop)
    laptop.library.delete("tag", mine)
    _settle(laptop, desktop)
    assert org.owner.get(f"{org.base}/tags/{surviving}").json()["name"] == "ML"
    assert laptop.library.get("tag", surviving)["deleted"] is False
    assert laptop.values() == desktop.values()


def test_a_reference_added_to_a_record_the_replica_lacks_or_deleted_is_refused(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    old_tag = laptop.library.create("tag", {"name": "old"})
    laptop.library.delete("tag", old_tag)
    _settle(laptop, desktop)
    pending = laptop.store.pending_count()
    before = laptop.values()
    unknown = str(uuid.uuid4())

    attempts = [
        ("edit", "prompt", {"tag_ids": [ids["tag"], unknown]}, "prompt.tag_ids: there is no tag"),
        ("edit", "prompt", {"tag_ids": [old_tag]}, "prompt.tag_ids: tag .* \\('old'\\) is deleted"),
        ("edit", "prompt", {"development_stage_id": unknown}, "prompt.development_stage_id"),
        ("edit", "output", {"custom_gpt_id": unknown}, "output.custom_gpt_id"),
        ("create", "output", {"prompt_id": unknown, "content": "c"}, "output.prompt_id: there is no prompt"),
        ("create", "custom_gpt", {"name": "G", "agent_group_ids": [unknown]}, "custom_gpt.agent_group_ids"),
    ]
    for action, entity, values, message in attempts:
        with pytest.raises(LocalEditError, match=message):
            if action == "edit":
                laptop.library.edit(entity, ids[entity], values)
            else:
                laptop.library.create(entity, values)
    assert laptop.store.pending_count() == pending
    assert laptop.values() == before
    _settle(laptop, desktop)
    tags = {t["id"] for t in org.owner.get(f"{org.base}/tags").json()["items"]}
    assert old_tag not in tags  # not brought back on the server
    assert org.owner.get(f"{org.base}/sync/conflicts").json() == []


def test_a_deleted_member_already_there_is_left_alone(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """A delete may leave a record naming a deleted entry (deleted without taking it off, or a delete that
    crossed the reference): the record can still be edited, its set edited around that member and its
    scalar written with the value it holds, without being refused."""
    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    other = laptop.library.create("tag", {"name": "other"})
    laptop.library.delete("tag", ids["tag"])  # not taken off the prompt
    laptop.library.delete("development_stage", ids["stage"])
    shown = laptop.library.get("prompt", ids["prompt"])
    assert ids["tag"] in shown["tag_ids"] and shown["development_stage_id"] == ids["stage"]

    assert laptop.library.edit(
        "prompt",
        ids["prompt"],
        {"tag_ids": [ids["tag"], other], "development_stage_id": ids["stage"], "body": "new"},
    )
    assert laptop.library.get("prompt", ids["prompt"])["tag_ids"] == sorted([ids["tag"], other])
    # taken off, it is not put back
    assert laptop.library.edit("prompt", ids["prompt"], {"tag_ids": [other]})
    with pytest.raises(LocalEditError, match=r"prompt.tag_ids: tag .* is deleted"):
        laptop.library.edit("prompt", ids["prompt"], {"tag_ids": [other, ids["tag"]]})
    _settle(laptop, desktop)  # the server keeps what the prompt names, as it does for a crossing delete
    assert laptop.values() == desktop.values()


def test_required_fields_are_checked_as_the_edit_is_made(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    pending = laptop.store.pending_count()
    refused = [
        ("create", "output", {"content": "x"}, "output.prompt_id is required"),
        ("create", "output", {"prompt_id": None, "content": "x"}, "output.prompt_id is required"),
        ("create", "prompt", {"title": "", "body": "x"}, "prompt.title is required"),
        ("create", "prompt", {"title": "  ", "body": "x"}, "prompt.title is required"),
        ("create", "prompt", {"body": "x"}, "prompt.title is required"),
        ("create", "tag", {"name": " "}, "tag.name is required"),
        ("create", "custom_gpt", {"description": "d"}, "custom_gpt.name is required"),
        ("edit", "prompt", {"title": ""}, "prompt.title is required"),
        ("edit", "output", {"prompt_id": None}, "output.prompt_id is required"),
        ("edit", "tag", {"name": ""}, "tag.name is required"),
    ]
    for action, entity, values, message in refused:
        with pytest.raises(LocalEditError, match=message):
            if action == "edit":
                laptop.library.edit(entity, ids[entity], values)
            else:
                laptop.library.create(entity, values)
    assert laptop.store.pending_count() == pending
    # an edit that leaves the required field alone is fine
    assert laptop.library.edit("prompt", ids["prompt"], {"description": "d"})
    _settle(laptop, desktop)


def test_an_id_typed_in_upper_case_or_braces_is_written_as_ids_are(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """The server refuses ids not written as ids are (lower-case, dashes); a replica writes what a user
    typed (``outputhub replica ... --set prompt_id=8D0F...``) in that form, and refuses what is no id."""
    ids = seed_library(org)
    laptop, desktop = devices
    _settle(laptop, desktop)
    wanted = str(uuid.uuid4())
    made = laptop.library.create(
        "output",
        {"prompt_id": ids["prompt"].upper(), "content": "c", "tag_ids": "{" + ids["tag"] + "}"},
        id=wanted.upper(),
    )
    assert made == wanted
    shown = laptop.library.get("output", made)
    assert (shown["prompt_id"], shown["tag_ids"]) == (ids["prompt"], [ids["tag"]])
    with pytest.raises(LocalEditError, match="is not a record id"):
        laptop.library.create("tag", {"name": "x"}, id="not-an-id")
    _settle(laptop, desktop)
    served = org.owner.get(f"{org.base}/outputs/{wanted}").json()
    assert (served["prompt_id"], served["tag_ids"]) == (ids["prompt"], [ids["tag"]])
    assert laptop.values() == desktop.values()


def test_values_past_the_limits_and_text_the_server_cannot_store_are_refused_as_typed(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """A replica refuses, as the edit is made, what the server refuses (common/limits.py, a NUL, a lone
    surrogate from a command line that was not UTF-8): a position past 2^31 was queued, and every later push
    of that replica failed with a 500, for good (found by QA)."""
    laptop, _ = devices
    tag = laptop.library.create("tag", {"name": "limited"})
    pending = laptop.store.pending_count()
    attempts = [
        ({"position": 2**63 - 1}, "tag.position must be between 0 and 1,000,000"),
        ({"position": -3}, "tag.position must be between 0 and 1,000,000"),
        ({"description": "d" * 20_001}, "tag.description is longer than 20,000 characters"),
        ({"name": "n" * 201}, "tag.name is longer than 200 characters"),
        ({"name": "nul\x00"}, "NUL"),
        ({"name": "bad\udcffbyte"}, "tag.name is not UTF-8 text"),
        ({"name": "\u200b"}, "tag.name shows nothing"),  # a blank entry in every list (QA)
        ({"name": " \u2060\ufeff "}, "tag.name shows nothing"),
    ]
    for values, message in attempts:
        with pytest.raises(LocalEditError, match=re.escape(message)):
            laptop.library.edit("tag", tag, values)
    with pytest.raises(LocalEditError, match="more than 200 ids"):
        many = [tag] + [str(uuid.uuid4()) for _ in range(200)]
        laptop.library.create("prompt", {"title": "t", "body": "b", "tag_ids": many})
    assert laptop.store.pending_count() == pending
    assert laptop.library.edit("tag", tag, {"position": 1_000_000})
    assert laptop.sync().refused == []
    # and the server refuses it from a replica that did not check (an older one)
    invisible = str(uuid.uuid4())
    as_an_older_replica(laptop, "tag", invisible, {"name": "\u200b", "position": 0})
    [refused] = laptop.sync().refused
    assert refused["id"] == invisible and "shows nothing" in refused["reason"], refused


@pytest.mark.parametrize("theirs", ["", "the desktop's words"], ids=["survivor-without", "survivor-with"])
def test_what_an_offline_create_gave_a_merged_lookup_moves_onto_the_survivor(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device], theirs: str
) -> None:
    """A lookup made offline with a description (and a place) was merged into the same-name one and its
    description was lost, silently (QA, twice): only a later edit moved. The create's values other than its
    name now move too, as an edit made without a base: onto an empty description it lands, against another
    one the two texts are a conflict like any other, and neither is lost."""
    laptop, desktop = devices
    surviving = desktop.library.create("tag", {"name": "Rust", "description": theirs})
    _settle(desktop)
    mine = laptop.library.create("tag", {"name": "rust", "description": "the laptop's words", "position": 4})
    assert laptop.sync().refused == []
    _settle(laptop, desktop)

    served = org.owner.get(f"{org.base}/tags/{surviving}").json()
    assert served["position"] == 4
    conflicts = [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == surviving]
    by_field = {c["field"]: c for c in conflicts}
    # the two spellings of the name: one on the tag, the other in a conflict (see the test below)
    assert {served["name"], by_field.pop("name")["loser"]["value"]} == {"Rust", "rust"}
    if theirs:
        kept = {served["description"], by_field.pop("description")["loser"]["value"]}
        assert kept == {"the desktop's words", "the laptop's words"}, "one of the descriptions was lost"
    else:
        assert served["description"] == "the laptop's words"
    assert by_field == {}
    assert laptop.library.get("tag", mine)["deleted"] is True
    assert laptop.values() == desktop.values()


@pytest.mark.parametrize("spelling", ["Python", "python", "  python "], ids=["case", "same", "spaces"])
def test_the_same_lookup_made_offline_in_two_spellings_keeps_both(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device], spelling: str
) -> None:
    """Two machines make the tag "python" and "Python" offline: they become one, and the second spelling was
    dropped with no trace (QA). The names are two writes of one field, as any concurrent scalar edits: one
    is kept by the usual rule (the newer write) and the other is a conflict on every replica, to resolve like
    any other. The same name twice (surrounding spaces are not part of a name) is no conflict."""
    laptop, desktop = devices
    theirs = desktop.library.create("tag", {"name": "python"})
    mine = laptop.library.create("tag", {"name": spelling})
    prompt = laptop.library.create("prompt", {"title": "Tagged offline", "body": "b", "tag_ids": [mine]})
    _settle(desktop, laptop)

    tags = org.owner.get(f"{org.base}/tags").json()["items"]
    [live] = [t for t in tags if t["name"].casefold() == "python"]
    assert live["id"] == theirs
    assert org.owner.get(f"{org.base}/prompts/{prompt}").json()["tag_ids"] == [theirs]
    conflicts = [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == theirs]
    if spelling.strip() == "python":
        assert conflicts == [] and live["name"] == "python"
    else:
        [conflict] = conflicts
        assert conflict["field"] == "name"
        assert {live["name"], conflict["loser"]["value"]} == {"python", "Python"}, "a spelling was lost"
        # newer write wins: the laptop's create was made after the desktop's
        assert live["name"] == "Python"
        for device in (laptop, desktop):
            [local] = [c for c in device.open_conflicts() if c.record_id == theirs]
            assert (local.field, {local.mine, local.theirs}) == ("name", {"python", "Python"})
        # announced once: it was two conflict.created records, webhooks and notifications for one (QA)
        audit = org.owner.get(f"{org.base}/audit", params={"limit": 200}).json()["items"]
        created = [a for a in audit if a["kind"] == "conflict.created" and a["entity_id"] == conflict["id"]]
        assert len(created) == 1, created
    assert laptop.values() == desktop.values()


@pytest.mark.parametrize("theirs", ["", "the integrator's words"], ids=["no description", "a description"])
def test_a_lookup_made_offline_before_the_same_name_came_by_rest_still_syncs(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device], theirs: str
) -> None:
    """The offline create is older than the same-name lookup an integrator then made through REST: its
    description moved as an edit whose base (the REST create's empty description) was newer than the edit,
    and the server refused the whole push with a 422, every sync after it too, with the replica's other
    edits stuck behind it (QA). The moved values are stamped after what they supersede."""
    laptop, _desktop = devices
    mine = laptop.library.create("tag", {"name": "DUP", "description": "the laptop's words", "position": 4})
    prompt = laptop.library.create("prompt", {"title": "Made offline too", "body": "x", "tag_ids": [mine]})
    made = org.owner.post(f"{org.base}/tags", json={"name": "DUP", "description": theirs})
    assert made.status_code == 201, made.text
    surviving = made.json()["id"]

    report = laptop.sync()
    assert report.refused == [] and laptop.store.pending_count() == 0
    served = org.owner.get(f"{org.base}/tags/{surviving}").json()
    assert served["position"] == 4
    conflicts = [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == surviving]
    if theirs:
        kept = {served["description"], *(c["loser"]["value"] for c in conflicts)}
        assert kept == {"the integrator's words", "the laptop's words"}, "one of the descriptions was lost"
    else:
        assert served["description"] == "the laptop's words" and conflicts == []
    assert org.owner.get(f"{org.base}/prompts/{prompt}").json()["tag_ids"] == [surviving]
    assert laptop.library.get("tag", mine)["deleted"] is True
    assert laptop.library.get("tag", surviving)["description"] == served["description"]


def test_a_lookup_deleted_while_a_record_naming_it_was_deleted_agrees_after_the_restore(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """Deleting a tag took it off every record, tombstones included, but a tombstone's state cannot take an
    edit: the row lost the link while its state kept it. Restored by an offline edit, the prompt had no tag
    through REST and the tag in every replica, and the check (revisions) never saw it (QA). A tombstone now
    keeps what it named, and the restore brings it back alike everywhere."""
    laptop, desktop = devices
    tag = org.owner.post(f"{org.base}/tags", json={"name": "kept"}).json()["id"]
    stage = org.owner.post(f"{org.base}/development-stages", json={"name": "early"}).json()["id"]
    made = org.owner.post(
        f"{org.base}/prompts",
        json={"title": "P", "body": "b", "tag_ids": [tag], "development_stage_id": stage},
    )
    assert made.status_code == 201, made.text
    prompt = made.json()["id"]
    laptop.sync()
    laptop.library.edit("prompt", prompt, {"title": "Edited offline"})
    assert org.owner.delete(f"{org.base}/prompts/{prompt}").status_code == 204
    assert org.owner.delete(f"{org.base}/tags/{tag}").status_code == 204
    assert org.owner.delete(f"{org.base}/development-stages/{stage}").status_code == 204

    laptop.sync()
    desktop.sync()
    served = org.owner.get(f"{org.base}/prompts/{prompt}").json()
    fed = org.owner.get(f"{org.base}/sync/records/prompt/{prompt}").json()["data"]
    local = laptop.library.get("prompt", prompt)
    assert served["title"] == "Edited offline"
    assert (served["tag_ids"], served["development_stage_id"]) == (
        fed["tag_ids"],
        fed["development_stage_id"],
    )
    assert (sorted(local["tag_ids"]), local["development_stage_id"]) == (
        served["tag_ids"],
        served["development_stage_id"],
    )
    listed = org.owner.get(f"{org.base}/prompts", params={"tag_id": tag}).json()["items"]
    assert [p["id"] for p in listed] == ([prompt] if served["tag_ids"] else [])
    assert laptop.values() == desktop.values()


def _tag_in_conflict(org: Org, laptop: Device, desktop: Device, name: str) -> str:
    """A tag made through REST whose position two devices then set apart (5, 6), both synced: a value
    conflict on the server and on both devices. Returns its id."""
    tag = org.owner.post(f"{org.base}/tags", json={"name": name}).json()["id"]
    laptop.sync()
    desktop.sync()
    laptop.library.edit("tag", tag, {"position": 5})
    desktop.library.edit("tag", tag, {"position": 6})
    laptop.sync()
    desktop.sync()
    return str(tag)


def test_a_rest_edit_of_a_record_in_conflict_keeps_the_servers_conflict_list_with_the_replicas(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """A REST write to a record with an open conflict replaces that conflict in the record's state (a
    conflict is named by its two writes), but the server's list kept the old one open: an integrator saw a
    conflict no replica had, could not reach the real one (404), and resolving the stale one answered 200
    and did nothing (QA). The commit that stores a REST write's state now closes and opens conflicts too."""
    laptop, desktop = devices
    tag = _tag_in_conflict(org, laptop, desktop, "ranked")
    laptop.sync()

    def server_open() -> set[str]:
        listed = org.owner.get(f"{org.base}/sync/conflicts").json()
        return {c["id"] for c in listed if c["record_id"] == tag}

    def replica_open(device: Device) -> set[str]:
        return {c.id for c in device.open_conflicts() if c.record_id == tag}

    assert server_open() == replica_open(laptop) == replica_open(desktop) and len(server_open()) == 1
    stale = server_open()
    assert org.owner.patch(f"{org.base}/tags/{tag}", json={"position": 9}).status_code == 200
    laptop.sync()
    desktop.sync()
    assert server_open() == replica_open(laptop) == replica_open(desktop), "one list of conflicts everywhere"
    assert server_open() != stale, "the REST write made a new conflict of the field"
    [current] = server_open()
    answer = org.owner.post(f"{org.base}/sync/conflicts/{current}/resolve", json={"keep": "loser"})
    assert answer.status_code == 200, answer.text
    laptop.sync()
    desktop.sync()
    position = org.owner.get(f"{org.base}/tags/{tag}").json()["position"]
    assert position != 9 and position == laptop.library.get("tag", tag)["position"]
    assert server_open() == replica_open(laptop) == replica_open(desktop) == set()


def test_purging_a_tombstone_closes_its_conflicts(  # type: ignore[no-untyped-def]
    app, org: Org, devices: list[Device], monkeypatch
) -> None:
    """A record deleted while in conflict and then purged left its conflict listed open, and resolving it
    looked the record up and failed (500). The replicas close it too when they drop the record: they kept
    it open, for a record they no longer had."""


    laptop, desktop = devices
    tag = _tag_in_conflict(org, laptop, desktop, "doomed")
    laptop.sync()  # both devices hold the conflict
    listed = [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == tag]
    assert len(listed) == 1
    assert org.owner.delete(f"{org.base}/tags/{tag}").status_code == 204
    purge = ("sync", "purge-tombstones", "--older-than-days", "0", "--org", org.id)
    result = server_cli(app, monkeypatch, *purge)
    assert result.exit_code == 0, result.output
    assert [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == tag] == []
    answer = org.owner.post(f"{org.base}/sync/conflicts/{listed[0]['id']}/resolve", json={"keep": "loser"})
    assert answer.status_code in (404, 409), answer.text
    # the replicas drop the purged tag (the purge log) and close its conflicts as the server did: an open
    # conflict of a record the replica no longer has could be neither shown nor resolved
    for device in devices:
        assert [c for c in device.open_conflicts() if c.record_id == tag], device.name
        report = device.sync()
        assert report.purged == 1 and not report.repaired and report.checksum_ok is True
        assert device.store.load("tag", tag) is None
        assert [c for c in device.open_conflicts() if c.record_id == tag] == [], device.name
        closed = [c for c in device.replica.list_conflicts(include_resolved=True) if c.record_id == tag]
        assert closed and all(c.resolved_at is not None for c in closed)


def test_a_conflict_on_a_position_is_not_resolved_with_null(org: Org, devices: list[Device]) -> None:  # type: ignore[no-untyped-def]
    """Resolving a position conflict with ``"value": null`` answered 200 and the position the users had set
    became 0 (QA); a replica's edited value of nothing was taken too. Both are refused, naming the value."""
    laptop, desktop = devices
    tag = _tag_in_conflict(org, laptop, desktop, "unresolved by null")
    laptop.sync()
    listed = org.owner.get(f"{org.base}/sync/conflicts").json()
    [conflict] = [c for c in listed if c["record_id"] == tag]
    r = org.owner.post(f"{org.base}/sync/conflicts/{conflict['id']}/resolve", json={"value": None})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["body.value"]
    assert org.owner.get(f"{org.base}/tags/{tag}").json()["position"] in (5, 6)
    [mine] = [c for c in laptop.open_conflicts() if c.record_id == tag]
    with pytest.raises(LocalEditError, match="position"):
        laptop.library.resolve_conflict("tag", tag, mine.id, Merged(None))
    with pytest.raises(LocalEditError, match="position"):
        laptop.library.edit("tag", tag, {"position": None})
    with pytest.raises(LocalEditError, match="body"):
        laptop.library.create("prompt", {"title": "no text", "body": "  "})


def test_a_sync_does_not_report_conflicts_the_replica_already_had_as_changed(  # type: ignore[no-untyped-def]
    client, org: Org, devices: list[Device], tmp_path
) -> None:
    """Three devices set one title apart; the first resolves one of its two conflicts (its own write
    against the third's): the one left open gets a new id (a conflict is a pair of writes) here, at once.
    Its sync then said "1 open conflict(s) changed" though its list did not change (the server's answer
    named the conflict the replica already showed; QA). A sync reports only what it brought."""
    from outputhub.desktop.services.sync import conflict_news
    from tests.sync.support import make_device

    laptop, desktop = devices
    third = make_device(tmp_path, "third", http=client, base_url="", token=org.owner.token, org_id=org.id)
    try:
        prompt = org.owner.post(f"{org.base}/prompts", json={"title": "Q", "body": "b"}).json()["id"]
        for device in (laptop, desktop, third):
            device.sync()
        for device, title in ((laptop, "Q-A"), (desktop, "Q-B"), (third, "Q-C")):
            device.library.edit("prompt", prompt, {"title": title})
        for device in (laptop, desktop, third, laptop, desktop):
            device.sync()
        listed = {c.id: (c.mine, c.theirs) for c in laptop.open_conflicts() if c.record_id == prompt}
        [against_third] = [cid for cid, sides in listed.items() if sides == ("Q-A", "Q-C")]
        laptop.library.resolve_conflict("prompt", prompt, against_third, "mine")
        before = {c.id for c in laptop.open_conflicts()}
        report = laptop.sync()
        assert {c.id for c in laptop.open_conflicts()} == before
        assert conflict_news(laptop.replica, report.conflicts_opened, report.conflicts_closed) == (0, 0)
        assert report.conflicts_opened == [] and report.conflicts_closed == []
    finally:
        third.replica.close()


def _audit(org: Org, record_id: str) -> list[dict[str, object]]:
    r = org.owner.get(f"{org.base}/audit", params={"entity_id": record_id, "limit": 500})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_events_say_what_happened_to_the_record_and_rest_resolutions_are_recorded(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """QA (an integrator mirroring through webhooks): a replica's delete overridden by a REST edit was
    announced as ``prompt.deleted`` of a live record, and an offline edit that brought a REST-deleted prompt
    back as ``prompt.updated``, not ``prompt.restored``: events now say what happened to the record (the
    op the device sent is in ``details.op``). A conflict resolved through REST left no audit record and no
    event at all: it is recorded like any API write, ``source: api``."""
    laptop, _desktop = devices
    make = org.owner.post
    kept = make(f"{org.base}/prompts", json={"title": "Kept", "body": "b"}).json()["id"]
    back = make(f"{org.base}/prompts", json={"title": "Back", "body": "b"}).json()["id"]
    laptop.sync()

    laptop.library.delete("prompt", kept)  # offline, while an integrator edits it
    assert org.owner.patch(f"{org.base}/prompts/{kept}", json={"title": "Kept by REST"}).status_code == 200
    assert org.owner.delete(f"{org.base}/prompts/{back}").status_code == 204
    laptop.library.edit("prompt", back, {"body": "edited offline"})
    laptop.sync()
    assert org.owner.get(f"{org.base}/prompts/{kept}").status_code == 200
    [overridden] = [e for e in _audit(org, kept) if e["source"] == "sync"]
    assert (overridden["kind"], overridden["details"]["op"]) == ("prompt.updated", "delete")  # type: ignore[index]
    [restored] = [e for e in _audit(org, back) if e["source"] == "sync"]
    assert (restored["kind"], restored["details"]["op"]) == ("prompt.restored", "update")  # type: ignore[index]

    laptop.library.edit("prompt", kept, {"title": "From the laptop"})
    assert org.owner.patch(f"{org.base}/prompts/{kept}", json={"title": "From REST"}).status_code == 200
    laptop.sync()
    listed = org.owner.get(f"{org.base}/sync/conflicts").json()
    [conflict] = [c for c in listed if c["record_id"] == kept and c["field"] == "title"]
    side = "winner" if conflict["winner"]["value"] == "From the laptop" else "loser"
    answer = org.owner.post(f"{org.base}/sync/conflicts/{conflict['id']}/resolve", json={"keep": side})
    assert answer.status_code == 200, answer.text
    [resolution] = [e for e in _audit(org, kept) if e["revision"] == answer.json()["revision"]]
    assert (resolution["kind"], resolution["source"]) == ("prompt.updated", "api")
    assert resolution["after"]["title"] == "From the laptop"  # type: ignore[index]
    assert resolution["details"]["conflict"] == conflict["id"]  # type: ignore[index]


def _two_stages_and_a_prompt(org: Org, names: tuple[str, str]) -> tuple[str, str, str]:
    """Two development stages made through REST, and a prompt without one: their ids."""
    made = [
        org.owner.post(f"{org.base}/development-stages", json={"name": n, "position": 11 + i}).json()["id"]
        for i, n in enumerate(names)
    ]
    prompt = org.owner.post(f"{org.base}/prompts", json={"title": "Staged", "body": "b"}).json()["id"]
    return made[0], made[1], prompt


def _a_stage_conflict(org: Org, laptop: Device) -> tuple[str, str, str, dict[str, Any]]:
    """A prompt's stage set to S1 on the laptop and to S2 through REST meanwhile: (S1, S2, the prompt, the
    conflict as the server lists it)."""
    first, second, prompt = _two_stages_and_a_prompt(org, ("S1", "S2"))
    laptop.sync()
    laptop.library.edit("prompt", prompt, {"development_stage_id": first})
    staged = org.owner.patch(f"{org.base}/prompts/{prompt}", json={"development_stage_id": second})
    assert staged.status_code == 200, staged.text
    laptop.sync()
    [conflict] = [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == prompt]
    return first, second, prompt, conflict


def test_a_rest_resolution_never_names_a_deleted_entry(org: Org, devices: list[Device]) -> None:  # type: ignore[no-untyped-def]
    """A REST resolution keeping (or giving) a development stage deleted since was taken, and the live prompt
    named a deleted stage on the server and in every replica (a PATCH says 422; QA). It is a 422 naming
    ``body.keep`` or ``body.value``, and the conflict stays open."""
    laptop, _desktop = devices
    first, second, prompt, conflict = _a_stage_conflict(org, laptop)
    side = "winner" if conflict["winner"]["value"] == first else "loser"
    assert org.owner.delete(f"{org.base}/development-stages/{first}").status_code == 204
    resolve = f"{org.base}/sync/conflicts/{conflict['id']}/resolve"
    for body, field in (({"keep": side}, "body.keep"), ({"value": first}, "body.value")):
        r = org.owner.post(resolve, json=body)
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == [field], r.text
    assert org.owner.get(f"{org.base}/prompts/{prompt}").json()["development_stage_id"] == second
    assert org.owner.post(resolve, json={"value": None}).status_code == 200


def test_a_rest_resolution_writes_an_id_as_ids_are_written(org: Org, devices: list[Device]) -> None:  # type: ignore[no-untyped-def]
    """A REST resolution giving an id in another spelling (upper case, braces, ``urn:uuid:``, no dashes) was
    stored as sent: the row named the stage, but the merge state (and so every replica) named a string no
    record has (QA). The value is written as ids are, as a PATCH writes it; what is not an id is a 422."""
    laptop, desktop = devices
    first, _second, prompt, conflict = _a_stage_conflict(org, laptop)
    resolve = f"{org.base}/sync/conflicts/{conflict['id']}/resolve"
    for bad in ("S1", "not-an-id", first + "0"):
        r = org.owner.post(resolve, json={"value": bad})
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["body.value"], r.text
    r = org.owner.post(resolve, json={"value": "{" + first.upper() + "}"})
    assert r.status_code == 200, r.text
    assert org.owner.get(f"{org.base}/prompts/{prompt}").json()["development_stage_id"] == first
    for device in (laptop, desktop):
        device.sync()
        local = device.store.load("prompt", prompt)
        assert local is not None and local.state.values["development_stage_id"] == first
        assert device.replica.get_prompt(id=prompt).development_stage_id == first  # type: ignore[union-attr]
    assert not laptop.open_conflicts()


def test_a_refused_resolution_made_again_resolves_its_conflict(  # type: ignore[no-untyped-def]
    client, org: Org, devices: list[Device], tmp_path
) -> None:
    """A viewer resolves a conflict; the server refuses it (kept as a refused edit) and the conflict is
    back. Made an editor, they make the refused edit again (keep mine): it was made as a plain edit of the
    value shown, which only replaced one side, and the conflict came back under a new id to resolve again
    (QA). It resolves the conflict, as it first did."""
    from outputhub.desktop.services.conflicts import reapply_refused
    from outputhub.desktop.storage.sync_store import REJECTED_FIELD
    from tests.support.client import add_member
    from tests.sync.support import make_device

    laptop, desktop = devices
    member = add_member(org, "viewer")
    viewer = make_device(tmp_path, "viewer", http=client, base_url="", token=member.token, org_id=org.id)
    try:
        tag = _tag_in_conflict(org, laptop, desktop, "resolved twice")
        viewer.sync()
        [conflict] = [c for c in viewer.open_conflicts() if c.record_id == tag]
        viewer.library.resolve_conflict("tag", tag, conflict.id, Merged(7))
        viewer.sync()
        [refused] = [c for c in viewer.open_conflicts() if c.field == REJECTED_FIELD]
        back = [c.id for c in viewer.open_conflicts() if c.record_id == tag and c.field != REJECTED_FIELD]
        assert back == [conflict.id]
        promoted = org.owner.patch(f"{org.base}/members/{member.user_id}", json={"role": "editor"})
        assert promoted.status_code == 200, promoted.text
        with viewer.replica.transaction():
            reapply_refused(viewer.library, refused)
            viewer.replica.resolve_conflict(id=refused.id)
        viewer.sync()
        assert [c for c in viewer.open_conflicts() if c.record_id == tag] == []
        assert org.owner.get(f"{org.base}/tags/{tag}").json()["position"] == 7
        assert [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == tag] == []
    finally:
        viewer.replica.close()


def test_a_deleted_records_value_conflicts_close_with_it_and_reopen_with_a_restore(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """A lookup with a position conflict is deleted: the conflict stayed open everywhere, and resolving it
    (keep mine) restored the deleted lookup on every replica without a word (QA). A deleted record's value
    conflicts are not open while it is deleted (listed nowhere, not resolvable); a restore opens them
    again, under the same ids."""
    laptop, desktop = devices
    tag = _tag_in_conflict(org, laptop, desktop, "deleted in conflict")
    laptop.sync()

    def open_on_server() -> set[str]:
        return {c["id"] for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == tag}

    [conflict] = open_on_server()
    laptop.library.delete("tag", tag)
    laptop.sync()
    desktop.sync()
    assert open_on_server() == set()
    for device in (laptop, desktop):
        assert [c for c in device.open_conflicts() if c.record_id == tag] == []
    with pytest.raises(LocalEditError, match="not open"):
        desktop.library.resolve_conflict("tag", tag, conflict, "mine")
    r = org.owner.post(f"{org.base}/sync/conflicts/{conflict}/resolve", json={"keep": "winner"})
    assert r.status_code == 409, r.text
    assert "is deleted" in r.json()["detail"], "says why it is closed (it said 'already resolved')"
    assert org.owner.get(f"{org.base}/tags/{tag}").status_code == 404

    desktop.library.restore("tag", tag)
    desktop.sync()
    laptop.sync()
    assert open_on_server() == {conflict}
    assert [c.id for c in laptop.open_conflicts() if c.record_id == tag] == [conflict]


def test_names_and_titles_are_stored_without_surrounding_spaces_as_rest_stores_them(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """A tag named "  ws tag  " on a replica kept its spaces on the server and in every replica, where REST
    strips them (QA)."""
    laptop, _desktop = devices
    tag = laptop.library.create("tag", {"name": "  ws tag  "})
    prompt = laptop.library.create("prompt", {"title": " spaced title ", "body": "b"})
    laptop.library.edit("tag", tag, {"description": "kept as typed "})
    laptop.sync()
    served = org.owner.get(f"{org.base}/tags/{tag}").json()
    assert (served["name"], served["description"]) == ("ws tag", "kept as typed ")
    assert org.owner.get(f"{org.base}/prompts/{prompt}").json()["title"] == "spaced title"
    assert laptop.library.get("tag", tag)["name"] == "ws tag"


def test_a_rename_to_a_name_taken_here_is_refused_as_it_is_made(org: Org, devices: list[Device]) -> None:  # type: ignore[no-untyped-def]
    """A replica took a rename of a GPT model to "O3 " while "o3" was live there; the server refused it at
    the next sync (name-taken; QA). The replica refuses it at once, naming the one that has the name; a
    rename to its own name in other letters is still an edit."""
    laptop, _desktop = devices
    taken = laptop.library.create("gpt_model", {"name": "zeta"})
    other = laptop.library.create("gpt_model", {"name": "eta"})
    with pytest.raises(LocalEditError, match=f"already named 'zeta' \\({taken}\\)"):
        laptop.library.edit("gpt_model", other, {"name": "ZETA "})
    assert laptop.library.edit("gpt_model", taken, {"name": "Zeta"})
    laptop.library.delete("gpt_model", taken)
    assert laptop.library.edit("gpt_model", other, {"name": "zeta"}), "a deleted one's name is free"
    with pytest.raises(LocalEditError, match="already named 'zeta'"):
        laptop.library.restore("gpt_model", taken)  # its name went to another meanwhile
    report = laptop.sync()
    assert report.refused == []


def test_keeping_a_side_that_names_a_deleted_entry_is_refused_as_it_is_made(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """Two replicas set a prompt's stage apart; the laptop's stage is then deleted through REST. Keeping the
    laptop's side was taken, and its sync brought the deleted stage back with a delete conflict, where REST
    and an edit refuse it (QA). It is refused at once, naming the stage; the other side can be kept."""
    laptop, desktop = devices
    mine, theirs, prompt = _two_stages_and_a_prompt(org, ("Mine", "Theirs"))
    laptop.sync()
    desktop.sync()
    laptop.library.edit("prompt", prompt, {"development_stage_id": mine})
    desktop.library.edit("prompt", prompt, {"development_stage_id": theirs})
    laptop.sync()
    desktop.sync()
    assert org.owner.delete(f"{org.base}/development-stages/{mine}").status_code == 204
    laptop.sync()
    [conflict] = [c for c in laptop.open_conflicts() if c.record_id == prompt]
    with pytest.raises(LocalEditError, match=f"development_stage {mine}.* is deleted"):
        laptop.library.resolve_conflict("prompt", prompt, conflict.id, "mine")
    laptop.library.resolve_conflict("prompt", prompt, conflict.id, "theirs")
    laptop.sync()
    assert org.owner.get(f"{org.base}/development-stages/{mine}").status_code == 404
    assert org.owner.get(f"{org.base}/prompts/{prompt}").json()["development_stage_id"] == theirs


def _tagged_prompt(org: Org, devices: list[Device]) -> tuple[str, str]:
    tag = org.owner.post(f"{org.base}/tags", json={"name": "qtag"}).json()["id"]
    made = org.owner.post(f"{org.base}/prompts", json={"title": "X", "body": "x", "tag_ids": [tag]})
    assert made.status_code == 201, made.text
    _settle(*devices)
    return tag, made.json()["id"]


def test_a_lookup_deleted_elsewhere_does_not_bring_back_a_record_deleted_offline(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """Deleting a tag takes it off the records that name it: an edit, but not one a user made. It counted as
    an edit the deleter had not seen, and brought back the prompt a replica had deleted offline meanwhile,
    with a delete conflict (QA). Taking a deleted entry off a record restores nothing now."""
    laptop, desktop = devices
    tag, prompt = _tagged_prompt(org, devices)
    laptop.library.delete("prompt", prompt)
    assert org.owner.delete(f"{org.base}/tags/{tag}").status_code == 204
    _settle(laptop, desktop)

    assert org.owner.get(f"{org.base}/prompts/{prompt}").status_code == 404
    for device in devices:
        assert device.library.get("prompt", prompt)["deleted"] is True
        assert device.open_conflicts() == []
    assert org.owner.get(f"{org.base}/sync/conflicts").json() == []
    assert laptop.values() == desktop.values()


@pytest.mark.parametrize("tag_first", [True, False])
def test_a_lookup_deleted_on_one_replica_does_not_bring_back_a_record_deleted_on_another(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device], tag_first: bool
) -> None:
    laptop, desktop = devices
    tag, prompt = _tagged_prompt(org, devices)
    laptop.library.delete("prompt", prompt)
    service = LibraryService(replica=desktop.replica, editor=desktop.library)
    taken = service.delete_records(entity="tag", ids=[tag])
    assert [(e, r) for e, r, *_ in taken.unlinked] == [("prompt", prompt)]
    _settle(*((desktop, laptop) if tag_first else (laptop, desktop)))

    assert org.owner.get(f"{org.base}/prompts/{prompt}").status_code == 404
    for device in devices:
        assert device.library.get("prompt", prompt)["deleted"] is True
        assert device.open_conflicts() == []
    assert laptop.values() == desktop.values()


@pytest.mark.parametrize("field", ["title", "tag_ids"])
def test_an_edit_the_deleter_did_not_see_still_restores_when_an_entry_is_taken_off_it_later(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device], field: str
) -> None:
    """The edit that brought a record back stays what keeps it: taking a deleted entry off it afterwards
    keeps it live, also when that write supersedes the edit (the same field), and its delete conflict is not
    closed and opened again under another id (on the server: resolved by whoever deleted the entry)."""
    laptop, desktop = devices
    tag, prompt = _tagged_prompt(org, devices)
    other = org.owner.post(f"{org.base}/tags", json={"name": "other"}).json()["id"]
    assert org.owner.patch(f"{org.base}/prompts/{prompt}", json={"tag_ids": [tag, other]}).status_code == 200
    _settle(*devices)
    laptop.library.delete("prompt", prompt)
    edit = {"title": "Kept"} if field == "title" else {"tag_ids": [other]}
    desktop.library.edit("prompt", prompt, edit)  # concurrent with the delete
    _settle(desktop, laptop)
    assert laptop.library.get("prompt", prompt)["deleted"] is False
    (conflict,) = laptop.open_conflicts()

    assert org.owner.delete(f"{org.base}/tags/{other}").status_code == 204
    _settle(laptop, desktop)
    for device in devices:
        kept = device.library.get("prompt", prompt)
        assert kept["deleted"] is False
        assert kept["tag_ids"] == ([tag] if field == "title" else [])
        (still,) = device.open_conflicts()
        assert still.id == conflict.id  # not closed and opened again, credited to the tag's deleter (QA)
    assert org.owner.get(f"{org.base}/prompts/{prompt}").status_code == 200
    listed = org.owner.get(f"{org.base}/sync/conflicts", params={"include_resolved": "true"}).json()
    assert [(c["id"], c.get("resolved_at")) for c in listed] == [(conflict.id, None)]
    assert laptop.values() == desktop.values()


@pytest.mark.parametrize("synced_between", [False, True])
def test_undoing_a_lookup_delete_does_not_bring_back_a_record_deleted_on_another_replica(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device], synced_between: bool
) -> None:
    """The desktop's undo of a tag's delete puts the tag back on the records it was taken off: as the unlink
    it undoes, that is not an edit, and the prompt another replica deleted meanwhile stays deleted (QA)."""
    laptop, desktop = devices
    tag, prompt = _tagged_prompt(org, devices)
    made = org.owner.post(f"{org.base}/prompts", json={"title": "Y", "body": "y", "tag_ids": [tag]})
    other = made.json()["id"]
    _settle(*devices)
    laptop.library.delete("prompt", prompt)
    service = LibraryService(replica=desktop.replica, editor=desktop.library)
    deletion = service.delete_records(entity="tag", ids=[tag])
    if synced_between:
        _settle(desktop)
    assert service.restore_records(deletion=deletion) == 1  # the tag
    _settle(desktop, laptop)

    assert org.owner.get(f"{org.base}/prompts/{prompt}").status_code == 404
    assert org.owner.get(f"{org.base}/prompts/{other}").json()["tag_ids"] == [tag]  # put back where live
    for device in devices:
        assert device.library.get("prompt", prompt)["deleted"] is True
        assert device.open_conflicts() == []
    assert laptop.values() == desktop.values()


@pytest.mark.parametrize("how", ["edited", "restored", "rest-delete"])
def test_a_tag_whose_delete_did_not_stand_is_back_on_the_records_it_was_taken_off(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device], how: str
) -> None:
    """A tag deleted on the laptop (taken off its prompt with it) while the desktop edited the tag offline:
    the edit wins, the tag comes back, and it was on none of its records (QA, a membership lost without a
    conflict naming it). So too when the tag is restored (``replica restore``), and when the delete came
    through REST. A record whose tags were edited since keeps what its editor gave it; a prompt deleted on
    another replica meanwhile is not brought back by this."""
    laptop, desktop = devices
    tag, prompt = _tagged_prompt(org, devices)
    edited_since = org.owner.post(f"{org.base}/prompts", json={"title": "Z", "body": "z", "tag_ids": [tag]})
    gone = org.owner.post(f"{org.base}/prompts", json={"title": "G", "body": "g", "tag_ids": [tag]})
    edited_since_id, gone_id = edited_since.json()["id"], gone.json()["id"]
    _settle(*devices)
    if how == "rest-delete":
        assert org.owner.delete(f"{org.base}/tags/{tag}").status_code == 204
    else:
        LibraryService(replica=laptop.replica, editor=laptop.library).delete_records(entity="tag", ids=[tag])
    if how == "restored":
        laptop.sync()
        laptop.library.restore("tag", tag)
    else:
        desktop.library.edit("tag", tag, {"description": "edited offline"})  # concurrent with the delete
    desktop.library.delete("prompt", gone_id)  # deleted offline: stays deleted
    laptop.sync()
    other = org.owner.post(f"{org.base}/tags", json={"name": "other"}).json()["id"]
    given = org.owner.patch(f"{org.base}/prompts/{edited_since_id}", json={"tag_ids": [other]})
    assert given.status_code == 200, given.text
    _settle(desktop, laptop)

    assert org.owner.get(f"{org.base}/tags/{tag}").status_code == 200
    assert org.owner.get(f"{org.base}/prompts/{prompt}").json()["tag_ids"] == [tag], "put back"
    assert org.owner.get(f"{org.base}/prompts/{edited_since_id}").json()["tag_ids"] == [other]
    assert org.owner.get(f"{org.base}/prompts/{gone_id}").status_code == 404
    for device in devices:
        assert device.library.get("prompt", prompt)["tag_ids"] == [tag]
        assert device.library.get("prompt", gone_id)["deleted"] is True
    assert laptop.values() == desktop.values()


def test_entries_deleted_one_after_another_offline_stay_deleted(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """Two tags deleted offline one after the other, each taken off the prompt first: within the push, the
    prompt named the second tag after the first unlink, and the server brought that tag back with a delete
    conflict although nothing named it once the push was done (QA). What is restored is what live records
    still name when the push has been applied."""
    laptop, desktop = devices
    first = org.owner.post(f"{org.base}/tags", json={"name": "rx1"}).json()["id"]
    second = org.owner.post(f"{org.base}/tags", json={"name": "ry1"}).json()["id"]
    third = org.owner.post(f"{org.base}/tags", json={"name": "rz1"}).json()["id"]
    made = org.owner.post(
        f"{org.base}/prompts", json={"title": "T", "body": "b", "tag_ids": [first, second, third]}
    )
    prompt = made.json()["id"]
    _settle(*devices)
    service = LibraryService(replica=laptop.replica, editor=laptop.library)
    for tag in (first, second, third):
        service.delete_records(entity="tag", ids=[tag])
    report = laptop.sync()
    assert report.conflicts_opened == []
    _settle(laptop, desktop)

    for tag in (first, second, third):
        assert org.owner.get(f"{org.base}/tags/{tag}").status_code == 404
    assert org.owner.get(f"{org.base}/prompts/{prompt}").json()["tag_ids"] == []
    for device in devices:
        assert device.open_conflicts() == []
    assert laptop.values() == desktop.values()


def test_a_stage_set_offline_beats_the_unlink_of_the_stage_it_replaced(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """A prompt's stage changed offline while the old stage was deleted through REST (which took it off the
    prompt): the offline edit stands, with no conflict (it was kept only as a conflict: QA)."""
    laptop, desktop = devices
    stages = f"{org.base}/development-stages"
    old, new = (org.owner.post(stages, json={"name": name}).json()["id"] for name in ("s1", "s2"))
    made = org.owner.post(
        f"{org.base}/prompts", json={"title": "T", "body": "b", "development_stage_id": old}
    )
    prompt = made.json()["id"]
    _settle(*devices)
    laptop.library.edit("prompt", prompt, {"development_stage_id": new})
    assert org.owner.delete(f"{org.base}/development-stages/{old}").status_code == 204
    _settle(laptop, desktop)

    assert org.owner.get(f"{org.base}/prompts/{prompt}").json()["development_stage_id"] == new
    for device in devices:
        assert device.library.get("prompt", prompt)["development_stage_id"] == new
        assert device.open_conflicts() == []
    assert laptop.values() == desktop.values()


# -- lookup names in another Unicode normal form -------------------------------------------------------------

CAFE_NFC = "Caf\u00e9"
CAFE_NFD = "Cafe\u0301"


def test_a_replica_stores_lookup_names_in_nfc_and_refuses_one_taken_in_another_form(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    laptop, desktop = devices
    tag = laptop.library.create("tag", {"name": f" {CAFE_NFD} "})
    assert laptop.library.get("tag", tag)["name"] == CAFE_NFC
    other = laptop.library.create("tag", {"name": "Tea"})
    for typed in (CAFE_NFD, f" {CAFE_NFD.lower()}", CAFE_NFC.upper()):
        with pytest.raises(LocalEditError, match=f"already named '{CAFE_NFC}'"):
            laptop.library.edit("tag", other, {"name": typed})
    # a rename to its own name in another form is no edit
    assert not laptop.library.edit("tag", tag, {"name": CAFE_NFD})
    _settle(laptop, desktop)
    assert org.owner.get(f"{org.base}/tags/{tag}").json()["name"] == CAFE_NFC


def test_the_same_lookup_made_offline_in_nfc_and_nfd_is_one(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """Two machines make the tag "Café" offline, one typing it as NFC and the other (an older replica, which
    kept the name as typed) as NFD: the server merges them as one name, with no conflict (one name twice)."""
    laptop, desktop = devices
    theirs = desktop.library.create("tag", {"name": CAFE_NFC})
    mine = str(uuid.uuid4())
    as_an_older_replica(laptop, "tag", mine, {"name": CAFE_NFD, "position": 0})
    _settle(desktop, laptop)
    names = [t["name"] for t in org.owner.get(f"{org.base}/tags").json()["items"]]
    assert names.count(CAFE_NFC) == 1 and CAFE_NFD not in names
    assert laptop.library.get("tag", mine)["deleted"] is True
    assert [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == theirs] == []
    assert laptop.values() == desktop.values()


def test_a_name_an_older_replica_pushes_in_nfd_is_stored_in_nfc_everywhere(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """An older replica pushes the names as typed (NFD, surrounding spaces): the server stores them in NFC,
    stripped, by an edit of its own that every replica pulls; a create and a rename in one push leave no
    conflict, and the name is then taken in either form."""
    laptop, desktop = devices
    made, renamed = str(uuid.uuid4()), str(uuid.uuid4())
    as_an_older_replica(laptop, "tag", made, {"name": f" {CAFE_NFD} ", "position": 0})
    as_an_older_replica(laptop, "knowledge_type", renamed, {"name": "draft", "position": 0})
    as_an_older_replica(laptop, "knowledge_type", renamed, {"name": "Cre\u0300me"})
    report = laptop.sync()
    assert report.refused == [] and report.conflicts_opened == []
    _settle(laptop, desktop)

    assert org.owner.get(f"{org.base}/tags/{made}").json()["name"] == CAFE_NFC
    assert org.owner.get(f"{org.base}/knowledge-types/{renamed}").json()["name"] == "Cr\u00e8me"
    for device in devices:
        assert device.library.get("tag", made)["name"] == CAFE_NFC
        assert device.library.get("knowledge_type", renamed)["name"] == "Cr\u00e8me"
        assert device.open_conflicts() == []
    assert org.owner.get(f"{org.base}/sync/conflicts").json() == []
    assert laptop.values() == desktop.values()
    taken = org.owner.post(f"{org.base}/tags", json={"name": CAFE_NFD})
    assert taken.status_code == 409, taken.text


def _a_conflict_on_a_tags_name(org: Org, laptop: Device, desktop: Device) -> tuple[str, dict[str, Any]]:
    """A tag renamed on both devices apart: (its id, the server's conflict on its name)."""
    tag = org.owner.post(f"{org.base}/tags", json={"name": "alpha"}).json()["id"]
    _settle(laptop, desktop)
    laptop.library.edit("tag", tag, {"name": "from laptop"})
    desktop.library.edit("tag", tag, {"name": "from desktop"})
    laptop.sync()
    desktop.sync()
    [conflict] = [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == tag]
    assert conflict["field"] == "name"
    return tag, conflict


def test_a_rest_resolution_of_a_lookup_name_is_checked_as_a_rename_is(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """Resolving a conflict on a lookup's name with an edited value took a name another entry has in another
    normal form (a second "Café"), and kept surrounding spaces: the value is stored stripped and in NFC, and a
    name taken is a 409 naming ``body.value`` (as a REST rename's is), an empty one a 422."""
    laptop, desktop = devices
    org.owner.post(f"{org.base}/tags", json={"name": CAFE_NFC})
    tag, conflict = _a_conflict_on_a_tags_name(org, laptop, desktop)
    url = f"{org.base}/sync/conflicts/{conflict['id']}/resolve"
    for value in (CAFE_NFD, f" {CAFE_NFC.upper()} "):
        taken = org.owner.post(url, json={"value": value})
        assert taken.status_code == 409, taken.text
        assert taken.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in taken.json()["errors"]] == ["body.value"]
    for value in ("", "   "):
        empty = org.owner.post(url, json={"value": value})
        assert empty.status_code == 422, empty.text
        assert [e["field"] for e in empty.json()["errors"]] == ["body.value"]
    assert org.owner.get(f"{org.base}/tags/{tag}").json()["name"] in ("from laptop", "from desktop")

    resolved = org.owner.post(url, json={"value": "  Cre\u0300me "})
    assert resolved.status_code == 200, resolved.text
    assert org.owner.get(f"{org.base}/tags/{tag}").json()["name"] == "Cr\u00e8me"
    _settle(laptop, desktop)
    for device in devices:
        assert device.library.get("tag", tag)["name"] == "Cr\u00e8me"
        assert device.open_conflicts() == []
    names = [t["name"] for t in org.owner.get(f"{org.base}/tags").json()["items"]]
    assert names.count(CAFE_NFC) == 1


def test_a_replica_resolution_of_a_lookup_name_is_checked_as_a_rename_is(  # type: ignore[no-untyped-def]
    org: Org, devices: list[Device]
) -> None:
    """The same on a replica: an edited name another live entry has here (in any normal form) is refused as
    it is made, as ``edit`` refuses the rename; an empty one too."""
    laptop, desktop = devices
    org.owner.post(f"{org.base}/tags", json={"name": CAFE_NFC})
    tag, _conflict = _a_conflict_on_a_tags_name(org, laptop, desktop)
    laptop.sync()
    [local] = [c for c in laptop.open_conflicts() if c.record_id == tag]
    with pytest.raises(LocalEditError, match=f"already named '{CAFE_NFC}'"):
        laptop.library.resolve_conflict("tag", tag, local.id, Merged(CAFE_NFD))
    with pytest.raises(LocalEditError, match=r"tag\.name is required"):
        laptop.library.resolve_conflict("tag", tag, local.id, Merged("  "))
    laptop.library.resolve_conflict("tag", tag, local.id, Merged("Cre\u0300me "))
    assert laptop.library.get("tag", tag)["name"] == "Cr\u00e8me"
    _settle(laptop, desktop)
    assert org.owner.get(f"{org.base}/tags/{tag}").json()["name"] == "Cr\u00e8me"


def test_a_name_whose_key_is_longer_than_the_name_syncs(org: Org, devices: list[Device]) -> None:
    """Case folding and NFC write some letters longer ("ß" as "ss", U+0958 as two characters): the key of a
    200-character name is up to three times as long. Its column held 200: on PostgreSQL the push was a 500,
    and every later sync of that replica failed too."""
    laptop, desktop = devices
    sharp = laptop.library.create("tag", {"name": "\u00df" * 200})
    qa = str(uuid.uuid4())
    as_an_older_replica(laptop, "knowledge_type", qa, {"name": "\u0958" * 200, "position": 0})
    report = laptop.sync()
    assert report.refused == [] and report.conflicts_opened == []
    _settle(laptop, desktop)
    assert org.owner.get(f"{org.base}/tags/{sharp}").json()["name"] == "\u00df" * 200
    # 400 characters in NFC, past the name's limit: kept as it was pushed
    assert org.owner.get(f"{org.base}/knowledge-types/{qa}").json()["name"] == "\u0958" * 200
    assert laptop.values() == desktop.values()
    taken = org.owner.post(f"{org.base}/tags", json={"name": "\u1e9e" * 200})  # capital sharp s: one name
    assert taken.status_code == 409, taken.text
    laptop.library.edit("knowledge_type", qa, {"description": "edited"})
    assert laptop.sync().refused == []
    assert org.owner.get(f"{org.base}/knowledge-types/{qa}").json()["description"] == "edited"


def test_one_name_in_two_normal_forms_is_not_a_conflict_of_its_own(org: Org, devices: list[Device]) -> None:
    """An older replica makes "Café" (NFD), " CAFÉ" (NFD) and "Café" (NFC) in one push: one tag, and one
    conflict between the two spellings. A second conflict set "Café" against "Café" (one NFC, one NFD)."""
    laptop, desktop = devices
    made = [str(uuid.uuid4()) for _ in range(3)]
    for record_id, name in zip(made, [CAFE_NFD, f" {CAFE_NFD.upper()}", CAFE_NFC], strict=True):
        as_an_older_replica(laptop, "tag", record_id, {"name": name, "position": 0})
    assert laptop.sync().refused == []
    _settle(laptop, desktop)
    live = [t for t in org.owner.get(f"{org.base}/tags").json()["items"] if t["id"] in made]
    assert len(live) == 1, live
    conflicts = [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["field"] == "name"]
    assert len(conflicts) == 1, conflicts
    sides = {unicodedata.normalize("NFC", conflicts[0][s]["value"]) for s in ("winner", "loser")}
    assert sides == {CAFE_NFC, CAFE_NFC.upper()}, conflicts
    assert len(laptop.open_conflicts()) == len(desktop.open_conflicts()) == 1
    assert laptop.values() == desktop.values()


def test_a_record_whose_newest_version_is_the_last_of_its_millisecond_stays_editable(
    org: Org, devices: list[Device]
) -> None:
    """Another replica a minute fast (within the drift the server allows) writes at the last counter of its
    millisecond (999999): the next edit of the record here was an uncaught clock error, on every replica,
    until the local clock passed that millisecond."""
    laptop, desktop = devices
    prompt = laptop.library.create("prompt", {"title": "t", "body": "b"})
    laptop.sync()
    desktop.sync()
    state = desktop.store.load("prompt", prompt).state
    fast = HLC(int(time.time() * 1000) + 60_000, MAX_COUNTER, "fast-replica")
    change = make_edit(
        state, {"title": "fast"}, schema=DEFAULT_SCHEMA, node=fast.node, hlc=fast, op_id=new_id_text()
    )
    assert change is not None
    r = org.owner.post(
        f"{org.base}/sync/push",
        json={"protocol": 4, "device": fast.node, "changes": [change_to_wire(change)]},
    )
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "applied", r.text
    _settle(laptop, desktop)
    laptop.library.edit("prompt", prompt, {"title": "edited here"})
    assert laptop.sync().refused == []
    _settle(laptop, desktop)
    for device in devices:
        assert device.library.get("prompt", prompt)["title"] == "edited here"


def test_a_name_nfc_makes_too_long_is_merged_as_it_was_given(org: Org, devices: list[Device]) -> None:
    """Two older replicas make one 200-character name in two cases, of letters NFC writes three times as long
    (U+FB2C): the second is merged into the first, its spelling a conflict, as any other name's. It was
    refused as past the limit (the merge wrote it in NFC, 598 characters), and its description with it."""
    laptop, desktop = devices
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    as_an_older_replica(laptop, "tag", first, {"name": "\ufb2c" * 199 + "a", "position": 0})
    assert laptop.sync().refused == []
    values = {"name": "\ufb2c" * 199 + "A", "position": 0, "description": "d"}
    as_an_older_replica(desktop, "tag", second, values)
    assert desktop.sync().refused == []
    _settle(laptop, desktop)
    kept = org.owner.get(f"{org.base}/tags/{first}").json()
    assert kept["description"] == "d" and kept["name"] in ("\ufb2c" * 199 + "a", "\ufb2c" * 199 + "A"), kept
    [conflict] = [c for c in org.owner.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == first]
    assert {conflict["winner"]["value"], conflict["loser"]["value"]} == {"\ufb2c" * 199 + c for c in "aA"}
    assert laptop.values() == desktop.values()


def test_edits_made_after_the_clock_is_set_right_are_taken(  # type: ignore[no-untyped-def]
    client, org: Org, tmp_path: Path
) -> None:
    """A device whose clock ran a year ahead has its edit refused (``clock-drift``), as it must. Once the
    clock was set right, every later edit was stamped after that year-ahead edit and refused as well, and
    making the refused edit again was refused again, until real time caught up (QA)."""
    skew = [365 * 24 * 3600 * 1000]
    device = make_device(
        tmp_path,
        "skewed",
        http=client,
        base_url="",
        token=org.owner.token,
        org_id=org.id,
        now_ms=lambda: int(time.time() * 1000) + skew[0],
    )
    try:
        ids = seed_library(org)
        device.sync()
        device.library.edit("prompt", ids["prompt"], {"title": "from a year ahead"})
        [refused] = device.sync().refused
        assert "clock-drift" in refused["reason"] and "set it right" in refused["reason"], refused
        skew[0] = 0
        device.library.edit("prompt", ids["prompt"], {"description": "clock set right"})
        made = device.library.create("prompt", {"title": "new", "body": "b"})
        assert device.sync().refused == []
        [kept] = [c for c in device.open_conflicts() if c.field == REJECTED_FIELD]
        with device.replica.transaction():
            reapply_refused(device.library, kept)
            device.replica.resolve_conflict(id=kept.id)
        assert device.sync().refused == []
        served = org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()
        assert (served["title"], served["description"]) == ("from a year ahead", "clock set right")
        assert org.owner.get(f"{org.base}/prompts/{made}").status_code == 200
    finally:
        device.replica.close()
