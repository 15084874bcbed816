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

from outputhub.server.migrations import rls

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


def upgrade() -> None:
    if not rls.on_postgres():
        return
    for table in TENANT_TABLES:
        if table == "memberships":
            # a user also sees their own memberships (to list the organizations they belong to)
            rls.secure(table, using=f"{rls.SAME_ORG} OR user_id = {rls.CURRENT_USER}", check=rls.SAME_ORG)
        else:
            rls.secure(table)


def downgrade() -> None:
    if not rls.on_postgres():
        return
    for table in TENANT_TABLES:
        rls.release(table)
