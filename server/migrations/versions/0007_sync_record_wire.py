"""sync record wire: each stored merge state keeps its compact pull form (protocol 2) beside it

Revision ID: 0007
Revises: 0006

``wire`` is the state with its long text values that equal the record's own ``data`` replaced by the marker
``{"=": 1}`` (see docs/sync-protocol.md); NULL when no value qualifies (a protocol 2 pull then sends
``state``, which is valid as it is).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_record_states") as batch:
        batch.add_column(sa.Column("wire", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_record_states") as batch:
        batch.drop_column("wire")
