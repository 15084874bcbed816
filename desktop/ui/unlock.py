"""First run: create the encrypted replica (passphrase, confirmation, strength hint). Later: unlock it."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.services.vault import PassphraseStrength
from outputhub.desktop.storage import CorruptReplicaError, ReplicaTooNewError, WrongPassphraseError
from outputhub.desktop.ui.widgets import error_text

STRENGTH_COLORS = ("#b00020", "#d84315", "#f9a825", "#558b2f", "#2e7d32")


def unlock_error_text(exc: BaseException) -> str:
    if isinstance(exc, WrongPassphraseError):
        return "Wrong passphrase. The library was not changed; try again."
    if isinstance(exc, CorruptReplicaError):
        return (
            "This file cannot be opened: it is damaged or not an Output Hub library. "
            f"It was left untouched.\n{exc.detail}"
        )
    if isinstance(exc, ReplicaTooNewError):
        return f"This library was written by a newer Output Hub. Update the app to open it.\n{exc.detail}"
    return error_text(exc)


class UnlockDialog(QDialog):
    def __init__(
        self,
        *,
        path: Path,
        exists: bool,
        runner: JobRunner,
        create: Callable[[str, str], Any],
        unlock: Callable[[str], Any],
        strength: Callable[[str], PassphraseStrength],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._runner = runner
        self._create, self._unlock, self._strength = create, unlock, strength
        self.creating = not exists
        self.replica: Any = None
        self.setWindowTitle("Output Hub: " + ("create your library" if self.creating else "unlock"))
        self.setMinimumWidth(520)
        intro = QLabel(
            "Your prompts and outputs are kept on this computer in an encrypted file:<br>"
            f"<code>{path}</code><br>"
            + (
                "Choose a passphrase. <b>It cannot be recovered</b>: without it the file stays unreadable."
                if self.creating
                else "Enter your passphrase to unlock it."
            )
        )
        intro.setWordWrap(True)
        self.passphrase = QLineEdit(objectName="passphrase")
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm = QLineEdit(objectName="confirm")
        self.confirm.setEchoMode(QLineEdit.EchoMode.Password)
        self.meter = QProgressBar(objectName="strength_meter")
        self.meter.setRange(0, 4)
        self.meter.setTextVisible(False)
        self.meter.setMaximumHeight(8)
        self.hint = QLabel(objectName="strength_hint")
        self.hint.setWordWrap(True)
        self.error = QLabel(objectName="unlock_error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020")
        form = QFormLayout()
        form.addRow("&Passphrase", self.passphrase)
        if self.creating:
            form.addRow("&Confirm", self.confirm)
            form.addRow("", self.meter)
            form.addRow("", self.hint)
            self.passphrase.textChanged.connect(self._update_strength)
            self._update_strength("")
        else:
            self.confirm.hide()
            self.meter.hide()
            self.hint.hide()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Create library" if self.creating else "Unlock")
        self.ok_button.setObjectName("unlock_ok")
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.passphrase.setFocus()

    def _update_strength(self, text: str) -> None:
        strength = self._strength(text)
        self.meter.setValue(strength.score)
        color = STRENGTH_COLORS[strength.score]
        self.meter.setStyleSheet(f"QProgressBar::chunk {{ background: {color}; }}")
        self.hint.setText(strength_text(strength) if text else strength.hint)

    def submit(self) -> None:
        passphrase = self.passphrase.text()
        if self.creating:
            confirmation = self.confirm.text()
            if passphrase != confirmation:
                self.error.setText("The two passphrases differ.")
                self.confirm.selectAll()
                self.confirm.setFocus()
                return
            work = lambda: self._create(passphrase, confirmation)  # noqa: E731
        else:
            work = lambda: self._unlock(passphrase)  # noqa: E731
        self.ok_button.setEnabled(False)
        self.error.setText("Opening…")
        self._runner.submit("open replica", work, on_done=self._opened, on_error=self._failed)

    def _opened(self, replica: Any) -> None:
        self.replica = replica
        self.error.clear()
        self.accept()

    def _failed(self, exc: Exception) -> None:
        self.ok_button.setEnabled(True)
        self.error.setText(unlock_error_text(exc))
        self.passphrase.selectAll()
        self.passphrase.setFocus()


def strength_text(strength: PassphraseStrength) -> str:
    """The strength in bold, then its hint: "<b>Weak</b>: make it longer ...". A hint that starts with the
    label says it once (it read "<b>Good</b>. Good."; QA)."""
    label, hint = strength.label, strength.hint
    if hint.lower().startswith(label.lower()):
        return f"<b>{html.escape(hint[: len(label)])}</b>{html.escape(hint[len(label) :])}"
    return f"<b>{html.escape(label.capitalize())}</b>. {html.escape(hint)}"
