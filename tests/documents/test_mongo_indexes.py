"""MongoDB specifics: index creation is idempotent across restarts and follows the retention setting."""

from __future__ import annotations

import uuid
from datetime import timedelta

from outputhub.server.storage.documents import AUDIT, OUTPUT_BODIES
from outputhub.server.storage.documents.mongo import MongoDocumentStore


def _indexes(store, coll):
    return {i["name"]: i for i in store._db[coll].list_indexes()}


def test_retention_changes_update_the_ttl_index_in_place_and_zero_drops_it(mongo_url):
    db = f"idx_{uuid.uuid4().hex[:8]}"

    def start(days):
        store = MongoDocumentStore(
            url=mongo_url, database=db, audit_retention=timedelta(days=days) if days else None
        )
        store.ensure_indexes()
        store.ensure_indexes()  # a second process starting: no error, no change
        return store

    first = start(30)
    assert _indexes(first, AUDIT)["audit_ttl"]["expireAfterSeconds"] == 30 * 86400
    assert {"org_at_id", "pending_at", "org_entity_at"} <= set(_indexes(first, AUDIT))
    assert {"org_at_id", "pending_at"} <= set(_indexes(first, OUTPUT_BODIES))
    assert "audit_ttl" not in _indexes(first, OUTPUT_BODIES)
    second = start(7)
    assert _indexes(second, AUDIT)["audit_ttl"]["expireAfterSeconds"] == 7 * 86400
    third = start(0)
    assert "audit_ttl" not in _indexes(third, AUDIT)
    for s in (first, second, third):
        s.close()
