"""Settings: server and account (log in, automatic sync, Sync now) and the replica's passphrase."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.jobs.sync_controller import SyncController
from outputhub.desktop.services.sync import Account, Organization, SyncService, SyncSettings
from outputhub.desktop.ui.widgets import error_text

NOT_CHOSEN = (
    "Logged in, but no organization was chosen: this library is not attached to the server and stays on "
    "this computer only. Log in again to choose one."
)


def _password() -> QLineEdit:
    edit = QLineEdit()
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    return edit


class OrganizationDialog(QDialog):
    """Which organization this library syncs with, when the account belongs to several."""

    def __init__(
        self,
        *,
        email: str,
        organizations: Sequence[Organization],
        suggested: Organization,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("organization_dialog")
        self.setWindowTitle("Choose the organization")
        self._organizations = tuple(organizations)
        self.choice = QComboBox(objectName="organization_choice")
        for org in self._organizations:
            self.choice.addItem(org.label, org.id)
        self.choice.setCurrentIndex(self._organizations.index(suggested))
        text = QLabel(
            f"<b>{html.escape(email)}</b> belongs to {len(self._organizations)} organizations. Choose the "
            "one this library syncs with: its prompts, outputs and taxonomy then belong to that "
            "organization (a library stays with the organization it was first attached to)."
        )
        text.setObjectName("organization_text")
        text.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.use_button = buttons.addButton("&Use this organization", QDialogButtonBox.ButtonRole.AcceptRole)
        self.use_button.setObjectName("use_organization")
        self.use_button.setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("&Organization", self.choice)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.choice.setFocus()

    def chosen(self) -> Organization:
        return self._organizations[self.choice.currentIndex()]


class SettingsPage(QWidget):
    def __init__(
        self,
        *,
        sync: SyncService,
        controller: SyncController,
        change_passphrase: Callable[[str, str, str], Any],
        replica_path: str,
        runner: JobRunner,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._sync = sync
        self._controller = controller
        self._change_passphrase = change_passphrase
        self._runner = runner
        self.org_chooser: OrganizationDialog | None = None  # open while the user picks an organization
        self.server_url = QLineEdit(objectName="server_url")
        self.server_url.setPlaceholderText("https://outputhub.example.com")
        self.email = QLineEdit(objectName="email")
        self.password = _password()
        self.password.setObjectName("password")
        self.auto_sync = QCheckBox("Sync automatically in the background when the server is reachable")
        self.auto_sync.setObjectName("auto_sync")
        self.auto_sync.setChecked(True)
        self.login_button = QPushButton("&Log in", objectName="login")
        self.sync_button = QPushButton("Sync &now (F5)", objectName="sync_now")
        self.account = QLabel(objectName="account_status")
        self.account.setWordWrap(True)
        account_box = QGroupBox("Server and account")
        form = QFormLayout(account_box)
        form.addRow("&Server", self.server_url)
        form.addRow("&Email", self.email)
        form.addRow("&Password", self.password)
        form.addRow("", self.auto_sync)
        row = QHBoxLayout()
        row.addWidget(self.account, 1)
        row.addWidget(self.login_button)
        row.addWidget(self.sync_button)
        form.addRow(row)

        self.old = _password()
        self.old.setObjectName("old_passphrase")
        self.new = _password()
        self.new.setObjectName("new_passphrase")
        self.confirm = _password()
        self.confirm.setObjectName("confirm_passphrase")
        self.rekey_button = QPushButton("C&hange passphrase", objectName="change_passphrase")
        self.rekey_message = QLabel(objectName="passphrase_message")
        self.rekey_message.setWordWrap(True)
        vault_box = QGroupBox("Encrypted library on this computer")
        vault = QFormLayout(vault_box)
        vault.addRow("File", QLabel(f"<code>{replica_path}</code>"))
        vault.addRow("Current passphrase", self.old)
        vault.addRow("New passphrase", self.new)
        vault.addRow("Confirm new", self.confirm)
        row2 = QHBoxLayout()
        row2.addWidget(self.rekey_message, 1)
        row2.addWidget(self.rekey_button)
        vault.addRow(row2)

        layout = QVBoxLayout(self)
        layout.addWidget(account_box)
        layout.addWidget(vault_box)
        layout.addStretch(1)
        self.login_button.clicked.connect(self.login)
        self.sync_button.clicked.connect(controller.sync_now)
        self.auto_sync.toggled.connect(self._auto_toggled)
        self.rekey_button.clicked.connect(self.change_passphrase)

    def reload_all(self) -> None:
        self._runner.submit("load settings", self._sync.settings, on_done=self._show)

    def _show(self, s: SyncSettings) -> None:
        self.server_url.setText(s.server_url)
        self.email.setText(s.email)
        self.auto_sync.blockSignals(True)
        self.auto_sync.setChecked(s.auto_sync)
        self.auto_sync.blockSignals(False)
        org = html.escape(s.org_name or s.org_id)
        if s.logged_in and s.org_id:
            who = f"as <b>{html.escape(s.email)}</b>" if s.email else "with an API key"
            self.account.setText(f"Logged in {who} · organization <b>{org}</b>")
        elif s.server_url and s.org_id:  # expired, revoked or logged out (it said "Not logged in"; QA)
            self.account.setText(
                f"Not logged in to {html.escape(s.server_url)} any more (the login expired, was revoked or "
                f"was logged out): log in again to sync organization <b>{org}</b>. Everything works offline "
                "meanwhile, and your edits are kept."
            )
        else:
            self.account.setText("Not logged in: everything works offline; log in to sync with your team.")
        self._apply_auto(s)

    def _apply_auto(self, s: SyncSettings) -> None:
        if s.auto_sync and s.logged_in:
            self._controller.start_automatic()
        else:
            self._controller.stop_automatic()
        self._controller.refresh_configuration()

    def _auto_toggled(self, on: bool) -> None:
        url, email = self.server_url.text(), self.email.text()
        self._runner.submit(
            "save settings",
            lambda: self._sync.save_settings(server_url=url, email=email, auto_sync=on),
            on_done=self._show,
            on_error=lambda exc: self.account.setText(error_text(exc)),
        )

    def login(self) -> None:
        url, email, password, auto = (
            self.server_url.text(),
            self.email.text(),
            self.password.text(),
            self.auto_sync.isChecked(),
        )
        if self.org_chooser is not None:
            return
        self.login_button.setEnabled(False)
        self.account.setText("Logging in…")
        self._runner.submit(
            "log in",
            lambda: self._sync.authenticate(server_url=url, email=email, password=password),
            on_done=lambda account: self._authenticated(account, auto),
            on_error=self._login_failed,
        )

    def _authenticated(self, account: Account, auto: bool) -> None:
        """Logged in: attach to the replica's organization or the only one, else ask which."""
        if not account.needs_choice:
            self._attach(account, account.suggested, auto)
            return
        dialog = OrganizationDialog(
            email=account.email, organizations=account.organizations, suggested=account.suggested, parent=self
        )
        dialog.finished.connect(lambda result: self._org_chosen(dialog, account, auto, result))
        self.org_chooser = dialog
        self.account.setText("Logged in: choose the organization…")
        dialog.open()

    def _org_chosen(self, dialog: OrganizationDialog, account: Account, auto: bool, result: int) -> None:
        self.org_chooser = None
        dialog.deleteLater()
        if result == QDialog.DialogCode.Accepted:
            self._attach(account, dialog.chosen(), auto)
            return
        self.login_button.setEnabled(True)
        self.password.clear()
        self.account.setText(NOT_CHOSEN)

    def _attach(self, account: Account, org: Organization, auto: bool) -> None:
        self.account.setText(f"Attaching this library to {org.name}…")
        self._runner.submit(
            "attach the library",
            lambda: self._sync.attach(account=account, org=org, auto_sync=auto),
            on_done=self._logged_in,
            on_error=self._login_failed,
        )

    def _logged_in(self, s: SyncSettings) -> None:
        self.login_button.setEnabled(True)
        self.password.clear()
        self._show(s)
        self._controller.sync_now()

    def _login_failed(self, exc: Exception) -> None:
        self.login_button.setEnabled(True)
        failed = f"Could not log in: {html.escape(error_text(exc))}"
        self.account.setText(failed)
        # a refused login (another organization's account) changes nothing: the page shows again whom the
        # library syncs as (it kept the refused email and only the error; QA)
        self._runner.submit(
            "read settings", self._sync.settings, on_done=lambda s: self._still_logged_in(s, failed)
        )

    def _still_logged_in(self, s: SyncSettings, failed: str) -> None:
        if not (s.logged_in and s.org_id):
            return
        self.server_url.setText(s.server_url)
        self.email.setText(s.email)
        self.account.setText(
            f"{failed}<br>Still logged in as <b>{html.escape(s.email)}</b> · organization "
            f"<b>{html.escape(s.org_name or s.org_id)}</b>"
        )

    def change_passphrase(self) -> None:
        old, new, confirm = self.old.text(), self.new.text(), self.confirm.text()
        self.rekey_button.setEnabled(False)
        self.rekey_message.setText("Re-encrypting…")
        self._runner.submit(
            "change passphrase",
            lambda: self._change_passphrase(old, new, confirm),
            on_done=self._rekeyed,
            on_error=self._rekey_failed,
        )

    def _rekeyed(self, _result: object) -> None:
        self.rekey_button.setEnabled(True)
        for edit in (self.old, self.new, self.confirm):
            edit.clear()
        self.rekey_message.setText("Passphrase changed. Use the new one next time.")

    def _rekey_failed(self, exc: Exception) -> None:
        self.rekey_button.setEnabled(True)
        from outputhub.desktop.storage import WrongPassphraseError

        if isinstance(exc, WrongPassphraseError):
            self.rekey_message.setText("The current passphrase is wrong; nothing was changed.")
        else:
            self.rekey_message.setText(error_text(exc))
