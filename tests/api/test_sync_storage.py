"""How PostgreSQL stores the pull's data: lz4-compressed (migration 0010)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from outputhub.server.storage.database import set_tenant, unit_of_work
from tests.support.client import new_org, seed_library


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_stored_pull_data_and_states_are_lz4_compressed(app, client) -> None:
    org = new_org(client)
    ids = seed_library(org)
    content = "A long output that PostgreSQL stores out of line, compressed.\n" * 60
    made = org.owner.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": content})
    assert made.status_code == 201, made.text
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        methods = session.execute(
            text(
                "SELECT pg_column_compression(data), pg_column_compression(state) FROM sync_record_states "
                "WHERE record_id = :id"
            ),
            {"id": uuid.UUID(made.json()["id"])},
        ).one()
    assert methods[0] == "lz4"  # data (3.7 KB) is compressed; the state may be too short to be
    assert methods[1] in ("lz4", None)
    pulled = org.owner.get(f"{org.base}/sync/changes", params={"protocol": 3, "since": 0, "limit": 1000})
    assert pulled.status_code == 200, pulled.text
    records = pulled.json()["records"]
    assert [r["data"]["content"] for r in records if r["id"] == made.json()["id"]] == [content]
