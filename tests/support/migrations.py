"""Running the server's migrations again in a test: take the schema back, then ``migrate.upgrade`` it."""

from __future__ import annotations

from alembic import command
from sqlalchemy.engine import Engine

from outputhub.server.storage import migrate


def downgrade_to(engine: Engine, revision: str) -> None:
    """Take the schema of ``engine``'s database back to ``revision`` (its data as the migrations leave it)."""
    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
