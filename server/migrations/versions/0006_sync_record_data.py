"""sync record data: each stored merge state keeps its record's pull-feed JSON beside it

Revision ID: 0006
Revises: 0005

The pull feed used to build every record's ``data`` JSON (formatted timestamps, link arrays from correlated
subqueries) on every pull; it is now built once, when the transaction that wrote the record commits, and a
pull reads it as text. Existing rows start without it (NULL): the feed builds those on the fly, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_record_states") as batch:
        batch.add_column(sa.Column("data", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_record_states") as batch:
        batch.drop_column("data")
