"""``outputhub serve`` says where it keeps its data: a SQLite database URL was called PostgreSQL (QA)."""

from __future__ import annotations

from pathlib import Path

from outputhub.server.cli import storage_label
from outputhub.server.settings import Settings


def test_the_storage_is_named_by_the_url_it_is_given(tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'x.db'}"
    assert storage_label(Settings(database_url=sqlite_url, data_dir=tmp_path)) == f"SQLite ({sqlite_url})"
    assert storage_label(Settings(database_url=None, data_dir=tmp_path)) == f"SQLite in {tmp_path}"
    postgres = Settings(database_url="postgresql://u:p@localhost/db", data_dir=tmp_path)
    assert storage_label(postgres) == "PostgreSQL"
