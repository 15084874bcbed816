"""How the desktop services write user edits: through the sync client's ``LocalLibrary`` only.

``LocalLibrary`` turns each edit into an engine change and writes the typed row, its merge state and the
outbox entry in one replica transaction, so every edit made offline is pushed by the next sync. Entity and
field names are those of ``sync.engine.schema.DEFAULT_SCHEMA``; set fields are frozensets of id strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from outputhub.desktop.storage import LookupKind, Replica
from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from outputhub.sync.client import LocalLibrary

LOOKUP_KINDS: Final[Mapping[str, LookupKind]] = {
    "tag": LookupKind.TAGS,
    "knowledge_type": LookupKind.KNOWLEDGE_TYPES,
    "accuracy_level": LookupKind.ACCURACY_LEVELS,
    "development_stage": LookupKind.DEVELOPMENT_STAGES,
    "gpt_model": LookupKind.GPT_MODELS,
    "agent_group": LookupKind.AGENT_GROUPS,
}


class Editor(Protocol):
    """The part of ``outputhub.sync.client.LocalLibrary`` the services use."""

    def create(self, entity: str, values: Mapping[str, Any], *, id: str | None = None) -> str: ...

    def edit(
        self,
        entity: str,
        record_id: str,
        values: Mapping[str, Any],
        *,
        seen: Mapping[str, Any] | None = None,
        unlink: bool = False,
    ) -> bool: ...

    def delete(self, entity: str, record_id: str) -> None: ...

    def restore(self, entity: str, record_id: str) -> None: ...

    def resolve_conflict(self, entity: str, record_id: str, conflict_id: str, choice: Any) -> None: ...


def make_editor(replica: Replica) -> Editor:
    return LocalLibrary(ReplicaSyncStore(replica))


def ids(values: Iterable[str] | None) -> tuple[str, ...]:
    return tuple(sorted(set(values or ())))
