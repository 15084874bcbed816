"""The encrypted local replica: opening (create, unlock, migrate) and the repository API.

One :class:`Replica` owns one SQLCipher connection. Its methods may be called from any thread; an internal
re-entrant lock serializes them. Writes are atomic per call; :meth:`Replica.transaction` groups several
calls into one (e.g. an edit together with its outbox entry).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from outputhub.desktop.storage import aggregates, cipher, tables
from outputhub.desktop.storage import search as fulltext
from outputhub.desktop.storage.cipher import Connection, driver_error_types, driver_errors
from outputhub.desktop.storage.errors import (
    CorruptReplicaError,
    ReplicaClosedError,
    ReplicaError,
    ReplicaMigrationError,
    ReplicaNotFoundError,
    ReplicaStorageError,
    ReplicaTooNewError,
)
from outputhub.desktop.storage.migrations import Migration, check_sequence, load_migrations
from outputhub.desktop.storage.records import (
    ConflictRecord,
    CustomGptRecord,
    JsonObject,
    LocalStatus,
    LookupKind,
    LookupRecord,
    MatchCount,
    OutboxEntry,
    OutputRecord,
    PromptRecord,
    PromptVersionRecord,
    SearchEntity,
    SearchHit,
    SyncState,
    utc_now,
)
from outputhub.desktop.storage.tables import dumps, from_timestamp, to_timestamp

DEFAULT_LIMIT: Final = 100
INDEX_CATCH_UP_ROWS: Final = 5000
"""Records indexed per transaction by :meth:`Replica.catch_up_search_index` (~0.15 s on the dev machine;
2,000 a step took 1.15x as long in all)."""
_SEARCHED: Final = (tables.PROMPTS, tables.OUTPUTS)
IndexProgress = Callable[[int, int], None]
BULK_CHUNK_SIZE: Final = 2000
ID_CHUNK: Final = 500  # ids per ``IN (...)`` list
OUTPUT_LINKS: Final = frozenset({"prompt_id", "custom_gpt_id"})
CLOSED_CONFLICTS_KEPT: Final = timedelta(days=90)
"""A closed conflict (resolved, replaced by a newer one, or a refused edit dismissed) stays in the replica's
``conflicts`` table this long (``conflicts show`` still finds it, a sync tells a changed conflict from a new
one by it), then goes, the next time a conflict closes: the table would otherwise keep every conflict ever,
each with its base, mine and theirs. The decision lives on in the record's state and the server's audit
log."""
CACHE_KIB: Final = 65536  # page cache: every page read from disk is decrypted and HMAC-checked
WAL_AUTOCHECKPOINT_PAGES: Final = 1000
"""SQLite's default: the commit that takes the write-ahead log past this many pages copies it back into the
file (a checkpoint, with an fsync) before it returns."""
CHECKPOINT_INTERVAL_SECONDS: Final = 0.05
"""How often :meth:`Replica.checkpoints_apart`'s thread copies the log back (when there is anything new)."""
LOOKUP_USERS: Final[dict[LookupKind, tuple[tuple[tables.EntityTable[Any], str], ...]]] = {
    LookupKind.TAGS: ((tables.PROMPTS, "tag_ids"), (tables.OUTPUTS, "tag_ids")),
    LookupKind.KNOWLEDGE_TYPES: ((tables.OUTPUTS, "knowledge_type_ids"),),
    LookupKind.ACCURACY_LEVELS: ((tables.OUTPUTS, "accuracy_level_id"),),
    LookupKind.DEVELOPMENT_STAGES: ((tables.PROMPTS, "development_stage_id"),),
    LookupKind.GPT_MODELS: ((tables.OUTPUTS, "gpt_model_id"), (tables.CUSTOM_GPTS, "gpt_model_id")),
    LookupKind.AGENT_GROUPS: ((tables.CUSTOM_GPTS, "agent_group_ids"),),
}
"""Which fields of which tables name an entry of each lookup kind (the sync schema's references)."""


def open_replica(
    path: Path,
    *,
    passphrase: str | None = None,
    key: bytes | None = None,
    create: bool = False,
    migrations: Sequence[Migration] | None = None,
    page_size: int | None = None,
) -> Replica:
    """Open the replica at ``path``, migrating it to the current schema.

    Unlocked with ``passphrase``, or with ``key``, the raw key an open replica shares
    (:meth:`Replica.key_material`: the desktop's sync process gets it, and derives nothing). Where an open
    makes two connections (a new replica; a file with a log, looked at read-only first), the passphrase's
    key is derived once (:func:`cipher.derive_key`) and both are keyed with it; otherwise SQLCipher derives
    it for the one connection (faster than ``hashlib`` on OpenSSL 3.0), and :meth:`Replica.key_material`
    derives it when first asked.

    ``create=True`` creates the replica when ``path`` does not exist (an existing file is opened, never
    replaced). ``migrations`` replaces the shipped migrations (tests). ``page_size``: the file's page size
    when the caller knows it (the app tells its sync process), tried first: an old 4 KiB replica whose length
    16 KiB pages also fit would otherwise cost a second key derivation on every open. Raises
    ``ReplicaNotFoundError``, ``WrongPassphraseError``, ``CorruptReplicaError``, ``ReplicaTooNewError``,
    ``ReplicaMigrationError`` or ``ReplicaStorageError``; in the first four cases the file is left
    byte-for-byte as it was.
    """
    path = Path(path)
    if (passphrase is None) == (key is None):
        raise ValueError("give a passphrase or a key")
    if key is not None and not cipher.is_raw_key(key):
        raise ValueError("the key is not a replica's key (Replica.key_material)")
    secret = cipher.passphrase_bytes(passphrase) if passphrase is not None else b""
    known = load_migrations() if migrations is None else tuple(migrations)
    check_sequence(known)
    if not path.exists():
        if not create:
            raise ReplicaNotFoundError(f"no replica at {path}", path=path)
        if key is None:
            key = cipher.derive_key(secret, cipher.new_salt())
        _create_file(path, key=key, migrations=known)
    elif not path.is_file():
        raise CorruptReplicaError(f"{path} is not a file", path=path)
    sizes = cipher.check_file_shape(path)
    salt = cipher.file_salt(path)
    if passphrase is not None and key is not None and cipher.key_salt(key) != salt:
        key = None  # (a replica another process created meanwhile has a salt of its own)
    # derived here for two connections (a read-only one first, then the writing one), and for a passphrase
    # SQLCipher would take for a raw key itself ("x'...'"), as creating the replica took it for a passphrase
    if key is None and (cipher.has_log(path) or secret.startswith(cipher.RAW_KEY_PREFIX)):
        key = cipher.derive_key(secret, salt)
    if page_size in sizes:
        sizes = (page_size, *(n for n in sizes if n != page_size))

    def accept(application_id: int, version: int) -> None:
        if application_id != cipher.APPLICATION_ID:
            raise CorruptReplicaError(
                f"{path} opens with this passphrase but is not an Output Hub replica "
                f"(application id {application_id:#x}); the file was not changed",
                path=path,
            )
        if version > len(known):
            raise ReplicaTooNewError(
                f"{path} has schema version {version} but this version of Output Hub knows up to "
                f"{len(known)}: update the app to open it (the file was not changed)",
                path=path,
                found=version,
                supported=len(known),
            )

    conn, application_id, version, page_size = cipher.open_keyed(
        path, key=key or secret, page_sizes=sizes, accept=accept
    )
    try:
        accept(application_id, version)
        with driver_errors(path=path, action="configure the replica"):
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        _migrate(conn, known, current=version, path=path)
        node_id = _ensure_node_id(conn, path=path)
    except BaseException:
        conn.close()
        raise
    return Replica(
        conn=conn,
        path=path,
        schema_version=len(known),
        node_id=node_id,
        key=key or b"",
        passphrase=b"" if key else secret,
        salt=salt,
        page_size=page_size,
    )


class _Checkpointer:
    """The thread of :meth:`Replica.checkpoints_apart`: its own connection (opened on the thread: the key
    derivation does not hold up the writer), a PASSIVE checkpoint every :data:`CHECKPOINT_INTERVAL_SECONDS`.
    A failure (the file gone, the disk full) ends the thread quietly: the writer's next commits checkpoint
    again once :meth:`stop` has run, and a commit never depends on a checkpoint."""

    def __init__(self, path: Path, *, key: bytes, page_size: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(path, key, page_size), name="outputhub-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self, path: Path, key: bytes, page_size: int) -> None:
        try:
            conn = cipher.connect(path, key=key, page_size=page_size)
        except Exception:  # the writer goes on without the thread
            return
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL_SECONDS):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception:  # as above: a commit never depends on a checkpoint
            pass
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _create_file(path: Path, *, key: bytes, migrations: tuple[Migration, ...]) -> None:
    """Create a keyed replica with its schema (``migrations``) beside ``path`` and move it into place: a
    failure (a full disk, a kill) leaves nothing at ``path`` (QA: the schema was built after the move, and a
    version-0 file stayed there, refused by ``init`` as existing)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReplicaStorageError(f"cannot create {path.parent}: {exc.strerror}", path=path) from exc
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.creating")
    try:
        conn = cipher.connect(temporary, key=key)
        try:
            with driver_errors(path=path, action="create the replica"):
                conn.execute(f"PRAGMA application_id = {cipher.APPLICATION_ID}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            _migrate(conn, migrations, current=0, path=path)
        finally:
            conn.close()  # the last connection checkpoints and removes the -wal file
        with contextlib.suppress(OSError):
            temporary.chmod(0o600)
        try:
            os.link(temporary, path)  # fails rather than replacing a file that appeared meanwhile
        except FileExistsError:
            raise
        except OSError:
            if path.exists():
                raise FileExistsError(path) from None
            os.rename(temporary, path)
    except FileExistsError:
        pass  # someone created it concurrently: open theirs, never overwrite
    except OSError as exc:
        raise ReplicaStorageError(f"cannot create the replica {path}: {exc.strerror}", path=path) from exc
    finally:
        for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _migrate(conn: Connection, migrations: tuple[Migration, ...], *, current: int, path: Path) -> None:
    for migration in migrations[current:]:
        script = f"BEGIN IMMEDIATE;\n{migration.sql}\n;PRAGMA user_version = {migration.version};\nCOMMIT;"
        try:
            conn.executescript(script)
        except Exception as exc:
            with contextlib.suppress(Exception):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise ReplicaMigrationError(
                f"migrating {path} to schema version {migration.version} ({migration.name}) failed: {exc}; "
                f"the replica stays at version {migration.version - 1}",
                path=path,
            ) from exc


def _ensure_node_id(conn: Connection, *, path: Path) -> str:
    """The replica's node id, kept in the file; each open writes as ``<node id>.<random>``
    (:attr:`Replica.node_id`)."""
    with driver_errors(path=path, action="read the replica's node id"):
        row = conn.execute("SELECT value FROM replica_meta WHERE key = 'node_id'").fetchone()
        if row is not None:
            return str(row[0])
        node_id = uuid.uuid4().hex
        conn.execute("INSERT INTO replica_meta (key, value) VALUES ('node_id', ?)", (node_id,))
        return node_id


def _read_only(exc: BaseException | None) -> bool:
    """Whether ``exc`` (a driver error, or this package's error raised from one) is SQLite's "attempt to write
    a readonly database"."""
    while exc is not None:
        if str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_READONLY"):
            return True
        exc = exc.__cause__
    return False


class Replica:
    """An open replica. Use :func:`open_replica` to get one; close it (or use it as a context manager)."""

    def __init__(
        self,
        *,
        conn: Connection,
        path: Path,
        schema_version: int,
        node_id: str,
        key: bytes = b"",
        passphrase: bytes = b"",
        salt: bytes = b"",
        page_size: int = cipher.PAGE_SIZE,
    ) -> None:
        self._conn: Connection | None = conn
        self._path = path
        self._page_size = page_size
        self._schema_version = schema_version
        self._node_base = node_id
        # this open's writer id: two copies of one file (a restored backup beside the live one, or restored
        # over it) shared one node id, so with a clock that had pulled a time ahead both stamped an edit
        # alike, and the server took one copy's edit for the other's: lost without a trace (found by QA).
        # A fresh suffix per open makes every writer's stamps its own; the replica's own writes are still
        # told by the part before the dot (``sync.engine.same_replica``)
        self._node_id = f"{node_id}.{secrets.token_hex(4)}"
        self._key = key  # the raw key (cipher.derive_key), derived when first needed where not given
        self._passphrase = passphrase  # when the key is not derived yet: what SQLCipher derives it from
        self._salt = salt
        self._lock = threading.RLock()
        self._depth = 0
        self._relaxed = False  # the open transaction commits without waiting for the disk
        self._checkpoints_apart = False  # a thread of its own copies the WAL back (checkpoints_apart)

    # --- lifecycle --------------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def schema_version(self) -> int:
        return self._schema_version

    @property
    def node_id(self) -> str:
        """The id this open writes under, for hybrid logical clocks: ``<node_base>.<8 random hex>``."""
        return self._node_id

    @property
    def node_base(self) -> str:
        """The replica's stable id (hex UUID, kept in the file): every open's :attr:`node_id` starts with
        it."""
        return self._node_base

    @property
    def closed(self) -> bool:
        return self._conn is None

    def key_material(self) -> bytes:
        """The raw key this replica is unlocked with (:func:`cipher.derive_key`; follows a passphrase
        change), for a helper process that opens the same file (``open_replica(path, key=...)``) without
        deriving it again: the desktop's sync worker receives it over a pipe. It unlocks this file only (the
        passphrase cannot be recovered from it). Never log it, store it or put it on a command line or in
        the environment."""
        with self._lock:
            if not self._key:
                if not self._passphrase or not self._salt:
                    raise ReplicaError("this replica was opened without a key to share", path=self._path)
                self._key = cipher.derive_key(self._passphrase, self._salt)
                self._passphrase = b""
            return self._key

    def _connection_key(self) -> bytes:
        """What another connection to the file is keyed with: the raw key once derived, else the
        passphrase (SQLCipher derives it)."""
        return self._key or self._passphrase

    @property
    def page_size(self) -> int:
        """The file's page size (16 KiB; 4 KiB for replicas created before 2026-11-26)."""
        return self._page_size

    def cipher_version(self) -> str:
        with self._reading("read the cipher version") as conn:
            return cipher.cipher_version(conn)

    def close(self) -> None:
        """Close the connection (idempotent). The last connection folds the WAL back into the file."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with driver_errors(path=self._path, action="close the replica"):
                    conn.close()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def wait_for_lock(self, seconds: float) -> None:
        """How long a write waits for another connection or process holding the replica (a sync in another
        command, the desktop's sync process) before it fails with "the replica is locked"; 5 s unless set."""
        with self._lock:
            self._require_open().execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    def _require_open(self) -> Connection:
        if self._conn is None:
            raise ReplicaClosedError(f"the replica {self._path} is closed", path=self._path)
        return self._conn

    @contextlib.contextmanager
    def _reading(self, action: str) -> Iterator[Connection]:
        with self._lock:
            conn = self._require_open()
            with driver_errors(path=self._path, action=action):
                yield conn

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        """Group writes into one atomic transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``).

        A nested use is a savepoint: an exception leaving it undoes only its own writes (and then goes on
        to the enclosing block, which undoes everything unless it handles the exception).

        ``durable=False`` is for writes that can be redone from elsewhere (sync bookkeeping: acknowledging
        pushed operations, which the server answers again for a replayed op id; pulled pages applied with
        their cursor, which are pulled again): the commit does not wait for the disk (``synchronous =
        NORMAL``, safe in WAL mode: a power cut can only undo such transactions, whole, and never damages the
        file). The next durable commit syncs them too. Every other write stays durable (``FULL``: a committed
        edit and its outbox entry survive a power cut). The outermost transaction decides (SQLite sets the
        level per commit, not per savepoint): only sync bookkeeping may run inside a relaxed one.
        """
        with self._lock:
            conn = self._require_open()
            depth = self._depth
            begin, commit, undo = (
                ("BEGIN IMMEDIATE", "COMMIT", ("ROLLBACK",))
                if depth == 0
                else (
                    f"SAVEPOINT sp{depth}",
                    f"RELEASE sp{depth}",
                    (f"ROLLBACK TO sp{depth}", f"RELEASE sp{depth}"),
                )
            )
            try:
                if depth == 0 and not durable:
                    self._set_synchronous(conn, "NORMAL")
                    self._relaxed = True
                with driver_errors(path=self._path, action="begin a transaction"):
                    conn.execute(begin)
                self._depth = depth + 1
                try:
                    yield
                    with driver_errors(path=self._path, action="commit"):
                        conn.execute(commit)
                except BaseException:
                    with contextlib.suppress(Exception):
                        for statement in undo:
                            conn.execute(statement)
                    raise
                finally:
                    self._depth = depth
            finally:
                if depth == 0 and self._relaxed:
                    self._relaxed = False
                    self._set_synchronous(conn, "FULL")

    @contextlib.contextmanager
    def checkpoints_apart(self) -> Iterator[None]:
        """For a long run of writes (a pull of many pages): the write-ahead log is copied back into the file
        by a thread on a connection of its own, instead of by the commit that takes the log past
        :data:`WAL_AUTOCHECKPOINT_PAGES`.

        A checkpoint copies every page the commits wrote into the file and fsyncs it; inside the commits it
        held the writer for a third of an initial sync's storing time (docs/benchmarks.md). The thread's
        checkpoints are PASSIVE (they never wait for, nor block, the writer or a reader) and run every
        :data:`CHECKPOINT_INTERVAL_SECONDS`. A crash at any point leaves the file as a crash during SQLite's
        own checkpoint would: the log is replayed at the next open. On exit the thread stops (after the
        checkpoint in progress) and the commits checkpoint again. Nested, or without a key to open a second
        connection with, it changes nothing."""
        with self._lock:
            conn = self._require_open()
            start = not self._checkpoints_apart and bool(self._connection_key())
            if start:
                with driver_errors(path=self._path, action="hand checkpoints to a thread"):
                    conn.execute("PRAGMA wal_autocheckpoint = 0")
                self._checkpoints_apart = True
        if not start:
            yield
            return
        worker = _Checkpointer(self._path, key=self._connection_key(), page_size=self._page_size)
        try:
            yield
        finally:
            worker.stop()
            with self._lock:
                self._checkpoints_apart = False
                if self._conn is not None:
                    with contextlib.suppress(driver_error_types()):
                        self._conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")

    def _set_synchronous(self, conn: Connection, level: str) -> None:
        with driver_errors(path=self._path, action="set the commit durability"):
            conn.execute(f"PRAGMA synchronous = {level}")

    @contextlib.contextmanager
    def _writing(self, action: str, *, durable: bool = True) -> Iterator[Connection]:
        with self.transaction(durable=durable), driver_errors(path=self._path, action=action):
            yield self._require_open()

    @contextlib.contextmanager
    def reading(self, action: str) -> Iterator[Connection]:
        """The connection for a read by a storage adapter in this package (``sync_store``), under the lock."""
        with self._reading(action) as conn:
            yield conn

    @contextlib.contextmanager
    def writing(self, action: str) -> Iterator[Connection]:
        """The connection inside a write transaction, for storage adapters. Inside an open transaction it
        joins it (no savepoint: SQLite journals every page a savepoint touches, which made bulk writes of a
        sync page ten times slower on a large replica); the outer transaction stays all-or-nothing."""
        with self._lock:
            if self._depth:
                with driver_errors(path=self._path, action=action):
                    yield self._require_open()
                return
        with self._writing(action) as conn:
            yield conn

    def change_passphrase(self, *, old: str, new: str) -> None:
        """Re-encrypt the whole replica under ``new`` (SQLCipher ``PRAGMA rekey``); data is kept.

        ``old`` must unlock the file (else ``WrongPassphraseError``). Not allowed inside a transaction, nor
        while another process has the file open (a page it wrote with the old key would be unreadable): the
        desktop app holds its sync worker off meanwhile (``SyncController.syncs_paused``).
        """
        # the file's salt, which a rekey keeps: the new key is derived with it too
        old_key = cipher.derive_key(cipher.passphrase_bytes(old), self._salt)
        new_key = cipher.derive_key(cipher.passphrase_bytes(new), self._salt)
        with self._lock:
            conn = self._require_open()
            if self._depth:
                raise ReplicaError("cannot change the passphrase inside a transaction", path=self._path)
            probe = cipher.connect(self._path, key=old_key, page_size=self._page_size)
            try:
                cipher.unlock(probe, path=self._path)
            finally:
                probe.close()
            with driver_errors(path=self._path, action="change the passphrase"):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.reset_key(new_key)
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._key, self._passphrase = new_key, b""

    def verify_integrity(self, *, unchecked: list[str] | None = None) -> list[str]:
        """Check every page's HMAC, the b-trees and the full-text indexes (reads the whole file; indexes
        the search backlog first, if there is one).

        Returns the problems found, ``[]`` when none. A check that could not run on a sound file (the search
        index's, which writes, on a replica that cannot be written; rows not indexed yet) is no damage: it
        goes to ``unchecked`` when given (a read-only replica was called damaged, QA), else among the
        problems.
        """
        checks = {
            "page authentication": "PRAGMA cipher_integrity_check",
            "b-tree structure": "PRAGMA integrity_check",
            "prompt index": "INSERT INTO prompts_fts (prompts_fts, rank) VALUES ('integrity-check', 1)",
            "output index": "INSERT INTO outputs_fts (outputs_fts, rank) VALUES ('integrity-check', 1)",
        }
        problems: list[str] = []
        notes = problems if unchecked is None else unchecked
        try:  # the index check compares the index with the table: rows still in the backlog would differ
            self.catch_up_search_index()
        except ReplicaError as exc:
            (notes if _read_only(exc) else problems).append(f"search backlog: {exc}")
        with self._reading("check the replica's integrity") as conn:
            for spec, name in ((tables.PROMPTS, "prompt index"), (tables.OUTPUTS, "output index")):
                try:
                    waiting = tables.backlog_size(conn, spec)
                except driver_error_types() as exc:  # a damaged page: the checks below say where
                    problems.append(f"search backlog: {exc}")
                    break
                if waiting:  # not damage: rows not indexed yet (the catch-up could not run)
                    del checks[name]
                    notes.append(f"{name}: not checked, {waiting:,} records not indexed for search yet")
            for name, sql in checks.items():
                if problems and name.endswith(" index") and any(
                    p.startswith(("page authentication", "b-tree structure")) for p in problems
                ):
                    # over damaged pages the index checks fail for the damage ("attempt to write a
                    # readonly database"), which says nothing more
                    problems.append(f"{name}: not checked, the pages are damaged")
                    continue
                try:
                    rows = [str(row[0]) for row in conn.execute(sql)]
                except driver_error_types() as exc:
                    if _read_only(exc):  # the pages are sound: the file or its folder cannot be written
                        notes.append(f"{name}: not checked, the replica cannot be written here ({exc})")
                    else:
                        problems.append(f"{name}: {exc}")
                else:
                    problems += [f"{name}: {row}" for row in rows if row != "ok"]
        return problems

    # --- prompts ------------------------------------------------------------------------------------------

    def upsert_prompt(self, *, record: PromptRecord) -> None:
        """Insert or replace the prompt with ``record.id`` (tags replaced by ``record.tag_ids``)."""
        with self._writing("save the prompt") as conn:
            tables.upsert(conn, tables.PROMPTS, record)

    def get_prompt(self, *, id: str) -> PromptRecord | None:
        with self._reading("read the prompt") as conn:
            return tables.get(conn, tables.PROMPTS, id)

    def get_prompts(self, *, ids: Sequence[str]) -> list[PromptRecord]:
        """The prompts with these ids in that order (missing ids skipped), read in one go."""
        with self._reading("read the prompts") as conn:
            return tables.get_many(conn, tables.PROMPTS, ids)

    def prompt_titles(self, *, ids: Sequence[str]) -> dict[str, str]:
        """id -> title of the prompts with these ids (tombstones included; missing ids left out), in one
        query that reads no body (a list names prompts by title)."""
        with self._reading("read prompt titles") as conn:
            rows = conn.execute(
                "SELECT id, title FROM prompts WHERE id IN (SELECT value FROM json_each(?))",
                (dumps(list(ids)),),
            )
            return {str(ident): str(title) for ident, title in rows}

    def list_prompts(
        self,
        *,
        org_id: str | None = None,
        tag_id: str | None = None,
        development_stage_id: str | None = None,
        local_status: LocalStatus | None = None,
        include_deleted: bool = False,
        order_by: str = "updated_at",
        descending: bool = False,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
    ) -> list[PromptRecord]:
        with self._reading("list prompts") as conn:
            return tables.list_records(
                conn,
                tables.PROMPTS,
                equals={
                    "org_id": org_id,
                    "development_stage_id": development_stage_id,
                    "local_status": local_status,
                },
                linked={"tag_ids": tag_id},
                include_deleted=include_deleted,
                order_by=order_by,
                descending=descending,
                limit=limit,
                offset=offset,
            )

    def delete_prompt(self, *, id: str, purge: bool = False, at: datetime | None = None) -> bool:
        """Tombstone the prompt (``deleted``, status ``deleted``), or remove the row when ``purge``.
        Returns whether it existed."""
        return self._delete(tables.PROMPTS, id, purge=purge, at=at)

    def upsert_prompt_version(self, *, record: PromptVersionRecord) -> None:
        with self._writing("save the prompt version") as conn:
            tables.upsert(conn, tables.PROMPT_VERSIONS, record)

    def list_prompt_versions(
        self, *, prompt_id: str, limit: int = DEFAULT_LIMIT, offset: int = 0
    ) -> list[PromptVersionRecord]:
        with self._reading("list prompt versions") as conn:
            return tables.list_records(
                conn,
                tables.PROMPT_VERSIONS,
                equals={"prompt_id": prompt_id},
                linked={},
                include_deleted=False,
                order_by="version",
                descending=False,
                limit=limit,
                offset=offset,
            )

    # --- outputs ------------------------------------------------------------------------------------------

    def upsert_output(self, *, record: OutputRecord) -> None:
        with self._writing("save the output") as conn:
            tables.upsert(conn, tables.OUTPUTS, record)

    def bulk_insert_outputs(self, rows: Iterable[OutputRecord], *, chunk_size: int = BULK_CHUNK_SIZE) -> int:
        """Store many outputs in one transaction (executemany per chunk); returns how many.

        Rows whose id already exists are overwritten (with their links), so a resumed initial sync is
        idempotent. All or nothing: an error rolls the whole batch back.
        """
        with self._writing("store the outputs") as conn:
            return tables.bulk_upsert(conn, tables.OUTPUTS, rows, chunk_size=chunk_size)

    def get_output(self, *, id: str) -> OutputRecord | None:
        with self._reading("read the output") as conn:
            return tables.get(conn, tables.OUTPUTS, id)

    def get_outputs(self, *, ids: Sequence[str]) -> list[OutputRecord]:
        """The outputs with these ids in that order (missing ids skipped), read in one go (a page of hits)."""
        with self._reading("read the outputs") as conn:
            return tables.get_many(conn, tables.OUTPUTS, ids)

    def list_outputs(
        self,
        *,
        org_id: str | None = None,
        prompt_id: str | None = None,
        tag_id: str | None = None,
        knowledge_type_id: str | None = None,
        custom_gpt_id: str | None = None,
        gpt_model_id: str | None = None,
        accuracy_level_id: str | None = None,
        local_status: LocalStatus | None = None,
        include_deleted: bool = False,
        order_by: str = "updated_at",
        descending: bool = False,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
    ) -> list[OutputRecord]:
        with self._reading("list outputs") as conn:
            return tables.list_records(
                conn,
                tables.OUTPUTS,
                equals={
                    "org_id": org_id,
                    "prompt_id": prompt_id,
                    "custom_gpt_id": custom_gpt_id,
                    "gpt_model_id": gpt_model_id,
                    "accuracy_level_id": accuracy_level_id,
                    "local_status": local_status,
                },
                linked={"tag_ids": tag_id, "knowledge_type_ids": knowledge_type_id},
                include_deleted=include_deleted,
                order_by=order_by,
                descending=descending,
                limit=limit,
                offset=offset,
            )

    def delete_output(self, *, id: str, purge: bool = False, at: datetime | None = None) -> bool:
        return self._delete(tables.OUTPUTS, id, purge=purge, at=at)

    def live_output_ids(self, *, link: str, ids: Sequence[str]) -> list[str]:
        """Ids of the live outputs whose ``link`` (``prompt_id`` or ``custom_gpt_id``) is one of ``ids``
        (ids only: a prompt may have thousands of outputs), oldest first."""
        if link not in OUTPUT_LINKS:
            raise ValueError(f"outputs are not linked by {link!r}; use one of {sorted(OUTPUT_LINKS)}")
        found: list[str] = []
        with self._reading("list the linked outputs") as conn:
            for start in range(0, len(ids), ID_CHUNK):
                chunk = list(ids[start : start + ID_CHUNK])
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT id FROM outputs WHERE deleted = 0 AND {link} IN ({marks}) "
                    f"ORDER BY created_at, id",
                    chunk,
                )
                found += [str(row[0]) for row in rows]
        return found

    def live_records_using(self, *, kind: LookupKind, ids: Sequence[str]) -> dict[tuple[str, str], list[str]]:
        """The live prompts, outputs and custom GPTs that name one of the lookup entries ``ids``, by
        ``(table, field)`` (e.g. ``("outputs", "tag_ids")``); ids only, oldest first."""
        found: dict[tuple[str, str], list[str]] = {}
        with self._reading(f"find what uses the {kind.value} entries") as conn:
            for table, field in LOOKUP_USERS[kind]:
                link = next((lk for lk in table.links if lk.field == field), None)
                ids_found: list[str] = []
                for start in range(0, len(ids), ID_CHUNK):
                    chunk = list(ids[start : start + ID_CHUNK])
                    marks = ", ".join("?" * len(chunk))
                    if link is None:
                        sql = (
                            f"SELECT id FROM {table.table} WHERE deleted = 0 AND {field} IN ({marks}) "
                            "ORDER BY created_at, id"
                        )
                    else:
                        sql = (
                            f"SELECT DISTINCT r.id, r.created_at FROM {link.table} AS l "
                            f"JOIN {table.table} AS r ON r.id = l.{link.owner} "
                            f"WHERE r.deleted = 0 AND l.{link.target} IN ({marks}) "
                            "ORDER BY r.created_at, r.id"
                        )
                    ids_found += [str(row[0]) for row in conn.execute(sql, chunk)]
                if ids_found:
                    found[(table.table, field)] = list(dict.fromkeys(ids_found))
        return found

    # --- custom GPTs --------------------------------------------------------------------------------------

    def upsert_custom_gpt(self, *, record: CustomGptRecord) -> None:
        with self._writing("save the custom GPT") as conn:
            tables.upsert(conn, tables.CUSTOM_GPTS, record)

    def get_custom_gpt(self, *, id: str) -> CustomGptRecord | None:
        with self._reading("read the custom GPT") as conn:
            return tables.get(conn, tables.CUSTOM_GPTS, id)

    def list_custom_gpts(
        self,
        *,
        org_id: str | None = None,
        agent_group_id: str | None = None,
        include_deleted: bool = False,
        order_by: str = "name",
        descending: bool = False,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
    ) -> list[CustomGptRecord]:
        with self._reading("list custom GPTs") as conn:
            return tables.list_records(
                conn,
                tables.CUSTOM_GPTS,
                equals={"org_id": org_id},
                linked={"agent_group_ids": agent_group_id},
                include_deleted=include_deleted,
                order_by=order_by,
                descending=descending,
                limit=limit,
                offset=offset,
            )

    def delete_custom_gpt(self, *, id: str, purge: bool = False, at: datetime | None = None) -> bool:
        return self._delete(tables.CUSTOM_GPTS, id, purge=purge, at=at)

    # --- lookups ------------------------------------------------------------------------------------------

    def upsert_lookup(self, *, kind: LookupKind, record: LookupRecord) -> None:
        tables.check_lookup(kind, record)
        with self._writing(f"save the {kind.value} entry") as conn:
            tables.upsert(conn, tables.LOOKUPS[kind], record)

    def get_lookup(self, *, kind: LookupKind, id: str) -> LookupRecord | None:
        with self._reading(f"read the {kind.value} entry") as conn:
            return tables.get(conn, tables.LOOKUPS[kind], id)

    def list_lookups(
        self,
        *,
        kind: LookupKind,
        org_id: str | None = None,
        include_deleted: bool = False,
        order_by: str = "position",
        descending: bool = False,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
    ) -> list[LookupRecord]:
        with self._reading(f"list {kind.value}") as conn:
            return tables.list_records(
                conn,
                tables.LOOKUPS[kind],
                equals={"org_id": org_id},
                linked={},
                include_deleted=include_deleted,
                order_by=order_by,
                descending=descending,
                limit=limit,
                offset=offset,
            )

    def delete_lookup(
        self, *, kind: LookupKind, id: str, purge: bool = False, at: datetime | None = None
    ) -> bool:
        return self._delete(tables.LOOKUPS[kind], id, purge=purge, at=at)

    def _delete(
        self, spec: tables.EntityTable[Any], record_id: str, *, purge: bool, at: datetime | None
    ) -> bool:
        with self._writing(f"delete from {spec.table}") as conn:
            if purge:
                return tables.purge(conn, spec, record_id)
            return tables.tombstone(conn, spec, record_id, at=at or utc_now())

    # --- search -------------------------------------------------------------------------------------------
    # User text is never FTS5 syntax. Ranked by relevance when the query is selective, else newest first;
    # counts are capped. See search.py for the plan and its costs.

    @contextlib.contextmanager
    def _snapshot(self, action: str) -> Iterator[Connection]:
        """Read in one transaction, so the statements of one search see the same data even while another
        process (the sync worker) writes; joins an enclosing transaction."""
        with self._reading(action) as conn:
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def search_backlog(self) -> int:
        """How many prompts and outputs are not in the full-text index yet (0: every one is). A large pull
        stores its records and leaves their indexing to :meth:`catch_up_search_index`; until then no search
        finds them (``MatchCount.unindexed`` says so beside a search's count)."""
        with self._reading("read the search backlog") as conn:
            return sum(tables.backlog_size(conn, spec) for spec in _SEARCHED)

    def catch_up_search_index(
        self, *, rows: int = INDEX_CATCH_UP_ROWS, progress: IndexProgress | None = None
    ) -> int:
        """Index the search backlog, ``rows`` records per transaction, so that other writers (an edit, the
        GUI) wait at most one step; ``progress(done, total)`` after each step. Returns the records indexed
        (0: there was no backlog). Safe to interrupt: each step commits with its mark."""
        total = self.search_backlog()
        if not total:
            return 0  # no write at all (a check of a replica opened read-mostly stays a read)
        done = 0
        if progress is not None:
            progress(0, total)
        for spec in _SEARCHED:
            while True:
                with self._writing("index for search", durable=False) as conn:
                    step = tables.index_backlog(conn, spec, rows=rows)
                if not step:
                    break
                done += step
                if progress is not None:
                    progress(done, max(total, done))
        return done

    def search(
        self,
        query: str,
        *,
        limit: int = 20,
        offset: int = 0,
        entities: tuple[SearchEntity, ...] = ("prompt", "output"),
        org_id: str | None = None,
        mark_start: str = "[",
        mark_end: str = "]",
    ) -> list[SearchHit]:
        """Full-text search of live prompts (title, body) and outputs (content): hits ``offset`` to
        ``offset + limit``, ranked ones (bm25, best first) before those listed newest first (rank 0.0).

        ``query`` is free user text: it is never interpreted as FTS5 syntax (see ``search.py``).
        """
        conditions = {entity: fulltext.row_conditions(entity, org_id=org_id) for entity in entities}
        with self._snapshot("search") as conn:
            return fulltext.search(
                conn,
                query,
                limit=limit,
                offset=offset,
                entities=entities,
                conditions=conditions,
                mark_start=mark_start,
                mark_end=mark_end,
            )

    def search_outputs(
        self,
        query: str,
        *,
        org_id: str | None = None,
        prompt_id: str | None = None,
        tag_id: str | None = None,
        knowledge_type_id: str | None = None,
        custom_gpt_id: str | None = None,
        gpt_model_id: str | None = None,
        accuracy_level_id: str | None = None,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
        snippets: bool = True,
        mark_start: str = "[",
        mark_end: str = "]",
    ) -> list[SearchHit]:
        """A page of live outputs matching ``query`` and the filters (as for :meth:`list_outputs`), best
        first when the query is selective, else newest first; ``snippets=False`` skips building them."""
        conditions = _output_conditions(
            org_id, prompt_id, tag_id, knowledge_type_id, custom_gpt_id, gpt_model_id, accuracy_level_id
        )
        with self._snapshot("search outputs") as conn:
            return fulltext.search(
                conn,
                query,
                limit=limit,
                offset=offset,
                entities=("output",),
                conditions={"output": conditions},
                snippets=snippets,
                mark_start=mark_start,
                mark_end=mark_end,
            )

    def count_output_matches(
        self,
        query: str,
        *,
        org_id: str | None = None,
        prompt_id: str | None = None,
        tag_id: str | None = None,
        knowledge_type_id: str | None = None,
        custom_gpt_id: str | None = None,
        gpt_model_id: str | None = None,
        accuracy_level_id: str | None = None,
        cap: int | None = None,
    ) -> MatchCount:
        """How many live outputs :meth:`search_outputs` would find, counted up to ``cap`` (default
        ``search.COUNT_CAP``)."""
        conditions = _output_conditions(
            org_id, prompt_id, tag_id, knowledge_type_id, custom_gpt_id, gpt_model_id, accuracy_level_id
        )
        with self._snapshot("count matching outputs") as conn:
            return fulltext.count(conn, query, entity="output", conditions=conditions, cap=cap)

    def search_prompts(
        self,
        query: str,
        *,
        org_id: str | None = None,
        development_stage_id: str | None = None,
        tag_id: str | None = None,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
        snippets: bool = True,
        mark_start: str = "[",
        mark_end: str = "]",
    ) -> list[SearchHit]:
        """A page of live prompts matching ``query`` (title, body) and the filters (as for
        :meth:`list_prompts`)."""
        conditions = fulltext.row_conditions(
            "prompt",
            org_id=org_id,
            equals={"development_stage_id": development_stage_id},
            linked={"tag_ids": tag_id},
        )
        with self._snapshot("search prompts") as conn:
            return fulltext.search(
                conn,
                query,
                limit=limit,
                offset=offset,
                entities=("prompt",),
                conditions={"prompt": conditions},
                snippets=snippets,
                mark_start=mark_start,
                mark_end=mark_end,
            )

    def count_prompt_matches(
        self,
        query: str,
        *,
        org_id: str | None = None,
        development_stage_id: str | None = None,
        tag_id: str | None = None,
        cap: int | None = None,
    ) -> MatchCount:
        """How many live prompts :meth:`search_prompts` would find, counted up to ``cap``."""
        conditions = fulltext.row_conditions(
            "prompt",
            org_id=org_id,
            equals={"development_stage_id": development_stage_id},
            linked={"tag_ids": tag_id},
        )
        with self._snapshot("count matching prompts") as conn:
            return fulltext.count(conn, query, entity="prompt", conditions=conditions, cap=cap)

    # --- sync state -------------------------------------------------------------------------------------

    def get_sync_state(self, *, server_url: str, org_id: str) -> SyncState | None:
        with self._reading("read the sync state") as conn:
            row = conn.execute(
                "SELECT server_url, org_id, cursor, updated_at FROM sync_state "
                "WHERE server_url = ? AND org_id = ?",
                (server_url, org_id),
            ).fetchone()
        return None if row is None else SyncState(row[0], row[1], row[2], from_timestamp(row[3]))

    def set_sync_cursor(
        self, *, server_url: str, org_id: str, cursor: str | None, at: datetime | None = None
    ) -> None:
        with self.writing("save the sync cursor") as conn:
            conn.execute(
                "INSERT INTO sync_state (server_url, org_id, cursor, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (server_url, org_id) DO UPDATE SET cursor = excluded.cursor, "
                "updated_at = excluded.updated_at",
                (server_url, org_id, cursor, to_timestamp(at or utc_now())),
            )

    # --- outbox -------------------------------------------------------------------------------------------

    def enqueue_outbox(
        self,
        *,
        op_id: str,
        entity: str,
        record_id: str,
        payload: JsonObject,
        base_revision: int | None,
        at: datetime | None = None,
    ) -> int:
        """Queue a change for pushing; returns its position. ``op_id`` is unique (push deduplication)."""
        with self._writing("queue the change") as conn:
            cursor = conn.execute(
                "INSERT INTO outbox (op_id, entity, record_id, payload, base_revision, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (op_id, entity, record_id, dumps(payload), base_revision, to_timestamp(at or utc_now())),
            )
            return int(cursor.lastrowid or 0)

    def pending_outbox(self, *, limit: int = DEFAULT_LIMIT) -> list[OutboxEntry]:
        """The oldest queued changes, in push order."""
        with self._reading("read the outbox") as conn:
            rows = conn.execute(
                "SELECT seq, op_id, entity, record_id, payload, base_revision, created_at, attempts, "
                "last_error FROM outbox ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            OutboxEntry(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], from_timestamp(r[6]), r[7], r[8])
            for r in rows
        ]

    def acknowledge_outbox(self, *, op_ids: Sequence[str]) -> int:
        """Drop pushed changes; returns how many were removed."""
        with self._writing("acknowledge pushed changes") as conn:
            return conn.execute(
                "DELETE FROM outbox WHERE op_id IN (SELECT value FROM json_each(?))", (dumps(list(op_ids)),)
            ).rowcount

    def record_outbox_failure(self, *, op_ids: Sequence[str], error: str) -> None:
        with self._writing("record a push failure") as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? "
                "WHERE op_id IN (SELECT value FROM json_each(?))",
                (error, dumps(list(op_ids))),
            )

    # --- conflicts ----------------------------------------------------------------------------------------

    def add_conflict(
        self,
        *,
        id: str,
        entity: str,
        record_id: str,
        field: str,
        base: object,
        mine: object,
        theirs: object,
        at: datetime | None = None,
    ) -> None:
        """Record a conflict (idempotent on ``id``: the same conflict recorded twice is kept once)."""
        with self._writing("record the conflict") as conn:
            conn.execute(
                "INSERT INTO conflicts (id, entity, record_id, field, base, mine, theirs, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    id,
                    entity,
                    record_id,
                    field,
                    dumps(base),
                    dumps(mine),
                    dumps(theirs),
                    to_timestamp(at or utc_now()),
                ),
            )

    def list_conflicts(
        self, *, entity: str | None = None, record_id: str | None = None, include_resolved: bool = False
    ) -> list[ConflictRecord]:
        with self._reading("list conflicts") as conn:
            rows = conn.execute(
                "SELECT id, entity, record_id, field, base, mine, theirs, created_at, resolved_at "
                "FROM conflicts WHERE (:entity IS NULL OR entity = :entity) "
                "AND (:record_id IS NULL OR record_id = :record_id) AND (:all OR resolved_at IS NULL) "
                "ORDER BY created_at, id",
                {"entity": entity, "record_id": record_id, "all": 1 if include_resolved else 0},
            ).fetchall()
        return [
            ConflictRecord(
                r[0],
                r[1],
                r[2],
                r[3],
                None if r[4] is None else json.loads(r[4]),
                None if r[5] is None else json.loads(r[5]),
                None if r[6] is None else json.loads(r[6]),
                from_timestamp(r[7]),
                None if r[8] is None else from_timestamp(r[8]),
            )
            for r in rows
        ]

    def note_remade(self, *, id: str, version: str) -> None:
        """Keep, in a refused edit's record, the version it was made again as (its ``base`` column, unused for
        a refused edit): a refused edit of the same record made after it counts that version among what it
        supersedes when it is made again (``reapply_refused``)."""
        with self._writing("note the edit made again") as conn:
            conn.execute("UPDATE conflicts SET base = ? WHERE id = ?", (dumps({"remade_as": version}), id))

    def resolve_conflict(self, *, id: str, at: datetime | None = None) -> bool:
        with self._writing("resolve the conflict") as conn:
            closed = (
                conn.execute(
                    "UPDATE conflicts SET resolved_at = ? WHERE id = ? AND resolved_at IS NULL",
                    (to_timestamp(at or utc_now()), id),
                ).rowcount
                > 0
            )
            if closed:
                forget_closed_conflicts(conn)
            return closed

    # --- settings kept in the replica (encrypted with it) -------------------------------------------------

    def get_meta(self, *, key: str) -> str | None:
        """A fact kept in ``replica_meta`` (node id, clock, attached organization, settings ...)."""
        with self._reading("read a replica fact") as conn:
            row = conn.execute("SELECT value FROM replica_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, *, key: str, value: str | None) -> None:
        """Store (or, with ``None``, remove) a fact in ``replica_meta``."""
        with self._writing("save a replica fact") as conn:
            if value is None:
                conn.execute("DELETE FROM replica_meta WHERE key = ?", (key,))
            else:
                conn.execute(
                    "INSERT INTO replica_meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def get_setting(self, *, key: str) -> str | None:
        """A desktop setting (server URL, account, ...) stored in ``replica_meta`` under ``setting:<key>``."""
        return self.get_meta(key=f"setting:{key}")

    def set_setting(self, *, key: str, value: str | None) -> None:
        """Store (or, with ``None``, remove) a desktop setting."""
        self.set_meta(key=f"setting:{key}", value=value)

    # --- aggregates (the Analytics view) --------------------------------------------------------------------

    def count_live(self, *, table: str) -> int:
        """Live rows of ``prompts``, ``outputs`` or ``custom_gpts``."""
        with self._reading(f"count {table}") as conn:
            return aggregates.count_live(conn, table=table)

    def accuracy_distribution(self, *, group_by: str) -> list[tuple[str | None, str | None, int]]:
        """``(group id, accuracy level id, outputs)``; ``group_by`` is ``gpt_model_id``, ``custom_gpt_id``
        or ``prompt_id``."""
        with self._reading("count outputs by accuracy") as conn:
            return aggregates.accuracy_distribution(conn, group_by=group_by)

    def outputs_by_knowledge_type_per_month(self) -> list[tuple[str, str, int]]:
        with self._reading("count outputs by knowledge type") as conn:
            return aggregates.outputs_by_knowledge_type_per_month(conn)

    def prompts_by_stage(self) -> list[tuple[str | None, int]]:
        with self._reading("count prompts by stage") as conn:
            return aggregates.prompts_by_stage(conn)

    def tag_usage(self) -> list[tuple[str, int, int]]:
        with self._reading("count tag usage") as conn:
            return aggregates.tag_usage(conn)


def _output_conditions(
    org_id: str | None,
    prompt_id: str | None,
    tag_id: str | None,
    knowledge_type_id: str | None,
    custom_gpt_id: str | None,
    gpt_model_id: str | None,
    accuracy_level_id: str | None,
) -> fulltext.Conditions:
    return fulltext.row_conditions(
        "output",
        org_id=org_id,
        equals={
            "prompt_id": prompt_id,
            "custom_gpt_id": custom_gpt_id,
            "gpt_model_id": gpt_model_id,
            "accuracy_level_id": accuracy_level_id,
        },
        linked={"tag_ids": tag_id, "knowledge_type_ids": knowledge_type_id},
    )


def forget_closed_conflicts(conn: Connection) -> int:
    """Delete the conflicts closed more than :data:`CLOSED_CONFLICTS_KEPT` ago (in the caller's transaction);
    returns how many."""
    cutoff = to_timestamp(utc_now() - CLOSED_CONFLICTS_KEPT)
    deleted = conn.execute(
        "DELETE FROM conflicts WHERE resolved_at IS NOT NULL AND resolved_at < ?", (cutoff,)
    )
    return int(deleted.rowcount)
