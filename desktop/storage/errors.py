"""The replica's error types.

Every error the storage layer raises on purpose derives from :class:`ReplicaError`, itself an
:class:`~outputhub.common.errors.OutputHubError`. SQLCipher driver exceptions never escape this package:
they are translated here (see :func:`translate_driver_error`). Programming errors (an unknown ``order_by``
column, a naive datetime, an empty passphrase) raise ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path

from outputhub.common.errors import OutputHubError


class ReplicaError(OutputHubError):
    """Base class of every error the local replica raises."""

    status = 500
    title = "Local replica error"
    type_slug = "replica-error"

    def __init__(self, detail: str, *, path: Path | None = None) -> None:
        super().__init__(detail)
        self.path = path


class ReplicaNotFoundError(ReplicaError):
    """The replica file does not exist (and ``create`` was not asked for)."""

    title = "Replica not found"
    type_slug = "replica-not-found"


class WrongPassphraseError(ReplicaError):
    """The passphrase does not unlock the replica. The file was not modified."""

    status = 401
    title = "Wrong passphrase"
    type_slug = "replica-wrong-passphrase"


class CorruptReplicaError(ReplicaError):
    """The file is damaged, truncated, unencrypted or not an Output Hub replica. It was not modified."""

    title = "Corrupt replica"
    type_slug = "replica-corrupt"


class ReplicaTooNewError(ReplicaError):
    """The replica was written by a newer version of the app (its schema version is unknown here)."""

    title = "Replica too new"
    type_slug = "replica-too-new"

    def __init__(self, detail: str, *, path: Path | None = None, found: int, supported: int) -> None:
        super().__init__(detail, path=path)
        self.found = found
        self.supported = supported


class ReplicaMigrationError(ReplicaError):
    """A schema migration failed; it was rolled back and the replica keeps its previous version."""

    title = "Replica migration failed"
    type_slug = "replica-migration-failed"


class ReplicaStorageError(ReplicaError):
    """The database could not be read or written (I/O error, disk full, locked by another process)."""

    status = 503
    title = "Replica storage unavailable"
    type_slug = "replica-storage-unavailable"


class ReplicaConstraintError(ReplicaError):
    """A write broke a constraint of the schema (duplicate key, invalid status, malformed JSON)."""

    status = 422
    title = "Replica constraint violated"
    type_slug = "replica-constraint"


class ReplicaClosedError(ReplicaError):
    """The replica was used after :meth:`Replica.close`."""

    title = "Replica closed"
    type_slug = "replica-closed"
