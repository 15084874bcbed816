"""Bad input to the sync endpoints gets a clear error and loses nothing: a 4xx problem document naming the
field (or, inside a push, the op refused on its own, naming the field), never a 500; a push that is answered
2xx leaves the server consistent (the changes it wrote pull and decode, the sums and the records read).

Property tests start from valid requests (built as a replica builds them) and mutate them: keys dropped,
values of every JSON type anywhere, numbers beyond 64 bits, NaN-like text, long text, unknown fields, bad
ids, ids of another organization, bad cursors and page sizes, unknown entities and fields, unknown protocol
versions, op ids used twice, versions in the future. A few malformed raw bodies too.

CI runs a bounded, seeded number of examples (``OUTPUTHUB_SYNC_FUZZ_EXAMPLES``, default 150 pushes and
resolutions, twice as many queries); a longer run:
``OUTPUTHUB_SYNC_FUZZ_EXAMPLES=2000 OUTPUTHUB_HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q
tests/api/test_sync_bad_input.py`` (the ``long`` profile draws new examples each run)."""

from __future__ import annotations

import copy
import gzip
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import event, given, settings
from hypothesis import strategies as st

from outputhub.common.clock import HLC, MAX_COUNTER, tick
from outputhub.sync.engine import DEFAULT_SCHEMA, make_create, make_delete, make_edit, merge_change
from outputhub.sync.protocol import change_to_wire, expand_state_wire, state_from_wire
from tests.support.client import Org, new_org, seed_library

EXAMPLES = int(os.environ.get("OUTPUTHUB_SYNC_FUZZ_EXAMPLES", "150"))
NODE = "fuzz-device"
HUGE = 2**64 + 7  # beyond 64 bits
PROBLEM = "application/problem+json"
Path = tuple[str | int, ...]


def _now_ms() -> int:
    return int(time.time() * 1000)


_last: list[HLC] = []


def _hlc(node: str = NODE, after: HLC | None = None) -> HLC:
    """A fresh version: now, after every version this module made and after ``after`` (a replica's clock)."""
    prev = max([*_last[-1:], *([after] if after is not None else [])], default=None)
    if prev is not None and prev.counter == MAX_COUNTER and prev.wall_ms >= _now_ms():
        prev = HLC(prev.wall_ms + 1, 0, node)  # (tick refuses to go past the last version of a millisecond)
    made = tick(prev, now_ms=_now_ms(), node=node)
    _last[:] = [made]
    return made


def _op_id() -> str:
    return f"op-{uuid.uuid4()}"


# -- the world: two organizations, records to edit, open conflicts ------------------------------------------


@dataclass(repr=False)
class World:
    org: Org
    ids: dict[str, str]
    other: Org
    other_ids: dict[str, str]
    other_conflict: str
    stages: list[str]
    conflicts: dict[str, str] = field(default_factory=dict)
    """An open conflict of ``org`` per kind (title, position, stage, delete), made again once resolved."""

    def __repr__(self) -> str:  # (hypothesis prints it with every failing example)
        return f"World(org={self.org.id})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def _state(org: Org, entity: str, record_id: str) -> Any:
    r = org.owner.get(f"{org.base}/sync/records/{entity}/{record_id}")
    assert r.status_code == 200, r.text
    return state_from_wire(entity, record_id, r.json()["state"])


def _push(org: Org, changes: list[dict[str, Any]], device: str = NODE) -> list[dict[str, Any]]:
    r = org.owner.post(f"{org.base}/sync/push", json={"protocol": 4, "device": device, "changes": changes})
    assert r.status_code == 200, r.text
    return list(r.json()["results"])


def _edit_wire(state: Any, values: dict[str, Any], node: str) -> dict[str, Any]:
    newest = max(state.known_versions, default=None)
    hlc = _hlc(node, newest)
    change = make_edit(state, values, schema=DEFAULT_SCHEMA, node=node, hlc=hlc, op_id=_op_id())
    assert change is not None
    return change_to_wire(change)


def make_conflict(org: Org, kind: str, stages: list[str]) -> str:
    """An open conflict of ``kind`` in ``org``: two replicas edit one field from the same state (or one edits
    what the other deleted)."""
    if kind == "position":
        made = org.owner.post(f"{org.base}/tags", json={"name": f"c-{uuid.uuid4()}", "position": 1})
        entity, field_name, sides = "tag", "position", (2, 3)
    else:
        made = org.owner.post(
            f"{org.base}/prompts",
            json={"title": "Conflicted", "body": "b", "development_stage_id": stages[0]},
        )
        entity = "prompt"
        field_name, sides = {
            "title": ("title", ("Mine", "Theirs")),
            "stage": ("development_stage_id", (stages[1], stages[2])),
            "delete": ("title", ("Edited offline", "")),
        }[kind]
    assert made.status_code == 201, made.text
    record_id = made.json()["id"]
    state = _state(org, entity, record_id)
    first = _edit_wire(state, {field_name: sides[0]}, "node-a")
    if kind == "delete":
        assert org.owner.delete(f"{org.base}/prompts/{record_id}").status_code == 204
        _push(org, [first], "node-a")
    else:
        second = _edit_wire(state, {field_name: sides[1]}, "node-b")
        _push(org, [first], "node-a")
        _push(org, [second], "node-b")
    listed = org.owner.get(f"{org.base}/sync/conflicts", params={"record_id": record_id}).json()
    assert len(listed) == 1, listed
    return str(listed[0]["id"])


@pytest.fixture(scope="module")
def world(client: TestClient) -> World:
    org = new_org(client, name="Sync bad input")
    ids = seed_library(org)
    other = new_org(client, name="Sync bad input, other")
    other_ids = seed_library(other)
    stages = [s["id"] for s in org.owner.get(f"{org.base}/development-stages").json()["items"]][:3]
    assert len(stages) == 3
    other_stages = [s["id"] for s in other.owner.get(f"{other.base}/development-stages").json()["items"]]
    made = World(
        org=org,
        ids=ids,
        other=other,
        other_ids=other_ids,
        other_conflict=make_conflict(other, "title", other_stages),
        stages=stages,
    )
    for kind in ("title", "position", "stage", "delete"):
        made.conflicts[kind] = make_conflict(org, kind, stages)
    return made


# -- checking an answer --------------------------------------------------------------------------------------


def _loc(path: Path) -> str:
    return ".".join(str(p) for p in path)


def _related(a: str, b: str) -> bool:
    """Whether one location is the other or lies within it (``body.pull`` and ``body.pull.since``)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def check_problem(r: Any, label: str, locations: list[str]) -> None:
    """A 4xx answer is a problem document; unless it is a 404 about an id (which names it in its detail, as
    every endpoint's does), it names the field, one related to a location the request was changed at when
    those are known."""
    assert r.status_code < 500, f"{label}: {r.status_code} {r.text[:500]}"
    if r.status_code < 400:
        return
    assert r.headers["content-type"] == PROBLEM, f"{label}: {r.headers['content-type']} {r.text[:300]}"
    problem = r.json()
    assert problem["status"] == r.status_code and problem["title"] and problem["detail"], label
    if r.status_code in (404, 405):
        return
    fields = [e["field"] for e in problem.get("errors", [])]
    assert fields and all(fields), f"{label}: names no field: {problem}"
    if locations:
        assert any(_related(f, loc) for f in fields for loc in locations), (
            f"{label}: names {fields}, not {locations}: {problem}"
        )


def check_consistent(world: World, since: int, label: str) -> None:
    """What the org holds after a push: the pull from ``since`` answers, and each state on it decodes (a
    replica applies them); the sums and a record read answer too."""
    org = world.org
    page = org.owner.get(f"{org.base}/sync/changes", params={"protocol": 4, "since": since, "limit": 200})
    assert page.status_code == 200, f"{label}: the pull after it: {page.status_code} {page.text[:500]}"
    table_entity = {"prompts": "prompt", "outputs": "output", "tags": "tag", "custom_gpts": "custom_gpt"}
    for record in page.json()["records"]:
        entity = table_entity.get(record["entity"], record["entity"][:-1])
        if record["state"] is not None:
            state = expand_state_wire(entity, record["state"], record["data"])
            state_from_wire(entity, record["id"], state)
        got = org.owner.get(f"{org.base}/sync/records/{entity}/{record['id']}")
        assert got.status_code == 200, f"{label}: record {entity}/{record['id']}: {got.text[:300]}"
    sums = org.owner.get(f"{org.base}/sync/checksums")
    assert sums.status_code == 200, f"{label}: checksums after it: {sums.text[:300]}"


REST_EDITS: dict[str, tuple[str, dict[str, Any]]] = {
    "tag": ("tags", {"description": "edited through the API"}),
    "prompt": ("prompts", {"body": "edited through the API"}),
    "output": ("outputs", {"content": "edited through the API"}),
}


def check_editable(world: World, results: list[dict[str, Any]], label: str) -> None:
    """The server can still write what a push wrote: an API edit of the last record an op wrote is a 200
    (or a 404 for one it deleted or merged away), never a 500."""
    written = [x for x in results if x["status"] != "refused" and x["entity"] in REST_EDITS and x["id"]]
    if not written:
        return
    slug, edit = REST_EDITS[written[-1]["entity"]]
    r = world.org.owner.patch(f"{world.org.base}/{slug}/{written[-1]['id']}", json=edit)
    assert r.status_code in (200, 404), f"{label}: then an API edit of {written[-1]}: {r.text[:300]}"


def _head(world: World) -> int:
    return int(world.org.owner.get(f"{world.org.base}/sync/checksums").json()["revision"])


# -- mutations -----------------------------------------------------------------------------------------------

BAD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    -0.0,
    1e308,
    HUGE,
    -HUGE,
    2**63,
    -(2**63) - 1,
    "",
    " ",
    "x",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "0x10",
    "4",
    "true",
    "x" * 70_000,
    "é✓\u202e",
    "not-a-uuid",
    "00000000-0000-0000-0000-000000000000",
    str(uuid.uuid4()),
    str(uuid.uuid4()).upper(),
    "{" + str(uuid.uuid4()) + "}",
    "000000000000000-000000-x",
    "999999999999999-999999-" + NODE,
    [],
    [None],
    [1, "a"],
    [str(uuid.uuid4())],
    [[[]]],
    {},
    {"a": 1},
    {"since": 0},
    {"": None},
]
"""Values put anywhere a request holds one (ids of the other organization are added per test)."""
UNKNOWN_KEYS = ["colour", "", "x" * 300, "op_id ", "__proto__", "values.title"]


def paths_of(value: Any, prefix: Path = ()) -> list[Path]:
    """Every location below the root of a JSON value (object members and list items)."""
    found: list[Path] = []
    items: Any = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths_of(child, (*prefix, key)))
    return found


def _parent(body: Any, path: Path) -> Any:
    for part in path[:-1]:
        body = body[part]
    return body


def _bad_value(data: st.DataObject, world: World) -> Any:
    others = [world.other_ids["prompt"], world.other_ids["tag"], world.other_conflict]
    value = data.draw(st.sampled_from([*BAD_VALUES, *others]) | st.integers() | st.text(max_size=8))
    return copy.deepcopy(value)  # (a later mutation may change it: not the shared one)


def mutate(data: st.DataObject, world: World, body: Any, prefix: str) -> list[str]:
    """Apply one generic mutation to ``body`` in place; returns the location it changed (``prefix.path``)."""
    paths = paths_of(body)
    kind = data.draw(st.sampled_from(["drop", "retype", "unknown"] if paths else ["unknown"]))
    if kind == "unknown":
        objects = [(), *(p for p in paths if isinstance(_parent(body, (*p, "")), dict))]
        path = data.draw(st.sampled_from(objects))
        target = _parent(body, (*path, ""))
        key = data.draw(st.sampled_from(UNKNOWN_KEYS))
        target[key] = _bad_value(data, world)
        return [_loc((prefix, *path, key))]
    path = data.draw(st.sampled_from(paths))
    parent = _parent(body, path)
    if kind == "drop":
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        parent[path[-1]] = _bad_value(data, world)
    return [_loc((prefix, *path))]


# -- push ----------------------------------------------------------------------------------------------------


def _create(entity: str, values: dict[str, Any]) -> dict[str, Any]:
    change = make_create(
        entity, str(uuid.uuid4()), values, schema=DEFAULT_SCHEMA, node=NODE, hlc=_hlc(), op_id=_op_id()
    )
    return change_to_wire(change)


def valid_changes(world: World, picks: list[str]) -> list[dict[str, Any]]:
    """Ops a replica sends: creates of each kind, an edit of a record the server has, a create and delete."""
    ids = world.ids
    changes: list[dict[str, Any]] = []
    for pick in picks:
        if pick == "tag":
            changes.append(_create("tag", {"name": f"t-{uuid.uuid4()}", "position": 2}))
        elif pick == "taken-tag":  # made offline with the name of one the server has: merged into it
            changes.append(_create("tag", {"name": "PYTHON", "description": f"d-{uuid.uuid4()}"}))
        elif pick == "prompt":
            values = {
                "title": "T",
                "body": "b",
                "development_stage_id": ids["stage"],
                "tag_ids": [ids["tag"]],
            }
            changes.append(_create("prompt", values))
        elif pick == "output":
            changes.append(
                _create("output", {"prompt_id": ids["prompt"], "content": "c", "tag_ids": [ids["tag"]]})
            )
        elif pick == "edit":  # a prompt of its own: the same shape of state each time
            made = world.org.owner.post(f"{world.org.base}/prompts", json={"title": "To edit", "body": "b"})
            assert made.status_code == 201, made.text
            state = _state(world.org, "prompt", made.json()["id"])
            changes.append(_edit_wire(state, {"body": f"edited {uuid.uuid4()}"}, NODE))
        else:  # a tag made and deleted offline
            record_id = str(uuid.uuid4())
            made = make_create(
                "tag",
                record_id,
                {"name": f"d-{record_id}"},
                schema=DEFAULT_SCHEMA,
                node=NODE,
                hlc=_hlc(),
                op_id=_op_id(),
            )
            state = merge_change(None, made, DEFAULT_SCHEMA).state
            gone = make_delete(state, schema=DEFAULT_SCHEMA, node=NODE, hlc=_hlc(), op_id=_op_id())
            changes += [change_to_wire(made), change_to_wire(gone)]
    return changes


def _future(ms: int, counter: int = 0, node: str = NODE) -> str:
    return HLC(min(_now_ms() + ms, 10**15 - 1), counter, node).encode()


def _well_formed(op: Any) -> bool:
    """Whether ``op`` has a change's shape (the protocol's own mutations change one in place)."""
    return (
        isinstance(op, dict)
        and isinstance(op.get("values"), dict)
        and isinstance(op.get("base"), dict)
        and all(isinstance(op.get(k), str) for k in ("entity", "kind", "id"))
    )


def push_mutation(data: st.DataObject, world: World, body: dict[str, Any]) -> list[str]:
    """One mutation a push may carry: a generic one anywhere, or one that means something to the protocol.
    Returns the locations changed (empty: the whole request, no one field)."""
    changes = body["changes"]
    kind = data.draw(
        st.sampled_from(
            [
                "generic",
                "generic",
                "generic",
                "protocol",
                "dup_op",
                "reuse_op_id",
                "future_base",
                "future_hlc",
                "max_counter",
                "unknown_entity",
                "unknown_field",
                "unknown_kind",
                "other_org",
                "bad_base",
                "pull",
            ]
        )
    )
    if kind not in ("generic", "protocol", "pull") and not all(_well_formed(c) for c in changes):
        kind = "generic"  # (a mutation before this one broke an op: the ones below need its shape)
    i = data.draw(st.integers(0, len(changes) - 1))
    op = changes[i]
    if kind == "generic":
        return mutate(data, world, body, "body")
    if kind == "protocol":
        body["protocol"] = data.draw(st.sampled_from([0, 5, 99, -1, HUGE, 2**31, 2**63 - 1]))
        return ["body.protocol"]
    if kind == "dup_op":
        changes.insert(data.draw(st.integers(0, len(changes))), copy.deepcopy(op))
    elif kind == "reuse_op_id":
        j = data.draw(st.integers(0, len(changes) - 1))
        changes[j]["op_id"] = op.get("op_id")
    elif kind == "future_base":
        versions = [_future(data.draw(st.sampled_from([1000, 3_600_000, 10**12, 10**16])))]
        name = data.draw(st.sampled_from([*op["values"], "title", "name", "_deleted"]))
        op["base"][name] = [op["values"].get(name), versions]
    elif kind == "future_hlc":
        op["hlc"] = _future(data.draw(st.sampled_from([1000, 3_600_000, 25 * 3_600_000, 10**16])))
    elif kind == "max_counter":  # the last version of its millisecond, for every op of the batch
        ahead = data.draw(st.sampled_from([-1000, 0, 60_000]))
        for each in changes:
            each["hlc"] = _future(ahead, data.draw(st.sampled_from([MAX_COUNTER - 1, MAX_COUNTER])))
        return [f"body.changes.{n}" for n in range(len(changes))]
    elif kind == "unknown_entity":
        op["entity"] = data.draw(st.sampled_from(["prompts", "user", "Tag", "", "sync_op", "tag "]))
    elif kind == "unknown_field":
        op["values"][
            data.draw(st.sampled_from(["colour", "id", "revision", "org_id", "deleted", "_deleted"]))
        ] = 1
    elif kind == "unknown_kind":
        op["kind"] = data.draw(st.sampled_from(["upsert", "DELETE", "", 1, None]))
    elif kind == "other_org":
        if op["kind"] == "create" and op["entity"] == "output":
            op["values"]["prompt_id"] = world.other_ids["prompt"]
        else:
            op["id"] = world.other_ids[op["entity"]] if op["entity"] in world.other_ids else op["id"]
    elif kind == "bad_base":
        name = data.draw(st.sampled_from([*op["values"], "title", "_deleted"]))
        op["base"][name] = data.draw(
            st.sampled_from([[], [1], [None, None, None], "x", None, [None, "x"], [None, [1]], [HUGE, []]])
        )
    else:  # the pull it asks for
        pull = {"since": 0, "limit": 5, "checksums": True}
        if data.draw(st.booleans()):
            body["pull"] = pull
            # (a pull is for protocol 4 on: with another the answer names it, whatever else changed)
            return ["body.pull", *(mutate(data, world, body, "body") if data.draw(st.booleans()) else [])]
        body["pull"] = data.draw(st.sampled_from([*BAD_VALUES[:12], {**pull, "since": -1}, {**pull, "x": 1}]))
        return ["body.pull"]
    return [f"body.changes.{i}"]


PICKS = st.lists(
    st.sampled_from(["tag", "taken-tag", "prompt", "output", "edit", "made-and-deleted"]),
    min_size=1,
    max_size=3,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(picks=PICKS, protocol=st.sampled_from([1, 2, 3, 4]), count=st.integers(1, 2), data=st.data())
def test_a_mutated_push_is_answered_without_a_500_and_loses_nothing(
    client: TestClient, world: World, picks: list[str], protocol: int, count: int, data: st.DataObject
) -> None:
    org = world.org
    body: dict[str, Any] = {"protocol": protocol, "device": NODE, "changes": valid_changes(world, picks)}
    locations: list[str] = []
    for _ in range(count):
        if not isinstance(body, dict) or not isinstance(body.get("changes"), list) or not body["changes"]:
            break
        locations += push_mutation(data, world, body)
    label = f"push {json.dumps(body, default=str)[:600]}"
    before = _head(world)
    sums = org.owner.get(f"{org.base}/sync/checksums").json()
    r = org.owner.post(f"{org.base}/sync/push", json=body)
    event(f"status {r.status_code}")
    check_problem(r, label, locations)
    if r.status_code >= 400:
        assert org.owner.get(f"{org.base}/sync/checksums").json() == sums, f"{label}: a refused push wrote"
        return
    answer = r.json()
    assert len(answer["results"]) == len(body["changes"]), label
    for result in answer["results"]:
        event(f"op {result['status']} {(result['error'] or {}).get('code', '')}")
        if result["status"] == "refused":
            error = result["error"]
            assert error["code"] and error["detail"], f"{label}: {result}"
            # every refusal but a role's names what it is about (a field may be named "": an unknown one)
            if error["code"] != "permission-denied":
                assert error["field"] is not None, f"{label}: a refusal naming no field: {result}"
    check_consistent(world, before, label)
    check_editable(world, answer["results"], label)


# -- pull, checksums, records, conflicts ---------------------------------------------------------------------

PARAM_VALUES = st.sampled_from(
    [
        "",
        "-1",
        "0",
        "1",
        "-0",
        "5001",
        str(HUGE),
        str(-HUGE),
        str(2**63),
        str(2**63 - 1),
        str(2**31),
        "1.5",
        "1e3",
        "NaN",
        "Infinity",
        "-Infinity",
        "true",
        "yes",
        "null",
        "[]",
        "{}",
        "x" * 5000,
        "not-a-uuid",
        str(uuid.uuid4()).upper(),
        "\u00e9",
        " 4",
    ]
) | st.text(max_size=6)


def mutate_params(data: st.DataObject, world: World, params: dict[str, Any]) -> list[str]:
    """One change to a query: a parameter dropped, given a bad value, given twice, or an unknown one."""
    kind = data.draw(st.sampled_from(["drop", "value", "value", "twice", "unknown"]))
    if kind == "unknown" or not params:
        unknown = data.draw(st.sampled_from(["colour", "cursor", "page_size"]))
        params[unknown] = data.draw(PARAM_VALUES)
        return [f"query.{unknown}"]  # (ignored, unless its value cannot be text: a NUL)
    name = data.draw(st.sampled_from(sorted(params)))
    if kind == "drop":
        del params[name]
    elif kind == "twice":
        params[name] = [params[name], data.draw(PARAM_VALUES)]
    else:
        others = [world.other_ids["prompt"], world.other_conflict]
        params[name] = data.draw(PARAM_VALUES | st.sampled_from(others))
    return [f"query.{name}"]


@settings(max_examples=2 * EXAMPLES, deadline=None)
@given(
    endpoint=st.sampled_from(["changes", "checksums", "conflicts"]),
    count=st.integers(1, 3),
    data=st.data(),
)
def test_a_mutated_query_is_answered_without_a_500(
    client: TestClient, world: World, endpoint: str, count: int, data: st.DataObject
) -> None:
    org = world.org
    valid: dict[str, dict[str, Any]] = {
        "changes": {"protocol": 4, "since": 0, "limit": 5, "from_zero": "false"},
        "checksums": {"full": "true"},
        "conflicts": {"include_resolved": "true", "record_id": world.ids["prompt"], "limit": 5},
    }
    params = valid[endpoint]
    locations: list[str] = []
    for _ in range(count):
        locations += mutate_params(data, world, params)
    label = f"GET {endpoint} {str(params)[:300]}"
    r = org.owner.get(f"{org.base}/sync/{endpoint}", params=params)
    event(f"{endpoint}: status {r.status_code}")
    check_problem(r, label, locations)
    if r.status_code == 200:
        assert r.headers["content-type"].startswith("application/json"), label
        r.json()


PATH_VALUES = st.sampled_from(
    ["not-a-uuid", "0", "-1", str(HUGE), "NaN", "x" * 3000, "%00", "..", "null", "\u00e9", " ", "a/b"]
) | st.text(min_size=1, max_size=6)


@settings(max_examples=max(1, EXAMPLES // 2), deadline=None)
@given(
    which=st.sampled_from(["records", "conflict", "resolve"]),
    part=st.sampled_from(["entity", "id"]),
    value=PATH_VALUES | st.sampled_from(["other-record", "other-conflict", "missing", "table-name", "upper"]),
)
def test_a_mutated_path_is_answered_without_a_500(
    client: TestClient, world: World, which: str, part: str, value: str
) -> None:
    """Ids in the path that are no UUID, name another organization's record or conflict, or nothing; entity
    names that are no entity's."""
    org = world.org
    ident = {
        "other-record": world.other_ids["prompt"],
        "other-conflict": world.other_conflict,
        "missing": str(uuid.uuid4()),
        "upper": (world.ids["prompt"] if which == "records" else world.conflicts["title"]).upper(),
    }.get(value, value)
    if which == "records":
        entity, record = ("prompts", world.ids["prompt"]) if value == "table-name" else ("prompt", ident)
        if part == "entity" and value != "table-name":
            entity, record = ident, world.ids["prompt"]
        path = f"/sync/records/{quote(entity, safe='')}/{quote(record, safe='')}"
        r = org.owner.get(f"{org.base}{path}")
        where = ["path.entity", "path.record_id"]
    elif which == "conflict":
        path = f"/sync/conflicts/{quote(ident, safe='')}"
        r = org.owner.get(f"{org.base}{path}")
        where = ["path.conflict_id"]
    else:
        path = f"/sync/conflicts/{quote(ident, safe='')}/resolve"
        r = org.owner.post(f"{org.base}{path}", json={"keep": "winner"})
        where = ["path.conflict_id"]
        if r.status_code < 300:  # an upper-case id of an open conflict names it
            world.conflicts["title"] = make_conflict(org, "title", world.stages)
    event(f"{which}: status {r.status_code}")
    check_problem(r, f"{which} {path[:200]}", where)
    other = world.other.owner.get(f"{world.other.base}/sync/conflicts/{world.other_conflict}")
    assert other.status_code == 200 and other.json()["resolved_at"] is None, "the other org's conflict"


RESOLVE_BODIES: list[dict[str, Any]] = [{"keep": "winner"}, {"keep": "loser"}, {"value": None}]
"""Valid resolutions (the value is one of the conflict's field's type, filled in per conflict)."""


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    kind=st.sampled_from(["title", "position", "stage", "delete"]),
    start=st.sampled_from(RESOLVE_BODIES),
    count=st.integers(1, 2),
    data=st.data(),
)
def test_a_mutated_resolution_is_answered_without_a_500(
    client: TestClient, world: World, kind: str, start: dict[str, Any], count: int, data: st.DataObject
) -> None:
    org = world.org
    body: Any = copy.deepcopy(start)
    if "value" in body:  # a value of the field's type (a delete conflict takes none)
        values = {"title": "Merged", "position": 7, "stage": world.stages[0]}
        body = {"value": values[kind]} if kind in values else {"keep": "winner"}
    locations: list[str] = []
    for _ in range(count):
        locations += mutate(data, world, body, "body")
    if any(_related(loc, side) for loc in locations for side in ("body.keep", "body.value")):
        locations += ["body.keep", "body.value"]  # either names the other (one of the two is given)
    conflict_id = world.conflicts[kind]
    before = _head(world)
    label = f"resolve {kind} {json.dumps(body)[:300]}"
    r = org.owner.post(f"{org.base}/sync/conflicts/{conflict_id}/resolve", json=body)
    event(f"status {r.status_code}")
    check_problem(r, label, locations)
    if r.status_code < 300:
        shown = org.owner.get(f"{org.base}/sync/conflicts/{conflict_id}")
        assert shown.status_code == 200 and shown.json()["resolved_at"], f"{label}: {shown.text[:300]}"
        check_consistent(world, before, label)
        world.conflicts[kind] = make_conflict(org, kind, world.stages)
    else:
        shown = org.owner.get(f"{org.base}/sync/conflicts/{conflict_id}")
        assert shown.json()["resolved_at"] is None, f"{label}: refused, yet resolved"


# -- raw bodies ----------------------------------------------------------------------------------------------

JSON_TYPE = {"content-type": "application/json"}
RAW_BODIES: list[tuple[bytes, dict[str, str], str]] = [
    # (body, headers, the field the 4xx names)
    (b"not json", JSON_TYPE, "body"),
    (b'{"protocol": 4, "device": "d", "changes": [', JSON_TYPE, "body"),
    (b"", JSON_TYPE, "body"),
    (b"[]", JSON_TYPE, "body"),
    (b"[1, 2]", JSON_TYPE, "body"),
    (b'"text"', JSON_TYPE, "body"),
    (b"null", JSON_TYPE, "body"),
    (b"42", JSON_TYPE, "body"),
    (b'{"protocol": NaN, "device": "d", "changes": []}', JSON_TYPE, "body.protocol"),
    (b'{"protocol": Infinity, "device": "d", "changes": []}', JSON_TYPE, "body.protocol"),
    (b'{"protocol": 1e400, "device": "d", "changes": []}', JSON_TYPE, "body.protocol"),
    (b'{"protocol": 4.0, "device": "d", "changes": []}', JSON_TYPE, "body.protocol"),
    (b'{"protocol": 4, "device": "d", "changes": [], "pull": {"since": NaN}}', JSON_TYPE, "body.pull.since"),
    (b'{"protocol": 4, "device": "d", "changes": [], "pull": {"since": 1e2}}', JSON_TYPE, "body.pull.since"),
    (b'{"protocol": 4, "device": "d", "changes": {}}', JSON_TYPE, "body.changes"),
    ('{"protocol": 4, "device": "d", "changes": []}'.encode("utf-16"), JSON_TYPE, "body"),
    (b"[" * 100_000 + b"]" * 100_000, JSON_TYPE, "body"),
    (b'{"protocol": 4, "device": "d", "changes": []}', {"content-type": "text/plain"}, "header.Content-Type"),
    (b'{"protocol": 4, "device": "d", "changes": []}', {}, "header.Content-Type"),
    (b"protocol=4&device=d", {"content-type": "application/x-www-form-urlencoded"}, "header.Content-Type"),
    (
        b'{"protocol": 4, "device": "d", "changes": []}',
        {**JSON_TYPE, "content-encoding": "gzip"},
        "header.Content-Encoding",
    ),
    (
        gzip.compress(b'{"protocol": 4, "device": "d", "changes": []}'),
        {**JSON_TYPE, "content-encoding": "gzip"},
        "header.Content-Encoding",
    ),
]


@pytest.mark.parametrize("target", ["push", "resolve"])
def test_malformed_raw_bodies_are_problems_naming_the_body(
    client: TestClient, world: World, target: str
) -> None:
    org = world.org
    path = (
        f"{org.base}/sync/push"
        if target == "push"
        else f"{org.base}/sync/conflicts/{world.conflicts['title']}/resolve"
    )
    sums = org.owner.get(f"{org.base}/sync/checksums").json()
    for body, headers, where in RAW_BODIES:
        if target == "resolve" and where.startswith("body."):
            where = "body"  # the resolution's own fields are not these
        r = client.post(path, content=body, headers={**org.owner.headers, **headers})
        label = f"{target} {body[:80]!r} {headers}"
        assert 400 <= r.status_code < 500, f"{label}: {r.status_code} {r.text[:300]}"
        check_problem(r, label, [where])
    assert org.owner.get(f"{org.base}/sync/checksums").json() == sums
    shown = org.owner.get(f"{org.base}/sync/conflicts/{world.conflicts['title']}").json()
    assert shown["resolved_at"] is None


# -- found by the tests above --------------------------------------------------------------------------------


def test_a_version_at_the_end_of_its_millisecond_leaves_the_records_writable(
    client: TestClient, world: World
) -> None:
    """An HLC's counter may be at its largest (999999), and a replica's clock may run ahead of the server's
    (up to the allowed drift). The server's own version after such a one overflowed the counter: a push
    merging a lookup made offline under a taken name, or one making and deleting a lookup, was a 500 for
    the whole push (the replica could never sync again), and every API edit or conflict resolution of a
    record holding such a version was a 500 until the server's clock passed it. The server's version now
    moves on to the next millisecond."""
    org = world.org
    ahead = _now_ms() + 60_000
    last = HLC(ahead, MAX_COUNTER, NODE)

    def at_end(change: dict[str, Any], node: str = NODE, wall: int = ahead) -> dict[str, Any]:
        return {**change, "node": node, "hlc": HLC(wall, MAX_COUNTER, node).encode()}

    merged = at_end(_create("tag", {"name": "Python", "description": "made offline"}), wall=_now_ms() - 5000)
    made = make_create(
        "tag",
        str(uuid.uuid4()),
        {"name": f"gone-{uuid.uuid4()}"},
        schema=DEFAULT_SCHEMA,
        node=NODE,
        hlc=HLC(ahead, MAX_COUNTER - 1, NODE),
        op_id=_op_id(),
    )
    gone = make_delete(
        merge_change(None, made, DEFAULT_SCHEMA).state,
        schema=DEFAULT_SCHEMA,
        node=NODE,
        hlc=last,
        op_id=_op_id(),
    )
    for changes, statuses in (
        ([merged], ["merged"]),
        ([change_to_wire(made), change_to_wire(gone)], ["applied", "applied"]),
    ):
        r = org.owner.post(f"{org.base}/sync/push", json={"protocol": 4, "device": NODE, "changes": changes})
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == statuses, r.text

    record = org.owner.post(f"{org.base}/prompts", json={"title": "Ahead", "body": "b"}).json()["id"]
    state = _state(org, "prompt", record)
    edit = make_edit(
        state, {"body": "from the future"}, schema=DEFAULT_SCHEMA, node=NODE, hlc=last, op_id=_op_id()
    )
    assert edit is not None
    assert _push(org, [change_to_wire(edit)])[0]["status"] == "applied"
    r = org.owner.patch(f"{org.base}/prompts/{record}", json={"title": "Edited through the API"})
    assert r.status_code == 200, r.text

    state = _state(org, "prompt", record)
    top = max(state.known_versions)
    sides = [
        make_edit(
            state,
            {"title": title},
            schema=DEFAULT_SCHEMA,
            node=node,
            hlc=HLC(top.wall_ms + 1, MAX_COUNTER, node),
            op_id=_op_id(),
        )
        for title, node in (("Mine", "node-a"), ("Theirs", "node-b"))
    ]
    for side in sides:
        assert side is not None
        _push(org, [change_to_wire(side)], side.node)
    (conflict,) = org.owner.get(f"{org.base}/sync/conflicts", params={"record_id": record}).json()
    r = org.owner.post(f"{org.base}/sync/conflicts/{conflict['id']}/resolve", json={"keep": "loser"})
    assert r.status_code == 200, r.text
    assert org.owner.get(f"{org.base}/prompts/{record}").json()["title"] == conflict["loser"]["value"]
    check_consistent(world, 0, "after versions at the end of their millisecond")


def test_an_op_naming_a_long_unknown_entity_is_refused_on_its_own_and_replays(world: World) -> None:
    """A refused op is remembered for a replay with its entity and id; an entity name longer than the column
    that holds it (an id pasted into it) was a 500 for the whole push on PostgreSQL."""
    org = world.org
    bad = {**_create("tag", {"name": f"t-{uuid.uuid4()}"}), "entity": str(uuid.uuid4())}
    good = _create("tag", {"name": f"t-{uuid.uuid4()}"})
    first = _push(org, [bad, good])
    assert [x["status"] for x in first] == ["refused", "applied"], first
    assert first[0]["error"]["field"] == "entity" and first[0]["entity"] == bad["entity"], first
    again = _push(org, [bad, good])
    assert [x["replayed"] for x in again] == [True, True], again
    assert [{**x, "replayed": False} for x in again] == first
