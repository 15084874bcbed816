"""The document store: output bodies and the audit log, in MongoDB or in the server's own SQL database.

One port (:class:`DocumentStore`), two adapters (:mod:`.mongo`, :mod:`.sql`), one contract test suite
(``tests/documents``). See docs/documents-and-audit.md.
"""

from __future__ import annotations

from outputhub.server.storage.documents.port import (
    AUDIT,
    COLLECTIONS,
    COMMITTED,
    OUTPUT_BODIES,
    PENDING,
    Document,
    DocumentExistsError,
    DocumentStore,
)

__all__ = [
    "AUDIT",
    "COLLECTIONS",
    "COMMITTED",
    "OUTPUT_BODIES",
    "PENDING",
    "Document",
    "DocumentExistsError",
    "DocumentStore",
]
