"""Encryption at rest, and refusing every file that is not ours without touching it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from replica_support import PASSPHRASE, new_id, output, prompt, sha256, snapshot
from sqlcipher3 import dbapi2 as sqlcipher

from outputhub.desktop.storage import (
    CorruptReplicaError,
    Replica,
    ReplicaClosedError,
    ReplicaConstraintError,
    ReplicaError,
    ReplicaNotFoundError,
    ReplicaTooNewError,
    WrongPassphraseError,
    cipher,
    open_replica,
)
from outputhub.desktop.storage.cipher import LEGACY_PAGE_SIZE, PAGE_SIZE
from outputhub.desktop.storage.migrations import load_migrations

SECRET = "ZQX-distinctive-plaintext-7f3a9c"


@pytest.fixture
def replica_path(tmp_path: Path) -> Path:
    return tmp_path / "replica.db"


@pytest.fixture
def replica(replica_path: Path) -> Iterator[Replica]:
    with open_replica(replica_path, passphrase=PASSPHRASE, create=True) as opened:
        yield opened


def make_closed_replica(path: Path, *, passphrase: str = PASSPHRASE) -> str:
    """A replica with one prompt; returns the prompt id."""
    record = prompt(title=f"title {SECRET}", body=f"body {SECRET}")
    with open_replica(path, passphrase=passphrase, create=True) as replica:
        replica.upsert_prompt(record=record)
    return record.id


def test_cipher_is_sqlcipher_4(replica: Replica) -> None:
    assert replica.cipher_version().startswith("4.")


def test_none_is_bound_as_null_and_other_values_as_they_are(tmp_path: Path) -> None:
    """The replica's connections bind ``None`` through an adapter of their own (the driver's default path
    cost 1.1 us per NULL, ``bench.binding``): it must still be SQL NULL, and nothing else may change type."""
    conn = cipher.connect(tmp_path / "binding.db", key=b"binding test key")
    try:
        conn.execute("CREATE TABLE t (v)")
        conn.executemany("INSERT INTO t VALUES (?)", [(None,), ("",), (0,), (1.5,), (b"\x00",), ("None",)])
        got = conn.execute("SELECT typeof(v), v IS NULL FROM t ORDER BY rowid").fetchall()
    finally:
        conn.close()
    assert got == [("null", 1), ("text", 0), ("integer", 0), ("real", 0), ("blob", 0), ("text", 0)]


def test_plaintext_never_reaches_the_disk(replica: Replica, replica_path: Path) -> None:
    record = prompt(title=f"title {SECRET}", body=f"body {SECRET} " * 50)
    replica.upsert_prompt(record=record)
    replica.upsert_output(record=output(record.id, content=f"output {SECRET}"))
    needle = SECRET.encode()
    files = [p for p in replica_path.parent.iterdir() if p.name.startswith(replica_path.name)]
    assert Path(f"{replica_path}-wal") in files  # WAL mode: the edit sits in the -wal file while open
    for path in files:
        assert needle not in path.read_bytes(), path.name
        assert needle.lower() not in path.read_bytes().lower(), path.name  # nor the FTS tokens
    replica.close()
    for path in replica_path.parent.iterdir():
        assert needle not in path.read_bytes(), path.name
    assert not Path(f"{replica_path}-wal").exists()  # folded back into the file on close


def test_stock_sqlite_cannot_read_it(replica_path: Path) -> None:
    make_closed_replica(replica_path)
    conn = sqlite3.connect(replica_path)
    try:
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute("SELECT * FROM sqlite_master").fetchall()
    finally:
        conn.close()


def test_reopen_with_the_right_passphrase_reads_the_data(replica_path: Path) -> None:
    prompt_id = make_closed_replica(replica_path)
    with open_replica(replica_path, passphrase=PASSPHRASE) as replica:
        found = replica.get_prompt(id=prompt_id)
    assert found is not None
    assert found.title == f"title {SECRET}"


def test_wrong_passphrase_is_refused_and_nothing_is_written(replica_path: Path) -> None:
    make_closed_replica(replica_path)
    before = snapshot(replica_path.parent)
    with pytest.raises(WrongPassphraseError, match="does not unlock"):
        open_replica(replica_path, passphrase="not the passphrase")
    with pytest.raises(WrongPassphraseError):
        open_replica(replica_path, passphrase="not the passphrase", create=True)
    assert snapshot(replica_path.parent) == before


def make_legacy_replica(path: Path) -> None:
    """An empty replica as created before 2026-11-26: 4 KiB pages (the schema comes when it is opened)."""
    conn = cipher.connect(path, key=cipher.passphrase_bytes(PASSPHRASE), page_size=LEGACY_PAGE_SIZE)
    conn.execute(f"PRAGMA application_id = {cipher.APPLICATION_ID}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def test_new_replicas_have_16_kib_pages(replica: Replica, replica_path: Path) -> None:
    replica.upsert_prompt(record=prompt())
    assert replica.page_size == PAGE_SIZE == 16384
    replica.close()
    assert replica_path.stat().st_size % PAGE_SIZE == 0
    with open_replica(replica_path, passphrase=PASSPHRASE) as again:
        assert again.page_size == PAGE_SIZE and len(again.list_prompts()) == 1


@pytest.mark.parametrize("both_fit", [False, True], ids=["4 KiB pages only fit", "both page sizes fit"])
def test_replicas_with_4_kib_pages_still_open_with_their_data(replica_path: Path, both_fit: bool) -> None:
    make_legacy_replica(replica_path)
    kept: list[str] = []
    while not kept or (replica_path.stat().st_size % PAGE_SIZE == 0) != both_fit:
        assert len(kept) < 100, "the file never reached a size of the kind under test"
        with open_replica(replica_path, passphrase=PASSPHRASE) as legacy:
            assert legacy.page_size == LEGACY_PAGE_SIZE
            record = prompt(title=f"kept {len(kept)} {SECRET}", body="x" * 3000)
            legacy.upsert_prompt(record=record)
            kept.append(record.title)
    before = snapshot(replica_path.parent)
    with pytest.raises(WrongPassphraseError, match="does not unlock"):
        open_replica(replica_path, passphrase="not the passphrase")
    assert snapshot(replica_path.parent) == before
    tries: list[int] = []
    connect = cipher.connect

    def counted(path: Path, *, key: bytes, page_size: int = PAGE_SIZE, read_only: bool = False) -> object:
        tries.append(page_size)
        return connect(path, key=key, page_size=page_size, read_only=read_only)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cipher, "connect", counted)
        open_replica(replica_path, passphrase=PASSPHRASE).close()
        assert tries == ([PAGE_SIZE, LEGACY_PAGE_SIZE] if both_fit else [LEGACY_PAGE_SIZE])
        tries.clear()
        # the app tells its sync process the size: one key derivation
        open_replica(replica_path, passphrase=PASSPHRASE, page_size=LEGACY_PAGE_SIZE).close()
        assert tries == [LEGACY_PAGE_SIZE]
    with open_replica(replica_path, passphrase=PASSPHRASE) as legacy:
        assert legacy.page_size == LEGACY_PAGE_SIZE
        assert sorted(p.title for p in legacy.list_prompts()) == sorted(kept)
        legacy.change_passphrase(old=PASSPHRASE, new="new passphrase")
    with open_replica(replica_path, passphrase="new passphrase") as legacy:
        assert legacy.page_size == LEGACY_PAGE_SIZE and legacy.verify_integrity() == []


def test_a_4_kib_replica_left_with_a_wal_opens_without_losing_it(tmp_path: Path) -> None:
    """A crash leaves committed edits in the -wal file only; trying 16 KiB pages first must not lose them."""
    source, copy = tmp_path / "source.db", tmp_path / "copy" / "replica.db"
    copy.parent.mkdir()
    make_legacy_replica(source)
    kept: list[str] = []
    while not kept or source.stat().st_size % PAGE_SIZE:  # a size both page sizes fit: 16 KiB is tried first
        assert len(kept) < 100, "the file never reached a size both page sizes fit"
        with open_replica(source, passphrase=PASSPHRASE) as legacy:  # closing checkpoints into the file
            kept.append(f"checkpointed {len(kept)}")
            legacy.upsert_prompt(record=prompt(title=kept[-1], body="x" * 3000))
    with open_replica(source, passphrase=PASSPHRASE) as legacy:
        legacy.upsert_prompt(record=prompt(title="only in the wal"))
        for name in (source.name, f"{source.name}-wal"):  # the files as a crash right now would leave them
            (copy.parent / name.replace(source.name, copy.name)).write_bytes((tmp_path / name).read_bytes())
    assert Path(f"{copy}-wal").stat().st_size > 0 and copy.stat().st_size % PAGE_SIZE == 0
    with open_replica(copy, passphrase=PASSPHRASE) as reopened:
        assert reopened.page_size == LEGACY_PAGE_SIZE
        assert sorted(p.title for p in reopened.list_prompts()) == sorted([*kept, "only in the wal"])
        assert reopened.verify_integrity() == []


def _left_by_a_crash(tmp_path: Path, *, with_shm: bool = True) -> Path:
    """A replica as a crash leaves it: its last edits ("in the log 0..2", 400 KB each: they grow the file)
    in its -wal file only."""
    source, copy = tmp_path / "source" / "replica.db", tmp_path / "crashed" / "replica.db"
    source.parent.mkdir()
    copy.parent.mkdir()
    make_closed_replica(source)
    with open_replica(source, passphrase=PASSPHRASE) as replica:
        for n in range(3):
            replica.upsert_prompt(record=prompt(title=f"in the log {n}", body=f"{n} " * 200_000))
        for suffix in ("", "-wal", *(("-shm",) if with_shm else ())):
            Path(f"{copy}{suffix}").write_bytes(Path(f"{source}{suffix}").read_bytes())
    assert Path(f"{copy}-wal").stat().st_size > 0
    return copy


@pytest.mark.parametrize("with_shm", [True, False], ids=["wal-and-shm", "wal-only"])
def test_a_refused_replica_left_with_a_wal_is_not_written(tmp_path: Path, with_shm: bool) -> None:
    """Refusing a replica (wrong passphrase, made by a newer app) closed a connection that folded the -wal
    file into it and deleted the log, while the message said the file was not changed (QA). Refusals are
    now reached without a connection that can write."""
    crashed = _left_by_a_crash(tmp_path, with_shm=with_shm)

    def files() -> dict[str, str]:  # the replica and its log; SQLite rebuilds its -shm index at will
        found = snapshot(crashed.parent)
        return {name: digest for name, digest in found.items() if not name.endswith("-shm")}

    before = files()
    assert set(before) == {"replica.db", "replica.db-wal"}
    with pytest.raises(WrongPassphraseError):
        open_replica(crashed, passphrase="not the passphrase")
    assert files() == before
    older = load_migrations()[:-1]
    with pytest.raises(ReplicaTooNewError):
        open_replica(crashed, passphrase=PASSPHRASE, migrations=older)
    assert files() == before
    with open_replica(crashed, passphrase=PASSPHRASE) as reopened:
        titles = {p.title for p in reopened.list_prompts()}
        assert {"in the log 0", "in the log 1", "in the log 2"} <= titles


@pytest.mark.parametrize(
    "cut", [5000, 4096, 12288], ids=["inside-a-block", "one-4k-block", "three-4k-blocks"]
)
def test_a_checkpoint_cut_short_by_a_full_disk_is_not_called_damage(tmp_path: Path, cut: int) -> None:
    """A full disk stopped the folding of the -wal file into the replica inside a page: the file was not a
    whole number of pages and every later command refused it as damaged and truncated, though all of it
    was in the log (QA; a user told to start a new replica loses the unsynced edits). With a -wal file
    there, the log is read before the length is judged. A filesystem stops at one of its 4 KiB blocks: the
    length is then a whole number of legacy 4 KiB pages, and the log was not read (QA again: refused for
    good after the disk was freed)."""
    crashed = _left_by_a_crash(tmp_path)
    whole = tmp_path / "whole"
    shutil.copytree(crashed.parent, whole)
    open_replica(whole / crashed.name, passphrase=PASSPHRASE).close()  # the checkpoint, done
    folded = (whole / crashed.name).read_bytes()
    assert len(folded) > crashed.stat().st_size  # the log's pages grew the file
    crashed.write_bytes(folded[:-cut])  # the disk filled while the checkpoint wrote the last page
    with open_replica(crashed, passphrase=PASSPHRASE) as reopened:
        titles = {p.title for p in reopened.list_prompts()}
        assert {"in the log 0", "in the log 1", "in the log 2"} <= titles
    # closing folded the log in: the file is whole again
    assert crashed.read_bytes() == folded
    with open_replica(crashed, passphrase=PASSPHRASE) as reopened:
        assert reopened.verify_integrity() == []


def test_a_replica_that_cannot_be_written_says_where_to_look(tmp_path: Path) -> None:
    """"attempt to write a readonly database" said nothing of permissions (QA, a 0400 replica)."""
    path = tmp_path / "plain.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    conn = sqlcipher.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    with pytest.raises(sqlcipher.Error) as caught:
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    said = str(cipher.translate_driver_error(caught.value, path=path, action="save the tag"))
    assert said.startswith("cannot save the tag: attempt to write a readonly database")
    assert "permissions" in said


def test_a_replica_cut_short_with_a_log_that_lacks_its_pages_is_refused_untouched(tmp_path: Path) -> None:
    """With a -wal beside it, a replica cut well short (pages missing that the log does not hold) was opened,
    filled with garbage and its log deleted (QA): only a tail the log holds is a checkpoint cut short."""
    crashed = _left_by_a_crash(tmp_path)
    data = crashed.read_bytes()
    crashed.write_bytes(data[: len(data) - 20 * PAGE_SIZE - 5000])
    before = snapshot(crashed.parent)
    with pytest.raises(CorruptReplicaError, match="not a whole number of"):  # judged before any reading
        open_replica(crashed, passphrase=PASSPHRASE)
    assert {k: v for k, v in snapshot(crashed.parent).items() if not k.endswith("-shm")} == {
        k: v for k, v in before.items() if not k.endswith("-shm")
    }


def test_passphrase_is_unicode_normalized(replica_path: Path) -> None:
    composed = unicodedata.normalize("NFC", "crème brûlée ü")
    make_closed_replica(replica_path, passphrase=composed)
    with open_replica(replica_path, passphrase=unicodedata.normalize("NFD", composed)) as replica:
        assert replica.list_prompts()


@pytest.mark.parametrize("passphrase", ["", "nul\x00inside"])
def test_unusable_passphrases_are_rejected(replica_path: Path, passphrase: str) -> None:
    with pytest.raises(ValueError, match="passphrase"):
        open_replica(replica_path, passphrase=passphrase, create=True)
    assert not replica_path.exists()


def test_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(ReplicaNotFoundError):
        open_replica(tmp_path / "nope.db", passphrase=PASSPHRASE)
    assert list(tmp_path.iterdir()) == []


def test_create_makes_parent_directories_and_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "replica.db"
    with open_replica(path, passphrase=PASSPHRASE, create=True) as replica:
        assert replica.schema_version >= 1
    assert path.is_file()
    if os.name == "posix":
        assert path.stat().st_mode & 0o077 == 0
    assert [p.name for p in path.parent.iterdir()] == ["replica.db"]  # no temporary left behind


def test_create_on_an_existing_replica_opens_it(replica_path: Path) -> None:
    prompt_id = make_closed_replica(replica_path)
    with open_replica(replica_path, passphrase=PASSPHRASE, create=True) as replica:
        assert replica.get_prompt(id=prompt_id) is not None


def _plain_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE prompts (id TEXT, title TEXT)")
    conn.execute("INSERT INTO prompts VALUES ('1', 'hello')")
    conn.commit()
    conn.close()


def _foreign_sqlcipher(path: Path) -> None:
    """Encrypted with the same passphrase, but another application's database."""
    conn = sqlcipher.connect(str(path))
    conn.execute(f"PRAGMA key = '{PASSPHRASE}'")
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()


def _truncated(path: Path, *, keep: int) -> None:
    make_closed_replica(path)
    data = path.read_bytes()
    assert len(data) > keep
    path.write_bytes(data[:keep])


CORRUPTERS = {
    "random bytes": lambda p: p.write_bytes(os.urandom(10_000)),
    "empty": lambda p: p.write_bytes(b""),
    "plain sqlite": _plain_sqlite,
    "foreign sqlcipher": _foreign_sqlcipher,
    "truncated mid-page": lambda p: _truncated(p, keep=3 * PAGE_SIZE + 123),
    "truncated at a page boundary": lambda p: _truncated(p, keep=3 * PAGE_SIZE),
    # a copy cut at a filesystem block: a whole number of 4 KiB pages, not of the replica's 16 KiB ones (it
    # was taken for a legacy 4 KiB replica and reported as a wrong passphrase; found by QA)
    "truncated at a 4 KiB block": lambda p: _truncated(p, keep=3 * PAGE_SIZE + LEGACY_PAGE_SIZE),
    "text file": lambda p: p.write_text("SQLite format 3 is what I am not\n" * 200),
}


@pytest.mark.parametrize("make", CORRUPTERS.values(), ids=CORRUPTERS.keys())
def test_corrupt_or_foreign_files_are_refused_untouched(replica_path: Path, make: object) -> None:
    make(replica_path)  # type: ignore[operator]
    before = snapshot(replica_path.parent)
    with pytest.raises(CorruptReplicaError):
        open_replica(replica_path, passphrase=PASSPHRASE)
    with pytest.raises(CorruptReplicaError):
        open_replica(replica_path, passphrase=PASSPHRASE, create=True)  # never overwritten
    assert snapshot(replica_path.parent) == before


def test_random_whole_pages_are_indistinguishable_from_another_key(replica_path: Path) -> None:
    # Ciphertext looks random, so random bytes of a whole number of pages read as "another passphrase".
    replica_path.write_bytes(os.urandom(4 * PAGE_SIZE))
    before = sha256(replica_path)
    with pytest.raises(ReplicaError) as caught:
        open_replica(replica_path, passphrase=PASSPHRASE)
    assert isinstance(caught.value, WrongPassphraseError | CorruptReplicaError)
    assert "not an Output Hub replica" in str(caught.value)
    assert sha256(replica_path) == before


@pytest.mark.parametrize("keep", [LEGACY_PAGE_SIZE, 3 * LEGACY_PAGE_SIZE])
def test_a_replica_cut_inside_its_first_page_says_it_may_be_cut_short(replica_path: Path, keep: int) -> None:
    """Cut at a 4 KiB block inside its first 16 KiB page, no key can read a replica: it was refused as a
    wrong passphrase alone, and the user went on retyping it (QA). The refusal now names the size too."""
    _truncated(replica_path, keep=keep)
    before = sha256(replica_path)
    with pytest.raises(WrongPassphraseError) as caught:
        open_replica(replica_path, passphrase=PASSPHRASE)
    said = str(caught.value)
    assert "wrong passphrase" in said and f"only {keep:,} bytes" in said and "cut short" in said
    assert sha256(replica_path) == before


def test_flipped_byte_in_a_data_page_is_detected(replica_path: Path) -> None:
    make_closed_replica(replica_path)
    data = bytearray(replica_path.read_bytes())
    data[-PAGE_SIZE + 100] ^= 0xFF  # inside the last page's ciphertext
    replica_path.write_bytes(bytes(data))
    try:
        replica = open_replica(replica_path, passphrase=PASSPHRASE)
    except CorruptReplicaError:
        return  # the damaged page was needed to open: refused
    with replica:
        assert replica.verify_integrity() != []


def test_change_passphrase_keeps_data_and_retires_the_old_one(replica_path: Path) -> None:
    prompt_id = make_closed_replica(replica_path)
    with open_replica(replica_path, passphrase=PASSPHRASE) as replica:
        with pytest.raises(WrongPassphraseError):
            replica.change_passphrase(old="not it", new="new passphrase")
        replica.change_passphrase(old=PASSPHRASE, new="new passphrase")
        assert replica.get_prompt(id=prompt_id) is not None  # still usable while open
        replica.upsert_prompt(record=prompt(title="written after rekey"))
    with pytest.raises(WrongPassphraseError):
        open_replica(replica_path, passphrase=PASSPHRASE)
    with open_replica(replica_path, passphrase="new passphrase") as replica:
        assert replica.get_prompt(id=prompt_id) is not None
        assert len(replica.list_prompts()) == 2
        assert replica.verify_integrity() == []
    assert SECRET.encode() not in replica_path.read_bytes()


def test_key_material_opens_the_file_in_another_connection_and_follows_a_passphrase_change(
    replica_path: Path,
) -> None:
    """The desktop's sync process opens the file with the key the app hands it (``key_material``): the raw
    key, derived once, never the passphrase; after a passphrase change the old key opens nothing."""
    composed = unicodedata.normalize("NFD", "pässphrase with an umlaut")
    with open_replica(replica_path, passphrase=composed, create=True) as replica:
        key = replica.key_material()
        assert cipher.is_raw_key(key)
        assert unicodedata.normalize("NFC", composed).encode() not in key
        with open_replica(replica_path, key=key) as other:  # a second connection, WAL
            other.upsert_prompt(record=prompt(title="from the other connection"))
        assert [p.title for p in replica.list_prompts()] == ["from the other connection"]
        replica.change_passphrase(old=composed, new="the new passphrase")
        new_key = replica.key_material()
        assert cipher.is_raw_key(new_key) and new_key != key
        with open_replica(replica_path, key=new_key) as other:
            assert len(other.list_prompts()) == 1
        with pytest.raises(WrongPassphraseError):
            open_replica(replica_path, key=key)
    with open_replica(replica_path, passphrase="the new passphrase") as reopened:
        assert len(reopened.list_prompts()) == 1
    with pytest.raises(WrongPassphraseError):
        open_replica(replica_path, passphrase=composed)
    with pytest.raises(ValueError, match="passphrase or a key"):
        open_replica(replica_path)
    with pytest.raises(ValueError, match="not a replica's key"):
        open_replica(replica_path, key=b"the new passphrase")


def _sqlcipher_alone(path: Path, passphrase: str) -> sqlcipher.Connection:
    """A connection keyed as SQLCipher 4 keys a passphrase itself (as apps before 2026-11-29 did)."""
    conn = sqlcipher.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA cipher_log_level = NONE")
    conn.set_key(passphrase.encode())
    conn.execute("PRAGMA cipher_compatibility = 4")
    conn.execute(f"PRAGMA cipher_page_size = {PAGE_SIZE}")
    return conn


def test_the_key_derived_once_is_sqlciphers_own(replica_path: Path, tmp_path: Path) -> None:
    """A replica is keyed with a raw key derived once per open (:func:`cipher.derive_key`). It must be the
    key SQLCipher derives from the passphrase itself: a replica made now opens in SQLCipher alone (an older
    app), one SQLCipher made from a passphrase opens here, and so does one re-keyed here."""
    with open_replica(replica_path, passphrase=PASSPHRASE, create=True) as replica:
        replica.upsert_prompt(record=prompt(title="made now"))
    conn = _sqlcipher_alone(replica_path, PASSPHRASE)
    try:
        assert conn.execute("SELECT title FROM prompts").fetchall() == [("made now",)]
    finally:
        conn.close()

    older = tmp_path / "older.db"
    conn = _sqlcipher_alone(older, "an older passphrase")
    try:
        conn.execute(f"PRAGMA application_id = {cipher.APPLICATION_ID}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()
    with open_replica(older, passphrase="an older passphrase") as replica:
        replica.upsert_prompt(record=prompt(title="in an older file"))
        replica.change_passphrase(old="an older passphrase", new="a newer passphrase")
    conn = _sqlcipher_alone(older, "a newer passphrase")
    try:
        assert conn.execute("SELECT title FROM prompts").fetchall() == [("in an older file",)]
    finally:
        conn.close()


def test_a_passphrase_written_as_a_raw_key_is_a_passphrase(replica_path: Path) -> None:
    """SQLCipher takes a key written as ``x'<hex>'`` for a raw key. The replica derives a key from any
    passphrase, so one of that form opens the replica it made (it was created with the derived key and then
    handed to SQLCipher as it was: the replica was refused as a wrong passphrase)."""
    looks_raw = "x'" + "ab" * 32 + "'"
    with open_replica(replica_path, passphrase=looks_raw, create=True) as replica:
        replica.upsert_prompt(record=prompt(title="behind a raw-looking passphrase"))
    with open_replica(replica_path, passphrase=looks_raw) as replica:
        assert [p.title for p in replica.list_prompts()] == ["behind a raw-looking passphrase"]
        replica.change_passphrase(old=looks_raw, new="x'" + "cd" * 48 + "'")
    with open_replica(replica_path, passphrase="x'" + "cd" * 48 + "'") as replica:
        assert len(replica.list_prompts()) == 1


def test_an_open_derives_the_key_once(replica_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating a replica, and opening one that another connection holds open (a log to look at first,
    read-only, then the writing connection, as the desktop's sync process found it), derive the key once
    each: SQLCipher derived it at every connection (0.1 s apiece). A process given the key derives none. A
    plain open leaves the one derivation to SQLCipher, and the key is derived when first shared."""
    derived: list[bytes] = []
    derive = cipher.derive_key

    def counting(passphrase: bytes, salt: bytes) -> bytes:
        derived.append(salt)
        return derive(passphrase, salt)

    monkeypatch.setattr(cipher, "derive_key", counting)
    with open_replica(replica_path, passphrase=PASSPHRASE, create=True) as replica:
        assert len(derived) == 1
        replica.upsert_prompt(record=prompt())
        assert cipher.has_log(replica_path)
        with open_replica(replica_path, passphrase=PASSPHRASE) as other:
            assert len(other.list_prompts()) == 1
        assert len(derived) == 2
        with open_replica(replica_path, key=replica.key_material()) as other, other.checkpoints_apart():
            assert len(other.list_prompts()) == 1
        assert len(derived) == 2
    with open_replica(replica_path, passphrase=PASSPHRASE) as replica:
        assert len(derived) == 2  # one connection: SQLCipher derives its key
        key = replica.key_material()
        assert replica.key_material() == key and len(derived) == 3
        with replica.checkpoints_apart():  # a second connection, keyed with the key derived
            replica.upsert_prompt(record=prompt())
    assert derived == [replica_path.read_bytes()[: cipher.SALT_BYTES]] * 3
    with open_replica(replica_path, key=key) as replica:
        assert len(replica.list_prompts()) == 2


def test_driver_errors_do_not_leak(replica: Replica) -> None:
    record = prompt()
    replica.upsert_prompt(record=record)
    with pytest.raises(ReplicaConstraintError):
        replica.upsert_prompt(record=prompt(id="not-a-uuid"))
    with pytest.raises(ReplicaConstraintError):  # outbox op ids are unique
        for _ in range(2):
            replica.enqueue_outbox(
                op_id="op-1", entity="prompt", record_id=record.id, payload={}, base_revision=None
            )
    replica.close()
    replica.close()  # idempotent
    with pytest.raises(ReplicaClosedError):
        replica.get_prompt(id=new_id())
