"""Creating and unlocking the encrypted library through the dialog, with real key and mouse clicks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from outputhub.desktop.app import unlock_dialog
from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.storage import open_replica
from tests.qt.conftest import PASSPHRASE


@pytest.fixture
def runner() -> Iterator[JobRunner]:
    jobs = JobRunner()
    yield jobs
    assert jobs.wait_for_done(30_000)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_first_run_creates_the_library_after_a_confirmed_passphrase(qtbot, runner, tmp_path) -> None:
    path = tmp_path / "library.ohb"
    dialog = unlock_dialog(path=path, runner=runner)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.creating and dialog.confirm.isVisible()
    qtbot.keyClicks(dialog.passphrase, "abc")
    assert dialog.meter.value() == 0 and "at least 8" in dialog.hint.text()
    assert dialog.hint.text().count("oo easy") == 1, dialog.hint.text()
    dialog.passphrase.clear()
    qtbot.keyClicks(dialog.passphrase, PASSPHRASE)
    assert dialog.meter.value() == 4 and dialog.hint.text() == "<b>Strong</b>."  # said once (QA)
    qtbot.keyClicks(dialog.confirm, PASSPHRASE + "x")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert "differ" in dialog.error.text() and not path.exists()
    dialog.confirm.clear()
    qtbot.keyClicks(dialog.confirm, PASSPHRASE)
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        qtbot.keyClick(dialog.confirm, Qt.Key.Key_Return)
    assert dialog.replica is not None and path.exists()
    dialog.replica.close()
    with open_replica(path, passphrase=PASSPHRASE) as reopened:
        assert reopened.schema_version >= 1


def test_a_weak_passphrase_is_refused_with_the_hint(qtbot, runner, tmp_path) -> None:
    path = tmp_path / "library.ohb"
    dialog = unlock_dialog(path=path, runner=runner)
    qtbot.addWidget(dialog)
    for edit in (dialog.passphrase, dialog.confirm):
        qtbot.keyClicks(edit, "password")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.ok_button.isEnabled() and "guess" in dialog.error.text(), timeout=5000)
    assert not path.exists()


def test_unlock_wrong_then_right_passphrase_leaves_the_file_untouched(qtbot, runner, tmp_path) -> None:
    path = tmp_path / "library.ohb"
    open_replica(path, passphrase=PASSPHRASE, create=True).close()
    before = digest(path)
    dialog = unlock_dialog(path=path, runner=runner)
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.creating and not dialog.confirm.isVisible()
    assert dialog.ok_button.text() == "Unlock"
    qtbot.keyClicks(dialog.passphrase, "not the passphrase")
    qtbot.keyClick(dialog.passphrase, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "Wrong passphrase" in dialog.error.text(), timeout=10_000)
    assert dialog.result() == 0 and dialog.replica is None
    assert digest(path) == before
    dialog.passphrase.clear()
    qtbot.keyClicks(dialog.passphrase, PASSPHRASE)
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    dialog.replica.close()


def test_a_foreign_file_is_refused_with_a_message_and_not_overwritten(qtbot, runner, tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my shopping list\n" * 50)
    before = digest(path)
    dialog = unlock_dialog(path=path, runner=runner)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClicks(dialog.passphrase, PASSPHRASE)
    qtbot.keyClick(dialog.passphrase, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "cannot be opened" in dialog.error.text(), timeout=10_000)
    assert "left untouched" in dialog.error.text()
    assert digest(path) == before and dialog.replica is None
