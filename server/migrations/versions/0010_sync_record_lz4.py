"""sync record lz4: PostgreSQL compresses stored pull data and states with lz4 instead of pglz

Revision ID: 0010
Revises: 0009

Every pull reads each record's stored ``data`` (about 2.7 KB for a 2 KB output, so PostgreSQL TOASTs and
compresses it). Decompressing pglz cost 9.6 us per record read, lz4 5.6 us, and lz4 also compresses better
(4.5 -> 2.8 KB per row with its state; measured on 5,083 outputs, docs/benchmarks.md). The setting applies to
values written from now on; values already stored stay pglz and read as before. A server built without lz4
support keeps pglz (the statement fails; the migration logs it and goes on). SQLite: nothing to do.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

COLUMNS = ("data", "state")


def _set_compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    savepoint = bind.begin_nested()
    try:
        for column in COLUMNS:
            bind.execute(
                sa.text(f"ALTER TABLE sync_record_states ALTER COLUMN {column} SET COMPRESSION {method}")
            )
        savepoint.commit()
    except sa.exc.DBAPIError as exc:
        savepoint.rollback()
        log.warning("sync record states keep their compression (%s is not available: %s)", method, exc)


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("pglz")
