"""Row-level security on PostgreSQL: the second, database-enforced tenant guard.

Every tenant-scoped table gets ENABLE + FORCE ROW LEVEL SECURITY and a policy that admits only rows of the
organization named by ``SET LOCAL outputhub.org_id`` (set in each transaction by
``outputhub.server.storage.database.set_tenant``). With no tenant set, no rows are visible at all.
Memberships are additionally visible to their own user (``outputhub.user_id``) so a user can list the
organizations they belong to. On SQLite this revision does nothing: query filters are the only guard there.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# frozen: the tables that existed at this revision (later revisions secure their own tables)
TENANT_TABLES = (
    "org_revisions",
    "memberships",
    "invitations",
    "api_keys",
    "tags",
    "knowledge_types",
    "accuracy_levels",
    "development_stages",
    "gpt_models",
    "agent_groups",
    "custom_gpts",
    "custom_gpt_agent_groups",
    "prompts",
    "prompt_versions",
    "prompt_tags",
    "outputs",
    "output_tags",
    "output_knowledge_types",
)
CURRENT_ORG = "NULLIF(current_setting('outputhub.org_id', true), '')::uuid"
CURRENT_USER = "NULLIF(current_setting('outputhub.user_id', true), '')::uuid"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        if table == "memberships":
            using = f"org_id = {CURRENT_ORG} OR user_id = {CURRENT_USER}"
            check = f"org_id = {CURRENT_ORG}"
        else:
            using = check = f"org_id = {CURRENT_ORG}"
        op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({using}) WITH CHECK ({check})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
