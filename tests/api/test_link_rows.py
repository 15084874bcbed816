"""An edit writes only the link rows that change (REST and sync alike)."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, text
from sqlalchemy.types import Uuid

from outputhub.server.storage.database import set_tenant, unit_of_work
from tests.support.client import new_org, seed_library


def _link_rows(app, org_id: str, prompt_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Each of the prompt's tag links with the physical identity of its row (PostgreSQL's ``xmin``, SQLite's
    ``rowid``): a row deleted and inserted again gets a new one."""
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org_id))
        identity = "xmin::text" if session.get_bind().dialect.name == "postgresql" else "rowid"
        rows = session.execute(
            text(f"SELECT tag_id, {identity} FROM prompt_tags WHERE prompt_id = :p").bindparams(
                bindparam("p", type_=Uuid)
            ),
            {"p": uuid.UUID(prompt_id)},
        )
        return {str(uuid.UUID(str(tag))): str(ident) for tag, ident in rows}


def test_an_edit_writes_only_the_link_rows_that_change(app, client) -> None:  # type: ignore[no-untyped-def]
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    second = o.post(f"{org.base}/tags", json={"name": "second"}).json()["id"]
    third = o.post(f"{org.base}/tags", json={"name": "third"}).json()["id"]
    prompt = f"{org.base}/prompts/{ids['prompt']}"
    assert o.patch(prompt, json={"tag_ids": [ids["tag"], second]}).status_code == 200
    before = _link_rows(app, org.id, ids["prompt"])
    assert set(before) == {ids["tag"], second}

    assert o.patch(prompt, json={"title": "Only the title"}).status_code == 200
    assert _link_rows(app, org.id, ids["prompt"]) == before  # untouched

    assert o.patch(prompt, json={"tag_ids": [second, third]}).status_code == 200
    after = _link_rows(app, org.id, ids["prompt"])
    assert set(after) == {second, third}
    assert after[second] == before[second]  # kept as it was; the first removed, the third added
    assert o.get(prompt).json()["tag_ids"] == sorted([second, third])
    assert o.patch(prompt, json={"tag_ids": []}).status_code == 200
    assert _link_rows(app, org.id, ids["prompt"]) == {}
