"""``outputhub sync purge-tombstones`` (and the other housekeeping commands) refuse a wrong database and bad
input with a message, never a traceback, and create nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from outputhub.server.cli import app as cli


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("OUTPUTHUB_DATABASE_URL", raising=False)
    return CliRunner()


@pytest.mark.parametrize("command", [["sync", "purge-tombstones"], ["sync", "keep-referenced"]])
def test_a_data_dir_without_a_database_is_named_and_left_alone(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
) -> None:
    """A mistyped OUTPUTHUB_DATA_DIR created the directory and an empty SQLite file there, then failed with
    a long traceback (QA)."""
    typo = tmp_path / "typo-dir"
    monkeypatch.setenv("OUTPUTHUB_DATA_DIR", str(typo))
    result = runner.invoke(cli, command)
    assert result.exit_code == 1
    assert f"no Output Hub database in {typo}" in result.output and "Traceback" not in result.output
    assert not typo.exists()


def test_a_file_that_is_no_output_hub_database_is_refused(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sqlite3.connect(tmp_path / "outputhub.sqlite3").close()  # an empty SQLite file where the data should be
    monkeypatch.setenv("OUTPUTHUB_DATA_DIR", str(tmp_path))
    result = runner.invoke(cli, ["sync", "purge-tombstones", "--older-than-days", "0"])
    assert result.exit_code == 1
    assert "is at schema none" in result.output and "outputhub db upgrade" in result.output


@pytest.mark.parametrize("days", ["1000000", "99999999999", "-1", "abc"])
def test_a_retention_out_of_range_is_a_usage_error(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, days: str
) -> None:
    """A retention of a million days was an OverflowError traceback (QA)."""
    monkeypatch.setenv("OUTPUTHUB_DATA_DIR", str(tmp_path))
    result = runner.invoke(cli, ["sync", "purge-tombstones", "--older-than-days", days])
    assert result.exit_code == 2, result.output
    assert "--older-than-days" in result.output and "Traceback" not in result.output
