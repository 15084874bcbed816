"""Build the configured document store: MongoDB with ``OUTPUTHUB_MONGO_URL``, else the embedded SQL one."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from outputhub.server.settings import Settings
from outputhub.server.storage.documents.port import DocumentStore


def build_document_store(settings: Settings, *, engine: Engine) -> DocumentStore:
    retention = timedelta(days=settings.audit_retention_days) if settings.audit_retention_days else None
    if settings.mongo_url:
        from outputhub.server.storage.documents.mongo import MongoDocumentStore

        return MongoDocumentStore(
            url=settings.mongo_url,
            database=settings.mongo_database,
            audit_retention=retention,
            timeout_ms=settings.mongo_timeout_ms,
        )
    from outputhub.server.storage.documents.sql import SqlDocumentStore

    return SqlDocumentStore(engine=engine, audit_retention=retention)
