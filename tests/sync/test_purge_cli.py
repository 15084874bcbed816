"""``outputhub sync purge-tombstones`` (and the other housekeeping commands) refuse a wrong database and bad
input with a message, never a traceback, and create nothing."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from outputhub.server.cli import app as cli
from tests.support.client import new_org
from tests.sync.support import server_cli


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


def test_org_narrows_the_purge_to_one_organization(  # type: ignore[no-untyped-def]
    app, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = new_org(client, name="Purged here"), new_org(client, name="Not here")
    for org in (one, two):
        tag = org.owner.post(f"{org.base}/tags", json={"name": "gone"}).json()["id"]
        assert org.owner.delete(f"{org.base}/tags/{tag}").status_code == 204
    purge = ("sync", "purge-tombstones", "--older-than-days", "0")
    result = server_cli(app, monkeypatch, *purge, "--org", one.id)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("purged 1 ") and "in 1 organization" in result.output
    counts = [o.owner.get(f"{o.base}/sync/checksums").json()["tables"]["tags"]["count"] for o in (one, two)]
    kept = len(two.owner.get(f"{two.base}/tags").json()["items"])
    assert counts == [counts[1] - 1, kept + 1], "the other organization keeps its tombstone"
    wrong = (("nope", "is not an organization id"), (str(uuid.uuid4()), "there is no organization"))
    for given, said in wrong:
        refused = server_cli(app, monkeypatch, "sync", "purge-tombstones", "--org", given)
        assert refused.exit_code == 2 and said in refused.output, refused.output
