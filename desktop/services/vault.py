"""Opening the encrypted replica: create (passphrase + confirmation), unlock, change the passphrase.

No Qt here; the unlock dialog calls these through the job runner (key derivation takes ~0.1 s on purpose).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from outputhub.common.errors import InvalidInputError
from outputhub.desktop.storage import Replica, open_replica

MIN_PASSPHRASE_LENGTH: Final = 8


@dataclass(frozen=True, slots=True)
class PassphraseStrength:
    score: int  # 0 (very weak) .. 4 (strong)
    label: str
    hint: str

    @property
    def acceptable(self) -> bool:
        return self.score >= 2


_LABELS: Final = ("very weak", "weak", "fair", "good", "strong")
_COMMON: Final = frozenset(
    {"password", "passphrase", "12345678", "123456789", "qwertyui", "iloveyou", "letmein1", "outputhub"}
)


def passphrase_strength(text: str) -> PassphraseStrength:
    """A rough estimate from length and character variety (no dictionary beyond the most common few)."""
    if not text:
        return PassphraseStrength(0, _LABELS[0], f"Use at least {MIN_PASSPHRASE_LENGTH} characters.")
    classes = sum(
        any(ch in group for ch in text)
        for group in (string.ascii_lowercase, string.ascii_uppercase, string.digits)
    ) + any(not ch.isalnum() for ch in text)
    words = len(text.split())
    if text.lower() in _COMMON or len(set(text)) <= 2:
        score = 0
    elif len(text) < MIN_PASSPHRASE_LENGTH:
        score = 1 if len(text) >= 6 else 0
    elif len(text) >= 20 or (words >= 4 and len(text) >= 16):
        score = 4
    elif len(text) >= 14 or (len(text) >= 10 and classes >= 3):
        score = 3
    else:
        score = 2 if classes >= 2 or len(text) >= 10 else 1
    hints = {
        0: f"Too easy to guess: use at least {MIN_PASSPHRASE_LENGTH} characters, better a few words.",
        1: "Weak: make it longer (several unrelated words work well).",
        2: "Fair: a few more words or characters would make it much harder to guess.",
        3: "Good.",
        4: "Strong.",
    }
    return PassphraseStrength(score, _LABELS[score], hints[score])


def require_acceptable_passphrase(passphrase: str, *, field: str = "passphrase") -> None:
    """The minimum a new passphrase must meet, for a new replica or a changed passphrase (the desktop's
    dialogs and ``outputhub replica init`` alike): raises ``InvalidInputError`` naming ``field`` with the
    strength hint when :func:`passphrase_strength` finds it weaker than fair. Opening a replica asks for
    nothing more than its passphrase: one made before this rule, with a shorter one, still opens."""
    strength = passphrase_strength(passphrase)
    if not strength.acceptable:
        raise InvalidInputError(field, strength.hint)


def replica_exists(path: Path) -> bool:
    return Path(path).exists()


def create_replica(*, path: Path, passphrase: str, confirmation: str) -> Replica:
    """Create a new replica at ``path`` (never replacing an existing file)."""
    if passphrase != confirmation:
        raise InvalidInputError("confirmation", "the two passphrases differ")
    require_acceptable_passphrase(passphrase)
    if Path(path).exists():
        raise InvalidInputError("path", f"{path} already exists; unlock it instead")
    return open_replica(Path(path), passphrase=passphrase, create=True)


def unlock_replica(*, path: Path, passphrase: str) -> Replica:
    """Open an existing replica. Raises ``WrongPassphraseError``, ``CorruptReplicaError`` and friends."""
    if not passphrase:
        raise InvalidInputError("passphrase", "enter the passphrase")
    return open_replica(Path(path), passphrase=passphrase, create=False)


def change_passphrase(*, replica: Replica, old: str, new: str, confirmation: str) -> None:
    if new != confirmation:
        raise InvalidInputError("confirmation", "the two new passphrases differ")
    require_acceptable_passphrase(new, field="new")
    if not old:
        raise InvalidInputError("old", "enter the current passphrase")
    replica.change_passphrase(old=old, new=new)
