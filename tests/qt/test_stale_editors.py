"""An editor left open while a sync changes its record. Saving wrote every field as the editor showed it,
so a title, text or tag another workstation changed meanwhile was set back, silently (found by QA). Now a
save writes only what was changed in the editor since the record was shown, sets as ticks and unticks on
top of the current set; and an editor nobody is typing in shows the synced record after the sync."""

from __future__ import annotations

from PySide6.QtCore import Qt

from outputhub.common.errors import InvalidInputError
from outputhub.desktop.services.editing import make_editor
from outputhub.desktop.services.library import LibraryService
from outputhub.desktop.storage import LookupKind, PromptRecord, Replica
from outputhub.sync.client import LocalLibrary
from tests.qt.conftest import wait_idle
from tests.qt.support import library_for, seed
from tests.qt.test_flows import show
from tests.qt.test_sync import log_in, wait_status
from tests.support.client import add_member, new_org, seed_library


def service(replica: Replica) -> LibraryService:
    return LibraryService(replica=replica, editor=make_editor(replica))


def _shown_prompt(replica: Replica) -> tuple[dict[str, str], LibraryService, LocalLibrary, PromptRecord]:
    """A seeded replica, its library service, another writer on it (as a sync), and the prompt as an
    editor loaded it."""
    ids = seed(replica)
    shown = replica.get_prompt(id=ids["prompt"])
    assert shown is not None
    return ids, service(replica), library_for(replica), shown


def test_saving_writes_only_what_changed_since_the_editor_loaded_it(replica) -> None:
    ids, library, elsewhere, shown = _shown_prompt(replica)
    # a sync brings another workstation's edit of the title, the text and the tags
    elsewhere.edit(
        "prompt",
        ids["prompt"],
        {
            "title": "Renamed elsewhere",
            "body": "new text",
            "tag_ids": frozenset({ids["tag_python"], ids["tag_sql"]}),
        },
    )
    library.save_prompt(
        id=ids["prompt"],
        original=shown,
        title=shown.title,
        body=shown.body,
        description="added here",
        development_stage_id=shown.development_stage_id,
        tag_ids=[*shown.tag_ids, ids["tag_sql"]],
    )
    saved = replica.get_prompt(id=ids["prompt"])
    assert saved is not None
    assert (saved.title, saved.body, saved.description) == ("Renamed elsewhere", "new text", "added here")
    assert set(saved.tag_ids) == {ids["tag_python"], ids["tag_sql"]}
    # unticking takes the tag away, and only it
    library.save_prompt(
        id=ids["prompt"],
        original=saved,
        title=saved.title,
        body=saved.body,
        description=saved.description,
        development_stage_id=saved.development_stage_id,
        tag_ids=[ids["tag_sql"]],
    )
    assert replica.get_prompt(id=ids["prompt"]).tag_ids == (ids["tag_sql"],)  # type: ignore[union-attr]

    gpt = library.get_custom_gpt(id=ids["gpt"])
    elsewhere.edit("custom_gpt", ids["gpt"], {"name": "Coder v2", "instructions": "be brief"})
    library.save_custom_gpt(
        id=ids["gpt"],
        original=gpt,
        name=gpt.name,
        description="helps with code",
        instructions=gpt.instructions,
        gpt_model_id=gpt.gpt_model_id,
        agent_group_ids=list(gpt.agent_group_ids),
    )
    after = library.get_custom_gpt(id=ids["gpt"])
    assert (after.name, after.instructions, after.description) == ("Coder v2", "be brief", "helps with code")

    [row] = [r for r in library.lookup_rows(kind=LookupKind.TAGS) if r.id == ids["tag_sql"]]
    elsewhere.edit("tag", ids["tag_sql"], {"name": "SQL"})
    library.save_lookup(
        kind=LookupKind.TAGS,
        id=row.id,
        original=row,
        name=row.name,
        description="queries",
        position=row.position,
    )
    tag = replica.get_lookup(kind=LookupKind.TAGS, id=ids["tag_sql"])
    assert tag is not None and (tag.name, tag.description) == ("SQL", "queries")

    elsewhere.delete("prompt", ids["other_prompt"])
    gone = replica.get_prompt(id=ids["other_prompt"])
    try:
        library.save_prompt(id=ids["other_prompt"], original=gone, title="t", body="b")
    except InvalidInputError as exc:
        assert "deleted meanwhile" in str(exc)
    else:
        raise AssertionError("saving a prompt deleted meanwhile must be refused")


def test_an_open_prompt_shows_the_synced_record_and_a_save_keeps_the_other_side(
    qtbot, replica, session, api, live_server
) -> None:
    org = new_org(api, name="Stale")  # type: ignore[arg-type]
    ids = seed_library(org)
    sql = org.owner.post(f"{org.base}/tags", json={"name": "sql"}).json()["id"]
    log_in(qtbot, session, url=live_server, email=org.owner.email)
    wait_status(qtbot, session, "up_to_date")
    prompts = show(qtbot, session, "Prompts")
    qtbot.waitUntil(lambda: prompts.model.row_of(ids["prompt"]) is not None, timeout=10_000)
    prompts.list.select_id(ids["prompt"])
    qtbot.waitUntil(lambda: prompts.title.text() == "Linux Terminal", timeout=10_000)

    # another workstation (here the REST API) renames it and adds a tag; the desktop syncs
    url = f"{org.base}/prompts/{ids['prompt']}"
    tags = org.owner.get(url).json()["tag_ids"]
    assert (
        org.owner.patch(url, json={"title": "Renamed elsewhere", "tag_ids": [*tags, sql]}).status_code == 200
    )
    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    wait_status(qtbot, session, "up_to_date")
    qtbot.waitUntil(lambda: prompts.title.text() == "Renamed elsewhere", timeout=10_000)  # not being edited
    assert sql in prompts.tags.checked_ids()

    # now the user types a description; meanwhile the text changes elsewhere, and the desktop syncs
    prompts.description.setFocus()
    qtbot.keyClicks(prompts.description, "added on the desktop")
    assert org.owner.patch(url, json={"body": "rewritten elsewhere"}).status_code == 200
    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    wait_status(qtbot, session, "up_to_date")
    assert prompts.description.text() == "added on the desktop"  # the typing is not thrown away
    qtbot.keyClick(prompts.title, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: prompts.message.text().startswith("Version"), timeout=10_000)
    wait_idle(qtbot, session.runner)
    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    wait_status(qtbot, session, "up_to_date")
    served = org.owner.get(url).json()
    assert (served["title"], served["body"], served["description"]) == (
        "Renamed elsewhere",
        "rewritten elsewhere",
        "added on the desktop",
    )
    assert sql in served["tag_ids"]
    assert prompts.body.toPlainText() == "rewritten elsewhere"  # the editor shows what was stored


def test_a_viewers_edit_is_refused_said_in_the_status_bar_and_the_editor_reverts(
    qtbot, replica, session, api, live_server
) -> None:
    """A viewer's edit was refused by the server while the status bar said only "Up to date", and the
    editor kept showing the refused title (found by QA)."""
    org = new_org(api, name="Viewers")  # type: ignore[arg-type]
    ids = seed_library(org)
    viewer = add_member(org, "viewer")
    log_in(qtbot, session, url=live_server, email=viewer.email)
    wait_status(qtbot, session, "up_to_date")
    prompts = show(qtbot, session, "Prompts")
    qtbot.waitUntil(lambda: prompts.model.row_of(ids["prompt"]) is not None, timeout=10_000)
    prompts.list.select_id(ids["prompt"])
    qtbot.waitUntil(lambda: prompts.title.text() == "Linux Terminal", timeout=10_000)
    prompts.title.clear()
    qtbot.keyClicks(prompts.title, "Viewer tried this")
    qtbot.keyClick(prompts.title, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: prompts.message.text().startswith("Version"), timeout=10_000)
    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    text = wait_status(qtbot, session, "up_to_date")
    assert "1 edit refused by the server (permission denied; see Conflicts)" in text
    qtbot.waitUntil(lambda: prompts.title.text() == "Linux Terminal", timeout=10_000)
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == "Linux Terminal"


def test_a_sync_after_the_organization_is_gone_says_so_by_name(
    qtbot, replica, session, api, live_server
) -> None:
    """The status bar said "not found on the server: organization 1f2e... not found (...)" (QA)."""
    org = new_org(api, name="Gone soon")  # type: ignore[arg-type]
    seed_library(org)
    log_in(qtbot, session, url=live_server, email=org.owner.email)
    wait_status(qtbot, session, "up_to_date")
    library_for(replica).create("tag", {"name": "kept here"})
    assert org.owner.delete(org.base).status_code == 204
    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    text = wait_status(qtbot, session, "error")
    assert "the organization Gone soon is not available to this account any more" in text
    assert "Your local edits are kept" in text
    assert len(replica.pending_outbox()) == 1


def test_a_field_typed_while_a_sync_changed_it_is_a_conflict_not_an_overwrite(replica) -> None:
    """The user types a new title while a sync brings another one; saving wrote the typed title over the
    synced one, which its user never saw, with no conflict (QA). Now the typed title is made from the title
    shown: the newer write stands and the other is kept in a conflict; a text merges with the synced one."""
    ids, library, elsewhere, shown = _shown_prompt(replica)
    elsewhere.edit(
        "prompt",
        ids["prompt"],
        {"title": "Server title", "body": "act as a terminal\nreply with output only\nno explanations"},
    )
    library.save_prompt(
        id=ids["prompt"],
        original=shown,
        title="Typed title",
        body="act as a Linux terminal\nreply with output only",
        development_stage_id=shown.development_stage_id,
        tag_ids=list(shown.tag_ids),
    )
    saved = replica.get_prompt(id=ids["prompt"])
    assert saved is not None
    assert saved.title == "Typed title"  # the newer write
    assert saved.body == "act as a Linux terminal\nreply with output only\nno explanations"  # both, merged
    [conflict] = replica.list_conflicts()
    assert (conflict.field, {conflict.mine, conflict.theirs}) == ("title", {"Typed title", "Server title"})
