"""``outputhub replica ...``: every desktop action on the encrypted replica, scriptable and headless.

The passphrase comes from ``--passphrase-file`` or ``OUTPUTHUB_PASSPHRASE`` (never a command-line argument,
which other users could read in the process list). ``--json`` (before or after the command) prints
machine-readable results. Errors exit non-zero with one line saying what went wrong: 2 replica (wrong
passphrase, corrupt, missing) or usage (an option missing, malformed or contradicting another), 3 server
unreachable, 4 permission or login refused, 5 a conflict or edit
that is not possible, 1 anything else. A ``sync`` whose edits the server refused prints its report and exits
4 when one was refused for want of permission (a viewer's edit), else 5; the refused edits are kept
(``conflicts list``). Ctrl+C exits 130 saying what is kept (:data:`INTERRUPTED`); output whose reader has
gone (``export | head``) exits 141 quietly (:data:`READER_GONE`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn

import click
import typer
from typer.core import TyperGroup

from outputhub.common.errors import InvalidInputError
from outputhub.common.ids import canonical_id
from outputhub.desktop.services.conflicts import (
    KeptInUse,
    TakenAlong,
    conflict_kind,
    kept_by_edit,
    kept_in_use,
    reapply_refused,
    resolve_conflict,
    sides_written_here,
    suggest,
)
from outputhub.desktop.services.library import LibraryService
from outputhub.desktop.services.sync import (
    Organization,
    OrganizationChoiceError,
    adopt_older_login,
    conflict_counts,
    find_organization,
    list_organizations,
    normalize_url,
    progress_text,
    renew_saved_login,
)
from outputhub.desktop.services.vault import require_acceptable_passphrase
from outputhub.desktop.storage import open_replica
from outputhub.desktop.storage.errors import ReplicaError, WrongPassphraseError
from outputhub.desktop.storage.records import LookupKind
from outputhub.desktop.storage.replica import CLOSED_CONFLICTS_KEPT, Replica
from outputhub.desktop.storage.sync_store import LOCAL_ORG, REJECTED_FIELD, ReplicaSyncStore
from outputhub.desktop.storage.tables import to_timestamp
from outputhub.sync.client import (
    AuthenticationFailedError,
    HttpRemote,
    LocalEditError,
    LocalLibrary,
    Merged,
    NotFoundOnServerError,
    ServerUnreachableError,
    SyncClient,
    SyncError,
    SyncPermissionError,
    login,
    refresh_tokens,
)
from outputhub.sync.engine import DEFAULT_SCHEMA, LOOKUP_ENTITIES, TOMBSTONE
from outputhub.sync.protocol import ENTITY_TABLES, TABLE_ENTITIES

JSON_FLAG = "--json"


class ReplicaGroup(TyperGroup):
    """``--json`` belongs to ``outputhub replica`` itself, and scripts also write it after the command
    (``outputhub replica list prompt --json``): it is moved in front of the command before parsing. Nothing
    after a ``--`` is touched (``search -- --json`` searches for the word)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        as_json = JSON_FLAG in args[:end]
        if as_json:
            args = [JSON_FLAG, *(a for a in args[:end] if a != JSON_FLAG), *args[end:]]
        try:
            return super().parse_args(ctx, args)  # (which takes the words it reads off ``args``)
        except Exception as exc:  # an unknown option before the command: its options are not read yet (QA)
            _say_usage_error(exc, as_json=as_json)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        main_thread = threading.current_thread() is threading.main_thread()
        before = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
        try:
            return super().invoke(ctx)
        except OSError as exc:  # a path the command cannot use: a name too long, a directory it may not enter
            where = exc.filename if exc.filename is not None else "a file"
            fail(2, f"cannot use {where}: {exc.strerror or exc}")
        except KeyboardInterrupt as exc:  # Ctrl+C in any command: said, not a bare exit status 130 (QA)
            stopped(exc)
        except Exception as exc:
            _say_usage_error(exc, as_json=bool(ctx.params.get("as_json")))
            raise
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, before)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a service manager stopping a scheduled sync), raised where Ctrl+C is, so that the
    command stops as it does for Ctrl+C, with its one line; it ended without a word, a progress line left
    open (QA)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def stopped(exc: KeyboardInterrupt) -> NoReturn:
    """Exit as Ctrl+C (130) or SIGTERM (143) asks, saying what is kept."""
    if isinstance(exc, Terminated):
        fail(143, INTERRUPTED.replace("interrupted (Ctrl+C)", "terminated (SIGTERM)", 1))
    fail(130, INTERRUPTED)


def _say_usage_error(exc: Exception, *, as_json: bool) -> None:
    """A usage error (a missing argument, an unknown command or option) is said on stderr, as ever, and with
    --json on stdout too, as every other error (QA). Typer brings its own click: its exception classes are
    not click's, so a usage error is known by its shape."""
    said = getattr(exc, "format_message", None)
    if as_json and callable(said) and getattr(exc, "exit_code", None) == 2:
        out(json.dumps({"error": said(), "exit": 2}))


INTERRUPTED: Final = (
    "interrupted (Ctrl+C): every step that had finished is saved in the replica and the one cut short was "
    "undone whole (local edits are kept; an interrupted sync goes on where it stopped at the next sync)"
)
"""What Ctrl+C in a command says: each write to the replica is one transaction (an edit with its outbox
entry; a sync's acknowledged pushes, and each pulled page with its cursor), rolled back when interrupted."""


app = typer.Typer(
    help="The encrypted local replica: edit offline, sync, resolve conflicts.",
    no_args_is_help=True,
    cls=ReplicaGroup,
)
conflicts_app = typer.Typer(help="Merge conflicts and refused edits.", no_args_is_help=True)
app.add_typer(conflicts_app, name="conflicts")


def default_replica_path() -> Path:
    """The desktop app's default library (``outputhub desktop`` opens the same file)."""
    return Path.home() / ".local" / "share" / "outputhub" / "desktop-replica.ohb"


class Context:
    def __init__(
        self, path: Path, passphrase_file: Path | None, passphrase_env: str | None, as_json: bool
    ) -> None:
        self.path = path
        self.passphrase_file = passphrase_file
        self.passphrase_env = passphrase_env
        self.as_json = as_json

    def passphrase(self) -> str:
        if self.passphrase_file is not None:
            try:
                # a byte order mark (Notepad's UTF-8) is not part of the passphrase (QA)
                lines = self.passphrase_file.read_text(encoding="utf-8-sig").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not text"
                fail(2, f"cannot read the passphrase file {self.passphrase_file}: {reason}")
            if not lines or not lines[0]:
                fail(2, f"the passphrase file {self.passphrase_file} has no passphrase on its first line")
            return lines[0]  # the first line, without its line ending (\n or \r\n)
        if self.passphrase_env:
            # as a file's first line: without a line ending (a secret from a file or a container's store
            # often ends in one; it became part of the key, and the replica then opened through this
            # variable only, never from a file or as typed; QA)
            lines = self.passphrase_env.splitlines()
            if lines and lines[0]:
                return lines[0]  # the first line, as of a file (a newline inside also ended it there: QA)
        fail(2, "no passphrase: use --passphrase-file FILE or set OUTPUTHUB_PASSPHRASE")

    def _as_given(self) -> str | None:
        """The environment's passphrase with its line ending, when :meth:`passphrase` took it off: replicas
        made before that took it as part of the key."""
        env = self.passphrase_env
        if self.passphrase_file is None and env and env != self.passphrase():
            return env
        return None

    @contextmanager
    def replica(self, *, create: bool = False) -> Iterator[Replica]:
        try:
            try:
                replica = open_replica(self.path, passphrase=self.passphrase(), create=create)
            except WrongPassphraseError:
                given = None if create else self._as_given()
                if given is None:
                    raise
                replica = open_replica(self.path, passphrase=given)
        except ReplicaError as exc:
            fail(2, str(exc))
        except ValueError as exc:  # the passphrase: empty, or a NUL character (a binary file)
            fail(2, f"cannot use the passphrase: {exc}")
        try:
            replica.wait_for_lock(LOCK_WAIT_SECONDS)
            yield replica
        except ReplicaError as exc:  # found while reading or writing (a damaged page): nothing was changed
            fail(2, str(exc))
        finally:
            replica.close()


LOCK_WAIT_SECONDS: Final = 120.0
"""How long a command waits for another holding the replica (overlapping syncs, an edit during a sync): a
sync's write of a large pushed batch took longer than the 5 s default on a loaded machine, and the other
command failed with "the replica is locked" (QA). A script would rather wait."""

MAX_LIMIT: Final = 1_000_000
"""The most records ``list`` and ``search`` take ``--limit`` for (a larger number overflowed SQLite: QA)."""

EDITS_KEPT = "(local edits are kept and will be pushed next time)"
EDITS_KEPT_AWAY: Final = (
    "(local edits are kept in this replica: they are pushed if the account is made a member again, and "
    "`outputhub replica export` saves them meanwhile)"
)
"""For an organization this account cannot reach any more: "next time" read as if it would come by itself
(QA)."""


def fail(code: int, message: str) -> NoReturn:
    """Exit ``code`` with ``message`` on stderr; with ``--json``, also ``{"error": message, "exit": code}`` on
    stdout, so a script reads every outcome from stdout."""
    typer.echo(f"error: {message}", err=True)
    if _invocation is not None and _invocation.as_json:
        out(json.dumps({"error": message, "exit": code}))
    raise typer.Exit(code)


_invocation: Context | None = None
"""This invocation's options (set by the ``replica`` callback), for :func:`fail`."""


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value") and not isinstance(value, str | int | float | bool):
        return value.value
    return value


READER_GONE: Final = 141
"""The exit status when whatever reads the output closed it first (``replica list | head``): 128 + SIGPIPE,
what a shell reports for a tool the signal stopped, and said on no stream (as ``git log | head`` says
nothing)."""


def out(text: str) -> None:
    """``text`` and a newline on stdout. When the reader has gone, exit :data:`READER_GONE` quietly: every
    step is saved in the replica by then, and the rest of the output has no one to read it. It said "error:
    cannot use a file: Broken pipe" (QA)."""
    try:
        typer.echo(text)
        sys.stdout.flush()
    except BrokenPipeError:
        with suppress(OSError):  # the interpreter's own flush at exit must not fail on the closed pipe
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise typer.Exit(READER_GONE) from None


def emit(ctx: Context, value: Any, text: Callable[[], str] | str) -> None:
    if ctx.as_json:
        out(json.dumps(_jsonable(value), indent=2, sort_keys=True))
    else:
        out(text() if callable(text) else text)


def entity_name(raw: str) -> str:
    name = raw.strip().lower().replace("-", "_")
    if name in ENTITY_TABLES:
        return name
    if name in TABLE_ENTITIES:
        return TABLE_ENTITIES[name]
    kinds = ", ".join(e.replace("_", "-") for e in ENTITY_TABLES)  # as --help spells them (QA)
    fail(2, f"unknown kind {raw!r}; use one of {kinds}")
    raise AssertionError


def parse_sets(entity: str, pairs: list[str]) -> dict[str, Any]:
    fields = DEFAULT_SCHEMA.entity(entity).fields
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            fail(2, f"--set takes field=value, got {pair!r}")
        kind = fields.get(name)
        if kind is None:
            fail(5, f"{entity} has no field {name!r} (fields: {', '.join(fields)})")
        elif kind.value == "set":
            values[name] = [v.strip() for v in value.split(",") if v.strip()]  # "a, b" reads as "a,b"
        elif name == "position":
            try:
                values[name] = int(value)
            except ValueError:
                fail(5, "position must be a whole number")
        elif value == "" and name.endswith("_id"):
            values[name] = None
        else:
            values[name] = value.replace("\\n", "\n")
    return values


def parse_values(entity: str, pairs: list[str], files: list[str]) -> dict[str, Any]:
    """``--set field=value`` pairs and ``--set-file field=PATH`` pairs (the file's text, verbatim: long
    outputs, text with a literal backslash-n) as one set of values."""
    if not pairs and not files:
        fail(2, "give at least one --set field=value or --set-file field=PATH")
    given = [pair.partition("=")[0] for pair in (*pairs, *files)]
    twice = next((name for n, name in enumerate(given) if name in given[:n]), None)
    if twice is not None:  # the last one won without a word (QA)
        said = f"{twice!r} is given twice: give each field once"
        raise typer.BadParameter(said, param_hint="--set/--set-file")
    values = parse_sets(entity, pairs)
    fields = DEFAULT_SCHEMA.entity(entity).fields
    for pair in files:
        name, sep, path = pair.partition("=")
        if not sep or not path:
            fail(2, f"--set-file takes field=PATH, got {pair!r}")
        kind = fields.get(name)
        if kind is None or kind.value == "set":
            fail(5, f"{entity} has no text field {name!r} to read from a file")
        try:
            values[name] = Path(path).read_bytes().decode("utf-8")  # verbatim: CRLF stays CRLF (QA)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            fail(5, f"cannot read {path} for {name}: {reason}")
    return values


@contextmanager
def edits(ctx: Context) -> Iterator[tuple[Replica, ReplicaSyncStore, LocalLibrary]]:
    with ctx.replica() as replica:
        store = ReplicaSyncStore(replica)
        try:
            yield replica, store, LocalLibrary(store)
        except LocalEditError as exc:
            fail(5, str(exc))


def _typed_id(text: str) -> str:
    """An id as typed: in upper case, in braces or without dashes it names the record (or conflict) it names
    in the REST API, written as ids are; anything else is left as it is, for the lookup to refuse."""
    # text that is not UTF-8 (a stray byte from the shell) cannot be any id: looked up as its escaped form,
    # it is "no ... with id" rather than a traceback (QA)
    return canonical_id(text) or text.encode("utf-8", "backslashreplace").decode("utf-8")


RecordId = Annotated[str, typer.Argument(parser=_typed_id, metavar="ID")]


@app.callback()
def main(
    typer_ctx: typer.Context,
    replica: Annotated[
        Path, typer.Option("--replica", envvar="OUTPUTHUB_REPLICA", help="The replica file.")
    ] = default_replica_path(),
    passphrase_file: Annotated[
        Path | None, typer.Option(help="A file holding the passphrase (first line).")
    ] = None,
    passphrase: Annotated[
        str | None,
        typer.Option(
            envvar="OUTPUTHUB_PASSPHRASE", hidden=True, help="Use the environment variable instead."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option(JSON_FLAG, help="Machine-readable output (also accepted after the command).")
    ] = False,
) -> None:
    global _invocation
    typer_ctx.obj = _invocation = Context(replica, passphrase_file, passphrase, as_json)


@app.command()
def init(typer_ctx: typer.Context) -> None:
    """Create a new encrypted replica (refuses to touch an existing file)."""
    ctx: Context = typer_ctx.obj
    if ctx.path.exists():
        fail(2, f"{ctx.path} already exists; it was left as it is")
    # no passphrase, or one the desktop app would refuse for a new replica: refused before its folders are
    # made (QA)
    try:
        require_acceptable_passphrase(ctx.passphrase())
    except InvalidInputError as exc:
        hint = exc.errors[0].message if exc.errors else str(exc)
        fail(2, f"the passphrase is too weak for a new replica: {hint}")
    ctx.path.parent.mkdir(parents=True, exist_ok=True)
    with ctx.replica(create=True) as replica:
        emit(
            ctx,
            {"replica": str(ctx.path), "cipher": replica.cipher_version(), "node_id": replica.node_id},
            f"created {ctx.path} (SQLCipher {replica.cipher_version()})",
        )


@app.command()
def attach(
    typer_ctx: typer.Context,
    server: Annotated[str, typer.Option(help="The server's base URL, e.g. https://hub.example.com")],
    org: Annotated[
        str | None,
        typer.Option(
            help="The organization, by id or name. With --email it may be left out when the account belongs "
            "to one organization (or the replica is attached already); with --api-key-file give its id."
        ),
    ] = None,
    email: Annotated[
        str | None, typer.Option(help="Log in as this user (password from --password-file).")
    ] = None,
    password_file: Annotated[Path | None, typer.Option(help="A file holding the password.")] = None,
    api_key_file: Annotated[Path | None, typer.Option(help="A file holding an organization API key.")] = None,
) -> None:
    """Tie the replica to a server and organization; credentials are kept inside the encrypted replica."""
    ctx: Context = typer_ctx.obj
    if (email is None) == (api_key_file is None):
        fail(2, "give either --email (with --password-file) or --api-key-file")
    if org is not None and not org.strip():  # "" was taken as no organization: attached to none (QA)
        fail(5, "--org is empty: give the organization's name or id")
    if api_key_file is not None and org is None:
        fail(5, "--api-key-file needs --org ORG_ID (the organization the key belongs to)")
    try:
        server = normalize_url(server)
    except InvalidInputError as exc:
        fail(
            5,
            f"--server {server!r}: give the server's URL with http:// or https://, e.g. "
            f"https://hub.example.com ({exc.errors[0].message if exc.errors else exc})",
        )
    if api_key_file is not None and org is not None:
        if canonical_id(org.strip()) is None:
            fail(5, f"--org {org!r}: with --api-key-file, give the organization's id (a UUID)")
        org = canonical_id(org.strip())
    with ctx.replica() as replica:
        store = ReplicaSyncStore(replica)
        try:
            if api_key_file is not None:
                credential = api_key_file.read_text().strip()
                assert org is not None
                org_id, org_name = org, ""
                if not credential:
                    fail(5, f"the API key file {api_key_file} is empty")
                _check_api_key(server, credential, org_id)
                # no email: the desktop showed the one of an earlier login (QA)
                login_settings = {
                    "api_key": credential,
                    "refresh_token": None,
                    "access_token": None,
                    "email": None,
                }
            else:
                if password_file is None:
                    fail(5, "--email needs --password-file")
                assert password_file is not None and email is not None
                tokens = login(server, email=email, password=password_file.read_text().rstrip("\n"))
                login_settings = {
                    "api_key": None,
                    "refresh_token": str(tokens["refresh_token"]),
                    "access_token": str(tokens["access_token"]),
                    "email": email.strip(),
                }
                chosen = _choose_org(server, str(tokens["access_token"]), org, attached=store.org_id())
                org_id, org_name = chosen.id, chosen.name
            store.attach(org_id=org_id)
        except OSError as exc:
            fail(2, f"cannot read the credentials file: {exc.strerror}")
        except OrganizationChoiceError as exc:
            fail(5, exc.detail)
        except ValueError as exc:
            fail(5, str(exc))
        except ServerUnreachableError as exc:
            fail(3, str(exc))
        except (AuthenticationFailedError, SyncPermissionError) as exc:
            fail(4, str(exc))
        except SyncError as exc:  # any other answer that is not a yes (an organization id that is not one)
            fail(5, str(exc))
        with replica.transaction():  # the layout the desktop reads too (LOGIN_SETTINGS)
            saved = {
                "server_url": server.rstrip("/"),
                "org_id": org_id,
                "org_name": org_name or None,
                "auth_kind": None,
                "credential": None,
                **login_settings,
            }
            for key, value in saved.items():
                replica.set_setting(key=key, value=value)
        named = f"{org_name} ({org_id})" if org_name else org_id
        emit(
            ctx,
            {"server": server, "org_id": org_id, "org_name": org_name},
            f"attached to organization {named} on {server}",
        )


def _check_api_key(server: str, key: str, org_id: str) -> None:
    """Exit 4 when the server answers that ``key`` does not open organization ``org_id`` (QA: a bogus key was
    attached, and failed only at the first sync); asks for what a sync asks last, the check's sums. A server
    that does not answer now is attached to offline, the first sync checking the key. Raises the
    ``SyncError`` the answer is."""
    remote = HttpRemote(server, token=key, org_id=org_id)
    try:
        remote.checksums()
    except ServerUnreachableError:
        typer.echo(f"note: {server} does not answer now: the key is checked at the first sync", err=True)
    except NotFoundOnServerError:
        fail(4, f"organization {org_id} was not found with this API key (a key opens its own organization)")
    finally:
        remote.close()


def _choose_org(server: str, access_token: str, wanted: str | None, *, attached: str) -> Organization:
    """The organization to attach to, never asked interactively: ``wanted`` (id or name), else the one the
    replica is attached to, else the account's only one; a clear error listing them otherwise."""
    orgs = list_organizations(server, access_token)
    if not orgs:
        fail(4, "this account is not a member of any organization yet")
    if wanted is not None:
        return find_organization(orgs, wanted)
    if attached != LOCAL_ORG:  # a replica's data belongs to one organization: it keeps it
        mine = next((o for o in orgs if o.id == attached), None)
        if mine is None:
            fail(4, f"this replica belongs to organization {attached}, which this account is not a member of")
        assert mine is not None
        return mine
    if len(orgs) > 1:
        raise OrganizationChoiceError(
            "this account belongs to several organizations; choose one with --org NAME_OR_ID", orgs
        )
    return orgs[0]


LOGIN_GONE = (
    "the saved login has expired or was revoked: run `outputhub replica attach` again "
    "(a copy of a replica, e.g. a restored backup, shares its login: once both copies renew it, the "
    "server takes one for a stolen copy and revokes the login for both, so attach each copy on its own)"
)


def _refreshed_access_token(store: ReplicaSyncStore, server: str) -> str:
    """A new access token for the saved login (``renew_saved_login``, as the desktop renews it). Raises
    ``ServerUnreachableError``, or ``AuthenticationFailedError`` saying :data:`LOGIN_GONE`."""
    return renew_saved_login(store.replica, server, gone=LOGIN_GONE, refresh=refresh_tokens)


def _remote(store: ReplicaSyncStore) -> HttpRemote:
    adopt_older_login(store.replica)
    server, api_key, refresh = (
        store.replica.get_setting(key=k) for k in ("server_url", "api_key", "refresh_token")
    )
    if not server or not (api_key or refresh):
        if server:  # the desktop's Log out, or a login it found expired
            fail(
                4,
                f"this replica is not logged in to {server}: run `outputhub replica attach` (or log in in "
                "the desktop's Settings)",
            )
        fail(5, "this replica is not attached to a server yet: run `outputhub replica attach`")
    assert server is not None
    token = api_key or ""
    if not api_key:
        try:
            token = _refreshed_access_token(store, server)
        except ServerUnreachableError as exc:
            fail(3, f"{exc} {EDITS_KEPT}")
        except AuthenticationFailedError:
            fail(4, LOGIN_GONE)
        # a sync that outlasts the access token (a first sync over a slow link) renews it and goes on
        return HttpRemote(
            server, token=token, org_id=store.org_id(), renew=lambda: _refreshed_access_token(store, server)
        )
    return HttpRemote(server, token=token, org_id=store.org_id())


@app.command()
def sync(
    typer_ctx: typer.Context,
    full_check: Annotated[
        bool, typer.Option(help="Compare every record's revision with the server, not only counts and sums.")
    ] = False,
) -> None:
    """Push local edits, pull what changed, check the replica against the server."""
    ctx: Context = typer_ctx.obj
    with ctx.replica() as replica:
        store = ReplicaSyncStore(replica)
        remote = _remote(store)

        def progress(phase: str, done: int, total: int | None) -> None:
            if not ctx.as_json:
                typer.echo(f"\r{progress_text(phase, done, total)}   ", nl=False, err=True)

        try:
            report = SyncClient(store, remote, full_check=full_check).sync(progress=progress)
        except ServerUnreachableError as exc:
            fail(3, f"{exc} {EDITS_KEPT}")
        except (AuthenticationFailedError, SyncPermissionError) as exc:
            fail(4, str(exc))
        except NotFoundOnServerError as exc:  # the organization deleted, or this account removed from it
            fail(4, f"{exc} {EDITS_KEPT_AWAY}")
        except SyncError as exc:
            fail(1, str(exc))
        except KeyboardInterrupt as exc:  # Ctrl+C: said, not a bare exit status after a progress line (QA)
            stopped(exc)
        finally:
            remote.close()
        # a large pull leaves its text to index after the sync (the search backlog)
        replica.catch_up_search_index(progress=_index_progress(ctx))
        if not ctx.as_json:
            typer.echo("", err=True)

        new, changed, settled = conflict_counts(replica, report.conflicts_opened, report.conflicts_closed)

        def text() -> str:
            refused = f" ({len(report.refused)} refused, kept: `conflicts list`)" if report.refused else ""
            lines = [f"pushed {report.pushed}{refused}, pulled {report.pulled}, at revision {report.cursor}"]
            lines += [f"refused: {r['entity']} {r['id']}: {r['reason']}" for r in report.refused]
            if new:
                lines.append(f"{new} new conflict(s): see `outputhub replica conflicts list`")
            if changed:
                lines.append(
                    f"{changed} open conflict(s) changed (a side was edited again; they have new ids): "
                    "see `outputhub replica conflicts list`"
                )
            if settled:
                lines.append(
                    f"{settled} conflict(s) closed (resolved on another workstation, or their record deleted "
                    "there)"
                )
            if report.reset:
                lines.append(
                    f"{report.reset} record(s) showed changes the server does not have: shown as the server "
                    "has them again (an edit it refused is kept: `conflicts list`)"
                )
            if report.purged:
                lines.append(f"{report.purged} long-deleted record(s) the server purged: dropped here too")
            if report.full_resync and not report.repaired:
                lines.append(
                    "pulled every record again (a full resync: the server no longer keeps what changed since "
                    "this replica's last sync); local edits were kept"
                )
            if report.repaired:
                lines.append(
                    f"the replica did not match the server ({', '.join(report.mismatched_tables)}); repaired"
                )
            return "\n".join(lines)

        counts = {"conflicts_new": new, "conflicts_changed": changed, "conflicts_settled": settled}
        emit(ctx, {**_jsonable(report), **counts}, text)
        if report.refused:
            # the sync went through, but edits did not land: a script must not take that for success
            denied = any(str(r["reason"]).startswith("permission-denied") for r in report.refused)
            raise typer.Exit(4 if denied else 5)


@app.command()
def add(
    typer_ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="prompt, output, custom-gpt, tag, knowledge-type, ...")],
    values: Annotated[
        list[str] | None, typer.Option("--set", help="field=value (sets: comma-separated ids)")
    ] = None,
    files: Annotated[
        list[str] | None, typer.Option("--set-file", help="field=PATH: a text field from a file, verbatim")
    ] = None,
) -> None:
    """Create a record offline; prints its id."""
    ctx: Context = typer_ctx.obj
    entity = entity_name(kind)
    with edits(ctx) as (_replica, _store, library):
        record_id = library.create(entity, parse_values(entity, values or [], files or []))
        emit(ctx, {"id": record_id}, record_id)


@app.command()
def edit(
    typer_ctx: typer.Context,
    kind: Annotated[str, typer.Argument()],
    record_id: RecordId,
    values: Annotated[list[str] | None, typer.Option("--set", help="field=value")] = None,
    files: Annotated[
        list[str] | None, typer.Option("--set-file", help="field=PATH: a text field from a file, verbatim")
    ] = None,
) -> None:
    """Change fields of a record offline."""
    ctx: Context = typer_ctx.obj
    entity = entity_name(kind)
    with edits(ctx) as (_replica, _store, library):
        changed = library.edit(entity, record_id, parse_values(entity, values or [], files or []))
        emit(ctx, {"changed": changed}, "changed" if changed else "nothing to change")


@app.command()
def delete(
    typer_ctx: typer.Context,
    kind: str,
    record_id: RecordId,
    cascade: Annotated[
        bool, typer.Option("--cascade", help="A prompt that has outputs: delete them with it.")
    ] = False,
) -> None:
    """Delete a record (a tombstone that syncs; a concurrent edit elsewhere restores it), as the desktop app
    does: a prompt's outputs go with it (only with --cascade, as in the REST API), a tag or another lookup
    entry is taken off the records that name it."""
    ctx: Context = typer_ctx.obj
    entity = entity_name(kind)
    with edits(ctx) as (replica, _s, library):
        library.get(entity, record_id)  # "no <entity> with id ..." for an unknown one
        service = LibraryService(replica=replica, editor=library)
        try:
            plan = service.plan_deletion(entity=entity, ids=[record_id])
        except InvalidInputError:
            fail(5, f"{entity} {record_id} is deleted already")
        if plan.outputs_deleted_too and not cascade:
            fail(
                5,
                f"prompt {record_id} has {plan.outputs_deleted_too} output(s): pass --cascade to delete them "
                "with it",
            )
        deletion = service.delete_records(entity=entity, ids=[record_id])
        # what went with it: a prompt's outputs (an output is not its own dependent)
        outputs = [i for e, i in deletion.records if e == "output" and (e, i) != (entity, record_id)]
        unlinked = len({(e, i) for e, i, _f, _l in deletion.unlinked})
        said = f"deleted {record_id}"
        if outputs:
            said += f" and its {len(outputs)} output(s)"
        if unlinked:
            said += f"; taken off {unlinked} record(s) that named it"
        emit(ctx, {"deleted": record_id, "outputs_deleted": outputs, "records_unlinked": unlinked}, said)


@app.command()
def restore(typer_ctx: typer.Context, kind: str, record_id: RecordId) -> None:
    """Undo a delete. A prompt's outputs deleted with it stay deleted (it names them): restore those you
    want one by one."""
    ctx: Context = typer_ctx.obj
    with edits(ctx) as (replica, _s, library):
        entity = entity_name(kind)
        library.restore(entity, record_id)
        relinked = 0
        if entity in LOOKUP_ENTITIES:  # back on the records its delete took it off (QA)
            relinked = LibraryService(replica=replica, editor=library).relink_restored(
                entity=entity, record_id=record_id
            )
        still: list[str] = []
        if entity == "prompt":  # a restore of a prompt deleted --cascade said nothing of its outputs (QA)
            with replica.reading("find the prompt's deleted outputs") as conn:
                query = "SELECT id FROM outputs WHERE prompt_id = ? AND deleted = 1 ORDER BY seq"
                still = [str(row[0]) for row in conn.execute(query, (record_id,))]
        said = f"restored {record_id}"
        if relinked:
            said += f"; back on {relinked} record(s) its delete took it off"
        if still:
            more = f" and {len(still) - 10} more" if len(still) > 10 else ""
            said += (
                f"; its {len(still)} deleted output(s) stay deleted: {', '.join(still[:10])}{more} "
                "(`outputhub replica restore output ID` brings one back)"
            )
        emit(ctx, {"restored": record_id, "outputs_still_deleted": still, "records_relinked": relinked}, said)


@app.command()
def show(typer_ctx: typer.Context, kind: str, record_id: RecordId) -> None:
    """A record's values, revision and open conflicts."""
    ctx: Context = typer_ctx.obj
    with edits(ctx) as (replica, store, library):
        entity = entity_name(kind)
        record = {**library.get(entity, record_id), **store.details(entity, record_id)}
        # beside its merge state's conflicts, the edits of it the server refused (it said "conflicts: []"
        # while one was open; QA)
        record["refused_edits"] = [
            c.id
            for c in replica.list_conflicts(entity=entity, record_id=record_id)
            if c.field == REJECTED_FIELD
        ]
        emit(ctx, record, lambda: "\n".join(f"{k}: {v}" for k, v in record.items()))


def _rows(replica: Replica, entity: str, limit: int) -> list[Any]:
    if entity == "prompt":
        return list(replica.list_prompts(limit=limit, order_by="title"))
    if entity == "output":
        return list(replica.list_outputs(limit=limit))
    if entity == "custom_gpt":
        return list(replica.list_custom_gpts(limit=limit))
    return list(replica.list_lookups(kind=LookupKind(ENTITY_TABLES[entity]), limit=limit))


@app.command("list")
def list_(
    typer_ctx: typer.Context, kind: str, limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT)] = 100
) -> None:
    """Live records of one kind."""
    ctx: Context = typer_ctx.obj
    entity = entity_name(kind)
    with ctx.replica() as replica:
        rows = _rows(replica, entity, limit)
        summary = [
            {
                "id": r.id,
                # one record a line: a label's line breaks and runs of spaces read as one space (QA)
                "label": _one_line(
                    str(getattr(r, "title", None) or getattr(r, "name", None) or r.content[:200])
                ),
                "status": r.local_status.value,
            }
            for r in rows
        ]
        emit(ctx, summary, lambda: "\n".join(f"{s['id']}  {s['label']}  [{s['status']}]" for s in summary))


def _cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one "…" when it is cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _one_line(text: str, width: int = 60) -> str:
    """``text`` on one line (line breaks and runs of spaces read as one space), cut to ``width``."""
    return _cut(" ".join(text.split()), width)


def _index_progress(ctx: Context) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        if not ctx.as_json:
            typer.echo(f"\rindexing for search: {done} of {total}   ", nl=False, err=True)

    return progress


@app.command()
def search(
    typer_ctx: typer.Context, query: str, limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT)] = 20
) -> None:
    """Full-text search over prompt titles and texts and output contents."""
    ctx: Context = typer_ctx.obj
    with ctx.replica() as replica:
        try:  # a sync stopped before it had indexed what it pulled
            replica.catch_up_search_index(progress=_index_progress(ctx))
        except ReplicaError as exc:  # e.g. another process writing: answer from the index as it stands
            waiting = replica.search_backlog()
            typer.echo(f"note: {waiting:,} records are not indexed for search yet ({exc})", err=True)
        hits = replica.search(query, limit=limit)
        emit(ctx, hits, lambda: "\n".join(f"{h.entity} {h.id}  {h.snippet}" for h in hits) or "no matches")


@app.command()
def status(typer_ctx: typer.Context) -> None:
    """Where the replica stands: server, organization, queued edits, open conflicts."""
    ctx: Context = typer_ctx.obj
    with ctx.replica() as replica:
        store = ReplicaSyncStore(replica)
        server = replica.get_setting(key="server_url")
        info = {
            "replica": str(ctx.path),
            "server": server,
            "org_id": store.org_id(),
            "pending": store.pending_count(),
            "cursor": store.cursor(server_url=server, org_id=store.org_id()) if server else 0,
            "open_conflicts": len(replica.list_conflicts()),
            "search_backlog": replica.search_backlog(),
        }
        emit(ctx, info, lambda: "\n".join(f"{k}: {v}" for k, v in info.items()))


@app.command()
def check(typer_ctx: typer.Context) -> None:
    """Read the whole replica and check it: every page's authentication code, the b-trees, the search
    indexes. A sync compares only counts and revisions with the server, so damage to pages it does not read
    goes unnoticed until they are read; this finds it (exit 2 naming each problem; nothing is changed
    except that a pending search backlog is indexed first)."""
    ctx: Context = typer_ctx.obj
    unchecked: list[str] = []  # not damage: a read-only replica was called damaged (QA)
    with ctx.replica() as replica:
        problems = replica.verify_integrity(unchecked=unchecked)
    if problems:
        fail(
            2,
            f"the replica {ctx.path} is damaged: " + "; ".join(problems) + ". Keep a copy; `export` saves "
            "what can still be read, and a new replica synced from the server brings back what was pushed",
        )
    said = f"{ctx.path}: no damage found"
    if unchecked:
        said += " in what could be checked; " + "; ".join(unchecked)
    emit(ctx, {"replica": str(ctx.path), "ok": True, "not_checked": unchecked}, said)


@app.command()
def export(
    typer_ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Every record (tombstones excluded) as JSON."""
    ctx: Context = typer_ctx.obj
    if output is not None:
        _refuse_the_replica(ctx.path, output)
    unreadable: list[str] = []  # what a damaged page keeps from the export: the rest is saved (QA)
    with edits(ctx) as (_r, store, library):
        data: dict[str, list[dict[str, Any]]] = {}
        for entity in ENTITY_TABLES:
            records: list[dict[str, Any]] = []
            data[ENTITY_TABLES[entity]] = records
            try:
                ids = list(store.record_ids(entity))
            except ReplicaError:
                unreadable.append(f"the {ENTITY_TABLES[entity]}")
                continue
            for rid in ids:
                try:
                    r = library.get(entity, rid)
                    if not r["deleted"]:
                        shown = {k: v for k, v in r.items() if k != "entity"}
                        records.append(shown | store.details(entity, rid))
                except ReplicaError:
                    unreadable.append(f"{entity} {rid}")
    text = json.dumps(data, indent=2, sort_keys=True)
    written = sum(len(v) for v in data.values())
    if output is not None:
        _write_private(output, text)
        typer.echo(f"wrote {written} records to {output}", err=True)
    else:
        out(text)
    if unreadable:
        more = f" and {len(unreadable) - 10} more" if len(unreadable) > 10 else ""
        fail(
            2,
            f"the replica is damaged: {', '.join(unreadable[:10])}{more} could not be read and are not in "
            f"the export; the {written} records that could be read are (keep the replica file as it is: see "
            "`outputhub replica check`)",
        )


def _refuse_the_replica(replica: Path, output: Path) -> None:
    """Exit 5 when ``output`` is the replica or one of its files (its log, its index), however named: an
    export there turned the encrypted library into its JSON, its unsynced edits gone (QA)."""
    ours = Path(os.path.realpath(replica))
    files = {ours, *(ours.with_name(ours.name + suffix) for suffix in ("-wal", "-shm", "-journal"))}
    target = Path(os.path.realpath(output))
    same = target in files
    with suppress(OSError):
        same = same or (output.exists() and ours.exists() and os.path.samefile(output, ours))
    if same:
        fail(5, f"{output} is the replica {replica} (or one of its files): export to another file")


def _write_private(output: Path, text: str) -> None:
    """Write ``text`` to ``output`` readable by its owner only (0600, as the replica is: it is the library in
    clear text), whole or not at all: into a new file beside it, then renamed over it (a file there is
    replaced only once the export is written). A file there in a folder that takes no new file, which may be
    written itself, is written in place (QA: the user asked to overwrite it). Exit 5 naming the reason when
    it cannot be written."""
    target = Path(os.path.realpath(output))  # through a link: the file it names is replaced
    temporary = target.with_name(f".{target.name}.{os.getpid()}.export")
    try:
        if target.exists() and not target.is_file():  # a pipe, /dev/stdout, a device: written as it is (QA)
            with target.open("w", encoding="utf-8") as stream:
                stream.write(text)
            return
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except PermissionError as refused:  # the folder takes no new file: the file itself, if it may be
            if not target.is_file():
                raise
            _write_in_place(output, target, text, refused)
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as exc:
        fail(5, f"cannot write {output}: {exc.strerror or exc}")


def _write_in_place(output: Path, target: Path, text: str, refused: OSError) -> None:
    """Overwrite the file ``target`` (``output``'s) with ``text``, made readable by its owner only first (the
    library in clear text is not left readable by others: exit 5 when it cannot be). Raises ``refused`` (the
    folder's refusal) when the file cannot be written either."""
    try:
        fd = os.open(target, os.O_WRONLY)
    except OSError:
        raise refused from None
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        try:
            os.fchmod(fd, 0o600)
        except OSError:
            if os.fstat(fd).st_mode & 0o077:
                fail(5, f"cannot make {output} readable by its owner only (not its owner): export elsewhere")
        file.truncate(0)
        file.write(text)
        file.flush()
        os.fsync(fd)


@conflicts_app.command("list")
def conflicts_list(
    typer_ctx: typer.Context,
    entity: Annotated[str | None, typer.Option(help="Only this kind's (prompt, output, tag, ...).")] = None,
    refused: Annotated[bool, typer.Option(help="Only the edits the server refused.")] = False,
) -> None:
    """Open conflicts (and edits the server refused); --entity and --refused narrow it as they narrow
    ``resolve --all`` (QA: they were only there)."""
    ctx: Context = typer_ctx.obj
    kind = entity_name(entity) if entity is not None else None
    with ctx.replica() as replica:
        items = [
            (c, sides_written_here(replica, c), kept_in_use(replica, c))
            for c in replica.list_conflicts()
            if (kind is None or c.entity == kind) and (not refused or c.field == REJECTED_FIELD)
        ]
        emit(
            ctx,
            [
                {**asdict(c), "written_here": written, "kept_in_use": kept.words() if kept else None}
                for c, written, kept in items
            ],
            lambda: (
                "\n".join(
                    f"{c.id}  {c.entity} {c.record_id} {c.field}  "
                    + (_refused_line(c) if c.field == REJECTED_FIELD else _sides(c, written, kept))
                    for c, written, kept in items
                )
                or "no open conflicts"
            ),
        )


LIST_VALUE_CHARS = 40
"""``conflicts list`` shows each side's value up to this many characters (``conflicts show`` shows it all)."""


NOT_ONE_SIDE: Final = {"both": "both sides", "neither": "neither side"}
"""The words for :func:`sides_written_here` when this replica wrote not just one side: its "mine" is then
only the value in place."""


def _refusal(conflict: Any) -> tuple[str, str]:
    """A refused edit in words: (what the edit was, the server's reason)."""
    mine = conflict.mine if isinstance(conflict.mine, dict) else {}
    theirs = conflict.theirs if isinstance(conflict.theirs, dict) else {}
    kind = str(mine.get("kind") or "edit")
    values = mine.get("values") or {}
    fields = ", ".join(f"{k}={v!r}" for k, v in sorted(values.items())) if isinstance(values, dict) else ""
    edit = f"{kind} {fields}".strip() if kind != "delete" else "delete"
    return edit, str(theirs.get("reason") or "no reason given")


def _refused_line(conflict: Any) -> str:
    edit, reason = _refusal(conflict)
    return f"refused by the server: {reason}  (your {_cut(edit, LIST_VALUE_CHARS)})"


def _sides(conflict: Any, written: str | None = "mine", kept: KeptInUse | None = None) -> str:
    """Both sides of a conflict on one line: ``mine 'A' / theirs 'B'``; a delete against an edit says
    which side deleted, and the side the server kept because records name it says which (``kept``: it
    said "edited", though nobody had edited the record, QA). When this replica wrote neither side (or both),
    it says so: "mine" is then only the value in place."""
    if conflict.field == TOMBSTONE:
        alive = "edited" if kept is None else f"in use by {_cut(kept.words(), LIST_VALUE_CHARS)}"
        line = " / ".join(
            f"{side} {'deleted' if value else alive}"
            for side, value in (("mine", conflict.mine), ("theirs", conflict.theirs))
        )
    else:
        mine, theirs = (_cut(repr(v), LIST_VALUE_CHARS) for v in (conflict.mine, conflict.theirs))
        line = f"mine {mine} / theirs {theirs}"
    if written in NOT_ONE_SIDE:
        line += f"  ({NOT_ONE_SIDE[written]} written here: mine is the value in place)"
    return line


@conflicts_app.command("show")
def conflicts_show(typer_ctx: typer.Context, conflict_id: RecordId) -> None:
    """Base, mine and theirs of one conflict."""
    ctx: Context = typer_ctx.obj
    with ctx.replica() as replica:
        found = [c for c in replica.list_conflicts(include_resolved=True) if c.id == conflict_id]
        if not found:
            kept = CLOSED_CONFLICTS_KEPT.days
            fail(5, f"no conflict {conflict_id} (closed conflicts are kept {kept} days)")
        c = found[0]
        kind = conflict_kind(c)
        written = sides_written_here(replica, c)
        kept = kept_in_use(replica, c)
        edited = kept_by_edit(replica, c)
        suggestion, note = suggest(kind, c.base, c.mine, c.theirs, written=written)
        if c.field == REJECTED_FIELD:  # the edit and the reason, not the stored dicts (QA)
            edit, reason = _refusal(c)
            lines = [
                f"{c.entity} {c.record_id}: an edit the server refused",
                f"your edit: {edit}",
                f"reason:    {reason}",
                "`--keep mine` makes it again (once allowed), `--keep theirs` drops it",
            ]
        elif c.field == TOMBSTONE and kept is not None:  # nobody edited it: records name it (QA)
            alive = f"kept by the server: in use by {kept.words()}"
            lines = [
                f"{c.entity} {c.record_id}: deleted on one side while records came to name it on the other "
                "(kept: nothing that names it is left pointing at a deleted record)",
                f"mine:   {'deleted' if c.mine else alive}",
                f"theirs: {'deleted' if c.theirs else alive}",
                "`--keep mine` or `--keep theirs`: the record is deleted (and taken off what names it; a "
                "prompt's outputs go with it) or kept as it is",
            ]
        elif c.field == TOMBSTONE:  # which side deleted, in words (the list says it so)
            alive = "edited" if not edited else f"edited ({', '.join(edited)})"
            if edited == []:
                alive = "restored"
            lines = [
                f"{c.entity} {c.record_id}: deleted on one side, edited on the other (kept: the edit wins)",
                f"mine:   {'deleted' if c.mine else alive}",
                f"theirs: {'deleted' if c.theirs else alive}",
                "`--keep mine` or `--keep theirs`: the record is deleted or kept as it is",
            ]
        else:
            lines = [
                f"{c.entity} {c.record_id} field {c.field}",
                f"base:   {c.base!r}",
                f"mine:   {c.mine!r}",
                f"theirs: {c.theirs!r}",
            ]
        in_place = _in_place(replica, c)
        if written in NOT_ONE_SIDE:
            lines.append(f"written here: {NOT_ONE_SIDE[written]} (mine is the value in place)")
        elif written is not None:
            lines.append(f"written here: {written}")
        if in_place is not None and written not in NOT_ONE_SIDE:  # which one the record shows (QA)
            lines.append(f"in place: {in_place} (the record holds it until the conflict is resolved)")
        if c.resolved_at is not None:  # it said nothing, and offered a resolve that then failed (QA)
            lines.append(
                f"closed {to_timestamp(c.resolved_at)}: resolved, replaced by a newer conflict, or its "
                "record deleted (a restore opens it again)"
            )
        elif kind in MERGEABLE:
            lines.append(f"merged: {suggestion!r}  ({note} `--keep merged` takes it.)")
        shown = {
            **asdict(c),
            "suggestion": suggestion if kind in MERGEABLE else None,
            "written_here": written,
            "kept_in_use": kept.words() if kept else None,
            "kept_by_edit_of": edited,
            "in_place": in_place,
        }
        emit(ctx, shown, lambda: "\n".join(lines))


def _in_place(replica: Replica, conflict: Any) -> str | None:
    """Which side of an open value conflict its record holds now, "mine" or "theirs" (the merge suggestion
    offers mine while the record may show theirs, which ``show`` did not say, QA); None for a delete
    conflict, a refused edit, a closed conflict, or a value that is neither side (edited since)."""
    if conflict.field in (TOMBSTONE, REJECTED_FIELD) or conflict.resolved_at is not None:
        return None
    try:
        record = LocalLibrary(ReplicaSyncStore(replica)).get(conflict.entity, conflict.record_id)
    except LocalEditError:  # its record dropped (purged on the server)
        return None

    def comparable(value: Any) -> Any:
        return sorted(value) if isinstance(value, list | tuple | set | frozenset) else value

    now = comparable(record.get(conflict.field))
    for side, value in (("mine", conflict.mine), ("theirs", conflict.theirs)):
        if now == comparable(value):
            return side
    return None


MERGEABLE = ("text", "set", "scalar")
"""Conflict kinds with a merge suggestion (``--keep merged``): texts merged line by line (overlapping
passages keep mine), sets united, a single value mine."""


class _CannotResolveError(Exception):
    """This conflict cannot be resolved as asked; the message says why (it stays open). ``skipped``: the
    choice does not apply to its kind (``--all`` lists it and goes on), not a failure."""

    def __init__(self, message: str, *, skipped: bool = False) -> None:
        super().__init__(message)
        self.skipped = skipped


class _TakesAlongError(Exception):
    """Keeping this delete would delete other records with it, and ``--cascade`` was not given."""

    def __init__(self, taken: TakenAlong) -> None:
        super().__init__("takes records along")
        self.taken = taken


def _resolve(
    replica: Any, library: Any, c: Any, *, keep: str | None, value: str | None, cascade: bool = False
) -> tuple[str, dict[str, Any]]:
    """Resolve one open conflict or refused edit as ``keep`` or ``value`` says: what was done in words and
    as JSON. Raises :class:`_CannotResolveError` (nothing changed) when it does not apply, or when keeping
    a delete would delete live records with it (a prompt's outputs, some perhaps made elsewhere since the
    delete) without ``cascade``, as ``delete`` asks for ``--cascade`` (QA found them deleted without a
    word)."""
    if c.field == REJECTED_FIELD:
        if keep not in ("mine", "theirs"):
            raise _CannotResolveError(
                "a refused edit takes --keep mine (make it again) or --keep theirs (drop it)", skipped=True
            )
        if keep == "theirs":
            replica.resolve_conflict(id=c.id)
            return f"dropped the refused edit {c.id}", {"resolved": c.id, "dropped": True}
        try:
            with replica.transaction():  # made again and closed together, or neither
                done = reapply_refused(library, c)
                replica.resolve_conflict(id=c.id)
        except LocalEditError as exc:
            raise _CannotResolveError(f"cannot make the refused edit again: {exc}") from None
        return done, {"resolved": c.id, "reapplied": True, "said": done}
    if keep is not None and keep not in ("mine", "theirs", "merged"):
        raise _CannotResolveError("--keep takes mine, theirs or merged")
    if (value is not None or keep == "merged") and c.field == TOMBSTONE:
        raise _CannotResolveError(
            "a delete conflict is resolved with --keep mine or --keep theirs", skipped=True
        )
    choice: Any = keep if keep is not None else Merged(value)
    if keep == "merged":
        suggestion, _note = suggest(conflict_kind(c), c.base, c.mine, c.theirs)
        choice = Merged(frozenset(suggestion) if isinstance(suggestion, list) else suggestion)
    if value is not None:
        kind = DEFAULT_SCHEMA.kind(c.entity, c.field).value
        if kind == "set":
            choice = Merged(frozenset(v.strip() for v in value.split(",") if v.strip()))
        elif c.field == "position" or c.field in DEFAULT_SCHEMA.entity(c.entity).references:
            # read as `edit --set` reads it: a whole number; an empty reference is none (the raw text was
            # refused as "not a whole number", and a reference could not be cleared; QA)
            choice = Merged(parse_sets(c.entity, [f"{c.field}={value.strip()}"])[c.field])
    try:
        with replica.transaction():
            taken = resolve_conflict(replica, library, c, choice)
            if taken.deleted and not cascade:
                raise _TakesAlongError(taken)
    except _TakesAlongError as exc:
        counts = Counter(entity for entity, _id in exc.taken.deleted)
        what = ", ".join(f"{n} {entity}(s)" for entity, n in sorted(counts.items()))
        named = ", ".join(record_id for _entity, record_id in exc.taken.deleted[:10])
        more = f" and {len(exc.taken.deleted) - 10} more" if len(exc.taken.deleted) > 10 else ""
        raise _CannotResolveError(
            f"keeping the delete of {c.entity} {c.record_id} also deletes {what} that use it ({named}{more}; "
            "made or edited here or elsewhere): add --cascade to delete them too, or keep the other side to "
            f"keep the {c.entity}"
        ) from None
    shown: dict[str, Any] = {"resolved": c.id}
    said = f"resolved {c.id}"
    if taken.deleted:
        shown["deleted_with_it"] = [{"entity": e, "id": i} for e, i in taken.deleted]
        said += f"; deleted with it: {', '.join(f'{e} {i}' for e, i in taken.deleted)}"
    if taken.unlinked:
        shown["taken_off"] = [
            {"entity": e, "id": i, "field": f, "entry": entry} for e, i, f, entry in taken.unlinked
        ]
        said += f"; taken off {len(taken.unlinked)} record(s)"
    return said, shown


@conflicts_app.command("resolve")
def conflicts_resolve(
    typer_ctx: typer.Context,
    conflict_id: Annotated[
        str | None, typer.Argument(help="The conflict; or --all.", parser=_typed_id, metavar="ID")
    ] = None,
    keep: Annotated[
        str | None,
        typer.Option(
            help="mine, theirs, or merged: the suggestion `conflicts show` prints (texts merged line by "
            "line, overlapping passages mine; sets united)."
        ),
    ] = None,
    value: Annotated[str | None, typer.Option(help="An edited merge instead of keep.")] = None,
    value_file: Annotated[Path | None, typer.Option(help="The edited merge, from a file.")] = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every open conflict and refused edit (narrowed by --entity and --refused) with the same "
            "--keep; those it does not apply to (a delete conflict with merged) stay open, are listed, and "
            "make the exit 5.",
        ),
    ] = False,
    entity: Annotated[
        str | None, typer.Option(help="With --all: only this kind's (prompt, output, tag, ...).")
    ] = None,
    refused: Annotated[bool, typer.Option(help="With --all: only the edits the server refused.")] = False,
    cascade: Annotated[
        bool,
        typer.Option(
            help="Keeping a delete of a prompt deletes its live outputs too (some may have been made or "
            "edited elsewhere since the delete): without this flag such a resolution is refused and names "
            "them (a tag or other entry kept deleted is taken off its records either way)."
        ),
    ] = False,
) -> None:
    """Keep mine, keep theirs, the merge suggestion, or save an edited merge; it syncs like any edit."""
    ctx: Context = typer_ctx.obj
    if every:
        if conflict_id is not None or keep is None or value is not None or value_file is not None:
            fail(2, "--all takes --keep mine|theirs|merged and no conflict id or --value")
        _resolve_all(ctx, keep=str(keep), entity=entity, refused=refused, cascade=cascade)
        return
    if conflict_id is None:
        fail(2, "name the conflict to resolve (see `outputhub replica conflicts list`), or give --all")
    if entity is not None or refused:
        fail(2, "--entity and --refused narrow --all")
    if value_file is not None and value is not None:  # the typed value was dropped for the file's (QA)
        fail(2, "give --value or --value-file, not both")
    if value_file is not None:
        try:
            value = value_file.read_bytes().decode("utf-8")  # verbatim, as --set-file
        except (OSError, UnicodeDecodeError) as exc:
            fail(
                5,
                f"cannot read {value_file}: {exc.strerror if isinstance(exc, OSError) else 'not UTF-8 text'}",
            )
    if (keep is None) == (value is None):
        fail(2, "give either --keep mine|theirs|merged or --value/--value-file")
    if keep is not None and keep not in ("mine", "theirs", "merged"):
        fail(2, "--keep takes mine, theirs or merged")
    with edits(ctx) as (replica, _store, library):
        found = [c for c in replica.list_conflicts() if c.id == conflict_id]
        if not found:
            # a conflict is one pair of writes: an edit of either side since it was listed (here or
            # pulled by a sync) closes it and opens the one between the newer writes, under a new id
            if any(o.id == conflict_id for o in replica.list_conflicts(include_resolved=True)):
                fail(
                    5,
                    f"conflict {conflict_id} is closed (resolved, replaced by a newer one after another "
                    "edit of the field, or its record deleted: a restore opens it again): see `outputhub "
                    "replica conflicts list`",
                )
            fail(
                5,
                f"no conflict {conflict_id} (closed conflicts are kept {CLOSED_CONFLICTS_KEPT.days} days): "
                "see `outputhub replica conflicts list`",
            )
        target = found[0]
        before = {o.id for o in replica.list_conflicts(entity=target.entity, record_id=target.record_id)}
        try:
            said, shown = _resolve(replica, library, target, keep=keep, value=value, cascade=cascade)
        except _CannotResolveError as exc:
            fail(5, str(exc))
        # a field three replicas wrote holds a conflict per pair: resolving one also closes those that held
        # either of its sides, and opens one between the resolution and the side it did not see (QA: the
        # command said only "resolved")
        after = replica.list_conflicts(entity=target.entity, record_id=target.record_id)
        opened = [o for o in after if o.id not in before]
        closed = sorted(before - {o.id for o in after} - {target.id})
        if closed:
            shown["closed_with_it"] = closed
            said += f"; closed with it: {', '.join(closed)}"
        if opened:
            shown["opened"] = [o.id for o in opened]
            said += (
                f"; opened {', '.join(o.id for o in opened)} (a side it did not settle: see "
                "`outputhub replica conflicts list`)"
            )
        # a dropped refused edit changes nothing the server has: there is nothing to share
        share = "" if shown.get("dropped") else "; run `outputhub replica sync` to share it"
        emit(ctx, shown, f"{said}{share}")


def _to_share(resolved: list[dict[str, Any]]) -> str:
    """What ``--all`` says after its count: dropped refused edits change nothing the server has."""
    dropped = sum(1 for r in resolved if r.get("dropped"))
    if dropped == len(resolved):
        return " (refused edits dropped: nothing to share)" if dropped else ""
    also = f" ({dropped} of them refused edits dropped: nothing to share)" if dropped else ""
    return f"; run `outputhub replica sync` to share them{also}"


def _left_open(c: Any, reason: str, *, skipped: bool = False) -> dict[str, Any]:
    """A conflict ``conflicts resolve --all`` leaves open, as its JSON lists it."""
    return {"id": c.id, "entity": c.entity, "record_id": c.record_id, "reason": reason, "skipped": skipped}


RESOLVE_ALL_ROUNDS: Final = 10
"""``conflicts resolve --all`` goes over what its own resolutions opened this many times at most."""


def _made_at(c: Any) -> str:
    """A refused edit's clock (text in clock order), else the empty text."""
    return str(c.mine.get("hlc") or "") if c.field == REJECTED_FIELD and isinstance(c.mine, dict) else ""


def _resolve_all(ctx: Context, *, keep: str, entity: str | None, refused: bool, cascade: bool) -> None:
    """``conflicts resolve --all``: each chosen conflict on its own (one that cannot be resolved as asked
    stays open and is listed, the rest go on); exit 5 when any is left open, so a script can tell.

    One field can hold several conflicts at once (three replicas wrote it: one pair each). Resolving one
    supersedes its two sides, which closes the others that held either side and opens one between the
    resolution and the side it did not see. So the conflicts are read again before each: one an earlier
    resolution closed is not resolved again (QA: the command stopped there with "not open", half done), and
    those the run opened are resolved in a next round (with ``--keep theirs``, keeping the run's own
    resolution: it holds the choice). The conflicts whose "mine" this replica wrote go first, so that the
    choice is made against its own write: ``--keep mine`` ends with its value, ``--keep theirs`` with the
    other side of its own conflict, whatever the order of the ids."""
    if keep not in ("mine", "theirs", "merged"):
        fail(2, "--keep takes mine, theirs or merged")
    kind = entity_name(entity) if entity is not None else None
    resolved: list[dict[str, Any]] = []
    later = 0  # resolutions of conflicts the run itself opened
    left: list[dict[str, Any]] = []
    superseded: list[str] = []
    attempted: set[str] = set()
    initial = 0
    with edits(ctx) as (replica, _store, library):

        def chosen() -> list[Any]:
            found = [
                c
                for c in replica.list_conflicts()
                if (kind is None or c.entity == kind)
                and (not refused or c.field == REJECTED_FIELD)
                and c.id not in attempted
            ]
            # its own conflicts first: "mine" of one it wrote neither side of is only the value in place,
            # and its "theirs" may be a third replica's value; so the choice is made against its own write,
            # and the outcome does not hang on the order of the ids (QA)
            # and refused edits in the order they were made: an edit made again after the delete of its
            # record would bring the record back (QA)
            found.sort(key=lambda c: (sides_written_here(replica, c) != "mine", _made_at(c), c.id))
            return found

        for round_ in range(RESOLVE_ALL_ROUNDS):
            batch = chosen()
            if not batch:
                break
            initial = initial or len(batch)
            # a conflict of a later round is one this run opened: one side is its own resolution, which
            # holds the choice already; "theirs" of it again gave back this replica's own value (QA)
            now_keep = "mine" if round_ and keep == "theirs" else keep
            for c in batch:
                attempted.add(c.id)
                if not any(
                    o.id == c.id for o in replica.list_conflicts(entity=c.entity, record_id=c.record_id)
                ):
                    superseded.append(c.id)  # closed by a resolution of this run, of the same field
                    continue
                try:
                    resolved.append(
                        _resolve(replica, library, c, keep=now_keep, value=None, cascade=cascade)[1]
                    )
                    later += bool(round_)
                except _CannotResolveError as exc:
                    left.append(_left_open(c, str(exc), skipped=exc.skipped))
        # opened by the last round: left for the user
        left += [_left_open(c, "opened by these resolutions") for c in chosen()]
    summary: dict[str, Any] = {
        "resolved": [r["resolved"] for r in resolved],
        "closed_by_another": superseded,
        "left_open": left,
    }
    deleted_with = [d for r in resolved for d in r.get("deleted_with_it", [])]
    if deleted_with:  # what kept deletes took along (--cascade): named, as a single resolve names them
        summary["deleted_with_it"] = deleted_with
    # of the conflicts open at the start, those settled (resolved, or closed by a resolution of the same
    # field); the ones the run opened and resolved on the way are counted apart ("2 of 2; 1 closed by
    # another" added up to 3 for 2 listed, QA)
    settled = len(resolved) - later + len(superseded)
    also = f" ({later} more that resolving them opened on the same field resolved too)" if later else ""
    emit(
        ctx,
        summary,
        lambda: "\n".join(
            [f"resolved {settled} of {initial}{also}{_to_share(resolved)}"]
            # what a refused edit made again left out or did not make, as a single resolve says it (QA)
            + [r["said"] for r in resolved if any(w in r.get("said", "") for w in ("left out", "not made"))]
            + [f"deleted with them: {d['entity']} {d['id']}" for d in deleted_with]
            + [f"left open {i['id']}  {i['entity']} {i['record_id']}: {i['reason']}" for i in left]
        ),
    )
    if left:
        raise typer.Exit(5)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
