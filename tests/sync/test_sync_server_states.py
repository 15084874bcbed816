"""The server keeps each record's merge state in step with REST writes, whatever path wrote the row."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from outputhub.server.api.sync.records import SPECS, derive_state, row_values
from outputhub.server.storage.database import unit_of_work
from outputhub.server.storage.tables import Output, Prompt, SyncRecordState
from outputhub.sync.protocol import state_from_wire
from tests.support.client import new_org, seed_library


def _stored(app, org_id: str, table: type, spec_name: str) -> dict[uuid.UUID, tuple[object, object]]:  # type: ignore[no-untyped-def]
    spec = SPECS[spec_name]
    factory = app.state.services.session_factory
    with unit_of_work(factory, read_only=True) as session:
        from outputhub.server.storage.database import set_tenant

        set_tenant(session, org_id=uuid.UUID(org_id))
        rows = list(session.execute(select(table).where(table.org_id == uuid.UUID(org_id))).scalars())
        values = row_values(session, spec, rows)
        stored = {
            s.record_id: s
            for s in session.execute(
                select(SyncRecordState).where(SyncRecordState.org_id == uuid.UUID(org_id))
            ).scalars()
        }
        out = {}
        for row in rows:
            item = stored[row.id]
            assert item.revision == row.revision, (
                f"{spec_name} {row.id}: state not stored at the row's revision"
            )
            out[row.id] = (
                state_from_wire(spec_name, str(row.id), json.loads(item.state)),
                derive_state(spec, row, values[row.id], None) if row.revision and not row.deleted else None,
            )
        return out


def test_bulk_created_outputs_have_the_state_the_engine_would_derive(app, client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client, name="States")
    ids = seed_library(org)
    items = [
        {"prompt_id": ids["prompt"], "content": f"answer {n}", "tag_ids": [ids["tag"]], "notes": ""}
        for n in range(5)
    ]
    assert org.owner.post(f"{org.base}/outputs/bulk", json={"items": items}).status_code == 201
    states = _stored(app, org.id, Output, "output")
    assert len(states) == 6
    for stored, derived in states.values():
        assert stored == derived


def test_rest_edits_and_bulk_statements_update_the_stored_state(app, client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client, name="States2")
    ids = seed_library(org)
    org.owner.patch(f"{org.base}/prompts/{ids['prompt']}", json={"title": "Renamed", "tag_ids": []})
    # deleting a stage clears prompts' development_stage_id with an UPDATE statement
    assert org.owner.delete(f"{org.base}/development-stages/{ids['stage']}").status_code == 204
    states = _stored(app, org.id, Prompt, "prompt")
    stored, _ = states[uuid.UUID(ids["prompt"])]
    assert stored.values["title"] == "Renamed"
    assert stored.values["tag_ids"] == frozenset()
    assert stored.values["development_stage_id"] is None
    assert stored.conflicts == ()
