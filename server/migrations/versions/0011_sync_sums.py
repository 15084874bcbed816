"""sync sums: the sync check's counts and revision sums per table, kept by triggers

Revision ID: 0011
Revises: 0010

After every sync the client checks its replica against the server: per replicated table, how many records
(tombstones included) and the sum of their revisions. The server counted and summed them on every check
(14 ms at 100k outputs on SQLite, ~45 ms on PostgreSQL), and right after a write no cache can help. This
keeps the figures in ``sync_sums``, one row per organization, maintained in the writing transaction by
triggers on the replicated tables, so that every writer (REST, sync pushes, bulk imports, purges, cascades
of deleted records) keeps them exact without knowing about them, and the check reads one row.

- PostgreSQL: one statement-level trigger per event (insert, update, delete) per table, with its transition
  tables: a multi-row statement (a purge's ``DELETE``) updates the row once. The server's bulk inserts run
  as psycopg's pipelined executemany, one statement per row, so they fire it per row: ~6 % of a bulk push
  of 1,000 records (docs/benchmarks.md); multi-row INSERTs through SQLAlchemy cost more than that. The
  function runs as the writer, under the tenant's row-level security, which admits the writer's
  organization only (as it does for the rows).
- SQLite: row-level triggers (``AFTER UPDATE OF revision, org_id``).

One row per organization (not per table): every trigger of a transaction updates that one row, so
concurrent writers of one organization wait for each other there (they already do on ``org_revisions``)
and can never lock two such rows in opposite orders. The row is created with the organization (and by this
migration for the existing ones, from their current rows); triggers only ever update it, so the rows of an
organization being deleted, whose ``sync_sums`` row goes by the same cascade, never recreate it. The check
falls back to counting when an organization has no row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outputhub.server.migrations import rls

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = (
    "tags",
    "knowledge_types",
    "accuracy_levels",
    "development_stages",
    "gpt_models",
    "agent_groups",
    "custom_gpts",
    "prompts",
    "outputs",
)
"""The replicated tables at this revision (frozen here: a table added later adds its columns and triggers
in its own migration)."""

EVENTS = ("insert", "update", "delete")


def _columns(table: str) -> tuple[str, str]:
    return f"{table}_count", f"{table}_revisions"


def _postgres_function(table: str) -> str:
    count, total = _columns(table)

    def apply(deltas: str) -> str:
        return (
            f"UPDATE sync_sums AS s SET {count} = s.{count} + d.n, {total} = s.{total} + d.total "
            f"FROM ({deltas}) AS d WHERE s.org_id = d.org_id;"
        )

    added = "SELECT org_id, count(*) AS n, sum(revision) AS total FROM sums_new GROUP BY org_id"
    removed = "SELECT org_id, -count(*) AS n, -sum(revision) AS total FROM sums_old GROUP BY org_id"
    changed = (
        "SELECT org_id, sum(n) AS n, sum(total) AS total FROM (SELECT org_id, 1 AS n, revision AS total "
        "FROM sums_new UNION ALL SELECT org_id, -1, -revision FROM sums_old) AS x GROUP BY org_id"
    )
    return f"""
CREATE FUNCTION sync_sums_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {apply(added)}
    ELSIF TG_OP = 'DELETE' THEN
        {apply(removed)}
    ELSE
        {apply(changed)}
    END IF;
    RETURN NULL;
END
$$"""


def _postgres_triggers(table: str) -> list[str]:
    referencing = {
        "insert": "NEW TABLE AS sums_new",
        "update": "OLD TABLE AS sums_old NEW TABLE AS sums_new",
        "delete": "OLD TABLE AS sums_old",
    }
    return [
        f"CREATE TRIGGER sync_sums_{event} AFTER {event.upper()} ON {table} REFERENCING {referencing[event]} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION sync_sums_{table}()"
        for event in EVENTS
    ]


def _sqlite_triggers(table: str) -> list[str]:
    count, total = _columns(table)

    def add(row: str, sign: str) -> str:
        return (
            f"UPDATE sync_sums SET {count} = {count} {sign} 1, {total} = {total} {sign} {row}.revision "
            f"WHERE org_id = {row}.org_id;"
        )

    body = {
        "insert": add("NEW", "+"),
        "update": add("OLD", "-") + " " + add("NEW", "+"),
        "delete": add("OLD", "-"),
    }
    when = {"insert": "INSERT", "update": "UPDATE OF revision, org_id", "delete": "DELETE"}
    return [
        f"CREATE TRIGGER sync_sums_{table}_{event} AFTER {when[event]} ON {table} BEGIN {body[event]} END"
        for event in EVENTS
    ]


def _backfill() -> None:
    """One row per existing organization, from its rows (one organization per transaction setting: row-level
    security admits one at a time)."""
    bind = op.get_bind()
    names = [name for table in TABLES for name in _columns(table)]
    figures = ", ".join(
        f"(SELECT count(*) FROM {table} WHERE org_id = :org), "
        f"(SELECT coalesce(sum(revision), 0) FROM {table} WHERE org_id = :org)"
        for table in TABLES
    )
    statement = sa.text(
        f"INSERT INTO sync_sums (org_id, {', '.join(names)}) SELECT :org, {figures}"
    ).bindparams(sa.bindparam("org", type_=sa.Uuid()))
    orgs = [row[0] for row in bind.execute(sa.text("SELECT id FROM organizations").columns(id=sa.Uuid()))]
    for org in orgs:
        if rls.on_postgres():
            bind.execute(sa.text("SELECT set_config('outputhub.org_id', :org, true)"), {"org": str(org)})
        bind.execute(statement, {"org": org})
    if rls.on_postgres():
        bind.execute(sa.text("SELECT set_config('outputhub.org_id', '', true)"))


def upgrade() -> None:
    op.create_table(
        "sync_sums",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
            for table in TABLES
            for name in _columns(table)
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_sync_sums_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_sync_sums")),
    )
    if rls.on_postgres():
        rls.secure("sync_sums")
        for table in TABLES:
            op.execute(_postgres_function(table))
            for statement in _postgres_triggers(table):
                op.execute(statement)
    else:
        for table in TABLES:
            for statement in _sqlite_triggers(table):
                op.execute(statement)
    # after the triggers: on PostgreSQL they are in place (and the tables locked against writers) before the
    # rows are counted, so no write falls between the two
    _backfill()


def downgrade() -> None:
    for table in TABLES:
        if rls.on_postgres():
            for event in EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS sync_sums_{event} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS sync_sums_{table}()")
        else:
            for event in EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS sync_sums_{table}_{event}")
    if rls.on_postgres():
        rls.release("sync_sums")
    op.drop_table("sync_sums")
