"""The MongoDB document store (pymongo): one collection per document collection, ``_id`` = ``<org>:<id>``.

Tenant isolation: every filter names ``org_id``, and the organization is part of ``_id``, so two
organizations can never collide on (or reach) each other's ids. Indexes are created idempotently at
start-up; the audit TTL index follows ``OUTPUTHUB_AUDIT_RETENTION_DAYS`` (changed in place with collMod,
dropped for 0 = keep forever).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, MongoClient, ReplaceOne, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError
from sqlalchemy.orm import Session

from outputhub.common.errors import StorageError
from outputhub.server.storage.documents.port import (
    AUDIT,
    COLLECTIONS,
    COMMITTED,
    OUTPUT_BODIES,
    PENDING,
    After,
    Document,
    DocumentExistsError,
    truncate_ms,
)

DUPLICATE_KEY = 11000
TTL_INDEX = "audit_ttl"
INDEX_CONFLICT_CODES = {85, 86}  # IndexOptionsConflict, IndexKeySpecsConflict


def _key(org_id: uuid.UUID, doc_id: str) -> str:
    return f"{org_id}:{doc_id}"


class MongoDocumentStore:
    kind = "mongo"

    def __init__(
        self, *, url: str, database: str, audit_retention: timedelta | None, timeout_ms: int = 5000
    ) -> None:
        self._client: MongoClient[dict[str, Any]] = MongoClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            appname="outputhub",
        )
        self._db = self._client[database]
        self._retention = audit_retention

    def _coll(self, collection: str) -> Collection[dict[str, Any]]:
        if collection not in COLLECTIONS:
            raise ValueError(f"unknown document collection {collection!r}")
        return self._db[collection]

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except DocumentExistsError:
            raise
        except DuplicateKeyError as exc:
            raise DocumentExistsError(_dup_id(exc.details)) from exc
        except BulkWriteError as exc:
            dups = [e for e in exc.details.get("writeErrors", []) if e.get("code") == DUPLICATE_KEY]
            if dups:
                raise DocumentExistsError(_dup_id(dups[0])) from exc
            raise StorageError(f"document store: cannot {what} ({exc.__class__.__name__})") from exc
        except PyMongoError as exc:
            raise StorageError(f"document store: cannot {what} ({exc.__class__.__name__})") from exc

    # --- the port ---------------------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        # ascending keys only (walked backwards for newest-first): SecantusDB 0.7 drops the lower bound of
        # a range on a descending index key
        with self._guard("create indexes"):
            for name in COLLECTIONS:
                coll = self._coll(name)
                coll.create_index(
                    [("org_id", ASCENDING), ("at", ASCENDING), ("_id", ASCENDING)], name="org_at_id"
                )
                coll.create_index(
                    [("state", ASCENDING), ("at", ASCENDING)],
                    name="pending_at",
                    partialFilterExpression={"state": PENDING},
                )
            audit = self._coll(AUDIT)
            audit.create_index(
                [("org_id", ASCENDING), ("data.entity_id", ASCENDING), ("at", ASCENDING)],
                name="org_entity_at",
            )
            self._ensure_ttl(audit)

    def _ensure_ttl(self, audit: Collection[dict[str, Any]]) -> None:
        existing = {i["name"]: i for i in audit.list_indexes()}
        if not self._retention:
            if TTL_INDEX in existing:
                audit.drop_index(TTL_INDEX)
            return
        seconds = int(self._retention.total_seconds())
        current = existing.get(TTL_INDEX)
        if current is None:
            try:
                audit.create_index([("at", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=seconds)
            except OperationFailure as exc:  # another process created it a moment ago with another value
                if exc.code not in INDEX_CONFLICT_CODES:
                    raise
                current = {"expireAfterSeconds": None}
        if current is not None and current.get("expireAfterSeconds") != seconds:
            self._db.command("collMod", AUDIT, index={"name": TTL_INDEX, "expireAfterSeconds": seconds})

    def stage(self, collection: str, docs: Sequence[Document], *, session: Session) -> None:
        if not docs:
            return
        coll = self._coll(collection)
        ops = [
            # replaces only a pending leftover of a crashed attempt; a committed document makes the upsert
            # try to insert a second one with the same _id: duplicate key
            ReplaceOne(
                {"_id": _key(d.org_id, d.id), "state": PENDING}, _encode(d, state=PENDING), upsert=True
            )
            for d in docs
        ]
        with self._guard("stage documents"):
            coll.bulk_write(ops, ordered=False)

    def confirm(self, collection: str, *, org_id: uuid.UUID, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._guard("confirm documents"):
            result = self._coll(collection).update_many(
                {"_id": {"$in": [_key(org_id, i) for i in ids]}, "org_id": str(org_id), "state": PENDING},
                {"$set": {"state": COMMITTED}},
            )
        return int(result.modified_count)

    def insert(self, collection: str, docs: Sequence[Document], *, skip_existing: bool = False) -> int:
        if not docs:
            return 0
        coll = self._coll(collection)
        with self._guard("write documents"):
            if skip_existing:
                ops = [
                    UpdateOne(
                        {"_id": _key(d.org_id, d.id)},
                        {"$setOnInsert": _encode(d, state=d.state)},
                        upsert=True,
                    )
                    for d in docs
                ]
                return int(coll.bulk_write(ops, ordered=False).upserted_count)
            coll.insert_many([_encode(d, state=d.state) for d in docs], ordered=True)
            return len(docs)

    def get(self, collection: str, *, org_id: uuid.UUID, doc_id: str) -> Document | None:
        with self._guard("read a document"):
            raw = self._coll(collection).find_one({"_id": _key(org_id, doc_id), "org_id": str(org_id)})
        return _decode(raw) if raw else None

    def find(
        self,
        collection: str,
        *,
        org_id: uuid.UUID,
        equals: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: After | None = None,
        limit: int = 50,
    ) -> list[Document]:
        query: dict[str, Any] = {"org_id": str(org_id)}
        for key, value in (equals or {}).items():
            query[f"data.{key}"] = value
        at: dict[str, datetime] = {}
        if since is not None:
            at["$gte"] = since
        if until is not None:
            at["$lt"] = until
        if at:
            query["at"] = at
        if after is not None:
            last = _key(org_id, after.id)
            query["$or"] = [{"at": {"$lt": after.at}}, {"at": after.at, "_id": {"$lt": last}}]
        with self._guard("query documents"):
            cursor = (
                self._coll(collection)
                .find(query)
                .sort([("at", DESCENDING), ("_id", DESCENDING)])
                .limit(limit)
            )
            return [_decode(raw) for raw in cursor]

    def delete(self, collection: str, *, org_id: uuid.UUID, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._guard("delete documents"):
            result = self._coll(collection).delete_many(
                {"_id": {"$in": [_key(org_id, i) for i in ids]}, "org_id": str(org_id)}
            )
        return int(result.deleted_count)

    def purge_org(self, collection: str, *, org_id: uuid.UUID) -> int:
        with self._guard("purge documents"):
            return int(self._coll(collection).delete_many({"org_id": str(org_id)}).deleted_count)

    def pending_before(
        self, collection: str, *, before: datetime, limit: int = 1000
    ) -> list[tuple[uuid.UUID, str]]:
        with self._guard("scan pending documents"):
            cursor = (
                self._coll(collection)
                .find({"state": PENDING, "at": {"$lt": before}}, {"org_id": 1, "doc_id": 1})
                .sort([("at", ASCENDING)])
                .limit(limit)
            )
            return [(uuid.UUID(raw["org_id"]), raw["doc_id"]) for raw in cursor]

    def purge_expired(self, *, now: datetime) -> int:
        """MongoDB's TTL monitor removes expired audit records (about once a minute)."""
        return 0

    def status(self) -> str:
        try:
            self._client.admin.command("ping")
        except PyMongoError as exc:
            return f"unavailable: {exc.__class__.__name__}"
        return "ok"

    def close(self) -> None:
        self._client.close()


def _encode(doc: Document, *, state: str) -> dict[str, Any]:
    return {
        "_id": _key(doc.org_id, doc.id),
        "org_id": str(doc.org_id),
        "doc_id": doc.id,
        "at": truncate_ms(doc.at),
        "state": state,
        "data": doc.data,
    }


def _decode(raw: Mapping[str, Any]) -> Document:
    return Document(
        org_id=uuid.UUID(raw["org_id"]), id=raw["doc_id"], at=raw["at"], data=raw["data"], state=raw["state"]
    )


def _dup_id(details: Mapping[str, Any] | None) -> str:
    key = ((details or {}).get("keyValue") or {}).get("_id") or ""
    return str(key).split(":", 1)[-1]


__all__ = ["OUTPUT_BODIES", "MongoDocumentStore"]
