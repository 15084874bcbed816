"""Sync through the GUI against a real server (uvicorn in a thread, embedded SQLite): log in, pull the
library, push an offline edit, see a conflict opened by another device and resolve it in the panel."""

from __future__ import annotations

import httpx
from PySide6.QtCore import Qt

from tests.qt.conftest import wait_idle
from tests.qt.test_flows import show
from tests.support.client import PASSWORD, new_org, seed_library
from tests.sync.support import make_device


def wait_status(qtbot, session, state: str, timeout: int = 20_000) -> str:
    qtbot.waitUntil(lambda: session.controller.status.state == state, timeout=timeout)
    wait_idle(qtbot, session.runner)
    return session.window.sync_label.text()


def log_in(qtbot, session, *, url: str, email: str) -> None:
    settings = show(qtbot, session, "Settings")
    for edit in (settings.server_url, settings.email, settings.password):
        edit.clear()
    qtbot.keyClicks(settings.server_url, url)
    qtbot.keyClicks(settings.email, email)
    qtbot.keyClicks(settings.password, PASSWORD)
    qtbot.mouseClick(settings.login_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Logged in as" in settings.account.text(), timeout=20_000)


def test_log_in_sync_edit_and_resolve_a_conflict(qtbot, replica, session, api, live_server, tmp_path) -> None:
    org = new_org(api, name="Desk")  # type: ignore[arg-type]  # an httpx.Client speaks like a TestClient
    ids = seed_library(org)
    assert "no server" in session.window.sync_label.text()

    # a prompt written offline before the first login moves into the organization and is pushed
    prompts = show(qtbot, session, "Prompts")
    qtbot.mouseClick(prompts.title, Qt.MouseButton.LeftButton)
    prompts.title.setFocus()  # offscreen windows are not always activated by a click
    qtbot.keyClicks(prompts.title, "Written offline")
    qtbot.keyClicks(prompts.body, "before logging in")
    qtbot.keyClick(prompts.title, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: any(r.title == "Written offline" for r in prompts.model.rows()), timeout=5000)

    log_in(qtbot, session, url=live_server, email=org.owner.email)
    text = wait_status(qtbot, session, "up_to_date")
    assert text.startswith("Up to date at ")
    assert replica.get_output(id=ids["output"]).content == "/home/user", "the library was pulled"
    titles = {p["title"] for p in org.owner.get(f"{org.base}/prompts").json()["items"]}
    assert "Written offline" in titles, "the offline edit was pushed"
    assert replica.pending_outbox() == []

    outputs = show(qtbot, session, "Outputs")
    qtbot.waitUntil(lambda: outputs.model.row_of(ids["output"]) is not None, timeout=5000)
    row = outputs.model.row_at(outputs.model.row_of(ids["output"]))
    assert (row.prompt, row.custom_gpt, row.accuracy, row.tags) == (
        "Linux Terminal",
        "Coder",
        "Accurate",
        "python",
    )

    # another device changes the prompt's title; this one changes it too, offline
    with httpx.Client(base_url=live_server, timeout=30) as http:
        other = make_device(
            tmp_path, "laptop", http=http, base_url=live_server, token=org.owner.token, org_id=org.id
        )
        other.sync()
        other.library.edit("prompt", ids["prompt"], {"title": "Laptop title"})
        other.sync()
        other.replica.close()
    prompts = show(qtbot, session, "Prompts")
    qtbot.waitUntil(lambda: prompts.model.row_of(ids["prompt"]) is not None, timeout=5000)
    prompts.list.select_id(ids["prompt"])
    qtbot.waitUntil(lambda: prompts.title.text() == "Linux Terminal", timeout=5000)
    prompts.title.setFocus()
    prompts.title.selectAll()
    qtbot.keyClicks(prompts.title, "Desktop title")
    qtbot.keyClick(prompts.title, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: prompts.message.text().startswith("Version"), timeout=5000)

    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    text = wait_status(qtbot, session, "up_to_date")
    assert "1 new conflict" in text
    qtbot.waitUntil(lambda: "1 conflict" in session.window.conflict_label.text(), timeout=5000)

    conflicts = show(qtbot, session, "Conflicts")
    qtbot.waitUntil(lambda: conflicts.model.rowCount() == 1, timeout=5000)
    conflicts.list.select_id(conflicts.model.row_at(0).id)
    assert conflicts.mine.toPlainText() == "Desktop title"
    assert conflicts.theirs.toPlainText() == "Laptop title"
    assert conflicts.base.toPlainText() == "Linux Terminal"
    assert conflicts.merged.toPlainText() == "Desktop title"  # a single value: mine is suggested
    conflicts.merged.selectAll()
    qtbot.keyClicks(conflicts.merged, "Merged title")
    qtbot.mouseClick(conflicts.save_merged, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: conflicts.model.rowCount() == 0, timeout=5000)
    assert replica.get_prompt(id=ids["prompt"]).title == "Merged title"

    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    wait_status(qtbot, session, "up_to_date")
    assert org.owner.get(f"{org.base}/prompts/{ids['prompt']}").json()["title"] == "Merged title"
    assert org.owner.get(f"{org.base}/sync/conflicts").json() == []
    assert session.window.conflict_label.text() == ""


def test_unreachable_server_and_wrong_password_are_told_in_words(
    qtbot, replica, session, api, live_server
) -> None:
    org = new_org(api, name="Words")  # type: ignore[arg-type]
    settings = show(qtbot, session, "Settings")
    qtbot.keyClicks(settings.server_url, live_server)
    qtbot.keyClicks(settings.email, org.owner.email)
    qtbot.keyClicks(settings.password, "not my password")
    qtbot.mouseClick(settings.login_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Could not log in" in settings.account.text(), timeout=20_000)
    assert "credentials" in settings.account.text()

    log_in(qtbot, session, url=live_server, email=org.owner.email)
    wait_status(qtbot, session, "up_to_date")
    # the server goes away (as if it now answered on a port nobody listens on; the login is kept):
    # the automatic sync says offline, F5 says why
    replica.set_setting(key="server_url", value="http://127.0.0.1:9")
    session.controller.sync_in_background()
    text = wait_status(qtbot, session, "offline")
    assert text.startswith("Offline: server not reachable; last synced at ")
    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    text = wait_status(qtbot, session, "error")
    assert text.startswith("Sync failed at ") and "cannot reach the server at http://127.0.0.1:9" in text
