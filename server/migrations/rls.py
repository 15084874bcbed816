"""Row-level security statements shared by the migrations (PostgreSQL only; SQLite has none).

Every tenant table gets ENABLE + FORCE ROW LEVEL SECURITY and one policy, ``tenant_isolation``, admitting
the organization named by ``SET LOCAL outputhub.org_id`` (see ``server/storage/database.set_tenant``).
"""

from __future__ import annotations

from typing import Final

from alembic import op

CURRENT_ORG: Final = "NULLIF(current_setting('outputhub.org_id', true), '')::uuid"
CURRENT_USER: Final = "NULLIF(current_setting('outputhub.user_id', true), '')::uuid"
SAME_ORG: Final = f"org_id = {CURRENT_ORG}"


def on_postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def secure(table: str, *, using: str = SAME_ORG, check: str | None = None) -> None:
    """Put ``table`` under the tenant policy (``check`` defaults to ``using``)."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({using}) WITH CHECK ({check or using})")


def release(table: str) -> None:
    """Undo :func:`secure`."""
    op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
    op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
