"""The bulk path of a push (plain creates of new records written together) answers and stores exactly what
the per-op path does: the same batch pushed to two fresh organizations, once through each, leaves the same
answers, rows, links, prompt versions, stored states, op log, conflicts, remaps, pull feed and audit trail."""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select

from outputhub.common.clock import HLC
from outputhub.server.api.sync import push as push_service
from outputhub.server.api.sync.records import SPECS
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.server.storage.tables import (
    PromptVersion,
    SyncConflict,
    SyncOp,
    SyncRecordState,
    SyncRemap,
)
from outputhub.sync.engine import DEFAULT_SCHEMA, make_create, make_edit, merge_change
from outputhub.sync.protocol import change_to_wire, state_from_wire
from tests.support.client import Actor, Org, new_org, register, seed_library
from tests.support.feed import stale_feed_data

NODE = "bulk-device"
T0 = int(time.time() * 1000) + 12 * 3_600_000
"""Twelve hours ahead (drift allows a day): every op is newer than what the tests seed through the REST API
(the same clock readings in both organizations)."""
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SERVER_HLC_RE = re.compile(r"\d{15}-\d{6}-server")
VOLATILE = {"created_at", "updated_at", "opened_at", "resolved_at", "arrived_at", "at"}


@dataclass
class Names:
    """Symbolic names <-> this organization's ids (record ids are global: each organization has its own)."""

    ids: dict[str, str] = field(default_factory=dict)

    def __call__(self, name: str) -> str:
        return self.ids.setdefault(name, str(uuid.uuid4()))

    def normalize(self, value: Any) -> Any:
        """``value`` (JSON text inside it decoded) with ids replaced by their names (unnamed ones by
        ``<?>``), server clock readings and commit times dropped, and sets of ids (sorted by id) sorted by
        name."""
        text = json.dumps(_decoded(value), default=str, sort_keys=True)
        by_id = {v.lower(): f"<{k}>" for k, v in self.ids.items()}
        text = UUID_RE.sub(lambda m: by_id.get(m.group(0).lower(), "<?>"), text)
        text = re.sub(r"stamped \d+ s ahead", "stamped N s ahead", SERVER_HLC_RE.sub("<server-hlc>", text))
        return _sorted_names(json.loads(text))


def _decoded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _decoded(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list | tuple):
        return [_decoded(v) for v in value]
    if isinstance(value, str) and value.startswith(("{", "[")):
        try:
            return _decoded(json.loads(value))
        except ValueError:
            return value
    return value


def _sorted_names(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_names(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(v, str) and v.startswith("<") and v.endswith(">") for v in value):
            return sorted(value)
        return [_sorted_names(v) for v in value]
    return value


def _hlc(n: int) -> HLC:
    return HLC(T0 + n, 0, NODE)


def _create(entity: str, record_id: str, values: dict[str, Any], n: int, op_id: str) -> dict[str, Any]:
    change = make_create(
        entity, record_id, values, schema=DEFAULT_SCHEMA, node=NODE, hlc=_hlc(n), op_id=op_id
    )
    return change_to_wire(change)


def _edit_of_create(
    entity: str, record_id: str, created: dict[str, Any], edit: dict[str, Any], n: int, op_id: str
) -> dict[str, Any]:
    create = make_create(
        entity, record_id, created, schema=DEFAULT_SCHEMA, node=NODE, hlc=_hlc(n - 1), op_id="unused"
    )
    change = make_edit(
        merge_change(None, create, DEFAULT_SCHEMA).state,
        edit,
        schema=DEFAULT_SCHEMA,
        node=NODE,
        hlc=_hlc(n),
        op_id=op_id,
    )
    assert change is not None
    return change_to_wire(change)


def _edit_on_server(org: Org, entity: str, record_id: str, edit: dict[str, Any], n: int, op_id: str) -> Any:
    record = org.owner.get(f"{org.base}/sync/records/{entity}/{record_id}").json()
    state = state_from_wire(entity, record_id, record["state"])
    change = make_edit(state, edit, schema=DEFAULT_SCHEMA, node=NODE, hlc=_hlc(n), op_id=op_id)
    assert change is not None
    return change_to_wire(change)


Runs = list[tuple[list[str], bool]]
"""What the bulk path wrote: per run of new records, their op ids and whether the insert succeeded."""


@contextmanager
def _bulk_creates(enabled: bool, runs: Runs) -> Iterator[None]:
    insert = push_service._insert_new_records

    def spy(session: Any, *, news: list[Any], **kw: Any) -> bool:
        written = insert(session, news=news, **kw)
        runs.append(([new.change.op_id for new in news], written))
        return written

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(push_service, "push", functools.partial(_original_push, bulk_creates=enabled))
        mp.setattr(push_service, "_insert_new_records", spy)
        yield


_original_push = push_service.push


def _push(org: Org, changes: list[dict[str, Any]], *, bulk: bool, runs: Runs) -> list[dict[str, Any]]:
    with _bulk_creates(bulk, runs):
        r = org.owner.post(f"{org.base}/sync/push", json={"protocol": 1, "device": NODE, "changes": changes})
    assert r.status_code == 200, r.text
    return list(r.json()["results"])


def _tables(app: FastAPI, org_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row the organization has in the tables a push writes."""
    tables: list[Any] = [spec.table for spec in SPECS.values()]
    tables += [link.table for spec in SPECS.values() for link in spec.links.values()]
    tables += [PromptVersion, SyncRecordState, SyncOp, SyncConflict, SyncRemap]
    out: dict[str, list[dict[str, Any]]] = {}
    with unit_of_work(app.state.services.session_factory, read_only=True) as session:
        set_tenant(session, org_id=uuid.UUID(org_id))
        for table in dict.fromkeys(tables):
            t = table.__table__
            rows = session.execute(select(t).where(t.c.org_id == uuid.UUID(org_id))).mappings()
            out[t.name] = [dict(row) for row in rows]
    for row in out[SyncRecordState.__tablename__]:  # stored as store_state writes it
        assert row["state"] == orjson.dumps(orjson.loads(row["state"])).decode()
    return out


def _snapshot(app: FastAPI, org: Org, names: Names) -> dict[str, Any]:
    o = org.owner
    snap: dict[str, Any] = {}
    for name, rows in _tables(app, org.id).items():
        snap[name] = sorted((names.normalize(r) for r in rows), key=lambda r: json.dumps(r, sort_keys=True))
    for slug in ("tags", "custom-gpts", "prompts", "outputs"):
        items = o.get(f"{org.base}/{slug}", params={"limit": 500}).json()["items"]
        snap[f"rest:{slug}"] = sorted((names.normalize(i) for i in items), key=lambda i: i["id"])
    feed = o.get(f"{org.base}/sync/changes", params={"protocol": 1, "since": 0, "limit": 5000}).json()
    assert not feed["has_more"]
    snap["feed"] = names.normalize(feed)
    assert stale_feed_data(app.state.services.session_factory, org.id) == []
    audit = o.get(f"{org.base}/audit", params={"source": "sync", "limit": 500}).json()["items"]
    snap["audit"] = sorted(
        (names.normalize({k: v for k, v in item.items() if k != "id"}) for item in audit),
        key=lambda a: (a["revision"] or 0, a["kind"], a["entity_id"]),
    )
    return snap


@dataclass
class Fresh:
    org: Org
    names: Names


def _fresh(client: TestClient, owner: Actor, *, name: str) -> Fresh:
    org = new_org(client, name=name, owner=owner)
    seeded = seed_library(org)
    names = Names({f"seed-{k}": v for k, v in seeded.items()})
    names.ids["org"] = org.id
    names.ids["owner"] = owner.user_id
    return Fresh(org, names)


def _same_both_ways(
    app: FastAPI,
    client: TestClient,
    batches: Callable[[Fresh], list[list[dict[str, Any]]]],
) -> tuple[list[list[dict[str, Any]]], Runs]:
    """Push the batches (built per organization) to two fresh organizations, per op and in bulk; compare
    everything. Returns the answers and the bulk path's runs."""
    owner = register(client, name="bulk")
    answers: dict[bool, list[list[dict[str, Any]]]] = {}
    snapshots: dict[bool, dict[str, Any]] = {}
    runs: dict[bool, Runs] = {False: [], True: []}
    for bulk in (False, True):
        fresh = _fresh(client, owner, name=f"Bulk {bulk}")
        answers[bulk] = []
        for changes in batches(fresh):
            answers[bulk].append(
                [fresh.names.normalize(r) for r in _push(fresh.org, changes, bulk=bulk, runs=runs[bulk])]
            )
        snapshots[bulk] = _snapshot(app, fresh.org, fresh.names)
    for per_op, bulk in zip(answers[False], answers[True], strict=True):
        for a, b in zip(per_op, bulk, strict=True):
            assert b == a
    assert runs[False] == []
    for key in snapshots[False]:
        assert snapshots[True][key] == snapshots[False][key], key
    return answers[False], runs[True]


def test_a_mixed_batch_is_answered_and_stored_the_same_in_bulk(app, client) -> None:  # type: ignore[no-untyped-def]
    # a record of another organization: creating its id here cannot be stored (the bulk path's insert
    # fails and its run goes through the per-op path)
    other = new_org(client, name="Other")
    taken = seed_library(other)["output"]

    def batches(fresh: Fresh) -> list[list[dict[str, Any]]]:
        org, n = fresh.org, fresh.names
        pre = _create(
            "output", n("o-pre"), {"prompt_id": n("seed-prompt"), "content": "earlier push"}, 1, "op-pre"
        )
        o1_values = {
            "prompt_id": n("p1"),
            "content": "first output\nline two",
            "custom_gpt_id": n("gpt1"),
            "accuracy_level_id": n("seed-accuracy"),
            "knowledge_type_ids": [n("seed-knowledge")],
            "tag_ids": [n("seed-tag"), n("t-new")],
        }
        o1 = _create("output", n("o1"), o1_values, 25, "op-o1")
        changes = [
            _create("tag", n("t-new"), {"name": "bulk-tag", "description": "new"}, 10, "op-t-new"),
            _create("tag", n("t-dup"), {"name": "PYTHON"}, 11, "op-t-dup"),  # merged into the seeded tag
            _create(
                "custom_gpt",
                n("gpt1"),
                {
                    "name": "Bulk GPT",
                    "instructions": "be brief",
                    "gpt_model_id": n("seed-gpt_model"),
                    "agent_group_ids": [n("seed-agent_group")],
                },
                20,
                "op-gpt1",
            ),
            _create(
                "prompt",
                n("p1"),
                {
                    "title": "Bulk prompt",
                    "body": "do it\n",
                    "development_stage_id": n("seed-stage"),
                    "tag_ids": [n("t-new"), n("seed-tag")],
                },
                21,
                "op-p1",
            ),
            _create("prompt", n("p2"), {"title": "Dup", "body": "b", "tag_ids": [n("t-dup")]}, 22, "op-p2"),
            _create("custom_gpt", n("gpt2"), {"name": "Bare"}, 23, "op-gpt2"),
            o1,
            # refused: references a prompt created later in the batch
            _create(
                "output", n("o-early"), {"prompt_id": n("p-late"), "content": "too early"}, 26, "op-early"
            ),
            # refused: a tag nobody has
            _create(
                "output",
                n("o-missing"),
                {"prompt_id": n("p1"), "content": "x", "tag_ids": [n("nowhere")]},
                27,
                "op-missing",
            ),
            _create("prompt", n("p-late"), {"title": "Late", "body": "b"}, 28, "op-p-late"),
            pre,  # replayed from the earlier push
            _edit_on_server(
                org, "output", n("seed-output"), {"content": "edited offline"}, 30, "op-edit-seed"
            ),
            o1,  # the same op twice in one push
            _edit_of_create("output", n("o1"), o1_values, {"notes": "noted"}, 26, "op-edit-o1"),
            _create("output", n("o2"), {"prompt_id": n("p2"), "content": "mine"}, 40, "op-o2"),
            _create("output", n("o3"), {"prompt_id": n("p-late"), "content": "third"}, 41, "op-o3"),
            # the same record created twice, concurrently: a conflict on the per-op path
            _create("output", n("o2"), {"prompt_id": n("p2"), "content": "theirs"}, 42, "op-o2-again"),
            _create("output", n("o4"), {"prompt_id": n("p1"), "content": "run a"}, 43, "op-o4"),
            _create("output", taken, {"prompt_id": n("p1"), "content": "collides"}, 44, "op-taken"),
            _create("output", n("o5"), {"prompt_id": n("p1"), "content": "run b"}, 45, "op-o5"),
            _create("prompt", n("p-long"), {"title": "t" * 301}, 46, "op-long"),
            _create("prompt", n("p-blank"), {"title": "  "}, 47, "op-blank"),
            {
                **_create("output", n("o-future"), {"prompt_id": n("p1"), "content": "f"}, 48, "op-future"),
                "hlc": HLC(T0 + 10 * 86_400_000, 0, NODE).encode(),
            },
            {"op_id": "op-malformed", "entity": "output", "id": n("o-bad"), "kind": "create"},
            _create("output", n("o6"), {"prompt_id": n("gpt1"), "content": "wrong table"}, 49, "op-wrong"),
            _create("output", n("o7"), {"prompt_id": n("p2"), "content": "last"}, 50, "op-o7"),
        ]
        return [[pre], changes]

    answers, runs = _same_both_ways(app, client, batches)
    assert runs == [
        (["op-pre"], True),
        (["op-gpt1", "op-p1", "op-p2", "op-gpt2", "op-o1"], True),
        (["op-p-late"], True),
        (["op-o2", "op-o3"], True),
        (["op-o4", "op-taken", "op-o5"], False),  # handed to the per-op path
        (["op-o7"], True),
    ]
    by_op = {a["op_id"]: a for a in answers[1]}
    assert by_op["op-t-dup"]["remapped_to"] == "<seed-tag>"
    assert by_op["op-early"]["error"]["code"] == "unknown-reference"
    assert by_op["op-missing"]["error"]["code"] == "unknown-reference"
    assert by_op["op-wrong"]["error"]["code"] == "unknown-reference"
    assert by_op["op-pre"]["replayed"] is True
    assert [a["replayed"] for a in answers[1] if a["op_id"] == "op-o1"] == [False, True]
    assert by_op["op-edit-o1"]["status"] == "applied"
    assert by_op["op-o2-again"]["status"] == "conflict"
    assert by_op["op-taken"]["error"]["code"] == "not-found"
    assert by_op["op-taken"]["error"]["field"] == "id"  # the id is another organization's (it named none)
    assert by_op["op-long"]["error"]["code"] == "invalid"
    assert by_op["op-blank"]["error"]["code"] == "invalid"
    assert by_op["op-future"]["error"]["code"] == "clock-drift"
    assert by_op["op-future"]["error"]["field"] == "hlc"  # the field to look at (it named none; QA)
    assert by_op["op-malformed"]["error"]["code"] == "invalid"
    for op in ("op-gpt1", "op-p1", "op-p2", "op-gpt2", "op-o3", "op-o4", "op-o5", "op-o7"):
        assert by_op[op]["status"] == "applied", by_op[op]
    revisions = [a["revision"] for a in answers[1] if a.get("revision") and not a.get("replayed")]
    assert revisions == sorted(set(revisions))


# -- random mixes ------------------------------------------------------------------------------------------

_Op = tuple[str, int, int, bool]
"""(entity: prompt | output | gpt, slot, reference slot (-1: none, -2: a missing record), replay)"""

_ops = st.lists(
    st.tuples(
        st.sampled_from(["prompt", "output", "gpt"]),
        st.integers(0, 5),
        st.integers(-2, 5),
        st.booleans(),
    ),
    min_size=1,
    max_size=14,
)


def _random_batch(fresh: Fresh, ops: list[_Op]) -> list[dict[str, Any]]:
    n = fresh.names
    changes: list[dict[str, Any]] = []
    for i, (entity, slot, ref, replay) in enumerate(ops):
        if replay and changes:
            changes.append(changes[slot % len(changes)])
            continue
        target = "nowhere" if ref == -2 else f"prompt{ref}"
        if entity == "prompt":
            values: dict[str, Any] = {"title": f"P{i}", "tag_ids": [n("seed-tag")]}
            if ref >= 0 or ref == -2:
                values["tag_ids"] = [n("seed-tag"), n("nowhere") if ref == -2 else n("seed-tag")]
            changes.append(_create("prompt", n(f"prompt{slot}"), values, 100 + i, f"op-{i}"))
        elif entity == "gpt":
            gpt_values: dict[str, Any] = {"name": f"G{i}", "agent_group_ids": [n("seed-agent_group")]}
            changes.append(_create("custom_gpt", n(f"gpt{slot}"), gpt_values, 100 + i, f"op-{i}"))
        else:
            out: dict[str, Any] = {
                "prompt_id": n("seed-prompt") if ref == -1 else n(target),
                "content": f"O{i}",
                "custom_gpt_id": n(f"gpt{slot}") if slot % 2 else None,
                "tag_ids": [n("seed-tag")],
            }
            changes.append(_create("output", n(f"output{slot}"), out, 100 + i, f"op-{i}"))
    return changes


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=_ops)
def test_random_creates_and_references_come_out_the_same(app, client, ops: list[_Op]) -> None:  # type: ignore[no-untyped-def]
    _same_both_ways(app, client, lambda fresh: [_random_batch(fresh, ops)])


def test_bulk_created_records_get_their_feed_data_in_one_pass(app, client) -> None:  # type: ignore[no-untyped-def]
    """New records written in bulk store their pull-feed data with their states, and so does an edit on the
    per-op path (a record written again later in the same push: a new revision, its own data): the commit
    neither rewrites those state rows nor looks for stale states, and a replay changes nothing."""
    org = new_org(client, name="Feed data")
    seeded = seed_library(org)
    names = Names({f"seed-{k}": v for k, v in seeded.items()})
    n = names
    created = {"prompt_id": n("seed-prompt"), "content": "before", "tag_ids": [n("seed-tag")]}
    changes = [
        _create("output", n(f"o{i}"), {**created, "content": f"output {i}"}, 10 + i, f"op-o{i}")
        for i in range(5)
    ]
    changes.append(
        _edit_of_create("output", n("o2"), {**created, "content": "output 2"}, {"tag_ids": []}, 12, "op-e")
    )
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = app.state.services.engine
    runs: Runs = []
    event.listen(engine, "before_cursor_execute", seen)
    try:
        results = _push(org, changes, bulk=True, runs=runs)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert [r["status"] for r in results] == ["applied"] * 6
    assert runs == [([f"op-o{i}" for i in range(5)], True)]
    refreshes = [s for s in statements if s.lstrip().startswith("UPDATE sync_record_states AS s SET data")]
    assert refreshes == []  # neither the five creates nor the edit
    assert not [s for s in statements if "AS stale" in s]  # every revision of the push stored its own
    assert stale_feed_data(app.state.services.session_factory, org.id) == []
    feed = org.owner.get(f"{org.base}/sync/changes", params={"protocol": 1, "since": 0, "limit": 5000}).json()
    pulled = {r["id"]: r["data"] for r in feed["records"] if r["entity"] == "outputs"}
    for i in range(5):
        rest = org.owner.get(f"{org.base}/outputs/{n(f'o{i}')}").json()
        assert pulled[n(f"o{i}")] == rest
    assert pulled[n("o2")]["tag_ids"] == []
    replay = _push(org, changes, bulk=True, runs=runs)
    assert all(r["replayed"] for r in replay)
    assert stale_feed_data(app.state.services.session_factory, org.id) == []
