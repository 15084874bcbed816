"""The document-store contract: every adapter behaves alike (see server/storage/documents/port.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from outputhub.common.errors import StorageError
from outputhub.server.settings import Settings
from outputhub.server.storage.database import make_engine, unit_of_work
from outputhub.server.storage.documents import (
    AUDIT,
    COMMITTED,
    OUTPUT_BODIES,
    PENDING,
    Document,
    DocumentExistsError,
)
from outputhub.server.storage.documents.mongo import MongoDocumentStore
from outputhub.server.storage.documents.port import After
from outputhub.server.storage.documents.sql import SqlDocumentStore, scope

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
T1 = T0.replace(microsecond=0)


def doc(org, ident, *, at=T0, state=COMMITTED, **data):
    return Document(org_id=org, id=str(ident), at=at, data=data, state=state)


def test_insert_then_get_round_trips_json_and_time_to_the_millisecond(store):
    org = uuid.uuid4()
    data = {"kind": "prompt.created", "nested": {"list": [1, 2.5, None, True, "é"]}, "empty": {}}
    assert store.insert(AUDIT, [doc(org, "a", **data)]) == 1
    got = store.get(AUDIT, org_id=org, doc_id="a")
    assert got is not None
    assert got.data == data and got.org_id == org and got.id == "a" and got.state == COMMITTED
    assert got.at == T0.replace(microsecond=123000)
    assert got.at.tzinfo is not None
    assert store.get(AUDIT, org_id=org, doc_id="missing") is None


def test_organizations_never_see_each_others_documents_even_with_the_same_id(store):
    a, b = uuid.uuid4(), uuid.uuid4()
    store.insert(AUDIT, [doc(a, "same", who="a"), doc(b, "same", who="b")])
    assert store.get(AUDIT, org_id=a, doc_id="same").data == {"who": "a"}
    assert store.get(AUDIT, org_id=b, doc_id="same").data == {"who": "b"}
    assert [d.data["who"] for d in store.find(AUDIT, org_id=a)] == ["a"]
    assert store.delete(AUDIT, org_id=a, ids=["same"]) == 1
    assert store.get(AUDIT, org_id=b, doc_id="same") is not None
    assert store.purge_org(AUDIT, org_id=b) == 1
    assert store.find(AUDIT, org_id=b) == []


def test_a_taken_id_is_refused_unless_skipping_existing(store):
    org = uuid.uuid4()
    store.insert(AUDIT, [doc(org, "x", v=1)])
    with pytest.raises(DocumentExistsError) as err:
        store.insert(AUDIT, [doc(org, "x", v=2)])
    assert err.value.doc_id == "x"
    # redelivery: written once, the first version kept
    assert store.insert(AUDIT, [doc(org, "x", v=3), doc(org, "y", v=1)], skip_existing=True) == 1
    assert store.insert(AUDIT, [doc(org, "x", v=3), doc(org, "y", v=1)], skip_existing=True) == 0
    assert store.get(AUDIT, org_id=org, doc_id="x").data == {"v": 1}


def test_find_is_newest_first_filters_and_pages_without_gaps_or_repeats(store):
    org = uuid.uuid4()
    docs = [
        doc(org, f"{i:03d}", at=T1 + timedelta(seconds=i // 3), kind="a" if i % 2 else "b", entity="prompt")
        for i in range(25)
    ]
    store.insert(AUDIT, docs)
    expected = sorted(docs, key=lambda d: (d.at, d.id), reverse=True)
    seen: list[str] = []
    after = None
    while True:
        page = store.find(AUDIT, org_id=org, after=after, limit=7)
        seen += [d.id for d in page]
        if len(page) < 7:
            break
        after = After(at=page[-1].at, id=page[-1].id)
    assert seen == [d.id for d in expected]
    only_a = store.find(AUDIT, org_id=org, equals={"kind": "a", "entity": "prompt"}, limit=100)
    assert {d.id for d in only_a} == {d.id for d in docs if d.data["kind"] == "a"}
    assert store.find(AUDIT, org_id=org, equals={"kind": "nope"}) == []
    window = store.find(
        AUDIT, org_id=org, since=T1 + timedelta(seconds=2), until=T1 + timedelta(seconds=4), limit=100
    )
    assert {d.id for d in window} == {d.id for d in docs if 2 <= (d.at - T1).total_seconds() < 4}


def _staged(under_test, org, docs):
    with unit_of_work(under_test.sessions) as session:
        scope(session, org_id=org)
        under_test.store.stage(OUTPUT_BODIES, docs, session=session)


def test_stage_then_confirm(under_test, store):
    org = uuid.uuid4()
    _staged(under_test, org, [doc(org, "b1", transcript=[]), doc(org, "b2")])
    states = {i: store.get(OUTPUT_BODIES, org_id=org, doc_id=i).state for i in ("b1", "b2")}
    if under_test.kind == "mongo":
        assert states == {"b1": PENDING, "b2": PENDING}
        assert store.confirm(OUTPUT_BODIES, org_id=org, ids=["b1", "b2"]) == 2
    else:  # joined the transaction: committed with it
        assert states == {"b1": COMMITTED, "b2": COMMITTED}
    assert store.get(OUTPUT_BODIES, org_id=org, doc_id="b1").state == COMMITTED
    assert store.confirm(OUTPUT_BODIES, org_id=org, ids=["b1"]) == 0
    # a committed body's id cannot be staged again
    with pytest.raises(DocumentExistsError):
        _staged(under_test, org, [doc(org, "b1")])


def test_staging_in_a_transaction_that_rolls_back(under_test, store):
    org = uuid.uuid4()

    class RollbackError(Exception):
        pass

    with pytest.raises(RollbackError), unit_of_work(under_test.sessions) as session:
        scope(session, org_id=org)
        store.stage(OUTPUT_BODIES, [doc(org, "r1")], session=session)
        raise RollbackError
    got = store.get(OUTPUT_BODIES, org_id=org, doc_id="r1")
    if under_test.kind == "mongo":  # written before the rows, left pending for reconcile
        assert got is not None and got.state == PENDING
    else:
        assert got is None


def test_pending_documents_are_found_across_organizations_and_a_leftover_is_replaced(under_test, store):
    a, b = uuid.uuid4(), uuid.uuid4()
    old = datetime.now(UTC) - timedelta(hours=1)
    store.insert(OUTPUT_BODIES, [doc(a, "p1", at=old, state=PENDING), doc(b, "p2", at=old, state=PENDING)])
    store.insert(OUTPUT_BODIES, [doc(a, "young", state=PENDING, at=datetime.now(UTC))])
    found = set(store.pending_before(OUTPUT_BODIES, before=datetime.now(UTC) - timedelta(minutes=10)))
    assert {(a, "p1"), (b, "p2")} <= found and (a, "young") not in found
    # a retry of a crashed attempt replaces the pending leftover
    _staged(under_test, a, [doc(a, "p1", v="retry")])
    assert store.get(OUTPUT_BODIES, org_id=a, doc_id="p1").data == {"v": "retry"}
    store.confirm(OUTPUT_BODIES, org_id=b, ids=["p2"])
    found = set(store.pending_before(OUTPUT_BODIES, before=datetime.now(UTC)))
    assert (b, "p2") not in found


def test_ensure_indexes_is_idempotent_and_audit_records_expire(under_test, store):
    store.ensure_indexes()
    store.ensure_indexes()
    org = uuid.uuid4()
    now = datetime.now(UTC)
    store.insert(AUDIT, [doc(org, "old", at=now - timedelta(days=31)), doc(org, "new", at=now)])
    store.insert(OUTPUT_BODIES, [doc(org, "body", at=now - timedelta(days=400))])
    if under_test.kind == "mongo":
        # MongoDB's TTL monitor expires them; the index carries the retention
        ttl = {i["name"]: i for i in store._db[AUDIT].list_indexes()}["audit_ttl"]
        assert ttl["expireAfterSeconds"] == 30 * 86400
    else:
        assert store.purge_expired(now=now) == 1
        assert store.get(AUDIT, org_id=org, doc_id="old") is None
    assert store.get(AUDIT, org_id=org, doc_id="new") is not None
    assert store.get(OUTPUT_BODIES, org_id=org, doc_id="body") is not None  # bodies never expire


def test_driver_failures_become_storage_errors(under_test, tmp_path):
    org = uuid.uuid4()
    if under_test.kind == "mongo":
        dead = MongoDocumentStore(
            url="mongodb://127.0.0.1:1", database="x", audit_retention=None, timeout_ms=200
        )
    else:
        engine = make_engine(
            Settings(
                data_dir=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none", secret_key="x" * 40
            )
        )
        dead = SqlDocumentStore(engine=engine, audit_retention=None)
    with pytest.raises(StorageError):
        dead.insert(AUDIT, [doc(org, "a")])
    with pytest.raises(StorageError):
        dead.find(AUDIT, org_id=org)
    assert dead.status().startswith("unavailable")
    dead.close()
