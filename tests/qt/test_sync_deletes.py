"""Deletes meet edits made elsewhere, and an expired login, against a real server (uvicorn in a thread).

A delete on one side and an edit on the other: the edit keeps the record and a "deleted vs edited" conflict
shows in the Conflicts panel, where either side can be kept; the choice syncs to the server. An access token
that has really expired (signed by the server, past its lifetime) is swapped for new ones by the next sync.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
from PySide6.QtCore import Qt

from outputhub.desktop.storage import LookupKind
from outputhub.server.security import TokenSigner
from tests.qt.test_deleting import activate, click_row, focus, row_titled, show, wait_confirmation
from tests.qt.test_sync import log_in, wait_status
from tests.qt.test_taxonomy_delete import open_taxonomy
from tests.support.client import new_org, seed_library
from tests.sync.support import make_device

SERVER_SECRET = (
    "test-secret-key-with-enough-length-for-hs256"  # the live_server fixture's (tests/qt/conftest.py)
)


def sync_now(qtbot, session) -> str:
    activate(qtbot, session)
    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    return wait_status(qtbot, session, "up_to_date")


def delete_output_row(qtbot, session, outputs, output_id: str) -> None:
    qtbot.waitUntil(lambda: outputs.model.row_of(output_id) is not None, timeout=5000)
    click_row(qtbot, outputs.list, outputs.model.row_of(output_id))
    focus(qtbot, session, outputs.list.table)
    qtbot.keyClick(outputs.list.table, Qt.Key.Key_Delete)
    qtbot.keyClick(wait_confirmation(qtbot, session), Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: outputs.model.row_of(output_id) is None, timeout=5000)


def open_the_conflict(qtbot, session, field: str = "deleted vs edited"):
    qtbot.waitUntil(lambda: "1 conflict" in session.window.conflict_label.text(), timeout=10_000)
    conflicts = show(qtbot, session, "Conflicts")
    qtbot.waitUntil(lambda: conflicts.model.rowCount() == 1, timeout=5000)
    click_row(qtbot, conflicts.list, 0)
    qtbot.waitUntil(lambda: conflicts.keep_mine.isEnabled(), timeout=5000)
    assert conflicts.model.index(0, conflicts.model.column_index("field")).data() == field
    assert conflicts.base.toPlainText() == "Existed"
    assert not conflicts.save_merged.isEnabled() and conflicts.merged.isReadOnly(), "nothing to merge"
    return conflicts


def test_deleted_here_edited_elsewhere_shows_a_conflict_and_keeping_the_delete_syncs(
    qtbot, replica, session, api, live_server, tmp_path
) -> None:
    org = new_org(api, name="Deletes")  # type: ignore[arg-type]
    ids = seed_library(org)
    log_in(qtbot, session, url=live_server, email=org.owner.email)
    wait_status(qtbot, session, "up_to_date")

    with httpx.Client(base_url=live_server, timeout=30) as http:  # the laptop edits the output
        laptop = make_device(
            tmp_path, "laptop", http=http, base_url=live_server, token=org.owner.token, org_id=org.id
        )
        laptop.sync()
        laptop.library.edit("output", ids["output"], {"content": "edited on the laptop"})
        laptop.sync()
        laptop.replica.close()

    outputs = show(qtbot, session, "Outputs")
    delete_output_row(qtbot, session, outputs, ids["output"])  # this computer deletes it, not knowing
    assert replica.get_output(id=ids["output"]).deleted

    assert "1 new conflict" in sync_now(qtbot, session)
    record = replica.get_output(id=ids["output"])
    assert not record.deleted and record.content == "edited on the laptop", "the unseen edit kept it"
    # the status bar no longer says "Deleted ... Undo" (QA: Undo then restored nothing, misleadingly)
    window = session.window
    qtbot.waitUntil(lambda: "overridden by an edit made elsewhere" in window.undo_label.text(), timeout=5000)
    assert window.undo_button.isHidden() and not window.deleter.can_undo
    conflicts = open_the_conflict(qtbot, session)
    assert (conflicts.mine.toPlainText(), conflicts.theirs.toPlainText()) == ("Deleted", "Kept (edited)")
    assert "output “edited on the laptop" in conflicts.title.text()

    qtbot.mouseClick(conflicts.keep_mine, Qt.MouseButton.LeftButton)  # keep the delete after all
    qtbot.waitUntil(lambda: conflicts.model.rowCount() == 0, timeout=5000)
    assert replica.get_output(id=ids["output"]).deleted
    assert session.window.conflict_label.text() == ""
    sync_now(qtbot, session)
    assert org.owner.get(f"{org.base}/outputs/{ids['output']}").status_code == 404
    assert org.owner.get(f"{org.base}/sync/conflicts").json() == []


def test_edited_here_deleted_on_the_server_shows_a_conflict_and_keeping_the_edit_syncs(
    qtbot, replica, session, api, live_server
) -> None:
    org = new_org(api, name="Edits")  # type: ignore[arg-type]
    ids = seed_library(org)
    log_in(qtbot, session, url=live_server, email=org.owner.email)
    wait_status(qtbot, session, "up_to_date")

    # this computer edits the output in the editor (Enter on its row) ...
    outputs = show(qtbot, session, "Outputs")
    qtbot.waitUntil(lambda: outputs.model.row_of(ids["output"]) is not None, timeout=5000)
    click_row(qtbot, outputs.list, outputs.model.row_of(ids["output"]))
    focus(qtbot, session, outputs.list.table)
    qtbot.keyClick(outputs.list.table, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: outputs.dialog is not None and outputs.dialog.isVisible(), timeout=5000)
    dialog = outputs.dialog
    dialog.content.moveCursor(dialog.content.textCursor().MoveOperation.End)
    qtbot.keyClicks(dialog.content, " and /tmp")
    with qtbot.waitSignal(dialog.edited, timeout=10_000):
        qtbot.keyClick(dialog.content, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    # ... while someone deletes it on the server (the web portal / REST API)
    assert org.owner.delete(f"{org.base}/outputs/{ids['output']}").status_code == 204

    assert "1 new conflict" in sync_now(qtbot, session)
    assert replica.get_output(id=ids["output"]).content == "/home/user and /tmp"
    conflicts = open_the_conflict(qtbot, session)
    assert (conflicts.mine.toPlainText(), conflicts.theirs.toPlainText()) == ("Kept (edited)", "Deleted")

    qtbot.mouseClick(conflicts.keep_mine, Qt.MouseButton.LeftButton)  # keep the output, with the edit
    qtbot.waitUntil(lambda: conflicts.model.rowCount() == 0, timeout=5000)
    sync_now(qtbot, session)
    server = org.owner.get(f"{org.base}/outputs/{ids['output']}")
    assert server.status_code == 200 and server.json()["content"] == "/home/user and /tmp"
    assert org.owner.get(f"{org.base}/sync/conflicts").json() == []
    outputs = show(qtbot, session, "Outputs")
    qtbot.waitUntil(lambda: outputs.model.row_of(ids["output"]) is not None, timeout=5000)


def test_an_expired_access_token_is_refreshed_and_the_pending_delete_is_pushed(
    qtbot, replica, session, api, live_server
) -> None:
    org = new_org(api, name="Expired")  # type: ignore[arg-type]
    ids = seed_library(org)
    log_in(qtbot, session, url=live_server, email=org.owner.email)
    wait_status(qtbot, session, "up_to_date")

    # the stored access token, as the server would have issued it an hour ago (it lives 15 minutes)
    claims = jwt.decode(replica.get_setting(key="access_token"), options={"verify_signature": False})
    expired = TokenSigner(secret=SERVER_SECRET, ttl=timedelta(minutes=15)).issue(
        user_id=uuid.UUID(claims["sub"]),
        session_id=uuid.UUID(claims["sid"]),
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    refused = httpx.get(f"{live_server}/api/v1/orgs", headers={"Authorization": f"Bearer {expired}"})
    assert refused.status_code == 401 and "expired" in refused.text, "the server sees an expired token"
    replica.set_setting(key="access_token", value=expired)
    old_refresh = replica.get_setting(key="refresh_token")

    outputs = show(qtbot, session, "Outputs")
    delete_output_row(qtbot, session, outputs, ids["output"])  # an edit waiting to be pushed

    assert sync_now(qtbot, session).startswith("Up to date at ")
    access, refresh = replica.get_setting(key="access_token"), replica.get_setting(key="refresh_token")
    assert access not in (None, expired) and refresh not in (None, old_refresh), "a new pair is kept"
    fresh = httpx.get(f"{live_server}/api/v1/orgs", headers={"Authorization": f"Bearer {access}"})
    assert fresh.status_code == 200 and org.id in {o["id"] for o in fresh.json()}
    assert org.owner.get(f"{org.base}/outputs/{ids['output']}").status_code == 404, "the delete was pushed"
    assert replica.pending_outbox() == []


def test_keeping_a_prompts_delete_says_it_took_an_output_made_elsewhere_along(
    qtbot, replica, session, api, live_server, tmp_path
) -> None:
    """This computer deletes a prompt while the laptop adds an output under it: the output keeps the prompt
    alive, as a delete conflict, counted in the status bar although Settings is showing. Keeping the delete
    takes the laptop's output along; the Conflicts panel used to say only "Resolved" (QA), it now says an
    output went with it."""
    from outputhub.desktop.services.editing import make_editor
    from outputhub.desktop.services.library import LibraryService

    org = new_org(api, name="Kept deletes")  # type: ignore[arg-type]
    ids = seed_library(org)
    log_in(qtbot, session, url=live_server, email=org.owner.email)
    wait_status(qtbot, session, "up_to_date")
    library = LibraryService(replica=replica, editor=make_editor(replica))
    library.delete_records(entity="prompt", ids=[ids["prompt"]])

    with httpx.Client(base_url=live_server, timeout=30) as http:
        laptop = make_device(
            tmp_path, "laptop", http=http, base_url=live_server, token=org.owner.token, org_id=org.id
        )
        laptop.sync()
        made = laptop.library.create("output", {"prompt_id": ids["prompt"], "content": "made on the laptop"})
        laptop.sync()
        laptop.replica.close()
    window = session.window
    window.navigation.setCurrentRow(window.stack.indexOf(window.pages.settings))  # as after a login
    assert "1 new conflict" in sync_now(qtbot, session)
    # counted while Settings is shown (it was not until another page was shown)
    qtbot.waitUntil(lambda: "1 conflict" in session.window.conflict_label.text(), timeout=5000)
    conflicts = show(qtbot, session, "Conflicts")
    qtbot.waitUntil(lambda: conflicts.model.rowCount() >= 1, timeout=5000)
    [row] = [r for r in range(conflicts.model.rowCount()) if conflicts.model.row_at(r).entity == "prompt"]
    click_row(qtbot, conflicts.list, row)
    qtbot.waitUntil(lambda: conflicts.keep_mine.isEnabled(), timeout=5000)
    assert conflicts.mine.toPlainText() == "Deleted"
    qtbot.mouseClick(conflicts.keep_mine, Qt.MouseButton.LeftButton)  # keep the delete
    qtbot.waitUntil(lambda: "deleted with it: 1 output" in conflicts.message.text(), timeout=5000)
    assert replica.get_output(id=made).deleted


def test_a_merge_being_typed_survives_a_sync_that_changes_its_conflict(
    qtbot, replica, session, api, live_server, tmp_path
) -> None:
    """The user types a merge in Conflicts; the laptop edits the same text again and a sync brings it: the
    conflict comes back under a new id (a conflict is one pair of writes), and the panel reset the Merged box
    to the new suggestion without a word (QA). The typing is kept, on the conflict that took its place, and
    the panel says the sides changed."""
    from tests.qt.support import library_for

    org = new_org(api, name="Typed merge")  # type: ignore[arg-type]
    ids = seed_library(org)
    log_in(qtbot, session, url=live_server, email=org.owner.email)
    wait_status(qtbot, session, "up_to_date")
    with httpx.Client(base_url=live_server, timeout=30) as http:
        laptop = make_device(
            tmp_path, "laptop", http=http, base_url=live_server, token=org.owner.token, org_id=org.id
        )
        try:
            laptop.sync()
            laptop.library.edit("prompt", ids["prompt"], {"body": "laptop body"})
            laptop.sync()
            library_for(replica).edit("prompt", ids["prompt"], {"body": "desktop body"})
            assert "1 new conflict" in sync_now(qtbot, session)
            page = show(qtbot, session, "Conflicts")
            qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=5000)
            click_row(qtbot, page.list, 0)
            qtbot.waitUntil(lambda: page.save_merged.isEnabled(), timeout=5000)
            first = page.model.row_at(0).id
            page.merged.setFocus()
            page.merged.selectAll()
            qtbot.keyClicks(page.merged, "my careful hand merge")

            laptop.library.edit("prompt", ids["prompt"], {"body": "laptop body v2"})
            laptop.sync()
        finally:
            laptop.replica.close()
    session.controller.sync_now()  # the automatic sync, say
    wait_status(qtbot, session, "up_to_date")
    qtbot.waitUntil(lambda: page.model.rowCount() == 1 and page.model.row_at(0).id != first, timeout=5000)
    qtbot.waitUntil(lambda: "changed" in page.message.text(), timeout=5000)
    assert page.merged.toPlainText() == "my careful hand merge"
    assert page.theirs.toPlainText() == "laptop body v2"
    qtbot.mouseClick(page.save_merged, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.model.rowCount() == 0, timeout=5000)
    assert replica.get_prompt(id=ids["prompt"]).body == "my careful hand merge"


def test_a_tag_deleted_here_while_put_on_a_prompt_elsewhere_shows_what_keeps_it_in_use(
    qtbot, replica, session, api, live_server, tmp_path
) -> None:
    """Nobody edited the tag: the laptop put it on a prompt while this computer deleted it, and the server
    kept it because the prompt names it. The conflict says "deleted vs in use" and names the prompt (it said
    "Kept (edited)", QA); keeping the delete takes the tag off the prompt everywhere."""
    org = new_org(api, name="In use")  # type: ignore[arg-type]
    ids = seed_library(org)
    unused = org.owner.post(f"{org.base}/tags", json={"name": "sql"}).json()["id"]
    log_in(qtbot, session, url=live_server, email=org.owner.email)
    wait_status(qtbot, session, "up_to_date")

    with httpx.Client(base_url=live_server, timeout=30) as http:  # the laptop puts "sql" on the prompt
        laptop = make_device(
            tmp_path, "laptop", http=http, base_url=live_server, token=org.owner.token, org_id=org.id
        )
        laptop.sync()
        laptop.library.edit("prompt", ids["prompt"], {"tag_ids": [ids["tag"], unused]})
        laptop.sync()
        laptop.replica.close()

    page = open_taxonomy(qtbot, session, "Tags", 2)  # this computer deletes "sql", used nowhere it knows of
    click_row(qtbot, page.list, row_titled(page.list, "sql"))
    qtbot.waitUntil(lambda: page.name.text() == "sql", timeout=5000)
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    qtbot.keyClick(wait_confirmation(qtbot, session), Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: replica.get_lookup(kind=LookupKind.TAGS, id=unused).deleted, timeout=5000)

    assert "1 new conflict" in sync_now(qtbot, session)
    assert not replica.get_lookup(kind=LookupKind.TAGS, id=unused).deleted, "kept: the prompt names it"
    conflicts = open_the_conflict(qtbot, session, field="deleted vs in use")
    assert "deleted on one computer while records came to use it on another" in conflicts.title.text()
    in_use = "Kept: in use by prompt “Linux Terminal”"
    assert (conflicts.mine.toPlainText(), conflicts.theirs.toPlainText()) == ("Deleted", in_use)
    assert "prompt “Linux Terminal” named it" in conflicts.suggestion_note.text()

    qtbot.mouseClick(conflicts.keep_mine, Qt.MouseButton.LeftButton)  # keep the delete after all
    qtbot.waitUntil(lambda: conflicts.model.rowCount() == 0, timeout=5000)
    assert replica.get_lookup(kind=LookupKind.TAGS, id=unused).deleted
    assert replica.get_prompt(id=ids["prompt"]).tag_ids == (ids["tag"],)
    sync_now(qtbot, session)
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["tag_ids"] == [ids["tag"]]
    assert org.owner.get(f"{org.base}/sync/conflicts").json() == []
