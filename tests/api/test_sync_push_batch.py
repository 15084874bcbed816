"""One push, many ops: what an op learns from the ops before it in the same batch (push reads records,
references and remaps once per batch and reserves revisions up front)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from outputhub.common.clock import HLC
from outputhub.sync.engine import DEFAULT_SCHEMA, make_create, make_edit, merge_change
from outputhub.sync.protocol import change_to_wire
from tests.support.client import new_org, seed_library

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
