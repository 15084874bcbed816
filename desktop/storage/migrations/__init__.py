"""Numbered SQL migrations of the replica schema.

Files are named ``NNNN_short_name.sql`` and numbered from 0001 without gaps. The replica's schema version is
``PRAGMA user_version``: the number of the last migration applied. Each migration runs in its own transaction
together with the ``user_version`` bump, so a failure leaves the previous version intact. A migration file
must not contain ``BEGIN``/``COMMIT`` itself. Never edit a migration that has shipped: add the next number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def check_sequence(migrations: tuple[Migration, ...]) -> None:
    """Raise ``ValueError`` unless the migrations are numbered 1, 2, 3, ... in order."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration {migration.name!r} has number {migration.version}, expected {expected}"
            )


def load_migrations() -> tuple[Migration, ...]:
    """The migrations shipped with this package, in order."""
    found: list[Migration] = []
    for entry in resources.files(__name__).iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    result = tuple(found)
    check_sequence(result)
    return result
