"""sync: record states, handled operations, conflicts, lookup remaps, tombstone horizon

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outputhub.server.migrations import rls

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("sync_record_states", "sync_ops", "sync_conflicts", "sync_remaps", "sync_horizons")


def _org() -> sa.Column[sa.Uuid]:
    return sa.Column("org_id", sa.Uuid(), nullable=False)


def _org_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["org_id"], ["organizations.id"], name=op.f(f"fk_{table}_org_id_organizations"), ondelete="CASCADE"
    )


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "sync_record_states",
        _org(),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        _org_fk("sync_record_states"),
        sa.PrimaryKeyConstraint("org_id", "record_id", name=op.f("pk_sync_record_states")),
    )
    op.create_table(
        "sync_ops",
        _org(),
        sa.Column("op_id", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        _org_fk("sync_ops"),
        sa.PrimaryKeyConstraint("org_id", "op_id", name=op.f("pk_sync_ops")),
    )
    op.create_table(
        "sync_conflicts",
        _org(),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("opened_at", ts, nullable=False),
        sa.Column("opened_revision", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at", ts, nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        _org_fk("sync_conflicts"),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_sync_conflicts")),
    )
    op.create_index(op.f("ix_sync_conflicts_record_id"), "sync_conflicts", ["record_id"])
    op.create_table(
        "sync_remaps",
        _org(),
        sa.Column("from_id", sa.Uuid(), nullable=False),
        sa.Column("to_id", sa.Uuid(), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        _org_fk("sync_remaps"),
        sa.PrimaryKeyConstraint("org_id", "from_id", name=op.f("pk_sync_remaps")),
    )
    op.create_index(op.f("ix_sync_remaps_revision"), "sync_remaps", ["revision"])
    op.create_table(
        "sync_horizons",
        _org(),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        _org_fk("sync_horizons"),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_sync_horizons")),
    )
    if rls.on_postgres():
        for table in TABLES:
            rls.secure(table)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
