"""A record made offline keeps the time it was made: the server stores its create's clock time as
``created_at``, not the push's (QA: a tag made in the morning and synced at night showed the night)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from outputhub.common.clock import HLC
from outputhub.sync.engine import DEFAULT_SCHEMA, make_create
from outputhub.sync.protocol import change_to_wire
from tests.support.client import new_org, seed_library

NODE = "offline-laptop"
HOUR_MS = 3_600_000


def _create(entity: str, values: dict[str, Any], wall_ms: int) -> tuple[str, dict[str, Any]]:
    record_id = str(uuid.uuid4())
    change = make_create(
        entity,
        record_id,
        values,
        schema=DEFAULT_SCHEMA,
        node=NODE,
        hlc=HLC(wall_ms, 0, NODE),
        op_id=f"op-{record_id}",
    )
    return record_id, change_to_wire(change)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_records_made_offline_keep_their_creation_time_and_none_is_after_the_push(client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client, name="Offline times")
    ids = seed_library(org)
    now_ms = int(time.time() * 1000)
    tag_id, tag = _create("tag", {"name": "made-this-morning"}, now_ms - 9 * HOUR_MS)  # a lookup: per op
    prompt_id, prompt = _create("prompt", {"title": "Morning", "body": "b"}, now_ms - 8 * HOUR_MS)  # in bulk
    output_id, output = _create(
        "output", {"prompt_id": ids["prompt"], "content": "c"}, now_ms + HOUR_MS // 2
    )  # a clock half an hour ahead (within the accepted drift)
    before = datetime.now(UTC)
    pushed = org.owner.post(
        f"{org.base}/sync/push", json={"protocol": 4, "device": NODE, "changes": [tag, prompt, output]}
    )
    after = datetime.now(UTC)
    assert pushed.status_code == 200, pushed.text
    assert [r["status"] for r in pushed.json()["results"]] == ["applied"] * 3

    def made(path: str) -> datetime:
        return _at(org.owner.get(f"{org.base}/{path}").json()["created_at"])

    assert abs((made(f"tags/{tag_id}") - before).total_seconds() + 9 * 3600) < 2
    assert abs((made(f"prompts/{prompt_id}") - before).total_seconds() + 8 * 3600) < 2
    assert before <= made(f"outputs/{output_id}") <= after  # never later than the push
    # the prompt's first version was made with it; its update time is the push's
    versions = org.owner.get(f"{org.base}/prompts/{prompt_id}/versions").json()
    items = versions["items"] if isinstance(versions, dict) else versions
    assert [_at(v["created_at"]) for v in items] == [made(f"prompts/{prompt_id}")]
    assert before <= _at(org.owner.get(f"{org.base}/prompts/{prompt_id}").json()["updated_at"]) <= after
