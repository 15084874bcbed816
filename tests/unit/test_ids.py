"""New ids are time-ordered (UUIDv7): made one after another, they sort one after another, so the indexes
keyed by them grow at their end (common/ids.py)."""

from __future__ import annotations

import uuid

from outputhub.common.ids import new_id_text, new_uuid


def test_ids_made_in_a_row_sort_in_that_order_and_are_version_7() -> None:
    ids = [new_uuid() for _ in range(20_000)]  # many per millisecond
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    texts = [new_id_text() for _ in range(2_000)]
    assert texts == sorted(texts), "the replica stores ids as text: text order is creation order too"
    assert all(str(uuid.UUID(t)) == t for t in texts)
