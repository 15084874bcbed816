"""The ``outputhub`` command: ``serve``, ``worker``, ``jobs``, ``desktop``, ``db upgrade`` / ``current``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from outputhub.desktop.replica_cli import app as replica_app
from outputhub.server.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

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
    typer.echo(f"Output Hub on http://{host}:{port} (docs at /docs), storage: {storage_label(settings)}")
    if workers > 1 and settings.is_postgres:
        # the workers read their settings from the environment: they share no cache without Redis
        os.environ["OUTPUTHUB_SERVER_PROCESSES"] = str(workers)
        uvicorn.run("outputhub.server.main:create_app", factory=True, host=host, port=port, workers=workers)
    else:
        uvicorn.run(create_app(settings), host=host, port=port)


def storage_label(settings: Settings) -> str:
    """Where ``serve`` keeps its data, in words (a SQLite URL was called PostgreSQL; QA)."""
    if settings.is_postgres:
        return "PostgreSQL"
    if settings.database_url:
        return f"SQLite ({settings.database_url})"
    return f"SQLite in {settings.data_dir}"


@app.command()
def desktop(
    replica: Annotated[
        Path | None,
        typer.Option(help="The encrypted library file (default: desktop-replica.ohb in the data dir)."),
    ] = None,
) -> None:
    """Open the desktop app (PySide6) on the encrypted local replica; creates it on first run."""
    try:
        from outputhub.desktop.app import run
    except ImportError as exc:
        typer.echo(f"the desktop app needs PySide6: pip install 'outputhub[desktop]' ({exc})", err=True)
        raise typer.Exit(2) from exc

    path = replica if replica is not None else Settings().data_dir / "desktop-replica.ohb"
    raise typer.Exit(run(replica_path=path.expanduser()))


jobs_app = typer.Typer(help="Background jobs (webhook deliveries, checks, imports).", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


@app.command()
def worker(
    threads: Annotated[int | None, typer.Option(help="Threads (OUTPUTHUB_JOBS_WORKER_THREADS).")] = None,
) -> None:
    """Run background jobs from the Redis queue (OUTPUTHUB_REDIS_URL); also relays the database outbox.
    Without Redis, `outputhub serve` runs the jobs itself and this is not needed."""
    import signal
    import threading

    from outputhub.server.main import build_services_and_background, prepare_database

    settings = Settings()
    if threads:
        settings = settings.model_copy(update={"jobs_worker_threads": threads})
    services, background = build_services_and_background(settings)
    prepare_database(services)
    if not settings.redis_url:
        typer.echo("warning: OUTPUTHUB_REDIS_URL is unset: this worker sees only its own jobs", err=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    background.worker.start()
    typer.echo(f"worker running ({settings.jobs_worker_threads} threads); Ctrl-C to stop")
    try:
        stop.wait()
    finally:
        background.stop()
        services.engine.dispose()
    typer.echo("worker stopped")


@jobs_app.command("failed")
def jobs_failed(
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Jobs that used every attempt (the dead letters), newest first."""
    import json

    from outputhub.server.main import build_services_and_background

    services, _ = build_services_and_background(Settings())
    assert services.jobs is not None
    views = services.jobs.list_jobs(status="failed", limit=limit)
    for v in views:
        if as_json:
            typer.echo(json.dumps({**v.__dict__}, default=str))
        else:
            error = (v.last_error or "").splitlines()[-1:] or [""]
            typer.echo(
                f"{v.id}  {v.kind:<28} org={v.org_id} attempts={v.attempts} {v.updated_at:%F %T}  {error[0]}"
            )
    if not views and not as_json:
        typer.echo("no failed jobs")


@jobs_app.command("retry")
def jobs_retry(job_id: Annotated[str, typer.Argument(help="The failed job's id.")]) -> None:
    """Give a failed job a fresh set of attempts."""
    import uuid

    from outputhub.server.main import build_services_and_background

    services, _ = build_services_and_background(Settings())
    assert services.jobs is not None
    view = services.jobs.retry(uuid.UUID(job_id))
    typer.echo(f"{view.id} is {view.status} again")


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
        int,
        typer.Option(min=0, max=36_500, help="Purge records deleted longer ago than this (up to 100 years)."),
    ] = 90,
    org: Annotated[
        str | None, typer.Option(help="Only this organization (its id); every organization without it.")
    ] = None,
) -> None:
    """Drop long-deleted records for good; run it from cron or the worker host. Each replica drops them at
    its next sync (the purge log names them to every pull). Log entries older than the same retention are
    forgotten: a replica that has not synced since then pulls everything again at its next sync, its local
    edits kept (docs/sync-protocol.md, "Purges and the purge log")."""
    from datetime import UTC, datetime, timedelta

    from outputhub.server.api.sync.service import purge_tombstones

    before = datetime.now(UTC) - timedelta(days=older_than_days)
    total = forgotten = orgs = 0
    for org_id, session in _each_organization(org):
        done = purge_tombstones(session, org_id=org_id, before=before)
        total += done.records
        forgotten += done.forgotten
        orgs += 1
    typer.echo(
        f"purged {total} deleted record(s) older than {older_than_days} day(s) in {orgs} organization(s)"
        + (
            f"; forgot {forgotten} purge log entr{'y' if forgotten == 1 else 'ies'} older than that "
            "(a replica that has not synced since they were made pulls everything again)"
            if forgotten
            else ""
        )
    )


@sync_app.command("keep-referenced")
def sync_keep_referenced() -> None:
    """Restore every deleted record that a live record still names (an output's prompt, a record's tags and
    other lookups), each with its delete kept as a conflict, as every push does since 2026-11-27; for data
    synced before. Safe to run any time: it changes nothing when nothing dangles."""
    from datetime import UTC, datetime

    from outputhub.common.roles import Role
    from outputhub.server.api.base import Tenant, lock_org_writes
    from outputhub.server.api.sync.push import keep_referenced

    total = orgs = 0
    for org_id, session in _each_organization():
        lock_org_writes(session, org_id=org_id)
        tenant = Tenant(org_id=org_id, role=Role.OWNER, actor="system:keep-referenced")
        total += keep_referenced(session, tenant=tenant, now=datetime.now(UTC))
        orgs += 1
    typer.echo(f"restored {total} deleted records that live records name, in {orgs} organizations")


def _existing_database() -> Engine:
    """The configured database, if it is an Output Hub database at this version's schema; else a clear error
    (exit 1). A mistyped OUTPUTHUB_DATA_DIR made the housekeeping commands create an empty SQLite file there
    and fail with a long traceback (QA)."""
    from outputhub.server.storage import migrate
    from outputhub.server.storage.database import make_engine

    settings = Settings()
    where = storage_label(settings)
    if not settings.database_url and not (settings.data_dir / "outputhub.sqlite3").is_file():
        typer.echo(
            f"no Output Hub database in {settings.data_dir} (check OUTPUTHUB_DATA_DIR or "
            "OUTPUTHUB_DATABASE_URL; `outputhub serve` creates one)",
            err=True,
        )
        raise typer.Exit(1)
    engine = make_engine(settings)
    try:
        current, newest = migrate.current_revision(engine), migrate.head_revision()
    except Exception as exc:  # unreachable server, wrong credentials, not a database
        typer.echo(f"cannot read the database ({where}): {exc.__class__.__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    if current != newest:
        typer.echo(
            f"the database ({where}) is at schema {current or 'none (not an Output Hub database?)'}; this "
            f"version needs {newest}: run `outputhub db upgrade` first",
            err=True,
        )
        raise typer.Exit(1)
    return engine


def _each_organization(only: str | None = None) -> Iterator[tuple[uuid.UUID, Session]]:
    """Each organization's id (``only``: that one, by id) with a session scoped to it, one transaction per
    organization. Exits 2 when ``only`` names no organization."""
    from sqlalchemy import select

    from outputhub.server.storage.database import make_session_factory, set_tenant, unit_of_work
    from outputhub.server.storage.tables import Organization

    wanted: uuid.UUID | None = None
    if only is not None:
        try:
            wanted = uuid.UUID(only)
        except ValueError:
            typer.echo(f"error: --org {only!r} is not an organization id (a UUID)", err=True)
            raise typer.Exit(2) from None
    factory = make_session_factory(_existing_database())
    with unit_of_work(factory, read_only=True) as session:
        query = select(Organization.id)
        if wanted is not None:
            query = query.where(Organization.id == wanted)
        orgs = list(session.execute(query).scalars())
    if wanted is not None and not orgs:
        typer.echo(f"error: there is no organization {wanted}", err=True)
        raise typer.Exit(2)
    for org_id in orgs:
        with unit_of_work(factory) as session:
            set_tenant(session, org_id=org_id)
            yield org_id, session


documents_app = typer.Typer(help="The document store: output bodies and the audit log.", no_args_is_help=True)
app.add_typer(documents_app, name="documents")


def _document_services():  # type: ignore[no-untyped-def]  # noqa: ANN202
    from outputhub.server.main import build_services

    return build_services(Settings())


@documents_app.command("reconcile")
def documents_reconcile(
    grace_seconds: Annotated[
        int | None,
        typer.Option(
            help="Leave bodies pending for less than this alone (OUTPUTHUB_DOCUMENTS_PENDING_GRACE_SECONDS)."
        ),
    ] = None,
) -> None:
    """Repair a crash between the two writes of an output body: confirm pending bodies whose row committed,
    delete those whose row never did. Also delivers events left in the outbox."""
    from datetime import timedelta

    from outputhub.server.api.outputs.bodies import dangling_refs, reconcile

    services = _document_services()
    store = services.document_store()
    grace = services.settings.documents_pending_grace_seconds if grace_seconds is None else grace_seconds
    report = reconcile(store, session_factory=services.session_factory, grace=timedelta(seconds=grace))
    typer.echo(str(report))
    if services.outbox is not None:
        typer.echo(f"{services.outbox.drain(services.event_handlers)} undelivered events delivered")
    missing = dangling_refs(store, session_factory=services.session_factory)
    typer.echo(f"{len(missing)} references without a document")
    store.close()
    services.engine.dispose()
    raise typer.Exit(1 if missing else 0)


@documents_app.command("ensure-indexes")
def documents_ensure_indexes() -> None:
    """Create the document-store indexes and the audit TTL (idempotent; the server does it at start-up)."""
    services = _document_services()
    store = services.document_store()
    store.ensure_indexes()
    typer.echo(f"indexes ensured on the {store.kind} document store")
    store.close()
    services.engine.dispose()


def main() -> None:
    app()
