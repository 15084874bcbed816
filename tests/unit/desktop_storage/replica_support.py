"""Helpers shared by the replica tests (real SQLCipher files, no mocks)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

from outputhub.desktop.storage import OutputRecord, PromptRecord

PASSPHRASE = "correct horse battery staple"
ORG = str(uuid.UUID(int=1))
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(directory: Path) -> dict[str, str]:
    """Every file in ``directory`` with its hash: proves nothing was written, created or removed."""
    return {p.name: sha256(p) for p in sorted(directory.iterdir()) if p.is_file()}


def prompt(**changes: object) -> PromptRecord:
    values: dict[str, object] = {
        "id": new_id(),
        "org_id": ORG,
        "title": "A prompt",
        "body": "Write a haiku about the sea.",
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(changes)
    return PromptRecord(**values)  # type: ignore[arg-type]


def output(prompt_id: str, **changes: object) -> OutputRecord:
    values: dict[str, object] = {
        "id": new_id(),
        "org_id": ORG,
        "prompt_id": prompt_id,
        "content": "Waves fold into foam",
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(changes)
    return OutputRecord(**values)  # type: ignore[arg-type]
