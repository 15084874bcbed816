"""The desktop app's encrypted offline replica (SQLCipher 4). No Qt here; see docs/replica.md."""

from __future__ import annotations

from outputhub.desktop.storage.errors import (
    CorruptReplicaError,
    ReplicaClosedError,
    ReplicaConstraintError,
    ReplicaError,
    ReplicaMigrationError,
    ReplicaNotFoundError,
    ReplicaStorageError,
    ReplicaTooNewError,
    WrongPassphraseError,
)
from outputhub.desktop.storage.migrations import Migration, load_migrations
from outputhub.desktop.storage.records import (
    ConflictRecord,
    CustomGptRecord,
    LocalStatus,
    LookupKind,
    LookupRecord,
    MatchCount,
    OutboxEntry,
    OutputRecord,
    PromptRecord,
    PromptVersionRecord,
    ReplicatedRecord,
    SearchHit,
    SyncState,
)
from outputhub.desktop.storage.replica import Replica, open_replica

__all__ = [
    "ConflictRecord",
    "CorruptReplicaError",
    "CustomGptRecord",
    "LocalStatus",
    "LookupKind",
    "LookupRecord",
    "MatchCount",
    "Migration",
    "OutboxEntry",
    "OutputRecord",
    "PromptRecord",
    "PromptVersionRecord",
    "Replica",
    "ReplicaClosedError",
    "ReplicaConstraintError",
    "ReplicaError",
    "ReplicaMigrationError",
    "ReplicaNotFoundError",
    "ReplicaStorageError",
    "ReplicaTooNewError",
    "ReplicatedRecord",
    "SearchHit",
    "SyncState",
    "WrongPassphraseError",
    "load_migrations",
    "open_replica",
]
