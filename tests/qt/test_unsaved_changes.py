"""Leaving an editor with unsaved changes for another record (a click in the list, New) asks first: Save,
Discard changes or Cancel. It dropped the typing without a word (QA)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from outputhub.desktop.storage import LookupKind
from tests.qt.conftest import wait_idle
from tests.qt.support import seed
from tests.qt.test_editor_edges import _open_prompt
from tests.qt.test_flows import show


def _answer(qtbot, guard, button: str) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: guard.box is not None, timeout=5000)
    qtbot.mouseClick(guard.buttons[button], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: guard.box is None, timeout=5000)


def test_leaving_a_prompt_with_unsaved_typing_asks_first(qtbot, replica, session) -> None:
    ids, prompts = _open_prompt(qtbot, replica, session)
    guard = prompts.leave_guard
    prompts.body.moveCursor(prompts.body.textCursor().MoveOperation.End)
    qtbot.keyClicks(prompts.body, " IMPORTANT")
    typed = prompts.body.toPlainText()

    prompts.list.select_id(ids["other_prompt"])  # Cancel: stays, the typing and the row with it
    qtbot.waitUntil(lambda: guard.box is not None, timeout=5000)
    assert guard.box.text() == "Save your changes to “Linux Terminal” before leaving it?"
    _answer(qtbot, guard, "cancel")
    wait_idle(qtbot, session.runner)
    assert (prompts.title.text(), prompts.body.toPlainText()) == ("Linux Terminal", typed)
    assert prompts.list.selected_ids() == [ids["prompt"]]

    prompts.list.select_id(ids["other_prompt"])  # Save: stored, then on to the other one
    _answer(qtbot, guard, "save")
    qtbot.waitUntil(lambda: prompts.title.text() == "SQL tutor", timeout=5000)
    assert replica.get_prompt(id=ids["prompt"]).body == typed  # type: ignore[union-attr]

    qtbot.keyClicks(prompts.title, " draft")  # Discard: on to the other one, nothing stored
    prompts.list.select_id(ids["prompt"])
    _answer(qtbot, guard, "discard")
    qtbot.waitUntil(lambda: prompts.title.text() == "Linux Terminal", timeout=5000)
    assert replica.get_prompt(id=ids["other_prompt"]).title == "SQL tutor"  # type: ignore[union-attr]

    prompts.list.select_id(ids["other_prompt"])  # nothing typed: no question
    qtbot.waitUntil(lambda: prompts.title.text() == "SQL tutor", timeout=5000)
    assert guard.box is None
    qtbot.keyClicks(prompts.title, "!")  # New asks too
    qtbot.mouseClick(prompts.new_button, Qt.MouseButton.LeftButton)
    _answer(qtbot, guard, "cancel")
    assert prompts.title.text() == "SQL tutor!"


def test_leaving_a_custom_gpt_or_a_taxonomy_entry_with_unsaved_changes_asks_first(
    qtbot, replica, session
) -> None:
    ids = seed(replica)
    session.window.data_changed(frozenset({"*"}))
    gpts = show(qtbot, session, "Custom GPTs")
    qtbot.waitUntil(lambda: gpts.model.row_of(ids["gpt"]) is not None, timeout=5000)
    gpts.list.select_id(ids["gpt"])
    qtbot.waitUntil(lambda: gpts.name.text() == "Coder", timeout=5000)
    qtbot.keyClicks(gpts.instructions, "answer in code")
    gpts.new()  # New custom GPT
    _answer(qtbot, gpts.leave_guard, "save")
    qtbot.waitUntil(lambda: gpts.name.text() == "", timeout=5000)
    assert replica.get_custom_gpt(id=ids["gpt"]).instructions == "answer in code"  # type: ignore[union-attr]

    # (offscreen, no window is active after a modal box: the page shortcut would go nowhere)
    session.window.navigation.setCurrentRow(session.window.NAMES.index("Taxonomy"))
    wait_idle(qtbot, session.runner)
    taxonomy = session.window.pages.taxonomy
    taxonomy.kind.setCurrentIndex(taxonomy.kind.findText("Tags"))
    qtbot.waitUntil(lambda: len(taxonomy.model.rows()) == 2, timeout=5000)
    first, second = (r.id for r in taxonomy.model.rows())
    taxonomy.list.select_id(first)
    shown = taxonomy.name.text()
    qtbot.keyClicks(taxonomy.name, "-renamed")
    taxonomy.list.select_id(second)
    _answer(qtbot, taxonomy.leave_guard, "discard")
    qtbot.waitUntil(lambda: taxonomy.name.text() not in (shown, f"{shown}-renamed"), timeout=5000)
    names = {e.name for e in replica.list_lookups(kind=LookupKind.TAGS)}
    assert names == {"python", "sql"}
