"""backfill sync record data: store the pull-feed data of records written before revision 0006

Revision ID: 0008
Revises: 0007

Revision 0006 added ``sync_record_states.data``; the commit hook fills it for every record written since.
Records written before have none, and a pull reads them through a slower statement that builds their JSON
(correct, only slower). This fills it once, one organization at a time (row-level security admits one
organization per transaction setting), with the SQL the commit hook uses. It is an optimization only: if the
tables no longer match what the feed expects (a later revision changed them), it is skipped with a notice
and the records keep the slower path.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    from outputhub.server.api.sync.feed import FEEDS

    bind = op.get_bind()
    dialect = bind.dialect.name
    orgs = [row[0] for row in bind.execute(sa.text("SELECT id FROM organizations").columns(id=sa.Uuid()))]
    for org in orgs:
        savepoint = bind.begin_nested()
        try:
            if dialect == "postgresql":
                bind.execute(sa.text("SELECT set_config('outputhub.org_id', :org, true)"), {"org": str(org)})
            for feed in FEEDS:
                bind.execute(
                    sa.text(
                        f"UPDATE sync_record_states AS s SET data = {feed.data_sql(dialect)} "
                        f"FROM {feed.table.__tablename__} AS t WHERE t.org_id = :org AND s.org_id = t.org_id "
                        "AND s.record_id = t.id AND s.revision = t.revision AND s.data IS NULL"
                    ).bindparams(sa.bindparam("org", type_=sa.Uuid())),
                    {"org": org},
                )
            savepoint.commit()
        except sa.exc.DBAPIError as exc:
            savepoint.rollback()
            log.warning("sync record data not backfilled for organization %s (%s): pulls build it", org, exc)


def downgrade() -> None:
    pass  # the column goes with revision 0006's downgrade
