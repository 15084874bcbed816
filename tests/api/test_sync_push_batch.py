"""One push, many ops: what an op learns from the ops before it in the same batch (push reads records,
references and remaps once per batch and reserves revisions up front)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from outputhub.common.clock import HLC
from outputhub.sync.engine import DEFAULT_SCHEMA, make_create, make_edit, merge_change
from outputhub.sync.protocol import change_to_wire
from tests.support.client import add_member, new_org, seed_library

NODE = "batch-device"


def _hlc(n: int) -> HLC:
    return HLC(int(time.time() * 1000) - 60_000 + n, 0, NODE)


def _create(entity: str, record_id: str, values: dict[str, Any], n: int) -> dict[str, Any]:
    change = make_create(
        entity, record_id, values, schema=DEFAULT_SCHEMA, node=NODE, hlc=_hlc(n), op_id=f"op-{uuid.uuid4()}"
    )
    return change_to_wire(change)


def test_ops_see_what_earlier_ops_of_the_same_push_did(client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client, name="Batch")
    ids = seed_library(org)
    tag_id, output_id, orphan_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    tag = _create("tag", tag_id, {"name": "batch-tag"}, 1)
    output_values = {"prompt_id": ids["prompt"], "content": "first", "tag_ids": [tag_id]}
    output = make_create(
        "output", output_id, output_values, schema=DEFAULT_SCHEMA, node=NODE, hlc=_hlc(2), op_id="op-output"
    )
    edit = make_edit(
        merge_change(None, output, DEFAULT_SCHEMA).state,
        {"content": "second"},
        schema=DEFAULT_SCHEMA,
        node=NODE,
        hlc=_hlc(3),
        op_id="op-edit",
    )
    assert edit is not None
    orphan = _create(
        "output", orphan_id, {"prompt_id": ids["prompt"], "content": "x", "tag_ids": [str(uuid.uuid4())]}, 4
    )
    changes = [tag, change_to_wire(output), tag, change_to_wire(edit), orphan]
    r = org.owner.post(f"{org.base}/sync/push", json={"protocol": 1, "device": NODE, "changes": changes})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["applied", "applied", "applied", "applied", "refused"]
    assert results[2].get("replayed") is True and results[2]["revision"] == results[0]["revision"]
    assert results[4]["error"]["code"] == "unknown-reference"
    revisions = [x["revision"] for x in results[:2]] + [results[3]["revision"]]
    assert revisions == sorted(set(revisions)), "each write gets its own, increasing revision"

    stored = org.owner.get(f"{org.base}/outputs/{output_id}").json()
    assert stored["content"] == "second" and stored["tag_ids"] == [tag_id]
    assert stored["revision"] == results[3]["revision"]
    assert org.owner.get(f"{org.base}/outputs/{orphan_id}").status_code == 404

    # the whole batch again (a lost response): same answers, nothing changes
    again = org.owner.post(
        f"{org.base}/sync/push", json={"protocol": 1, "device": NODE, "changes": changes}
    ).json()["results"]
    assert [x["status"] for x in again] == [x["status"] for x in results]
    assert all(x.get("replayed") for x in again[:4])
    assert org.owner.get(f"{org.base}/outputs/{output_id}").json()["revision"] == stored["revision"]


def test_a_reference_that_is_not_an_id_refuses_that_op_only(client) -> None:  # type: ignore[no-untyped-def]
    """A replica whose outbox holds an edit with a reference that is not a UUID (``tag_ids=oops``, typed by
    hand or by an older client) got ``500`` for every push, forever: nothing it held could sync again. The op
    is refused as invalid, naming the field, and the rest of the batch goes through, also when the batch
    needs remaps of merged lookups (the bulk path rewrites references first)."""
    org = new_org(client, name="Bad refs")
    ids = seed_library(org)
    name = org.owner.get(f"{org.base}/tags/{ids['tag']}").json()["name"]
    twin = str(uuid.uuid4())  # the same tag made offline: merged into the existing one, remapped
    r = org.owner.post(
        f"{org.base}/sync/push",
        json={"protocol": 4, "device": NODE, "changes": [_create("tag", twin, {"name": name}, 1)]},
    )
    assert r.status_code == 200, r.text
    good, bad_set, bad_scalar = (str(uuid.uuid4()) for _ in range(3))
    changes = [
        _create("output", good, {"prompt_id": ids["prompt"], "content": "ok", "tag_ids": [twin]}, 2),
        _create(
            "output", bad_set, {"prompt_id": ids["prompt"], "content": "x", "tag_ids": ["not-a-uuid"]}, 3
        ),
        _create("output", bad_scalar, {"prompt_id": "garbage", "content": "y"}, 4),
        _create("prompt", str(uuid.uuid4()), {"title": "Fine", "body": "b", "development_stage_id": "??"}, 5),
        _create("prompt", str(uuid.uuid4()), {"title": "Also fine", "body": "b"}, 6),
    ]
    r = org.owner.post(f"{org.base}/sync/push", json={"protocol": 4, "device": NODE, "changes": changes})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["applied", "refused", "refused", "refused", "applied"]
    assert [(x["error"]["code"], x["error"]["field"]) for x in results[1:4]] == [
        ("invalid", "tag_ids"),
        ("invalid", "prompt_id"),
        ("invalid", "development_stage_id"),
    ]
    assert "'not-a-uuid' is not a record id" in results[1]["error"]["detail"]
    stored = org.owner.get(f"{org.base}/outputs/{good}").json()
    assert stored["tag_ids"] == [ids["tag"]], "the twin's reference was remapped"
    assert org.owner.get(f"{org.base}/outputs/{bad_set}").status_code == 404


def test_a_value_of_the_wrong_type_refuses_that_op_only(client) -> None:  # type: ignore[no-untyped-def]
    """``"name": 5`` failed the whole push with 500 (every sync of that replica, forever); ``"title": true``
    was stored as "1" in the row and ``true`` in the state, so REST and the replicas disagreed. Each such op
    is refused as invalid, naming the field; the rest of the batch goes through (found by QA)."""
    org = new_org(client, name="Bad types")
    changes = [
        _create("tag", str(uuid.uuid4()), {"name": 5}, 1),
        _create("tag", str(uuid.uuid4()), {"name": "big", "position": 10**30}, 2),
        _create("prompt", str(uuid.uuid4()), {"title": True, "body": "b"}, 3),
        _create("tag", str(uuid.uuid4()), {"name": "fine", "position": 3}, 5),
    ]
    r = org.owner.post(f"{org.base}/sync/push", json={"protocol": 4, "device": NODE, "changes": changes})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["refused"] * 3 + ["applied"]
    assert [(x["error"]["code"], x["error"]["field"]) for x in results[:3]] == [
        ("invalid", "name"),
        ("invalid", "position"),
        ("invalid", "title"),
    ]
    names = [t["name"] for t in org.owner.get(f"{org.base}/tags").json()["items"]]
    assert "fine" in names and "big" not in names


def test_a_refused_op_leaves_no_gap_that_pulls_never_close(client) -> None:  # type: ignore[no-untyped-def]
    """A refused op's revision is drawn and not used: the organization's newest revision is then past every
    record. The last page's cursor passes it, so a replica is up to date after one pull; its cursor stayed
    behind and every later sync pulled and checked again (found by QA: four pulls per sync)."""
    org = new_org(client, name="Gap")
    changes = [
        _create("tag", str(uuid.uuid4()), {"name": "kept"}, 1),
        _create("prompt", str(uuid.uuid4()), {"title": True, "body": "b"}, 2),  # refused
    ]
    r = org.owner.post(f"{org.base}/sync/push", json={"protocol": 4, "device": NODE, "changes": changes})
    assert [x["status"] for x in r.json()["results"]] == ["applied", "refused"]
    head = org.owner.get(f"{org.base}/sync/checksums").json()["revision"]
    since = 0
    while True:
        page = org.owner.get(f"{org.base}/sync/changes", params={"protocol": 4, "since": since}).json()
        assert page["records"] or not page["has_more"]
        since = page["next_since"]
        if not page["has_more"]:
            break
    assert since == head == page["head"], "the cursor reached the newest revision"
    everything = org.owner.get(f"{org.base}/sync/changes", params={"protocol": 4, "since": 0}).json()
    newest = max(x["revision"] for x in everything["records"])
    assert newest < head, "the refused op's revision holds no record"
    again = org.owner.get(f"{org.base}/sync/changes", params={"protocol": 4, "since": since}).json()
    assert again["records"] == [] and again["next_since"] == head and not again["has_more"]


def test_ids_not_written_as_ids_are_and_bad_op_ids_refuse_their_op_alone(client) -> None:  # type: ignore[no-untyped-def]
    """An id in upper case, braces or without dashes names a record the server stores under its canonical
    form: it was accepted as sent, then every later op naming it failed the whole push (422), the pulled
    state disagreed with the row, and a set removal of a tag named in upper case was lost. An op id longer
    than 64 characters was cut to 64 (a second op sharing the first 64 was answered as a replay of the first
    and never applied), and a number was taken as text. Each is refused for its op alone, naming the field
    (found by QA)."""
    org = new_org(client, name="Canonical")
    ids = seed_library(org)
    good_id = str(uuid.uuid4())
    upper = _create("tag", str(uuid.uuid4()).upper(), {"name": "upper"}, 1)
    braced = _create("tag", "{" + str(uuid.uuid4()) + "}", {"name": "braced"}, 2)
    referencing = _create("prompt", str(uuid.uuid4()), {"title": "t", "body": "b"}, 3)
    referencing["values"]["tag_ids"] = [ids["tag"].upper()]
    scalar = _create("output", str(uuid.uuid4()), {"prompt_id": ids["prompt"].upper(), "content": "c"}, 4)
    long_a, long_b = (_create("tag", str(uuid.uuid4()), {"name": f"long {n}"}, 5 + n) for n in range(2))
    long_a["op_id"], long_b["op_id"] = "p" * 64 + "A", "p" * 64 + "B"
    numbered = _create("tag", str(uuid.uuid4()), {"name": "numbered"}, 7)
    numbered["op_id"] = 12345
    good = _create("tag", good_id, {"name": "canonical"}, 8)
    changes = [upper, braced, referencing, scalar, long_a, long_b, numbered, good]
    r = org.owner.post(f"{org.base}/sync/push", json={"protocol": 4, "device": NODE, "changes": changes})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["refused"] * 7 + ["applied"]
    fields = [(x["error"]["code"], x["error"]["field"]) for x in results[:7]]
    assert fields == [
        ("invalid", "id"),
        ("invalid", "id"),
        ("invalid", "tag_ids"),
        ("invalid", "prompt_id"),
        ("invalid", "op_id"),
        ("invalid", "op_id"),
        ("invalid", "op_id"),
    ]
    assert "lower-case hex with dashes" in results[0]["error"]["detail"]
    assert [x["op_id"] for x in results[4:7]] == ["p" * 64 + "A", "p" * 64 + "B", "12345"]
    assert "longer than 64" in results[4]["error"]["detail"]
    names = {t["name"] for t in org.owner.get(f"{org.base}/tags", params={"limit": 500}).json()["items"]}
    assert names & {"upper", "braced", "long 0", "long 1", "numbered"} == set()
    assert "canonical" in names
    # a base naming a tag in upper case is refused too (a removal of it would miss the tag)
    created = make_create(
        "prompt",
        str(uuid.uuid4()),
        {"title": "tagged", "body": "b", "tag_ids": [good_id]},
        schema=DEFAULT_SCHEMA,
        node=NODE,
        hlc=_hlc(9),
        op_id=f"op-{uuid.uuid4()}",
    )
    push = {"protocol": 4, "device": NODE, "changes": [change_to_wire(created)]}
    assert org.owner.post(f"{org.base}/sync/push", json=push).json()["results"][0]["status"] == "applied"
    state = merge_change(None, created, DEFAULT_SCHEMA).state
    edit = make_edit(state, {"tag_ids": []}, schema=DEFAULT_SCHEMA, node=NODE, hlc=_hlc(10), op_id="op-untag")
    assert edit is not None
    removal = change_to_wire(edit)
    removal["base"]["tag_ids"][0] = [good_id.upper()]
    push = {"protocol": 4, "device": NODE, "changes": [removal]}
    [refused] = org.owner.post(f"{org.base}/sync/push", json=push).json()["results"]
    assert (refused["status"], refused["error"]["field"]) == ("refused", "tag_ids"), refused
    assert org.owner.get(f"{org.base}/prompts/{created.record_id}").json()["tag_ids"] == [good_id]


def test_a_malformed_value_is_refused_naming_its_field(client) -> None:  # type: ignore[no-untyped-def]
    """A refused op's ``error.field`` names the field its detail is about (it was null for a wrong-typed
    text, a null set, an unknown field or a malformed base; found by QA)."""
    org = new_org(client, name="Fields")
    seed_library(org)

    def op(values: dict[str, Any], n: int, **extra: Any) -> dict[str, Any]:
        wire = _create("prompt", str(uuid.uuid4()), {"title": "t", "body": "b"}, n)
        wire["values"].update(values)
        wire.update(extra)
        return wire

    cases = [
        (op({"body": 5}, 1), "body"),
        (op({"tag_ids": None}, 2), "tag_ids"),
        (op({"colour": "red"}, 3), "colour"),
        (op({"tag_ids": "not-a-list"}, 4), "tag_ids"),
        ({**op({}, 5), "kind": "update", "base": {"title": "no pair"}, "values": {"title": "x"}}, "title"),
    ]
    push = {"protocol": 4, "device": NODE, "changes": [c for c, _ in cases]}
    r = org.owner.post(f"{org.base}/sync/push", json=push)
    assert r.status_code == 200, r.text
    answers = r.json()["results"]
    expected = [("refused", field) for _, field in cases]
    assert [(a["status"], a["error"]["field"]) for a in answers] == expected, answers


def test_a_push_takes_its_protocol_as_a_number_and_its_values_as_objects(client) -> None:  # type: ignore[no-untyped-def]
    """``"protocol": true`` or ``"4"`` is a 422 (it was read as 1 and 4); values or a base given as a list
    of pairs refuse their op (they were read as objects); a base naming 20,000 versions refuses its op (it
    was stored in the record's state; found by QA)."""
    org = new_org(client, name="Strict")
    for protocol in (True, "4", 4.0):
        body = {"protocol": protocol, "device": NODE, "changes": []}
        r = org.owner.post(f"{org.base}/sync/push", json=body)
        assert r.status_code == 422, (protocol, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["body.protocol"], r.text
    # the pull it asks for alike: a cursor as text, a check asked for with "yes", a misspelled parameter
    # (silently ignored, it pulled from 0) were taken (QA)
    for pull, field in (
        ({"since": "0"}, "body.pull.since"),
        ({"since": 0, "limit": 10.0}, "body.pull.limit"),
        ({"since": 0, "checksums": "yes"}, "body.pull.checksums"),
        ({"since": 0, "sinse": 5}, "body.pull.sinse"),
    ):
        empty = {"protocol": 4, "device": NODE, "changes": [], "pull": pull}
        r = org.owner.post(f"{org.base}/sync/push", json=empty)
        assert r.status_code == 422, (pull, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field], r.text
    r = org.owner.post(f"{org.base}/sync/push", json={**empty, "pull": {"since": 0}})
    assert r.status_code == 200 and r.json()["changes"]["next_since"] >= 0, r.text
    pairs = _create("tag", str(uuid.uuid4()), {"name": "pairs"}, 1)
    pairs["values"] = [["name", "pairs"]]
    bloated = _create("tag", str(uuid.uuid4()), {"name": "bloated"}, 2)
    bloated_edit = {**bloated, "kind": "update", "op_id": f"op-{uuid.uuid4()}", "hlc": _hlc(3).encode()}
    bloated_edit["base"] = {"name": ["bloated", [HLC(1_000_000 + n, 0, "x").encode() for n in range(20_000)]]}
    push = {"protocol": 4, "device": NODE, "changes": [pairs, bloated, bloated_edit]}
    results = org.owner.post(f"{org.base}/sync/push", json=push).json()["results"]
    assert [(x["status"], (x.get("error") or {}).get("field")) for x in results] == [
        ("refused", "values"),
        ("applied", None),
        ("refused", "name"),
    ], results


def test_an_op_id_reused_for_another_record_is_refused_not_answered_as_a_replay(client) -> None:  # type: ignore[no-untyped-def]
    """A replay gets the first answer; an op id that comes back with a change of another record got that
    answer too (another record's id, ``replayed``), so the client dropped its change unapplied (found by
    QA). It is refused, naming ``op_id``."""
    org = new_org(client, name="Reuse")
    first = _create("tag", str(uuid.uuid4()), {"name": "first"}, 1)
    second = _create("tag", str(uuid.uuid4()), {"name": "second"}, 2)
    second["op_id"] = first["op_id"]
    push = {"protocol": 4, "device": NODE, "changes": [first]}
    [applied] = org.owner.post(f"{org.base}/sync/push", json=push).json()["results"]
    push = {"protocol": 4, "device": NODE, "changes": [first, second]}
    replayed, refused = org.owner.post(f"{org.base}/sync/push", json=push).json()["results"]
    assert replayed == {**applied, "replayed": True}
    assert (refused["status"], refused["id"], refused["error"]["field"]) == ("refused", second["id"], "op_id")
    names = {t["name"] for t in org.owner.get(f"{org.base}/tags", params={"limit": 500}).json()["items"]}
    assert "first" in names and "second" not in names


def test_a_push_keeps_to_the_rest_apis_limits(client) -> None:  # type: ignore[no-untyped-def]
    """What REST refuses, a push refuses for its op alone, naming the field (common/limits.py): sync took a
    position of -3 or 1,000,001, a 30,000-character description and 1.1M characters of content, and a
    position past 2^31 failed every push of its replica with a 500 (found by QA)."""
    org = new_org(client, name="Limits")
    ids = seed_library(org)
    output = {"prompt_id": ids["prompt"], "content": "c"}
    cases = [
        (_create("tag", str(uuid.uuid4()), {"name": "low", "position": -3}, 1), "position"),
        (_create("tag", str(uuid.uuid4()), {"name": "high", "position": 1_000_001}, 2), "position"),
        (_create("accuracy_level", str(uuid.uuid4()), {"name": "huge", "position": 2**40}, 3), "position"),
        (_create("tag", str(uuid.uuid4()), {"name": "long", "description": "d" * 20_001}, 4), "description"),
        (_create("output", str(uuid.uuid4()), {**output, "notes": "n" * 20_001}, 5), "notes"),
        (
            _create(
                "prompt",
                str(uuid.uuid4()),
                {"title": "t", "body": "b", "tag_ids": [str(uuid.uuid4()) for _ in range(201)]},
                6,
            ),
            "tag_ids",
        ),
    ]
    at_the_limits = {"name": "fine", "position": 1_000_000, "description": "d" * 20_000}
    fine = _create("tag", str(uuid.uuid4()), at_the_limits, 7)
    push = {"protocol": 4, "device": NODE, "changes": [c for c, _ in cases] + [fine]}
    r = org.owner.post(f"{org.base}/sync/push", json=push)
    assert r.status_code == 200, r.text[:500]
    answers = r.json()["results"]
    expected = [("refused", field) for _, field in cases] + [("applied", None)]
    assert [(a["status"], (a.get("error") or {}).get("field")) for a in answers] == expected, answers
    # the REST API says the same of the same values
    assert org.owner.post(f"{org.base}/tags", json={"name": "low", "position": -3}).status_code == 422
    too_long = {"name": "x", "description": "d" * 20_001}
    assert org.owner.post(f"{org.base}/tags", json=too_long).status_code == 422


def test_an_op_without_a_record_id_is_refused_alone_and_every_refusal_names_its_field(client) -> None:  # type: ignore[no-untyped-def]
    """An op whose ``id`` was null or missing failed the whole push with a 500 (the good ops of the batch
    were rolled back, and a replica holding such an op could never push again); an entity sent as a list
    answered ``unhashable type: 'list'``; and several refusals named no field (found by QA). Each is refused
    for its op alone, naming the field it is about."""
    org = new_org(client, name="Named")
    future = HLC(int(time.time() * 1000) + 3_600_000, 0, "z").encode()

    def tag(n: int, **extra: Any) -> dict[str, Any]:
        wire = _create("tag", str(uuid.uuid4()), {"name": f"named {n}"}, n)
        wire.update(extra)
        return wire

    no_id = tag(1)
    del no_id["id"]
    other_node = tag(8)
    other_node["node"] = "another-device"
    update = {**tag(9), "kind": "update", "base": {"name": ["", [future]]}}
    unknown = {**tag(12), "kind": "update", "base": {"name": ["", []]}}  # a record the server does not have
    long_node = "N" * 65
    drifted = HLC(int(time.time() * 1000) + 48 * 3_600_000, 0, NODE).encode()
    # a delete of a record the server does not have (purged) holds already: noop; so does one of another
    # organization's record, which stays (the same answer as for no record: nothing tells them apart)
    gone = {**tag(15), "kind": "delete", "values": {}, "base": {}}
    other = new_org(client, name="Another")
    theirs = other.owner.post(f"{other.base}/tags", json={"name": "theirs"})
    assert theirs.status_code == 201, theirs.text
    of_another = {**tag(16), "id": theirs.json()["id"], "kind": "delete", "values": {}, "base": {}}
    cases = [
        (tag(0, id=None), "id"),
        (no_id, "id"),
        (tag(2, id=12345), "id"),
        (tag(3, entity="tags"), "entity"),
        (tag(4, entity=["tag"]), "entity"),
        (tag(5, kind="explode"), "kind"),
        (tag(6, hlc="garbage"), "hlc"),
        (other_node, "node"),
        (update, "name"),
        (tag(11, values=[]), "values"),
        (unknown, "id"),
        (tag(13, node=long_node, hlc=HLC(1, 0, long_node).encode()), "node"),
        (tag(14, hlc=drifted), "hlc"),
    ]
    good = tag(10)
    push = {"protocol": 4, "device": NODE, "changes": [c for c, _ in cases] + [gone, of_another, good]}
    r = org.owner.post(f"{org.base}/sync/push", json=push)
    assert r.status_code == 200, r.text[:500]
    answers = r.json()["results"]
    got = [(a["status"], (a.get("error") or {}).get("field")) for a in answers]
    noops = [("noop", None), ("noop", None)]
    assert got == [("refused", field) for _, field in cases] + noops + [("applied", None)], answers
    assert "unhashable" not in answers[4]["error"]["detail"]
    assert other.owner.get(f"{other.base}/tags/{theirs.json()['id']}").status_code == 200
    assert org.owner.get(f"{org.base}/tags/{good['id']}").status_code == 200


def test_a_push_refuses_what_rest_refuses_as_missing(client) -> None:  # type: ignore[no-untyped-def]
    """A pushed null position was applied (the row stored 0, the state null: replicas showed null, REST 0),
    and an empty prompt text or output, which REST refuses, was stored (found by QA). Each is refused for its
    op alone, naming the field; the same values through REST are 422."""
    org = new_org(client, name="Missing")
    ids = seed_library(org)
    prompt_id = str(uuid.uuid4())
    empty_edit = make_edit(
        merge_change(
            None,
            make_create(
                "prompt",
                prompt_id,
                {"title": "t", "body": "b"},
                schema=DEFAULT_SCHEMA,
                node=NODE,
                hlc=_hlc(1),
                op_id=f"op-{uuid.uuid4()}",
            ),
            DEFAULT_SCHEMA,
        ).state,
        {"body": ""},
        schema=DEFAULT_SCHEMA,
        node=NODE,
        hlc=_hlc(2),
        op_id=f"op-{uuid.uuid4()}",
    )
    assert empty_edit is not None
    created = _create("prompt", prompt_id, {"title": "t", "body": "b"}, 1)
    cases = [
        (_create("tag", str(uuid.uuid4()), {"name": "unplaced", "position": None}, 3), "position"),
        (_create("prompt", str(uuid.uuid4()), {"title": "empty", "body": ""}, 4), "body"),
        (_create("prompt", str(uuid.uuid4()), {"title": "bodiless"}, 5), "body"),
        (_create("output", str(uuid.uuid4()), {"prompt_id": ids["prompt"], "content": ""}, 6), "content"),
        (change_to_wire(empty_edit), "body"),
    ]
    push = {"protocol": 4, "device": NODE, "changes": [created] + [c for c, _ in cases]}
    r = org.owner.post(f"{org.base}/sync/push", json=push)
    assert r.status_code == 200, r.text[:500]
    answers = r.json()["results"]
    got = [(a["status"], (a.get("error") or {}).get("field")) for a in answers]
    assert got == [("applied", None)] + [("refused", field) for _, field in cases], answers
    assert org.owner.get(f"{org.base}/prompts/{prompt_id}").json()["body"] == "b"
    tag = org.owner.post(f"{org.base}/tags", json={"name": "placed"}).json()["id"]
    assert org.owner.patch(f"{org.base}/tags/{tag}", json={"position": None}).status_code == 422
    assert org.owner.post(f"{org.base}/prompts", json={"title": "empty", "body": ""}).status_code == 422


def test_a_viewers_ops_are_refused_saying_what_each_tried(client) -> None:  # type: ignore[no-untyped-def]
    """Every op of a viewer is refused with a reason naming what it tried (an add was refused as "may not
    edit": QA), whatever the op's ``kind`` holds (a list: unhashable, never a 500)."""
    org = new_org(client, name="Viewing")
    viewer = add_member(org, "viewer")
    made = _create("tag", str(uuid.uuid4()), {"name": "seen"}, 0)
    changes = [made, {**made, "op_id": "op-list-kind", "kind": ["create"]}]
    r = viewer.post(f"{org.base}/sync/push", json={"protocol": 4, "device": NODE, "changes": changes})
    assert r.status_code == 200, r.text[:500]
    assert [(a["status"], a["error"]["code"], a["error"]["detail"]) for a in r.json()["results"]] == [
        ("refused", "permission-denied", "the viewer role may not create records"),
        ("refused", "permission-denied", "the viewer role may not change records"),
    ]


def test_a_read_scope_api_keys_ops_and_writes_are_refused_naming_the_key(client) -> None:  # type: ignore[no-untyped-def]
    """A replica attached with a read-scope API key was told "the viewer role may not edit records", and a
    REST write through it the same (QA): the refusal names the key's scope, a member's names the role."""
    org = new_org(client, name="Keyed")
    read = org.owner.post(f"{org.base}/api-keys", json={"name": "dashboard", "scope": "read"}).json()
    headers = {"Authorization": f"Bearer {read['key']}"}
    push = {"protocol": 4, "device": NODE, "changes": [_create("tag", str(uuid.uuid4()), {"name": "k"}, 0)]}
    r = client.post(f"{org.base}/sync/push", json=push, headers=headers)
    assert r.status_code == 200, r.text[:500]
    [answer] = r.json()["results"]
    assert answer["error"]["detail"] == "a read-scope API key may not create records"
    refused = client.post(f"{org.base}/tags", json={"name": "k"}, headers=headers)
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("a read-scope API key may not ")
    viewer = add_member(org, "viewer")
    as_viewer = viewer.post(f"{org.base}/tags", json={"name": "k"})
    assert as_viewer.json()["detail"].startswith("the viewer role may not")
