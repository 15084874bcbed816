"""The ``outputhub`` command: ``serve``, ``db upgrade`` / ``db current``."""

from __future__ import annotations

from typing import Annotated

import typer

from outputhub.desktop.replica_cli import app as replica_app
from outputhub.server.settings import Settings

app = typer.Typer(help="Output Hub: curate LLM prompts and their outputs.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
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


def main() -> None:
    app()
