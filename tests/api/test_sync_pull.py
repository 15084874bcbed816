"""The pull feed: every change since a cursor, in revision order, tombstones included, paged safely."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from outputhub.common.sync import SUPPORTED_PROTOCOLS
from outputhub.server.api.sync import service as sync_service
from outputhub.server.api.sync.feed import FEEDS, FeedRow, first_rows
from outputhub.server.api.sync.service import purge_tombstones
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.server.storage.tables import SyncRecordState
from tests.support.client import Org, add_member, new_org, seed_library
from tests.support.feed import stale_feed_data


def pull_all(actor, org, *, since: int = 0, limit: int = 1000) -> tuple[list[dict], int]:
    records: list[dict] = []
    while True:
        r = actor.get(f"{org.base}/sync/changes", params={"protocol": 1, "since": since, "limit": limit})
        assert r.status_code == 200, r.text
        page = r.json()
        records += page["records"]
        assert page["next_since"] >= since
        since = page["next_since"]
        if not page["has_more"]:
            return records, since


def test_pull_replays_the_library_and_then_only_what_changed(client):
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    records, cursor = pull_all(o, org)
    revisions = [r["revision"] for r in records]
    assert revisions == sorted(revisions)
    by_id = {r["id"]: r for r in records}
    assert by_id[ids["prompt"]]["entity"] == "prompts"
    assert by_id[ids["prompt"]]["data"]["tag_ids"] == [ids["tag"]]
    assert by_id[ids["output"]]["data"]["knowledge_type_ids"] == [ids["knowledge"]]
    assert {r["entity"] for r in records} >= {"tags", "accuracy_levels", "custom_gpts", "prompts", "outputs"}
    # referenced lookups come before the records using them
    position = {r["id"]: i for i, r in enumerate(records)}
    assert position[ids["tag"]] < position[ids["prompt"]] < position[ids["output"]]

    # nothing new: an empty page at the same cursor
    again, same = pull_all(o, org, since=cursor)
    assert again == [] and same == cursor

    # an edit, a delete (tombstone) and a lookup delete that touches its users
    o.patch(f"{org.base}/prompts/{ids['prompt']}", json={"title": "Renamed"})
    o.delete(f"{org.base}/outputs/{ids['output']}")
    o.delete(f"{org.base}/knowledge-types/{ids['knowledge']}")
    changed, _ = pull_all(o, org, since=cursor)
    kinds = {(r["entity"], r["id"]): r for r in changed}
    assert kinds[("prompts", ids["prompt"])]["data"]["title"] == "Renamed"
    assert kinds[("outputs", ids["output"])]["deleted"] is True
    assert kinds[("knowledge_types", ids["knowledge"])]["deleted"] is True


def test_head_is_the_newest_revision_whatever_the_cursor(client):
    """``head`` is the organization's newest revision, also for a cursor at or beyond it (it answered the
    cursor: ``since=5000`` gave ``"head": 5000``; found by QA)."""
    org = new_org(client)
    seed_library(org)
    o = org.owner
    _, newest = pull_all(o, org)
    for protocol in sorted(SUPPORTED_PROTOCOLS):
        for since in (0, newest - 1, newest, newest + 1, 5000, 2**63 - 1):
            r = o.get(f"{org.base}/sync/changes", params={"protocol": protocol, "since": since, "limit": 1})
            assert r.status_code == 200, r.text
            assert r.json()["head"] == newest, (protocol, since)


def test_a_page_holds_limit_records_and_a_cursor_beyond_head_comes_back_to_it(client):
    """Records at revisions of their own come ``limit`` to a page (pages held ``limit - 1``: the page was cut
    before the last record's revision even when the next record's revision was another; found by QA). A
    cursor beyond head (a server restored from an older backup) is answered with head as the next cursor,
    not echoed: kept, it would skip every revision written until head passed it (found by QA)."""
    org = new_org(client)
    o = org.owner
    _, start = pull_all(o, org)
    made = [o.post(f"{org.base}/tags", json={"name": f"paged {n}"}).json()["id"] for n in range(10)]
    for limit in (1, 2, 3, 4):
        pages, since = [], start
        while True:
            params = {"protocol": 4, "since": since, "limit": limit}
            page = o.get(f"{org.base}/sync/changes", params=params).json()
            pages.append([r["id"] for r in page["records"]])
            since = page["next_since"]
            if not page["has_more"]:
                break
        assert [i for ids in pages for i in ids] == made
        assert [len(ids) for ids in pages[:-1]] == [limit] * (len(pages) - 1), (limit, pages)
        assert len(pages) == -(-len(made) // limit)
    head = since
    for protocol in sorted(SUPPORTED_PROTOCOLS):
        page = o.get(f"{org.base}/sync/changes", params={"protocol": protocol, "since": head + 500}).json()
        assert (page["records"], page["next_since"], page["has_more"]) == ([], head, False), protocol
    along = o.post(
        f"{org.base}/sync/push",
        json={"protocol": 4, "device": "d", "changes": [], "pull": {"since": head + 500}},
    ).json()
    assert along["changes"]["next_since"] == head
    too_far = o.post(
        f"{org.base}/sync/push",
        json={"protocol": 4, "device": "d", "changes": [], "pull": {"since": 10**20}},
    )
    assert too_far.status_code == 422, too_far.text
    assert [e["field"] for e in too_far.json()["errors"]] == ["body.pull.since"]


def test_small_pages_never_split_a_revision_and_lose_nothing(client):
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    o.post(
        f"{org.base}/outputs/bulk",
        json={
            "items": [
                {"prompt_id": ids["prompt"], "content": f"{i}", "tag_ids": [ids["tag"]] if i % 3 else []}
                for i in range(30)
            ]
        },
    )
    # deleting the tag gives the tag, the prompt and the 21 outputs that held it one shared revision, larger
    # than the small pages below
    o.delete(f"{org.base}/tags/{ids['tag']}")
    full, end = pull_all(o, org, limit=1000)
    shared = [r for r in full if r["revision"] == end]
    assert len(shared) == 23
    for limit in (1, 3, 7, 22, 23, 24):
        paged, paged_end = pull_all(o, org, limit=limit)
        assert paged_end == end
        assert [(r["entity"], r["id"], r["revision"]) for r in paged] == [
            (r["entity"], r["id"], r["revision"]) for r in full
        ]


def test_large_records_make_shorter_pages_and_lose_nothing(client, monkeypatch):
    """A page ends before its records pass ``PULL_PAGE_BYTES`` (32 MiB; 60 KB here), whatever ``limit``
    asks for, and still never splits a revision: paging through large records gets every one once."""
    monkeypatch.setattr(sync_service, "PULL_PAGE_BYTES", 60_000)
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    _, start = pull_all(o, org)
    contents = [f"{i} " + "a long output " * 1_400 for i in range(12)]  # ~20 KB each
    r = o.post(
        f"{org.base}/outputs/bulk",
        json={"items": [{"prompt_id": ids["prompt"], "content": c} for c in contents]},
    )
    assert r.status_code == 201, r.text
    sizes: list[int] = []
    since, seen = start, []
    while True:
        page = o.get(f"{org.base}/sync/changes", params={"protocol": 3, "since": since, "limit": 1000}).json()
        sizes.append(len(page["records"]))
        seen += page["records"]
        since = page["next_since"]
        if not page["has_more"]:
            break
    assert [r["data"]["content"] for r in seen] == contents, "every record once, in revision order"
    assert len(sizes) >= 4 and max(sizes) <= 3, sizes  # ~20 KB of content (+ state) each: 2-3 per 60 KB page
    # a record larger than the whole budget still comes, alone on its page
    big = o.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "x" * 100_000})
    assert big.status_code == 201, big.text
    page = o.get(f"{org.base}/sync/changes", params={"protocol": 3, "since": since, "limit": 1000}).json()
    assert [r["id"] for r in page["records"]] == [big.json()["id"]] and not page["has_more"]


def test_the_server_reads_large_records_only_up_to_the_page_budget(app, client):
    """Not only the answer is bounded: the statement that reads a page's candidates stops each entity's rows
    in the database once its earlier revisions pass the byte budget (5,000 outputs of 1 MB would otherwise
    be read, 5 GB, to send 32 MiB of them). The row the budget is passed at is still read (the page is cut
    there), and a bound larger than every row reads them all."""
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    _, start = pull_all(o, org)
    contents = [f"{i} " + "ein großer Ausgabetext " * 900 for i in range(12)]  # ~20 KB, multibyte
    r = o.post(
        f"{org.base}/outputs/bulk",
        json={"items": [{"prompt_id": ids["prompt"], "content": c} for c in contents]},
    )
    assert r.status_code == 201, r.text

    def outputs_read(budget: int) -> list[FeedRow]:
        with unit_of_work(app.state.services.session_factory, read_only=True) as session:
            set_tenant(session, org_id=uuid.UUID(org.id))
            rows = first_rows(
                session, FEEDS, org_id=uuid.UUID(org.id), since=start, n=1001, form=3, budget=budget
            )
        return sorted((row for row in rows if row.feed.name == "outputs"), key=lambda row: row.revision)

    everything = outputs_read(10**12)
    assert [len(row.data) > 20_000 for row in everything] == [True] * 12
    assert all(row.size >= len(row.data.encode()) for row in everything), "sizes count bytes"
    budget = 60_000
    bounded = outputs_read(budget)
    expected = 0
    while expected < 12 and sum(row.size for row in everything[:expected]) <= budget:
        expected += 1  # the rows whose earlier rows fit, and the one that passes the budget
    assert 2 <= expected < 12
    assert [row.id for row in bounded] == [row.id for row in everything[:expected]]


def test_viewer_may_pull_and_protocol_is_checked(client):
    org = new_org(client)
    viewer = add_member(org, "viewer")
    assert viewer.get(f"{org.base}/sync/changes", params={"protocol": 1}).status_code == 200
    r = viewer.get(f"{org.base}/sync/changes", params={"protocol": 99})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.protocol"
    r = viewer.get(f"{org.base}/sync/changes")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.protocol"


REST_PATHS = {
    "tags": "tags",
    "knowledge_types": "knowledge-types",
    "accuracy_levels": "accuracy-levels",
    "development_stages": "development-stages",
    "gpt_models": "gpt-models",
    "agent_groups": "agent-groups",
    "custom_gpts": "custom-gpts",
    "prompts": "prompts",
    "outputs": "outputs",
}


def test_pulled_data_is_exactly_what_the_rest_api_serves(client):
    """The feed reads rows with its own queries (server/api/sync/feed.py): ids, timestamps, nulls, link
    lists and their order must come out exactly as the read schemas serialize them."""
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    second = o.post(f"{org.base}/tags", json={"name": "zeta"}).json()["id"]
    bare = o.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": "no links"})
    assert bare.status_code == 201, bare.text
    linked = o.post(
        f"{org.base}/outputs",
        json={"prompt_id": ids["prompt"], "content": "two tags", "tag_ids": [second, ids["tag"]]},
    )
    assert linked.status_code == 201, linked.text
    o.patch(f"{org.base}/prompts/{ids['prompt']}", json={"title": "Renamed", "tag_ids": [second, ids["tag"]]})
    records, _ = pull_all(o, org)
    assert {r["entity"] for r in records} == set(REST_PATHS)
    for record in records:
        if record["deleted"]:
            continue
        rest = o.get(f"{org.base}/{REST_PATHS[record['entity']]}/{record['id']}")
        assert rest.status_code == 200, rest.text
        assert record["data"] == rest.json(), record["entity"]
    by_id = {r["id"]: r for r in records}
    assert by_id[bare.json()["id"]]["data"]["tag_ids"] == []
    assert by_id[bare.json()["id"]]["data"]["custom_gpt_id"] is None
    assert sorted(by_id[linked.json()["id"]]["data"]["tag_ids"]) == sorted([second, ids["tag"]])


def _pulled_equals_rest(org, records: list[dict]) -> None:  # type: ignore[no-untyped-def]
    for record in records:
        if record["deleted"]:
            continue
        rest = org.owner.get(f"{org.base}/{REST_PATHS[record['entity']]}/{record['id']}")
        assert rest.status_code == 200, rest.text
        assert record["data"] == rest.json(), record["entity"]


def test_each_records_data_is_stored_at_commit_and_kept_current(app, client):
    """A pull reads each record's data as stored when the transaction that wrote it committed. Every kind
    of write keeps it current: creates, edits of columns and links, a lookup delete (which takes the lookup
    off the records that held it), a purge of tombstones (whose link rows go without a new revision)."""
    import uuid

    factory = app.state.services.session_factory
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    doomed = o.post(f"{org.base}/tags", json={"name": "doomed"}).json()["id"]
    o.patch(f"{org.base}/outputs/{ids['output']}", json={"tag_ids": [ids["tag"], doomed], "notes": "n"})
    o.patch(f"{org.base}/prompts/{ids['prompt']}", json={"title": "Renamed", "tag_ids": [doomed]})
    assert stale_feed_data(factory, org.id) == []
    before = {r["id"]: r["data"] for r in pull_all(o, org)[0]}
    assert doomed in before[ids["output"]]["tag_ids"]

    assert o.delete(f"{org.base}/tags/{doomed}").status_code == 204
    assert stale_feed_data(factory, org.id) == []
    records, _ = pull_all(o, org)
    by_id = {r["id"]: r for r in records}
    assert by_id[ids["output"]]["data"]["tag_ids"] == [ids["tag"]]
    assert by_id[ids["prompt"]]["data"]["tag_ids"] == []
    _pulled_equals_rest(org, records)

    with unit_of_work(factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        assert (
            purge_tombstones(
                session, org_id=uuid.UUID(org.id), before=datetime.now(UTC) + timedelta(1)
            ).records >= 1
        )
    assert stale_feed_data(factory, org.id) == []
    records, _ = pull_all(o, org)
    assert doomed not in {r["id"] for r in records}
    _pulled_equals_rest(org, records)

    # rows stored before the data was (an older server): built on the fly, the same
    with unit_of_work(factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        session.execute(
            update(SyncRecordState).values(data=None).where(SyncRecordState.org_id == uuid.UUID(org.id))
        )
    again, _ = pull_all(o, org)
    assert again == records


def test_protocols_2_and_3_send_compact_states_that_expand_to_protocol_1(app, client):
    """A protocol 2 pull replaces each long text write equal to the record's data with {"=": 1}; protocol 3
    also sends a state written by one operation as {"u": [version, op], "v": {...}}. Expanded with the data,
    every state is the protocol 1 one. Protocol 1 clients still get full states, protocol 2 no uniform
    form."""
    import orjson

    from outputhub.sync.protocol import CURRENT, TABLE_ENTITIES, expand_state_wire

    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    long_text = "An output long enough to be sent once.\n" * 20
    made = o.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": long_text})
    assert made.status_code == 201, made.text
    edited = o.patch(f"{org.base}/outputs/{made.json()['id']}", json={"content": long_text + "More.\n"})
    assert edited.status_code == 200, edited.text
    o.patch(f"{org.base}/prompts/{ids['prompt']}", json={"body": "Act as a careful reviewer. " * 5})
    pages = {}
    for protocol in (1, 2, 3):
        r = o.get(f"{org.base}/sync/changes", params={"protocol": protocol, "since": 0, "limit": 1000})
        assert r.status_code == 200, r.text
        assert r.json()["protocol"] == protocol
        pages[protocol] = r
    assert len(pages[2].content) < len(pages[1].content) - len(long_text)
    full = {r["id"]: r for r in pages[1].json()["records"]}
    compact = {r["id"]: r for r in pages[2].json()["records"]}
    assert full.keys() == compact.keys()
    assert orjson.dumps(CURRENT).decode() not in pages[1].text
    markers = 0
    for ident, record in compact.items():
        assert record["data"] == full[ident]["data"]
        markers += orjson.dumps(record["state"]).count(orjson.dumps(CURRENT))
        entity = TABLE_ENTITIES[record["entity"]]
        assert expand_state_wire(entity, record["state"], record["data"]) == full[ident]["state"]
    assert markers >= 2  # the output's content and the prompt's body
    assert not any("u" in r["state"] for r in compact.values())
    uniform = {r["id"]: r for r in pages[3].json()["records"]}
    assert uniform.keys() == full.keys()
    assert len(pages[3].content) < len(pages[2].content)
    for ident, record in uniform.items():
        assert record["data"] == full[ident]["data"]
        entity = TABLE_ENTITIES[record["entity"]]
        assert expand_state_wire(entity, record["state"], record["data"]) == full[ident]["state"]
    # the lookups seeded once are uniform; the output edited after its creation is not
    assert sum("u" in r["state"] for r in uniform.values()) >= len(ids) - 2
    assert "u" not in uniform[made.json()["id"]]["state"]
    assert stale_feed_data(app.state.services.session_factory, org.id) == []
    unknown = o.get(f"{org.base}/sync/changes", params={"protocol": 99, "since": 0})
    assert unknown.status_code in (400, 422) and "protocol" in unknown.text


def test_upgrading_fills_the_data_of_records_written_before_it_was_stored(app, client):
    """Migration 0008 stores the data of records that have none (written before revision 0006): pulls then
    read it instead of building it. Simulated: data cleared, the schema taken back to 0007 and upgraded."""
    import uuid

    from outputhub.server.storage import migrate
    from tests.support.migrations import downgrade_to

    factory = app.state.services.session_factory
    org = new_org(client)
    seed_library(org)
    before, _ = pull_all(org.owner, org)
    with unit_of_work(factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        session.execute(
            update(SyncRecordState).values(data=None).where(SyncRecordState.org_id == uuid.UUID(org.id))
        )
    assert stale_feed_data(factory, org.id) != []
    engine = app.state.services.engine
    downgrade_to(engine, "0007")
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert stale_feed_data(factory, org.id) == []
    assert pull_all(org.owner, org)[0] == before


def test_upgrading_stores_the_uniform_form_of_records_written_before_protocol_3(app, client):
    """Migration 0009 stores protocol 3's uniform form of the current states stored before it (in protocol
    2's form, or none): protocol 3 pulls then send it, exactly as for records written since. Simulated: each
    stored wire set back to protocol 2's form, the schema taken back to 0008 (which turns the uniform wires
    written since back into protocol 2's form) and upgraded. A record edited since its creation keeps its
    wire."""
    import uuid

    import orjson
    from sqlalchemy import select

    from outputhub.server.storage import migrate
    from outputhub.sync.protocol import TABLE_ENTITIES, compact_state_wire, expand_state_wire
    from tests.support.migrations import downgrade_to

    factory = app.state.services.session_factory
    org = new_org(client)
    org_id = uuid.UUID(org.id)
    ids = seed_library(org)
    o = org.owner
    long_text = "An output long enough to be sent once.\n" * 20
    once = o.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": long_text})
    assert once.status_code == 201, once.text
    made = o.post(f"{org.base}/outputs", json={"prompt_id": ids["prompt"], "content": long_text})
    edited = o.patch(f"{org.base}/outputs/{made.json()['id']}", json={"content": long_text + "More.\n"})
    assert edited.status_code == 200, edited.text
    once_id, edited_id = once.json()["id"], edited.json()["id"]

    def pull(protocol: int) -> dict[str, dict]:
        r = o.get(f"{org.base}/sync/changes", params={"protocol": protocol, "since": 0, "limit": 1000})
        assert r.status_code == 200, r.text
        assert not r.json()["has_more"]
        return {record["id"]: record for record in r.json()["records"]}

    def stored() -> dict[uuid.UUID, tuple[str, str, str | None, str | None]]:
        """record id -> (entity, state, data, wire) as stored."""
        with unit_of_work(factory, read_only=True) as session:
            set_tenant(session, org_id=org_id)
            return {
                ident: (entity, state, data, wire)
                for ident, entity, state, data, wire in session.execute(
                    select(
                        SyncRecordState.record_id,
                        SyncRecordState.entity,
                        SyncRecordState.state,
                        SyncRecordState.data,
                        SyncRecordState.wire,
                    ).where(SyncRecordState.org_id == org_id)
                )
            }

    def wire_text(entity: str, state: str, data: str, *, uniform: bool) -> str | None:
        wire = compact_state_wire(entity, orjson.loads(state), orjson.loads(data), uniform=uniform)
        return None if wire is None else orjson.dumps(wire).decode()

    full = pull(1)
    written = pull(3)
    assert "u" in written[once_id]["state"] and "u" not in written[edited_id]["state"]
    # as stored before protocol 3 (protocol 2's text markers, or none)
    before = stored()
    with unit_of_work(factory) as session:
        set_tenant(session, org_id=org_id)
        for ident, (entity, state, data, _) in before.items():
            assert data is not None
            session.execute(
                update(SyncRecordState)
                .where(SyncRecordState.org_id == org_id, SyncRecordState.record_id == ident)
                .values(wire=wire_text(entity, state, data, uniform=False))
            )
    old = pull(3)
    assert old.keys() == full.keys()
    assert not any("u" in r["state"] for r in old.values())
    assert old[once_id]["state"] != written[once_id]["state"]
    # a record written since: the commit hook stores its uniform form, which the downgrade turns back
    tag = o.post(f"{org.base}/tags", json={"name": "written-since"}).json()["id"]
    assert "u" in pull(3)[tag]["state"]
    edited_wire = stored()[uuid.UUID(edited_id)][3]
    assert edited_wire is not None and "u" not in orjson.loads(edited_wire)

    engine = app.state.services.engine
    downgrade_to(engine, "0008")
    downgraded = stored()
    for entity, state, data, wire in downgraded.values():  # (not pulled here: logins need 0012's columns)
        assert data is not None and wire == wire_text(entity, state, data, uniform=False)
        assert wire is None or "u" not in orjson.loads(wire)

    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert stale_feed_data(factory, org.id) == []
    upgraded = stored()
    # every wire is what the commit hook stores for its state and data (records.wire_texts)
    for entity, state, data, wire in upgraded.values():
        assert data is not None and wire == wire_text(entity, state, data, uniform=True)
    assert upgraded[uuid.UUID(edited_id)][3] == edited_wire
    pulled = pull(3)
    assert pulled.keys() == full.keys() | {tag}
    assert {ident: pulled[ident] for ident in written} == written  # as if written under protocol 3
    assert sum("u" in r["state"] for r in pulled.values()) >= len(ids) - 2 + 2
    assert "u" in pulled[once_id]["state"] and "u" not in pulled[edited_id]["state"]
    protocol_1 = pull(1)
    for ident, record in pulled.items():
        assert record["data"] == protocol_1[ident]["data"]
        entity = TABLE_ENTITIES[record["entity"]]
        assert expand_state_wire(entity, record["state"], record["data"]) == protocol_1[ident]["state"]


def test_a_remap_comes_with_the_page_that_holds_its_revision(client, tmp_path):
    """A lookup created twice offline is merged on the server (a remap at the revision of the merge); the
    remap travels with exactly the page whose revisions include it."""
    from tests.sync.support import make_device

    org = new_org(client)
    o = org.owner
    devices = [
        make_device(tmp_path, name, http=client, base_url="", token=o.token, org_id=org.id)
        for name in ("laptop", "desktop")
    ]
    try:
        kept = devices[0].library.create("tag", {"name": "python"})
        dropped = devices[1].library.create("tag", {"name": "Python"})
        devices[0].sync()
        devices[1].sync()
        records, head = pull_all(o, org)
        assert any(r["id"] == kept for r in records)
        pages: list[dict] = []
        since = 0
        while True:
            r = o.get(f"{org.base}/sync/changes", params={"protocol": 3, "since": since, "limit": 1})
            assert r.status_code == 200, r.text
            page = r.json()
            pages.append({"since": since, **page})
            since = page["next_since"]
            if not page["has_more"]:
                break
        remaps = [(p["since"], p["next_since"], m) for p in pages for m in p["remaps"]]
        assert len(remaps) == 1
        low, high, remap = remaps[0]
        assert remap["entity"] == "tag"
        assert {remap["from_id"], remap["to_id"]} == {kept, dropped}
        assert low < remap["revision"] <= high
        # a pull starting after it does not carry it again
        after = o.get(
            f"{org.base}/sync/changes", params={"protocol": 3, "since": remap["revision"], "limit": 1000}
        ).json()
        assert after["remaps"] == []
        assert head >= remap["revision"]
    finally:
        for device in devices:
            device.replica.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budget=st.integers(min_value=1, max_value=120_000), limit=st.integers(min_value=1, max_value=12))
def test_paging_under_any_byte_budget_and_limit_gets_every_record_once_in_order(
    paged_library: tuple[Org, int, list[str]], budget: int, limit: int, monkeypatch_budget: Any
) -> None:
    """Records of many sizes in several entities (a tag and outputs in one bulk revision, alone and in
    between): whatever the byte budget and ``limit``, the pages bring every record once, in feed order."""
    org, start, expected = paged_library
    monkeypatch_budget(budget)
    seen, since = [], start
    for _ in range(200):
        page = org.owner.get(
            f"{org.base}/sync/changes", params={"protocol": 3, "since": since, "limit": limit}
        ).json()
        seen += [r["id"] for r in page["records"]]
        assert page["next_since"] > since or not page["has_more"]
        since = page["next_since"]
        if not page["has_more"]:
            break
    assert seen == expected


@pytest.fixture
def monkeypatch_budget(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    return lambda budget: monkeypatch.setattr(sync_service, "PULL_PAGE_BYTES", budget)


@pytest.fixture
def paged_library(client: Any) -> tuple[Org, int, list[str]]:
    """An organization whose feed after ``start`` holds records of 10 B to 40 KB in three entities, some
    sharing one revision; ``expected``: their ids in feed order, as a full pull lists them."""
    org = new_org(client)
    ids = seed_library(org)
    o = org.owner
    _, start = pull_all(o, org)
    rng = random.Random(7)
    for n in range(6):
        assert o.post(f"{org.base}/tags", json={"name": f"tag {n}"}).status_code == 201
        items = [
            {"prompt_id": ids["prompt"], "content": f"{n}.{i} " + "x" * rng.choice([10, 900, 9_000, 40_000])}
            for i in range(rng.randint(1, 4))
        ]
        assert o.post(f"{org.base}/outputs/bulk", json={"items": items}).status_code == 201
        assert (
            o.post(
                f"{org.base}/prompts", json={"title": f"P{n}", "body": "y" * rng.randint(5, 30_000)}
            ).status_code
            == 201
        )
    records, _ = pull_all(o, org, since=start)
    return org, start, [r["id"] for r in records]


def _purge(app, org: Org, *, days_ahead: float = 1) -> int:
    factory = app.state.services.session_factory
    with unit_of_work(factory) as session:
        set_tenant(session, org_id=uuid.UUID(org.id))
        return purge_tombstones(
            session, org_id=uuid.UUID(org.id), before=datetime.now(UTC) + timedelta(days=days_ahead)
        ).records


def _pages(actor, org: Org, *, since: int, limit: int) -> list[dict]:
    pages = []
    while True:
        r = actor.get(f"{org.base}/sync/changes", params={"protocol": 4, "since": since, "limit": limit})
        assert r.status_code == 200, r.text
        pages.append(r.json())
        since = pages[-1]["next_since"]
        if not pages[-1]["has_more"]:
            return pages


def test_a_purge_is_named_once_to_every_pull_that_covers_it_until_forgotten(app, client):
    """The purge log: every pull whose pages cover the purge's revision names each purged record once (in
    the page that covers it, never another organization's), whatever the page size; a pull from after it
    names none. A later purge forgets entries older than its retention and raises the horizon past them:
    cursors before a forgotten entry get 410, the others pull as before."""
    org, other = new_org(client), new_org(client)
    seed_library(org)
    seed_library(other)
    o = org.owner
    made = [
        o.post(f"{org.base}/prompts", json={"title": f"p{n}", "body": "b"}).json()["id"] for n in range(6)
    ]
    gone = made[:3]
    for ident in gone:
        assert o.delete(f"{org.base}/prompts/{ident}").status_code == 204
    _, before = pull_all(o, org)
    o.patch(f"{org.base}/prompts/{made[3]}", json={"title": "edited before the purge"})
    assert _purge(app, org) == 3
    o.patch(f"{org.base}/prompts/{made[4]}", json={"title": "edited after the purge"})
    for since in (0, 1, before):
        for limit in (1, 2, 1000):
            pages = _pages(o, org, since=since, limit=limit)
            named = [(p["entity"], p["id"]) for page in pages for p in page["purged"]]
            assert sorted(named) == sorted(("prompts", i) for i in gone), (since, limit)
            records = {r["id"] for page in pages for r in page["records"]}
            assert not records & set(gone) and made[4] in records
            for page, start in zip(pages, [since, *(p["next_since"] for p in pages)], strict=False):
                assert all(start < p["revision"] <= page["next_since"] for p in page["purged"])
    purge_revision = _pages(o, org, since=0, limit=1000)[0]["purged"][0]["revision"]
    assert all(page["purged"] == [] for page in _pages(o, org, since=purge_revision, limit=2))
    assert all(page["purged"] == [] for page in _pages(other.owner, other, since=0, limit=2))

    assert _purge(app, org, days_ahead=-1) == 0  # a day's retention: the log is kept
    assert _pages(o, org, since=before, limit=1000)[0]["purged"]
    assert _purge(app, org) == 0  # past it: forgotten
    expired = o.get(f"{org.base}/sync/changes", params={"protocol": 4, "since": purge_revision - 1})
    assert expired.status_code == 410 and expired.json()["type"].endswith("cursor-expired")
    fine = _pages(o, org, since=purge_revision, limit=1000)
    assert fine[-1]["purged"] == [] and made[4] in {r["id"] for r in fine[-1]["records"]}
    from_zero = o.get(f"{org.base}/sync/changes", params={"protocol": 4, "since": 0}).json()
    assert from_zero["purged"] == [] and not {r["id"] for r in from_zero["records"]} & set(gone)
