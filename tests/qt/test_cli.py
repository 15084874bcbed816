"""The ``outputhub desktop`` command is wired into the CLI."""

from __future__ import annotations

from typer.testing import CliRunner

from outputhub.server.cli import app


def test_desktop_command_is_listed_with_its_replica_option() -> None:
    result = CliRunner().invoke(app, ["desktop", "--help"])
    assert result.exit_code == 0, result.output
    assert "--replica" in result.output and "encrypted" in result.output
