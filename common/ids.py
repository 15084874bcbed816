"""New row ids: UUIDv7 (RFC 9562), time-ordered.

Every replicated record, prompt version, outbox operation and server-side row gets its id here. A v7 id
starts with the Unix time in milliseconds (then random bits; uuid-utils keeps ids made by one process in
increasing order within a millisecond), so ids made one after another sort one after another. Every index
keyed by an id (the primary keys, the replica's link tables, the server's B-trees) then grows at its end
instead of at random places: a random (v4) key dirties leaf pages all over the index in every transaction,
which on the encrypted replica means re-encrypting and writing them all again at every commit
(docs/benchmarks.md, "UUIDv7 ids"). Ids stay opaque: nothing reads the time back out of them, and ids
of older records (v4) and ids other clients make keep working. The id reveals when the record was made,
which ``created_at`` already shows.
"""

from __future__ import annotations

import uuid

from uuid_utils.compat import uuid7


def new_uuid() -> uuid.UUID:
    """A new time-ordered id (UUIDv7)."""
    return uuid7()


def new_id_text() -> str:
    """:func:`new_uuid` as its canonical 36-character text (the replica stores ids as text)."""
    return str(uuid7())


def canonical_id(text: object) -> str | None:
    """``text`` as record ids are written (lower-case hex with dashes) if it is a UUID in any form
    (``8D0F...``, ``{8d0f...}``, no dashes), else None."""
    try:
        return str(uuid.UUID(str(text)))
    except ValueError:
        return None
