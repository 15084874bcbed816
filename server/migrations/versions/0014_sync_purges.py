"""sync purges: the purge log (records the tombstone purge removed, at the purge's own revision)

Revision ID: 0014
Revises: 0013

A purge of tombstones used to raise the organization's horizon past them and tell no replica what it removed:
an up-to-date replica kept the purged tombstones, its next check did not match and it pulled every record
again. From this revision a purge draws a revision of its own and logs each record it removed at it; a pull
whose page covers that revision names them (``purged``), and the replica drops its copies. The horizon rises
only when a later purge forgets log entries older than its retention. Purges made before this revision
logged nothing; their horizons stay as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outputhub.server.migrations import rls

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_purges",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_sync_purges_org_id_organizations"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("org_id", "revision", "record_id", name=op.f("pk_sync_purges")),
    )
    if rls.on_postgres():
        rls.secure("sync_purges")


def downgrade() -> None:
    op.drop_table("sync_purges")
