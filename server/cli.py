"""The ``outputhub`` command: ``serve``, ``db upgrade`` / ``db current``."""

from __future__ import annotations

from typing import Annotated

import typer

from outputhub.desktop.replica_cli import app as replica_app
from outputhub.server.settings import Settings

app = typer.Typer(help="Output Hub: curate LLM prompts and their outputs.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
sync_app = typer.Typer(help="Replication housekeeping.", no_args_is_help=True)
app.add_typer(sync_app, name="sync")
app.add_typer(replica_app, name="replica")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL only; SQLite uses 1).")] = 1,
) -> None:
    """Run the API server (and its docs at /docs). Without OUTPUTHUB_DATABASE_URL it uses embedded SQLite."""
    import uvicorn

    from outputhub.server.main import create_app

    settings = Settings()
    where = (settings.database_url and "PostgreSQL") or f"SQLite in {settings.data_dir}"
    typer.echo(f"Output Hub on http://{host}:{port} (docs at /docs), storage: {where}")
    if workers > 1 and settings.is_postgres:
        uvicorn.run("outputhub.server.main:create_app", factory=True, host=host, port=port, workers=workers)
    else:
        uvicorn.run(create_app(settings), host=host, port=port)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply schema migrations."""
    from outputhub.server.storage import migrate
    from outputhub.server.storage.database import make_engine

    engine = make_engine(Settings())
    migrate.upgrade(engine, revision)
    typer.echo(f"database at revision {migrate.current_revision(engine)}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the newest one known."""
    from outputhub.server.storage import migrate
    from outputhub.server.storage.database import make_engine

    engine = make_engine(Settings())
    typer.echo(f"database: {migrate.current_revision(engine)}  newest: {migrate.head_revision()}")


@sync_app.command("purge-tombstones")
def sync_purge_tombstones(
    older_than_days: Annotated[
        int, typer.Option(min=0, help="Purge records deleted longer ago than this.")
    ] = 90,
) -> None:
    """Drop long-deleted records for good. Replicas that last synced before them pull everything again
    (their local edits are kept); run it from cron or the worker host."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from outputhub.server.api.sync.service import purge_tombstones
    from outputhub.server.storage.database import make_engine, make_session_factory, set_tenant, unit_of_work
    from outputhub.server.storage.tables import Organization

    settings = Settings()
    factory = make_session_factory(make_engine(settings))
    before = datetime.now(UTC) - timedelta(days=older_than_days)
    with unit_of_work(factory, read_only=True) as session:
        orgs = list(session.execute(select(Organization.id)).scalars())
    total = 0
    for org_id in orgs:
        with unit_of_work(factory) as session:
            set_tenant(session, org_id=org_id)
            total += purge_tombstones(session, org_id=org_id, before=before)
    typer.echo(
        f"purged {total} deleted records older than {older_than_days} days in {len(orgs)} organizations"
    )


def main() -> None:
    app()
