"""Deleting (with the confirmation and Undo) and editing an output, through real key and mouse clicks.

Every change lands in the replica through ``LocalLibrary`` (rows tombstoned or edited, one outbox entry per
change), the lists reload and their counts follow."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtWidgets import QApplication

from outputhub.desktop.storage import Replica
from tests.qt.conftest import wait_idle
from tests.qt.support import library_for, seed
from tests.qt.test_flows import show as show_page


def click_row(
    qtbot, pane, row: int, modifier=Qt.KeyboardModifier.NoModifier, *, double: bool = False
) -> None:
    table = pane.table
    table.scrollTo(pane.model.index(row, 0))
    pos = table.visualRect(pane.model.index(row, 0)).center()
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, modifier, pos)
    if double:  # a real double click: press, release, then the double-click event (all QTest sends)
        qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, modifier, pos)


def row_titled(pane, text: str) -> int:
    for row in range(pane.model.rowCount()):
        if pane.model.index(row, 0).data() == text:
            return row
    raise AssertionError(
        f"no row {text!r} in {[pane.model.index(r, 0).data() for r in range(pane.model.rowCount())]}"
    )


def activate(qtbot, session) -> None:
    """The offscreen platform does not give the main window back its activation when a dialog closes (a
    window manager does); keys only reach an active window."""
    session.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is session.window, timeout=5000)


def show(qtbot, session, name: str):
    activate(qtbot, session)
    return show_page(qtbot, session, name)


def focus(qtbot, session, widget) -> None:
    """Give ``widget`` the keyboard focus in the (active) main window."""
    activate(qtbot, session)
    widget.setFocus()
    qtbot.waitUntil(widget.hasFocus, timeout=5000)


def wait_confirmation(qtbot, session):
    deleter = session.window.deleter
    qtbot.waitUntil(
        lambda: deleter.confirmation is not None and deleter.confirmation.isVisible(), timeout=5000
    )
    return deleter.confirmation


def pending_kinds(replica: Replica) -> list[tuple[str, str, str]]:
    return [(e.entity, e.record_id, e.payload["kind"]) for e in replica.pending_outbox(limit=10_000)]


def test_delete_a_prompt_and_its_outputs_then_undo_with_ctrl_z(qtbot, replica, session) -> None:
    ids = seed(replica)
    session.window.data_changed(frozenset({"*"}))
    prompts = show(qtbot, session, "Prompts")
    qtbot.waitUntil(lambda: prompts.model.rowCount() == 2, timeout=5000)
    assert prompts.list.status.text() == "2 shown"
    assert not prompts.delete_button.isEnabled(), "nothing selected yet"
    click_row(qtbot, prompts.list, row_titled(prompts.list, "Linux Terminal"))
    qtbot.waitUntil(lambda: prompts.title.text() == "Linux Terminal", timeout=5000)
    assert prompts.delete_button.isEnabled()
    outbox_before = len(replica.pending_outbox(limit=10_000))

    # Delete key in the list: the confirmation names the prompt and says its outputs go too; Escape cancels
    focus(qtbot, session, prompts.list.table)
    qtbot.keyClick(prompts.list.table, Qt.Key.Key_Delete)
    box = wait_confirmation(qtbot, session)
    assert box.text() == "Delete the prompt “Linux Terminal”?"
    assert "Its 3 outputs are deleted with it." in box.informativeText()
    qtbot.keyClick(box, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: session.window.deleter.confirmation is None, timeout=5000)
    wait_idle(qtbot, session.runner)
    assert not replica.get_prompt(id=ids["prompt"]).deleted, "cancelled: nothing deleted"
    assert len(replica.pending_outbox(limit=10_000)) == outbox_before

    # again, and Enter confirms (Delete is the default button)
    focus(qtbot, session, prompts.list.table)
    qtbot.keyClick(prompts.list.table, Qt.Key.Key_Delete)
    box = wait_confirmation(qtbot, session)
    qtbot.keyClick(box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: [r.title for r in prompts.model.rows()] == ["SQL tutor"], timeout=5000)
    qtbot.waitUntil(lambda: prompts.list.status.text() == "1 shown", timeout=5000)
    assert replica.get_prompt(id=ids["prompt"]).deleted
    assert all(replica.get_output(id=ids[f"output{i}"]).deleted for i in range(3))
    assert not replica.get_output(id=ids["sql_output"]).deleted
    queued = pending_kinds(replica)[outbox_before:]
    assert sorted(queued) == sorted(
        [("output", ids[f"output{i}"], "delete") for i in range(3)] + [("prompt", ids["prompt"], "delete")]
    ), "one tombstone change per record, queued for the next sync"
    assert prompts.title.text() == "" and prompts.message.text() == "New prompt", "the editor let go of it"
    window = session.window
    assert window.undo_label.text() == "Deleted the prompt “Linux Terminal” and 3 outputs."
    assert window.undo_button.isVisible()

    outputs = show(qtbot, session, "Outputs")
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 1, timeout=5000)
    assert outputs.list.status.text() == "1 shown"

    # Ctrl+Z (outside a text box) restores the prompt and exactly the outputs deleted with it
    focus(qtbot, session, outputs.list.table)
    qtbot.keyClick(outputs.list.table, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 4, timeout=5000)
    assert outputs.list.status.text() == "4 shown"
    assert not replica.get_prompt(id=ids["prompt"]).deleted
    assert not any(replica.get_output(id=ids[f"output{i}"]).deleted for i in range(3))
    assert [k for *_, k in pending_kinds(replica)[outbox_before + 4 :]] == ["restore"] * 4
    assert window.undo_label.text() == "Restored the prompt “Linux Terminal”."
    assert not window.undo_button.isVisible()
    qtbot.keyClick(outputs.list.table, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot, session.runner)
    assert len(replica.pending_outbox(limit=10_000)) == outbox_before + 8, "nothing left to undo"
    prompts = show(qtbot, session, "Prompts")
    qtbot.waitUntil(lambda: prompts.model.rowCount() == 2, timeout=5000)


def test_delete_several_outputs_from_the_button_and_undo_from_the_status_bar(qtbot, replica, session) -> None:
    ids = seed(replica, outputs=6)
    outputs = show(qtbot, session, "Outputs")
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 7, timeout=5000)
    first = row_titled(outputs.list, "terminal answer number 1")
    last = row_titled(outputs.list, "terminal answer number 3")
    click_row(qtbot, outputs.list, min(first, last))
    click_row(qtbot, outputs.list, max(first, last), Qt.KeyboardModifier.ShiftModifier)
    chosen = outputs.list.selected_ids()
    assert {ids["output1"], ids["output2"], ids["output3"]} == set(chosen)
    assert not outputs.edit_button.isEnabled(), "edit works on one output"

    qtbot.mouseClick(outputs.delete_button, Qt.MouseButton.LeftButton)
    box = wait_confirmation(qtbot, session)
    assert box.text() == "Delete 3 outputs?"
    assert all(f"• terminal answer number {i}" in box.informativeText() for i in (1, 2, 3))
    qtbot.mouseClick(session.window.deleter.confirm_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 4, timeout=5000)
    qtbot.waitUntil(lambda: outputs.list.status.text() == "4 shown", timeout=5000)
    assert {r.id for r in outputs.model.rows()}.isdisjoint(chosen)
    assert [o.id for o in replica.list_outputs(limit=100) if o.id in chosen] == []
    assert session.window.undo_label.text() == "Deleted 3 outputs."

    qtbot.mouseClick(session.window.undo_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 7, timeout=5000)
    assert session.window.undo_label.text() == "Restored 3 outputs."
    assert all(not replica.get_output(id=i).deleted for i in chosen)


def test_delete_a_custom_gpt_from_the_context_menu_action_keeps_its_outputs(qtbot, replica, session) -> None:
    ids = seed(replica)
    gpts = show(qtbot, session, "Custom GPTs")
    qtbot.waitUntil(lambda: gpts.model.rowCount() == 1, timeout=5000)
    click_row(qtbot, gpts.list, 0)
    qtbot.waitUntil(lambda: gpts.name.text() == "Coder", timeout=5000)
    chosen: list[str] = []

    def choose_delete() -> None:  # in the right-click menu (a modal popup), go to Delete and press Enter
        menu = QApplication.activePopupWidget()
        chosen.extend(a.text() for a in menu.actions())
        menu.setActiveAction(next(a for a in menu.actions() if a.objectName() == "delete_custom_gpt_action"))
        qtbot.keyClick(menu, Qt.Key.Key_Return)

    table = gpts.list.table
    pos = table.visualRect(gpts.model.index(0, 0)).center()
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.RightButton, pos=pos)
    QTimer.singleShot(200, choose_delete)
    # the window system turns a right click into this event (QTest's mouse clicks do not)
    QApplication.sendEvent(
        table.viewport(),
        QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, table.viewport().mapToGlobal(pos)),
    )
    box = wait_confirmation(qtbot, session)
    assert chosen == ["De&lete…"]
    assert box.text() == "Delete the custom GPT “Coder”?"
    assert "1 output names it and keeps showing the name." in box.informativeText()
    qtbot.keyClick(box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: gpts.model.rowCount() == 0, timeout=5000)
    assert gpts.name.text() == "", "the editor let go of it"
    assert replica.get_custom_gpt(id=ids["gpt"]).deleted
    assert not replica.get_output(id=ids["sql_output"]).deleted

    outputs = show(qtbot, session, "Outputs")
    qtbot.waitUntil(lambda: outputs.model.row_of(ids["sql_output"]) is not None, timeout=5000)
    assert outputs.model.row_at(outputs.model.row_of(ids["sql_output"])).custom_gpt == "Coder"

    # Ctrl+Z inside a text box undoes the typing there, not the delete
    prompts = show(qtbot, session, "Prompts")
    focus(qtbot, session, prompts.title)
    qtbot.keyClicks(prompts.title, "abc")
    qtbot.keyClick(prompts.title, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot, session.runner)
    assert prompts.title.text() != "abc"
    assert replica.get_custom_gpt(id=ids["gpt"]).deleted, "the delete is still in place"
    assert session.window.undo_button.isVisible()
    focus(qtbot, session, prompts.list.table)
    qtbot.keyClick(prompts.list.table, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not replica.get_custom_gpt(id=ids["gpt"]).deleted, timeout=5000)
    gpts = show(qtbot, session, "Custom GPTs")
    qtbot.waitUntil(lambda: [r.name for r in gpts.model.rows()] == ["Coder"], timeout=5000)


def test_edit_an_output_writes_only_the_changed_fields(qtbot, replica, session) -> None:
    ids = seed(replica)
    library_for(replica).create("knowledge_type", {"name": "Prose"})  # so Code is one of two to tick
    session.window.data_changed(frozenset({"*"}))
    outputs = show(qtbot, session, "Outputs")
    qtbot.waitUntil(lambda: outputs.model.row_of(ids["output0"]) is not None, timeout=5000)
    click_row(qtbot, outputs.list, outputs.model.row_of(ids["output0"]))
    focus(qtbot, session, outputs.list.table)
    qtbot.keyClick(outputs.list.table, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: outputs.dialog is not None and outputs.dialog.isVisible(), timeout=5000)
    dialog = outputs.dialog
    assert dialog.windowTitle() == "Edit the output"
    assert dialog.content.toPlainText() == "terminal answer number 0", "filled in, not the clipboard"
    assert dialog.prompt.current_id() == ids["prompt"] and dialog.gpt_model.current_id() == ids["model"]
    assert dialog.accuracy.current_id() == ids["accurate"]
    assert dialog.tags.checked_ids() == [ids["tag_python"]] and dialog.knowledge_types.checked_ids() == []

    # meanwhile a sync brings another device's edit: a new tag and notes on the same output
    library_for(replica).edit(
        "output", ids["output0"], {"tag_ids": {ids["tag_python"], ids["tag_sql"]}, "notes": "from the laptop"}
    )
    outbox_before = len(replica.pending_outbox(limit=10_000))

    dialog.content.setFocus()
    dialog.content.moveCursor(dialog.content.textCursor().MoveOperation.End)
    qtbot.keyClicks(dialog.content, " (checked)")
    dialog.accuracy.setFocus()
    qtbot.keyClicks(dialog.accuracy, "Wr")  # type-ahead
    dialog.knowledge_types.setFocus()
    dialog.knowledge_types.setCurrentRow(
        next(
            i
            for i in range(dialog.knowledge_types.count())
            if dialog.knowledge_types.item(i).text() == "Code"
        )
    )
    qtbot.keyClick(dialog.knowledge_types, Qt.Key.Key_Space)  # tick
    dialog.tags.setFocus()
    dialog.tags.setCurrentRow(
        next(i for i in range(dialog.tags.count()) if dialog.tags.item(i).text() == "python")
    )
    qtbot.keyClick(dialog.tags, Qt.Key.Key_Space)  # untick
    dialog.prompt.lineEdit().selectAll()
    qtbot.keyClicks(dialog.prompt.lineEdit(), "SQL tutor")
    with qtbot.waitSignal(dialog.edited, timeout=10_000) as edited:
        qtbot.keyClick(dialog.content, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert edited.args == [ids["output0"]]
    wait_idle(qtbot, session.runner)
    record = replica.get_output(id=ids["output0"])
    assert record.content == "terminal answer number 0 (checked)"
    assert record.accuracy_level_id == ids["wrong"] and record.prompt_id == ids["other_prompt"]
    assert record.knowledge_type_ids == (ids["code"],)
    assert record.tag_ids == (ids["tag_sql"],), "python unticked here, sql added elsewhere: both kept"
    assert record.notes == "from the laptop", "a field not touched here is not written back"
    [entry] = replica.pending_outbox(limit=10_000)[outbox_before:]
    assert entry.payload["kind"] == "update"
    assert set(entry.payload["values"]) == {
        "content",
        "accuracy_level_id",
        "knowledge_type_ids",
        "tag_ids",
        "prompt_id",
    }
    qtbot.waitUntil(
        lambda: (
            outputs.model.row_at(outputs.model.row_of(ids["output0"])).excerpt
            == "terminal answer number 0 (checked)"
        ),
        timeout=5000,
    )
    row = outputs.model.row_at(outputs.model.row_of(ids["output0"]))
    assert (row.prompt, row.accuracy, row.knowledge_types, row.tags) == ("SQL tutor", "Wrong", "Code", "sql")


def test_double_click_opens_the_editor_and_nothing_changed_writes_nothing(qtbot, replica, session) -> None:
    ids = seed(replica)
    outputs = show(qtbot, session, "Outputs")
    qtbot.waitUntil(lambda: outputs.model.row_of(ids["sql_output"]) is not None, timeout=5000)
    outbox_before = len(replica.pending_outbox(limit=10_000))
    click_row(qtbot, outputs.list, outputs.model.row_of(ids["sql_output"]), double=True)
    qtbot.waitUntil(lambda: outputs.dialog is not None and outputs.dialog.isVisible(), timeout=5000)
    dialog = outputs.dialog
    assert dialog.content.toPlainText() == "SELECT explained"
    assert dialog.custom_gpt.current_id() == ids["gpt"] and dialog.prompt.current_id() == ids["other_prompt"]
    assert dialog.accuracy.current_id() is None, "(not rated) stays not rated"
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=5000)
    wait_idle(qtbot, session.runner)
    assert len(replica.pending_outbox(limit=10_000)) == outbox_before, "no change, no outbox entry"

    # emptying the content is refused in words; Escape closes without saving
    click_row(qtbot, outputs.list, outputs.model.row_of(ids["sql_output"]))
    qtbot.mouseClick(outputs.edit_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: outputs.dialog is not dialog and outputs.dialog.isVisible(), timeout=5000)
    dialog = outputs.dialog
    dialog.content.setFocus()
    dialog.content.selectAll()
    qtbot.keyClick(dialog.content, Qt.Key.Key_Delete)
    qtbot.keyClick(dialog.content, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: "the output is empty" in dialog.message.text(), timeout=5000)
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=5000)
    assert replica.get_output(id=ids["sql_output"]).content == "SELECT explained"
    assert len(replica.pending_outbox(limit=10_000)) == outbox_before
