"""The main offline flows through real input: capture an output, edit a prompt (history and diff), search as
you type, filter, taxonomy, change the passphrase, analytics. Everything lands in the replica's outbox."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from outputhub.desktop.storage import LookupKind, open_replica
from tests.qt.conftest import PASSPHRASE, wait_idle
from tests.qt.support import seed


def show(qtbot, session, name: str):
    window = session.window
    index = window.NAMES.index(name)
    qtbot.keyClick(window, Qt.Key(Qt.Key.Key_1 + index), Qt.KeyboardModifier.ControlModifier)
    assert window.stack.currentIndex() == index
    wait_idle(qtbot, session.runner)
    return window.stack.currentWidget()


def test_capture_an_output_in_a_few_keystrokes(qtbot, replica, session) -> None:
    ids = seed(replica)
    session.window.data_changed(frozenset({"*"}))
    outputs = show(qtbot, session, "Outputs")
    pending_before = len(replica.pending_outbox(limit=1000))
    QGuiApplication.clipboard().setText("ls -la\ntotal 0")
    qtbot.keyClick(
        session.window, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    qtbot.waitUntil(lambda: outputs.dialog is not None and outputs.dialog.isVisible(), timeout=5000)
    dialog = outputs.dialog
    assert dialog.content.toPlainText() == "ls -la\ntotal 0", "the clipboard is pasted"
    assert dialog.focusWidget() in (dialog.prompt, dialog.prompt.lineEdit()), "ready to type the prompt"
    qtbot.keyClicks(dialog.prompt.lineEdit(), "Linux Terminal")
    qtbot.keyClicks(dialog.gpt_model.lineEdit(), "GPT-4o")
    dialog.accuracy.setFocus()
    qtbot.keyClicks(dialog.accuracy, "Acc")  # type-ahead in a combo box
    dialog.tags.check_label("python")
    dialog.knowledge_types.check_label("Code")
    with qtbot.waitSignal(dialog.captured, timeout=10_000) as captured:
        qtbot.keyClick(dialog.content, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot, session.runner)
    record = replica.get_output(id=captured.args[0])
    assert record is not None and record.content == "ls -la\ntotal 0"
    assert record.prompt_id == ids["prompt"] and record.gpt_model_id == ids["model"]
    assert record.accuracy_level_id == ids["accurate"]
    assert record.tag_ids == (ids["tag_python"],) and record.knowledge_type_ids == (ids["code"],)
    assert len(replica.pending_outbox(limit=1000)) == pending_before + 1, "the edit is queued for sync"
    qtbot.waitUntil(lambda: outputs.model.row_of(record.id) is not None, timeout=5000)


def test_capture_refuses_an_output_without_a_prompt(qtbot, replica, session) -> None:
    seed(replica)
    outputs = show(qtbot, session, "Outputs")
    QGuiApplication.clipboard().clear()
    qtbot.mouseClick(outputs.capture_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: outputs.dialog is not None and outputs.dialog.isVisible(), timeout=5000)
    dialog = outputs.dialog
    qtbot.keyClicks(dialog.content, "an orphan output")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "choose the prompt" in dialog.message.text(), timeout=5000)
    assert dialog.isVisible()
    dialog.reject()


def test_edit_a_prompt_then_compare_its_versions(qtbot, replica, session) -> None:
    ids = seed(replica)
    session.window.data_changed(frozenset({"*"}))
    prompts = show(qtbot, session, "Prompts")
    qtbot.waitUntil(lambda: prompts.model.row_of(ids["prompt"]) is not None, timeout=5000)
    prompts.list.table.setFocus()
    prompts.list.select_id(ids["prompt"])
    qtbot.waitUntil(lambda: prompts.title.text() == "Linux Terminal", timeout=5000)
    prompts.title.selectAll()
    qtbot.keyClicks(prompts.title, "Bash terminal")
    prompts.body.moveCursor(prompts.body.textCursor().MoveOperation.End)
    qtbot.keyClick(prompts.body, Qt.Key.Key_Return)
    qtbot.keyClicks(prompts.body, "never explain")
    prompts.stage.setCurrentIndex(prompts.stage.findText("Production"))
    qtbot.keyClick(prompts.title, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: prompts.message.text().startswith("Version"), timeout=5000)
    stored = replica.get_prompt(id=ids["prompt"])
    assert stored.title == "Bash terminal" and stored.body.endswith("reply with output only\nnever explain")
    assert stored.development_stage_id == ids["production"]
    versions = replica.list_prompt_versions(prompt_id=ids["prompt"])
    assert [v.title for v in versions] == ["Linux Terminal", "Bash terminal"]
    qtbot.waitUntil(lambda: prompts.to_version.count() == 2, timeout=5000)
    prompts.tabs.setCurrentIndex(1)
    diff = prompts.diff
    rows = [(diff.item(r, 1).text(), diff.item(r, 3).text()) for r in range(diff.rowCount())]
    assert rows == [
        ("act as a terminal", "act as a terminal"),
        ("reply with output only", "reply with output only"),
        ("", "never explain"),
    ]
    qtbot.waitUntil(lambda: prompts.model.index(0, 0).data() == "Bash terminal", timeout=5000)


def test_new_prompt_with_ctrl_n_and_validation(qtbot, replica, session) -> None:
    seed(replica)
    session.window.data_changed(frozenset({"*"}))
    prompts = show(qtbot, session, "Prompts")
    prompts.title.setFocus()
    qtbot.keyClick(prompts.title, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(prompts.title, "Empty one")
    qtbot.keyClick(prompts.title, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: "empty" in prompts.message.text(), timeout=5000)
    qtbot.keyClicks(prompts.body, "Say hello")
    prompts.tags.check_label("sql")
    qtbot.mouseClick(prompts.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(r.title == "Empty one" for r in prompts.model.rows()), timeout=5000)
    [made] = [p for p in replica.list_prompts() if p.title == "Empty one"]
    assert made.body == "Say hello" and len(made.tag_ids) == 1


def test_search_as_you_type_and_filters(qtbot, replica, session) -> None:
    ids = seed(replica, outputs=6)
    session.window.data_changed(frozenset({"*"}))
    outputs = show(qtbot, session, "Outputs")
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 7, timeout=5000)
    qtbot.keyClick(session.window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert outputs.list.search.hasFocus()
    qtbot.keyClicks(outputs.list.search, "number 3")
    qtbot.waitUntil(
        lambda: [r.excerpt for r in outputs.model.rows()] == ["terminal answer number 3"], timeout=5000
    )
    qtbot.keyClicks(outputs.list.search, "4")  # "number 34": nothing
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 0, timeout=5000)
    outputs.list.search.clear()
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 7, timeout=5000)
    combo = outputs.list.filters["accuracy_level_id"]
    combo.setCurrentIndex(combo.findData(ids["wrong"]))
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 3, timeout=5000)
    assert {r.accuracy for r in outputs.model.rows()} == {"Wrong"}
    qtbot.keyClicks(outputs.list.search, "terminal")  # search and a filter together
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 3, timeout=5000)
    combo = outputs.list.filters["custom_gpt_id"]
    combo.setCurrentIndex(combo.findData(ids["gpt"]))
    qtbot.waitUntil(lambda: outputs.model.rowCount() == 0, timeout=5000)

    prompts = show(qtbot, session, "Prompts")
    qtbot.keyClick(session.window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(prompts.list.search, "query")
    qtbot.waitUntil(lambda: [r.title for r in prompts.model.rows()] == ["SQL tutor"], timeout=5000)


def test_taxonomy_add_rename_delete(qtbot, replica, session) -> None:
    seed(replica)
    taxonomy = show(qtbot, session, "Taxonomy")
    taxonomy.kind.setCurrentIndex(taxonomy.kind.findText("Knowledge types"))
    qtbot.waitUntil(lambda: [r.name for r in taxonomy.model.rows()] == ["Code"], timeout=5000)
    qtbot.mouseClick(taxonomy.new_button, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(taxonomy.name, "Poetry")
    qtbot.mouseClick(taxonomy.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: [r.name for r in taxonomy.model.rows()] == ["Code", "Poetry"], timeout=5000)
    taxonomy.list.select_id(taxonomy.model.row_at(1).id)
    assert taxonomy.name.text() == "Poetry"
    taxonomy.name.selectAll()
    qtbot.keyClicks(taxonomy.name, "Verse")
    qtbot.mouseClick(taxonomy.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: [r.name for r in taxonomy.model.rows()] == ["Code", "Verse"], timeout=5000)
    names = {e.name for e in replica.list_lookups(kind=LookupKind.KNOWLEDGE_TYPES)}
    assert names == {"Code", "Verse"}
    taxonomy.list.select_id(taxonomy.model.row_at(1).id)
    qtbot.mouseClick(taxonomy.delete_button, Qt.MouseButton.LeftButton)
    deleter = session.window.deleter  # confirmed like every delete (tests/qt/test_taxonomy_delete.py)
    qtbot.waitUntil(lambda: deleter.confirmation is not None, timeout=5000)
    assert deleter.confirmation.text() == "Delete the knowledge type “Verse”?"
    qtbot.keyClick(deleter.confirmation, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: [r.name for r in taxonomy.model.rows()] == ["Code"], timeout=5000)


def test_change_passphrase_in_settings(qtbot, replica, session, tmp_path) -> None:
    settings = show(qtbot, session, "Settings")
    qtbot.keyClicks(settings.old, "wrong passphrase here")
    qtbot.keyClicks(settings.new, "a brand new long passphrase")
    qtbot.keyClicks(settings.confirm, "a brand new long passphrase")
    qtbot.mouseClick(settings.rekey_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "wrong" in settings.rekey_message.text(), timeout=10_000)
    settings.old.clear()
    qtbot.keyClicks(settings.old, PASSPHRASE)
    qtbot.mouseClick(settings.rekey_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Passphrase changed" in settings.rekey_message.text(), timeout=10_000)
    with open_replica(replica.path, passphrase="a brand new long passphrase") as again:
        assert again.schema_version >= 1


def test_analytics_view_charts_the_local_replica(qtbot, replica, session) -> None:
    seed(replica, outputs=5)
    analytics = show(qtbot, session, "Analytics")
    qtbot.waitUntil(lambda: analytics.analytics is not None, timeout=10_000)
    a = analytics.analytics
    assert (a.outputs, a.prompts) == (6, 2)
    by_model = a.accuracy_by_gpt_model
    assert by_model.categories == ("GPT-4o", "(not set)")
    assert {s.name: s.values for s in by_model.series} == {
        "Accurate": (3, 0),
        "Wrong": (2, 0),
        "(not set)": (0, 1),
    }
    assert a.stage_funnel == (("Draft", 1), ("Production", 1))
    assert a.tag_usage == (("python", 1, 5),)
    charts = [view.chart() for view in analytics.views]
    assert [c.title() for c in charts][:2] == ["Accuracy by GPT model", "Accuracy by custom GPT"]
    assert charts[0].series()[0].count() == 3  # one bar set per accuracy level
