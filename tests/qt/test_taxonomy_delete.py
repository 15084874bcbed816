"""Deleting taxonomy entries (tags, development stages, GPT models, ...) like prompts and outputs: a
confirmation that names the entry and says what uses it, the entry taken off those records, and Undo (the
status-bar button or Ctrl+Z) putting back the entry and its links. Real key and mouse clicks throughout."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtWidgets import QApplication

from outputhub.desktop.storage import LookupKind, Replica
from tests.qt.conftest import wait_idle
from tests.qt.support import library_for, seed
from tests.qt.test_deleting import click_row, focus, pending_kinds, row_titled, show, wait_confirmation


def choose_kind(qtbot, session, page, label: str) -> None:
    """Pick the lookup kind with the arrow keys, as a user would."""
    focus(qtbot, session, page.kind)
    for _ in range(page.kind.count()):
        if page.kind.currentText() == label:
            break
        qtbot.keyClick(page.kind, Qt.Key.Key_Down)
    assert page.kind.currentText() == label
    wait_idle(qtbot, session.runner)


def names(page) -> list[str]:
    return [r.name for r in page.model.rows()]


def open_taxonomy(qtbot, session, kind: str, rows: int):
    page = show(qtbot, session, "Taxonomy")
    choose_kind(qtbot, session, page, kind)
    qtbot.waitUntil(lambda: page.model.rowCount() == rows, timeout=5000)
    return page


def test_delete_a_tag_cancel_confirm_and_undo_with_ctrl_z(qtbot, replica: Replica, session) -> None:
    ids = seed(replica)
    session.window.data_changed(frozenset({"*"}))
    page = open_taxonomy(qtbot, session, "Tags", 2)
    assert not page.delete_button.isEnabled(), "nothing selected yet"
    click_row(qtbot, page.list, row_titled(page.list, "python"))
    qtbot.waitUntil(lambda: page.name.text() == "python", timeout=5000)
    assert page.delete_button.isEnabled()
    outbox_before = len(replica.pending_outbox(limit=10_000))

    # Delete key in the list: the confirmation names the tag and says what uses it; Escape cancels
    focus(qtbot, session, page.list.table)
    qtbot.keyClick(page.list.table, Qt.Key.Key_Delete)
    box = wait_confirmation(qtbot, session)
    assert box.text() == "Delete the tag “python”?"
    assert "It is used by 1 prompt and 3 outputs; it is taken off them." in box.informativeText()
    assert "undo" in box.informativeText()
    qtbot.keyClick(box, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: session.window.deleter.confirmation is None, timeout=5000)
    wait_idle(qtbot, session.runner)
    assert not replica.get_lookup(kind=LookupKind.TAGS, id=ids["tag_python"]).deleted, "cancelled: kept"
    assert len(replica.pending_outbox(limit=10_000)) == outbox_before
    assert names(page) == ["python", "sql"]

    # the button, and Enter confirms (Delete is the default button)
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    box = wait_confirmation(qtbot, session)
    qtbot.keyClick(box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: names(page) == ["sql"], timeout=5000)
    assert replica.get_lookup(kind=LookupKind.TAGS, id=ids["tag_python"]).deleted
    assert replica.get_prompt(id=ids["prompt"]).tag_ids == ()
    assert all(replica.get_output(id=ids[f"output{i}"]).tag_ids == () for i in range(3))
    queued = pending_kinds(replica)[outbox_before:]
    assert sorted(queued) == sorted(
        [("prompt", ids["prompt"], "update")]
        + [("output", ids[f"output{i}"], "update") for i in range(3)]
        + [("tag", ids["tag_python"], "delete")]
    ), "the links taken off and the tombstone, each a change queued for the next sync"
    assert page.name.text() == "", "the editor let go of it"
    window = session.window
    assert window.undo_label.text() == "Deleted the tag “python” (taken off 1 prompt and 3 outputs)."
    assert window.undo_button.isVisible()

    prompts = show(qtbot, session, "Prompts")
    qtbot.waitUntil(lambda: prompts.model.row_of(ids["prompt"]) is not None, timeout=5000)
    assert prompts.model.row_at(prompts.model.row_of(ids["prompt"])).tags == ""

    # Ctrl+Z (outside a text box) brings the tag back, on the prompt and the outputs it was taken off
    focus(qtbot, session, prompts.list.table)
    qtbot.keyClick(prompts.list.table, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.undo_label.text() == "Restored the tag “python”.", timeout=5000)
    wait_idle(qtbot, session.runner)
    assert not window.undo_button.isVisible()
    assert not replica.get_lookup(kind=LookupKind.TAGS, id=ids["tag_python"]).deleted
    assert replica.get_prompt(id=ids["prompt"]).tag_ids == (ids["tag_python"],)
    assert all(replica.get_output(id=ids[f"output{i}"]).tag_ids == (ids["tag_python"],) for i in range(3))
    qtbot.waitUntil(
        lambda: prompts.model.row_at(prompts.model.row_of(ids["prompt"])).tags == "python", timeout=5000
    )
    page = show(qtbot, session, "Taxonomy")
    qtbot.waitUntil(lambda: names(page) == ["python", "sql"], timeout=5000)


def test_delete_a_development_stage_from_the_context_menu_and_undo_from_the_status_bar(
    qtbot, replica: Replica, session
) -> None:
    ids = seed(replica)
    page = open_taxonomy(qtbot, session, "Development stages", 2)
    click_row(qtbot, page.list, row_titled(page.list, "Draft"))
    qtbot.waitUntil(lambda: page.name.text() == "Draft", timeout=5000)
    chosen: list[str] = []

    def choose_delete() -> None:  # in the right-click menu (a modal popup), go to Delete and press Enter
        menu = QApplication.activePopupWidget()
        chosen.extend(a.text() for a in menu.actions())
        menu.setActiveAction(next(a for a in menu.actions() if a.objectName() == "delete_lookup_action"))
        qtbot.keyClick(menu, Qt.Key.Key_Return)

    table = page.list.table
    pos = table.visualRect(page.model.index(row_titled(page.list, "Draft"), 0)).center()
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.RightButton, pos=pos)
    QTimer.singleShot(200, choose_delete)
    QApplication.sendEvent(  # the window system turns a right click into this event (QTest's do not)
        table.viewport(),
        QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, table.viewport().mapToGlobal(pos)),
    )
    box = wait_confirmation(qtbot, session)
    assert chosen == ["De&lete…"]
    assert box.text() == "Delete the development stage “Draft”?"
    assert "It is used by 1 prompt; it is taken off it." in box.informativeText()
    qtbot.keyClick(box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: names(page) == ["Production"], timeout=5000)
    assert replica.get_prompt(id=ids["prompt"]).development_stage_id is None
    assert replica.get_prompt(id=ids["other_prompt"]).development_stage_id == ids["production"]

    window = session.window
    qtbot.waitUntil(window.undo_button.isVisible, timeout=5000)
    qtbot.mouseClick(window.undo_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: names(page) == ["Draft", "Production"], timeout=5000)
    wait_idle(qtbot, session.runner)
    assert not replica.get_lookup(kind=LookupKind.DEVELOPMENT_STAGES, id=ids["draft"]).deleted
    assert replica.get_prompt(id=ids["prompt"]).development_stage_id == ids["draft"]


def test_delete_several_unused_and_used_gpt_models_at_once(qtbot, replica: Replica, session) -> None:
    ids = seed(replica)
    spare = replica_lookup(replica, "gpt_model", "Spare model")
    page = open_taxonomy(qtbot, session, "GPT models", 2)
    click_row(qtbot, page.list, 0)
    click_row(qtbot, page.list, 1, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: len(page.list.selected_ids()) == 2, timeout=5000)
    focus(qtbot, session, page.list.table)
    qtbot.keyClick(page.list.table, Qt.Key.Key_Delete)
    box = wait_confirmation(qtbot, session)
    assert box.text() == "Delete 2 GPT models?"
    details = box.informativeText()
    assert "• GPT-4o" in details and "• Spare model" in details
    assert "They are used by 3 outputs and 1 custom GPT; they are taken off them." in details
    qtbot.keyClick(box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: names(page) == [], timeout=5000)
    assert replica.get_custom_gpt(id=ids["gpt"]).gpt_model_id is None
    assert replica.get_lookup(kind=LookupKind.GPT_MODELS, id=spare).deleted

    # an output given another model meanwhile keeps it when the delete is undone
    other = replica_lookup(replica, "gpt_model", "Newer model")
    library_for(replica).edit("output", ids["output0"], {"gpt_model_id": other})
    focus(qtbot, session, page.list.table)
    qtbot.keyClick(page.list.table, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: session.window.undo_label.text() == "Restored 2 GPT models.", timeout=5000)
    wait_idle(qtbot, session.runner)
    assert replica.get_custom_gpt(id=ids["gpt"]).gpt_model_id == ids["model"]
    assert replica.get_output(id=ids["output0"]).gpt_model_id == other
    assert replica.get_output(id=ids["output1"]).gpt_model_id == ids["model"]
    assert not replica.get_lookup(kind=LookupKind.GPT_MODELS, id=spare).deleted


def replica_lookup(replica: Replica, entity: str, name: str) -> str:
    return library_for(replica).create(entity, {"name": name, "description": "", "position": 9})
