"""Editors against what a sync brings, second QA round: two prompts with one title, a tick not saved yet, a
position past the old box's 10,000, a record deleted elsewhere, and messages in words."""

from __future__ import annotations

from outputhub.common.errors import InvalidInputError
from outputhub.common.limits import POSITION_MAX
from outputhub.desktop.storage import LookupKind
from outputhub.desktop.ui.widgets import IdCombo, error_text
from tests.qt.conftest import wait_idle
from tests.qt.support import library_for, seed
from tests.qt.test_flows import show


def test_an_editable_choice_keeps_the_entry_shown_when_two_share_a_label(qtbot) -> None:
    """An output under the second of two prompts titled alike moved to the first when edited: the box
    looked its text up (QA)."""
    box = IdCombo(empty_label=None, editable=True)
    qtbot.addWidget(box)
    box.set_choices([("first", "Linux Terminal"), ("second", "Linux Terminal"), ("third", "linux terminal")])
    box.set_current_id("second")
    assert box.current_id() == "second"
    box.set_current_id("third")
    assert box.current_id() == "third"
    box.setEditText("linux terminal")  # typed: the same case first
    assert box.current_id() == "third"
    box.setEditText("LINUX TERMINAL")  # else any case
    assert box.current_id() == "first"
    box.setEditText("no such prompt")
    assert box.current_id() is None


def _open_prompt(qtbot, replica, session):  # type: ignore[no-untyped-def]
    """A seeded replica with its prompt "Linux Terminal" open in the Prompts editor."""
    ids = seed(replica)
    session.window.data_changed(frozenset({"*"}))
    prompts = show(qtbot, session, "Prompts")
    qtbot.waitUntil(lambda: prompts.model.row_of(ids["prompt"]) is not None, timeout=5000)
    prompts.list.select_id(ids["prompt"])
    qtbot.waitUntil(lambda: prompts.title.text() == "Linux Terminal", timeout=5000)
    return ids, prompts


def test_an_unsaved_tick_and_stage_survive_a_refresh(qtbot, replica, session) -> None:
    ids, prompts = _open_prompt(qtbot, replica, session)
    wait_idle(qtbot, session.runner)
    assert set(prompts.tags.checked_ids()) == {ids["tag_python"]}
    prompts.tags.set_checked([ids["tag_python"], ids["tag_sql"]])  # ticked, not saved
    prompts.stage.set_current_id(ids["production"])
    library_for(replica).create("tag", {"name": "new elsewhere"})  # as a sync would bring
    session.window.data_changed(frozenset({"tag"}))
    wait_idle(qtbot, session.runner)
    assert set(prompts.tags.checked_ids()) == {ids["tag_python"], ids["tag_sql"]}
    assert prompts.stage.current_id() == ids["production"]
    assert prompts.title.text() == "Linux Terminal"


def test_a_large_position_is_shown_and_kept(qtbot, replica, session) -> None:
    ids = seed(replica)
    library_for(replica).edit("tag", ids["tag_sql"], {"position": 50_000})
    taxonomy = show(qtbot, session, "Taxonomy")
    taxonomy.kind.setCurrentIndex(taxonomy.kind.findData(LookupKind.TAGS.value))
    wait_idle(qtbot, session.runner)
    qtbot.waitUntil(lambda: taxonomy.model.row_of(ids["tag_sql"]) is not None, timeout=5000)
    taxonomy.open(ids["tag_sql"])
    assert taxonomy.position.value() == 50_000 and taxonomy.position.maximum() == POSITION_MAX
    taxonomy.description.setText("queries")
    taxonomy.save()
    wait_idle(qtbot, session.runner)
    tag = replica.get_lookup(kind=LookupKind.TAGS, id=ids["tag_sql"])
    assert tag is not None and (tag.position, tag.description) == (50_000, "queries")


def test_an_editor_lets_go_of_a_record_deleted_elsewhere(qtbot, replica, session) -> None:
    ids, prompts = _open_prompt(qtbot, replica, session)
    library_for(replica).delete("prompt", ids["prompt"])  # as a sync would bring
    session.window.data_changed(frozenset({"prompt"}))
    qtbot.waitUntil(lambda: "was deleted" in prompts.message.text(), timeout=5000)
    assert prompts.title.text() == "" and prompts.body.toPlainText() == ""


def test_a_message_says_what_is_wrong_without_the_field_prefix() -> None:
    assert error_text(InvalidInputError("id", "this prompt has been deleted meanwhile")) == (
        "this prompt has been deleted meanwhile"
    )
