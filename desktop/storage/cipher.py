"""SQLCipher access: opening keyed connections and telling a wrong passphrase from a damaged file.

This is the only module that imports the driver. Nothing here writes to an existing file before the
passphrase has been proven right and the file proven to be an Output Hub replica.

Cipher settings are pinned to SQLCipher 4 defaults (``PRAGMA cipher_compatibility = 4``): AES-256-CBC,
per-page HMAC-SHA512, key derived with PBKDF2-HMAC-SHA512 at 256,000 iterations from the passphrase and a
random 16-byte salt kept in the first 16 bytes of the file (derived once, :func:`derive_key`, where an open or
a helper process needs more than one connection, and handed to each as a raw key). Pinning them means a later
SQLCipher release with other defaults still opens old replicas. Pages are :data:`PAGE_SIZE` (16 KiB) in
replicas created since 2026-11-26, 4 KiB (SQLCipher's default) before: the page size cannot be read from an
encrypted file, so a file is opened with each size its length allows (:func:`check_file_shape`,
:func:`open_keyed`), the newer first.

Why 16 KiB: a replica's rows are mostly outputs of 2-4 KB, of which a 4 KiB page holds one (a row does not
span leaf pages unless it overflows), so half of every page was empty, and every page is encrypted and
authenticated on each write. 16 KiB pages hold 4-7 such rows: an initial sync writes a sixth less and
stores its pages 1.2-1.3x faster (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from sqlcipher3 import dbapi2 as driver

from outputhub.desktop.storage.errors import (
    CorruptReplicaError,
    ReplicaConstraintError,
    ReplicaError,
    ReplicaStorageError,
    WrongPassphraseError,
)

Connection = driver.Connection

PAGE_SIZE: Final = 16384
"""The page size of new replicas."""
LEGACY_PAGE_SIZE: Final = 4096
"""The page size of replicas created before 2026-11-26 (SQLCipher's default); still opened."""
PAGE_SIZES: Final = (PAGE_SIZE, LEGACY_PAGE_SIZE)
APPLICATION_ID: Final = 0x4F484231  # "OHB1": written into the (encrypted) database header of every replica
SQLITE_PLAIN_HEADER: Final = b"SQLite format 3\x00"
CIPHER_COMPATIBILITY: Final = 4
BUSY_TIMEOUT_SECONDS: Final = 5.0
KDF_ITERATIONS: Final = 256_000
"""SQLCipher 4's PBKDF2-HMAC-SHA512 iterations (:func:`derive_key` derives as it does)."""
SALT_BYTES: Final = 16
"""The random salt at the start of every encrypted file."""
RAW_KEY_PREFIX: Final = b"x'"


def cipher_version(conn: Connection) -> str:
    row = conn.execute("PRAGMA cipher_version").fetchone()
    return str(row[0]) if row else ""


def passphrase_bytes(passphrase: str) -> bytes:
    """The key material for a passphrase: NFC-normalized UTF-8 (the same text typed on any OS is one key)."""
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("the passphrase must be a non-empty string (an empty key would disable encryption)")
    if "\x00" in passphrase:
        raise ValueError("the passphrase must not contain NUL characters")
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def derive_key(passphrase: bytes, salt: bytes) -> bytes:
    """The raw key of a file whose salt is ``salt``, for ``passphrase`` (:func:`passphrase_bytes`):
    SQLCipher 4's own derivation (PBKDF2-HMAC-SHA512, :data:`KDF_ITERATIONS`, 32 bytes), written as
    SQLCipher takes a raw key with its salt (``x'<64 hex digits><32 hex digits>'``).

    Derived once per open, so that no connection to the file derives it again: SQLCipher derives a
    passphrase at every connection (0.1 s each), and one open can make several (each page size tried, the
    read-only look at a file with a log and then the writing connection, the checkpoint thread), and the
    desktop's sync process opens the replica at every sync. A file made with a raw key opens with its
    passphrase in SQLCipher alone, and the other way round (``tests/unit/desktop_storage``)."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"a salt is {SALT_BYTES} bytes")
    derived = hashlib.pbkdf2_hmac("sha512", passphrase, salt, KDF_ITERATIONS, 32)
    return RAW_KEY_PREFIX + (derived + salt).hex().encode("ascii") + b"'"


def new_salt() -> bytes:
    """A random salt for a new file."""
    return os.urandom(SALT_BYTES)


def is_raw_key(key: bytes) -> bool:
    """Whether ``key`` is a raw key of :func:`derive_key`'s form."""
    digits = 2 * (32 + SALT_BYTES)
    return (
        len(key) == len(RAW_KEY_PREFIX) + digits + 1
        and key.startswith(RAW_KEY_PREFIX)
        and key.endswith(b"'")
        and all(c in b"0123456789abcdef" for c in key[len(RAW_KEY_PREFIX) : -1])
    )


def key_salt(key: bytes) -> bytes:
    """The salt a raw key of :func:`derive_key` names."""
    if not is_raw_key(key):
        raise ValueError("not a raw key")
    return bytes.fromhex(key[-1 - 2 * SALT_BYTES : -1].decode("ascii"))


def file_salt(path: Path) -> bytes:
    """The salt at the start of an encrypted file (call :func:`check_file_shape` first)."""
    try:
        with path.open("rb") as handle:
            salt = handle.read(SALT_BYTES)
    except OSError as exc:
        raise ReplicaStorageError(f"cannot read the replica file {path}: {exc.strerror}", path=path) from exc
    if len(salt) != SALT_BYTES:
        raise CorruptReplicaError(f"{path} is too short to be an Output Hub replica", path=path)
    return salt


def check_file_shape(path: Path) -> tuple[int, ...]:
    """Refuse, without opening it, a file that cannot be an encrypted replica; return the page sizes it can
    have (of :data:`PAGE_SIZES`, the newest first).

    An encrypted SQLCipher file is a whole number of pages and starts with a random salt. A file of another
    length is truncated or foreign; one starting with the SQLite magic is an unencrypted database. (Random
    bytes of a whole number of pages cannot be told from a replica encrypted with another passphrase: that
    is what encryption means; they are reported as a wrong passphrase.)
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_PLAIN_HEADER))
    except OSError as exc:
        raise ReplicaStorageError(f"cannot read the replica file {path}: {exc.strerror}", path=path) from exc
    if size == 0:
        raise CorruptReplicaError(f"{path} is empty: it is not an Output Hub replica", path=path)
    if head == SQLITE_PLAIN_HEADER:
        raise CorruptReplicaError(
            f"{path} is an unencrypted SQLite database, not an encrypted Output Hub replica", path=path
        )
    # a checkpoint cut short (a full disk) leaves part of a page at the end: the file opens when its log holds
    # every page from there to the end of the database (QA: it was refused as truncated), and not when pages
    # are missing that the log does not hold (QA: it was then opened and filled with garbage). A filesystem
    # stops at one of its blocks, so such a file is often a whole number of 4 KiB pages: the log is read for
    # every page size the length does not fit, not only when it fits none (QA: a 16 KiB replica cut at a 4 KiB
    # block was refused for good after the disk was freed)
    sizes = tuple(
        n for n in PAGE_SIZES if size % n == 0 or _log_covers_tail(path, size=size, page_size=n)
    )
    if not sizes:
        raise CorruptReplicaError(
            f"{path} is {size} bytes, not a whole number of {LEGACY_PAGE_SIZE}-byte pages: the replica is "
            "truncated, has stray bytes at its end, or the file is not a replica",
            path=path,
        )
    return sizes


WAL_MAGIC: Final = (0x377F0682, 0x377F0683)
WAL_HEADER: Final = 32
WAL_FRAME_HEADER: Final = 24


def _log_covers_tail(path: Path, *, size: int, page_size: int) -> bool:
    """Whether the write-ahead log of ``path`` (a file of ``size`` bytes, ``page_size`` pages) holds every
    page from the one the file ends inside to the last of the database its last commit describes. Reads the
    log's frame headers (SQLCipher encrypts page contents, not them); a frame belongs to the log while its
    salts are the log header's."""
    log = Path(f"{path}-wal")
    frame_size = WAL_FRAME_HEADER + page_size
    logged: list[int] = []  # page numbers, frame by frame
    committed, pages_at_commit = 0, 0  # frames up to the last commit, the database's pages then
    try:
        with log.open("rb") as handle:
            whole_frames = (log.stat().st_size - WAL_HEADER) // frame_size
            header = handle.read(WAL_HEADER)
            if len(header) < WAL_HEADER or int.from_bytes(header[:4], "big") not in WAL_MAGIC:
                return False
            if int.from_bytes(header[8:12], "big") != page_size:
                return False
            for n in range(whole_frames):
                handle.seek(WAL_HEADER + n * frame_size)
                frame = handle.read(WAL_FRAME_HEADER)
                if frame[8:16] != header[16:24]:  # another generation's salts: the log ends here
                    break
                logged.append(int.from_bytes(frame[:4], "big"))
                if commit_size := int.from_bytes(frame[4:8], "big"):
                    committed, pages_at_commit = len(logged), commit_size
    except OSError:
        return False
    first_missing = size // page_size + 1  # 1-based: the page the file ends inside
    held = set(logged[:committed])
    return pages_at_commit >= first_missing and all(
        page in held for page in range(first_missing, pages_at_commit + 1)
    )


def has_log(path: Path) -> bool:
    """Whether ``path`` has a write-ahead log with something in it (a crash, or another process at work)."""
    try:
        return Path(f"{path}-wal").stat().st_size > 0
    except OSError:
        return False


_BIND_AS_IS: Final[Callable[[None], None]] = {}.get
"""The driver's adapter for ``None``: gives it back, to be bound as NULL (see :func:`connect`)."""


def connect(path: Path, *, key: bytes, page_size: int = PAGE_SIZE, read_only: bool = False) -> Connection:
    """A connection keyed with ``key`` (a raw key of :func:`derive_key`, or a passphrase that SQLCipher
    derives a key from itself) in autocommit mode (transactions are explicit) to a file of ``page_size`` pages
    (a new file gets them). Reads nothing yet. ``read_only``: one that cannot write the file: closing the
    last connection to a replica folds its log into it, which a refused file must not get."""
    # The driver binds str, int, float and bytearray parameters as they are, and sends every other value,
    # None included, through its adapter protocol, which for None finds no adapter and then fails two
    # attribute lookups: 1.1 us per None bound, ~3.4 us per pulled output row (three NULL columns), more
    # than binding all its other columns. Registered, None costs one C call (``{}.get(None)`` is None).
    driver.register_adapter(type(None), _BIND_AS_IS)
    try:
        conn = driver.connect(
            f"{Path(path).absolute().as_uri()}?mode=ro" if read_only else str(path),
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_SECONDS,
            uri=read_only,
        )
    except driver.Error as exc:
        raise translate_driver_error(exc, path=path, action="open") from exc
    try:
        # The library's own stderr logging would duplicate the errors raised here.
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.set_key(key)
        conn.execute(f"PRAGMA cipher_compatibility = {CIPHER_COMPATIBILITY}")
        if page_size not in PAGE_SIZES:
            raise ValueError(f"page size {page_size} is not one of {PAGE_SIZES}")
        conn.execute(f"PRAGMA cipher_page_size = {page_size}")
    except driver.Error as exc:
        conn.close()
        raise translate_driver_error(exc, path=path, action="open") from exc
    return conn


def unlock(conn: Connection, *, path: Path) -> tuple[int, int]:
    """Prove the key right by reading the schema; return ``(application_id, user_version)``.

    Writes nothing.
    """
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        user_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except driver.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorname", "")
        if code == "SQLITE_NOTADB":
            raise WrongPassphraseError(
                f"the passphrase does not unlock {path} (wrong passphrase, or the file is not an "
                "Output Hub replica); the file was not changed",
                path=path,
            ) from None
        if code == "SQLITE_CORRUPT":
            raise CorruptReplicaError(
                f"{path} is damaged (truncated or corrupted pages); the file was not changed", path=path
            ) from None
        raise translate_driver_error(exc, path=path, action="open") from exc
    return application_id, user_version


def open_keyed(
    path: Path,
    *,
    key: bytes,
    page_sizes: tuple[int, ...],
    accept: Callable[[int, int], None] | None = None,
) -> tuple[Connection, int, int, int]:
    """Connect to ``path`` with the first of ``page_sizes`` that ``key`` unlocks it with; return the
    connection, the application id, the user version and the page size. Raises the last size's
    :class:`WrongPassphraseError` when none does (with a passphrase, each try derives the key again: a wrong
    passphrase on a file that can have either size costs two derivations; with a raw key of
    :func:`derive_key`, none does). Writes nothing.

    A file with a log (:func:`has_log`) is unlocked, and given to ``accept(application_id, user_version)``
    (which raises to refuse it), through a connection that cannot write, and only then opened for writing:
    closing a refused connection folded the log into the file and deleted it (QA). With a passphrase
    that costs one more key derivation (the replica derives a raw key first then)."""
    if not page_sizes:
        raise ValueError("no page size to try")
    read_only = has_log(path)
    for n, page_size in enumerate(page_sizes, start=1):
        conn = connect(path, key=key, page_size=page_size, read_only=read_only)
        try:
            application_id, user_version = unlock(conn, path=path)
        except WrongPassphraseError:
            conn.close()
            if n == len(page_sizes):
                _refuse_if_truncated(path, key=key, tried=page_sizes, read_only=read_only)
                raise
            continue
        except BaseException:
            conn.close()
            raise
        if read_only:
            try:
                if accept is not None:
                    accept(application_id, user_version)
            finally:
                conn.close()
            return _open_writing(path, key=key, page_size=page_size)
        return conn, application_id, user_version, page_size
    raise AssertionError("unreachable")


def _open_writing(path: Path, *, key: bytes, page_size: int) -> tuple[Connection, int, int, int]:
    """The writing connection to a file a read-only one has unlocked and accepted."""
    conn = connect(path, key=key, page_size=page_size)
    try:
        application_id, user_version = unlock(conn, path=path)
    except BaseException:
        conn.close()
        raise
    return conn, application_id, user_version, page_size


def _refuse_if_truncated(path: Path, *, key: bytes, tried: tuple[int, ...], read_only: bool = False) -> None:
    """Raise :class:`CorruptReplicaError` when ``key`` unlocks ``path`` with a page size its length rules
    out: a replica cut short, not a wrong passphrase. (A 16 KiB replica cut at a 4 KiB block, as a partial
    copy leaves it, was only tried as a legacy 4 KiB one and reported as a wrong passphrase; found by QA.)
    One more try (a key derivation, with a passphrase), only when the passphrase has failed anyway."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    for page_size in PAGE_SIZES:
        if page_size in tried or size < page_size:
            continue
        conn = connect(path, key=key, page_size=page_size, read_only=read_only)
        try:
            unlock(conn, path=path)
        except WrongPassphraseError:
            continue
        except CorruptReplicaError:
            pass
        finally:
            conn.close()
        raise CorruptReplicaError(
            f"{path} is damaged: it is {size} bytes, not a whole number of its {page_size}-byte pages (the "
            "replica is truncated); the file was not changed",
            path=path,
        )
    if size < PAGE_SIZE:
        # no key reads a replica cut inside its first page: say that it may be that, not only the passphrase
        raise WrongPassphraseError(
            f"the passphrase does not unlock {path} (wrong passphrase, or the file is not a whole Output Hub "
            f"replica: it is only {size:,} bytes, a copy cut short?); the file was not changed",
            path=path,
        )


def driver_error_types() -> type[Exception]:
    """The driver's base exception class, for callers that expect a specific failure."""
    return driver.Error


def translate_driver_error(exc: Exception, *, path: Path | None, action: str) -> ReplicaError:
    """The project's error for a driver exception (callers raise it ``from`` the original)."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    where = f" ({path})" if path is not None else ""
    if isinstance(exc, driver.IntegrityError):
        return ReplicaConstraintError(f"cannot {action}: {exc}{where}", path=path)
    if code.startswith("SQLITE_CORRUPT") or code == "SQLITE_NOTADB":
        return CorruptReplicaError(f"cannot {action}: the replica is damaged{where}: {exc}", path=path)
    if code.startswith("SQLITE_BUSY") or code.startswith("SQLITE_LOCKED"):
        return ReplicaStorageError(
            f"cannot {action}: the replica is locked by another connection or process{where}", path=path
        )
    if code.startswith("SQLITE_READONLY") or code.startswith("SQLITE_CANTOPEN"):
        # "attempt to write a readonly database" said nothing of where to look (QA)
        return ReplicaStorageError(
            f"cannot {action}: {exc}{where}; check that you may write the replica file and its folder (the "
            "file's permissions, a read-only disk)",
            path=path,
        )
    if code == "SQLITE_FULL":
        return ReplicaStorageError(
            f"cannot {action}: the disk is full{where}; this step was not saved: free some space and try "
            "again",
            path=path,
        )
    return ReplicaStorageError(f"cannot {action}: {exc}{where}", path=path)


@contextlib.contextmanager
def driver_errors(*, path: Path | None, action: str) -> Iterator[None]:
    """Translate driver exceptions raised inside the block."""
    try:
        yield
    except driver.Error as exc:
        raise translate_driver_error(exc, path=path, action=action) from exc
