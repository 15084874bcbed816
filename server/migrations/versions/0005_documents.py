"""documents: the embedded document store, output body references, the domain-event outbox

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outputhub.server.migrations import rls
from outputhub.server.storage.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MAINTENANCE = "current_setting('outputhub.maintenance', true) = 'on'"


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("collection", sa.String(32), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("collection", "org_id", "id", name=op.f("pk_documents")),
    )
    op.create_index("ix_documents_collection_org_at", "documents", ["collection", "org_id", "at", "id"])
    op.create_index("ix_documents_collection_state_at", "documents", ["collection", "state", "at"])

    op.create_table(
        "output_body_refs",
        sa.Column("output_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("store", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["output_id"],
            ["outputs.id"],
            name=op.f("fk_output_body_refs_output_id_outputs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_output_body_refs_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("output_id", name=op.f("pk_output_body_refs")),
    )
    op.create_index(op.f("ix_output_body_refs_org_id"), "output_body_refs", ["org_id"])

    op.create_table(
        "event_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_outbox")),
    )
    op.create_index(op.f("ix_event_outbox_org_id"), "event_outbox", ["org_id"])
    op.create_index(op.f("ix_event_outbox_created_at"), "event_outbox", ["created_at"])

    if not rls.on_postgres():
        return
    policies = {
        # documents: one organization, or the explicit maintenance scope (reconcile, TTL purge)
        "documents": (f"{rls.SAME_ORG} OR {MAINTENANCE}", f"{rls.SAME_ORG} OR {MAINTENANCE}"),
        "output_body_refs": (rls.SAME_ORG, rls.SAME_ORG),
        # the outbox is written by whichever request emitted the event and read only by the drain
        "event_outbox": (MAINTENANCE, "true"),
    }
    for table, (using, check) in policies.items():
        rls.secure(table, using=using, check=check)


def downgrade() -> None:
    op.drop_table("event_outbox")
    op.drop_table("output_body_refs")
    op.drop_table("documents")
