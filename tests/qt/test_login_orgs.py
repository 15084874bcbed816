"""Logging in with an account that belongs to several organizations: the Settings page asks which one this
library syncs with (real key clicks in the chooser), attaches to it and pulls that organization's data;
cancelling leaves the library unattached and says so; one organization, or a library attached already, asks
nothing. Against a real server (uvicorn in a thread, embedded SQLite)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from outputhub.common.errors import InvalidInputError
from outputhub.desktop.services.sync import (
    OrganizationChoiceError,
    OrganizationNotChosenError,
    SyncService,
)
from outputhub.desktop.storage.sync_store import LOCAL_ORG, ReplicaSyncStore
from outputhub.desktop.ui.settings import NOT_CHOSEN, OrganizationDialog
from tests.qt.conftest import wait_idle
from tests.qt.test_flows import show
from tests.qt.test_sync import log_in, wait_status
from tests.support.client import PASSWORD, Org, new_org, seed_library


def two_orgs(api) -> tuple[Org, Org]:
    """One owner with two organizations made through the REST API: "First" (one prompt of its own) and
    "Second" (the seeded library)."""
    first = new_org(api, name="First")  # type: ignore[arg-type]  # an httpx.Client speaks like a TestClient
    second = new_org(api, name="Second", owner=first.owner)  # type: ignore[arg-type]
    made = first.owner.post(f"{first.base}/prompts", json={"title": "Only in First", "body": "first"})
    assert made.status_code == 201, made.text
    return first, second


def start_login(qtbot, session, *, url: str, email: str):
    settings = show(qtbot, session, "Settings")
    for edit in (settings.server_url, settings.email, settings.password):
        edit.clear()
    qtbot.keyClicks(settings.server_url, url)
    qtbot.keyClicks(settings.email, email)
    qtbot.keyClicks(settings.password, PASSWORD)
    qtbot.mouseClick(settings.login_button, Qt.MouseButton.LeftButton)
    return settings


def wait_chooser(qtbot, settings) -> OrganizationDialog:
    qtbot.waitUntil(
        lambda: settings.org_chooser is not None and settings.org_chooser.isVisible(), timeout=20_000
    )
    dialog = settings.org_chooser
    assert dialog is not None
    dialog.activateWindow()
    dialog.choice.setFocus()
    qtbot.waitUntil(dialog.choice.hasFocus, timeout=5000)
    return dialog


def choices(dialog: OrganizationDialog) -> list[str]:
    return [dialog.choice.itemText(i) for i in range(dialog.choice.count())]


def prompt_titles(replica) -> set[str]:
    return {p.title for p in replica.list_prompts(limit=100)}


def test_the_chooser_asks_cancel_leaves_the_library_unattached_and_the_choice_attaches(
    qtbot, replica, session, api, live_server
) -> None:
    first, second = two_orgs(api)
    ids = seed_library(second)

    settings = start_login(qtbot, session, url=live_server, email=first.owner.email)
    dialog = wait_chooser(qtbot, settings)
    assert choices(dialog) == ["First (owner)", "Second (owner)"]
    assert dialog.choice.currentText() == "First (owner)", "the first one is suggested"
    assert first.owner.email in dialog.findChild(QLabel, "organization_text").text()

    # Escape: nothing attached, nothing kept, and the page says so
    qtbot.keyClick(dialog.choice, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: settings.org_chooser is None, timeout=5000)
    wait_idle(qtbot, session.runner)
    assert settings.account.text() == NOT_CHOSEN
    assert settings.login_button.isEnabled()
    assert ReplicaSyncStore(replica).org_id() == LOCAL_ORG
    assert not session.sync.settings().logged_in and not session.sync.configured()

    # again: Down picks "Second", Enter uses it; the library is attached to it and its data pulled
    settings = start_login(qtbot, session, url=live_server, email=first.owner.email)
    dialog = wait_chooser(qtbot, settings)
    qtbot.keyClick(dialog.choice, Qt.Key.Key_Down)
    assert dialog.choice.currentText() == "Second (owner)"
    qtbot.keyClick(dialog.choice, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "Logged in as" in settings.account.text(), timeout=20_000)
    assert "organization <b>Second</b>" in settings.account.text()
    assert ReplicaSyncStore(replica).org_id() == second.id
    wait_status(qtbot, session, "up_to_date")
    assert replica.get_output(id=ids["output"]).content == "/home/user", "Second's library was pulled"
    assert prompt_titles(replica) == {"Linux Terminal"}, "nothing of First's"

    # logging in again later asks nothing: the library keeps its organization
    session.sync.logout()
    settings = start_login(qtbot, session, url=live_server, email=first.owner.email)
    qtbot.waitUntil(lambda: "Logged in as" in settings.account.text(), timeout=20_000)
    assert "organization <b>Second</b>" in settings.account.text()
    assert settings.findChildren(OrganizationDialog) == []
    assert ReplicaSyncStore(replica).org_id() == second.id


def test_one_organization_asks_nothing(qtbot, replica, session, api, live_server) -> None:
    org = new_org(api, name="Only")  # type: ignore[arg-type]
    ids = seed_library(org)
    settings = start_login(qtbot, session, url=live_server, email=org.owner.email)
    qtbot.waitUntil(lambda: "Logged in as" in settings.account.text(), timeout=20_000)
    assert "organization <b>Only</b>" in settings.account.text()
    assert settings.org_chooser is None and settings.findChildren(OrganizationDialog) == []
    assert ReplicaSyncStore(replica).org_id() == org.id
    wait_status(qtbot, session, "up_to_date")
    assert replica.get_output(id=ids["output"]).content == "/home/user"


def test_the_service_login_without_the_gui(replica, api, live_server) -> None:
    first, second = two_orgs(api)
    service = SyncService(replica=replica)
    email = first.owner.email

    with pytest.raises(OrganizationChoiceError) as raised:  # headless, several, none given: say which exist
        service.login(server_url=live_server, email=email, password=PASSWORD)
    assert f"First (owner, id {first.id})" in str(raised.value)
    assert f"Second (owner, id {second.id})" in str(raised.value)
    with pytest.raises(OrganizationNotChosenError):
        service.login(server_url=live_server, email=email, password=PASSWORD, choose=lambda _orgs, _s: None)
    with pytest.raises(OrganizationChoiceError, match="not a member of 'Third'"):
        service.login(server_url=live_server, email=email, password=PASSWORD, org="Third")
    assert ReplicaSyncStore(replica).org_id() == LOCAL_ORG
    assert not service.settings().logged_in

    seen: list[str] = []

    def choose(orgs, suggested):
        seen.extend(o.name for o in orgs)
        assert suggested.name == "First"
        return orgs[1]

    s = service.login(server_url=live_server, email=email, password=PASSWORD, choose=choose)
    assert seen == ["First", "Second"]
    assert (s.org_id, s.org_name, s.logged_in) == (second.id, "Second", True)
    assert service.sync().pulled > 0

    # an attached library keeps its organization; an account outside it keeps being refused
    assert service.login(server_url=live_server, email=email, password=PASSWORD).org_id == second.id
    with pytest.raises(InvalidInputError, match="belongs to Second; it cannot move to First"):
        service.login(server_url=live_server, email=email, password=PASSWORD, org="First")
    stranger = new_org(api, name="Elsewhere")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="not a member"):
        service.login(server_url=live_server, email=stranger.owner.email, password=PASSWORD)
    assert ReplicaSyncStore(replica).org_id() == second.id


def test_a_refused_login_shows_again_whom_the_library_syncs_as(
    qtbot, replica, session, api, live_server
) -> None:
    """Logging in as an account of another organization is refused; the page kept the refused email and
    only the error, though the library still synced as before (QA). It shows the account in use again."""
    first = new_org(api, name="Kept account")
    other = new_org(api, name="Not this one")
    log_in(qtbot, session, url=live_server, email=first.owner.email)
    wait_status(qtbot, session, "up_to_date")
    settings = show(qtbot, session, "Settings")
    for field in (settings.email, settings.password):
        field.clear()
    qtbot.keyClicks(settings.email, other.owner.email)
    qtbot.keyClicks(settings.password, PASSWORD)
    qtbot.mouseClick(settings.login_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Still logged in as" in settings.account.text(), timeout=20_000)
    assert "Could not log in" in settings.account.text()
    assert first.owner.email in settings.account.text() and "Kept account" in settings.account.text()
    assert settings.email.text() == first.owner.email
    assert replica.get_setting(key="org_id") == first.id
