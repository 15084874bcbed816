"""Sync through the GUI against a real server (uvicorn in a thread, embedded SQLite): log in, pull the
library, push an offline edit, see a conflict opened by another device and resolve it in the panel. The app
syncs in a child process (``outputhub.desktop.sync_worker``) on the same replica file; the tests below also
drive that process directly: progress, an edit made while it writes, cancelling it, expired and revoked
logins, a passphrase change."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from PySide6.QtCore import Qt

from outputhub.desktop.jobs.sync_controller import SyncController, SyncRunningError
from outputhub.desktop.jobs.sync_process import ProcessSync, SyncWorkerError
from outputhub.desktop.services.sync import SyncService
from outputhub.desktop.storage import cipher
from outputhub.desktop.storage.sync_store import DEFER_INDEX_ROWS, ReplicaSyncStore
from outputhub.desktop.sync_worker import EXIT_FAILED, EXIT_OK, SyncRequest
from outputhub.desktop.sync_worker import main as worker_main
from outputhub.sync.client import SyncReport
from tests.qt.conftest import PASSPHRASE, wait_idle
from tests.qt.support import library_for
from tests.qt.test_flows import show
from tests.support.client import PASSWORD, Org, new_org, seed_library
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
    http = httpx.Client(base_url=live_server, timeout=30)
    other = make_device(
        tmp_path, "laptop", http=http, base_url=live_server, token=org.owner.token, org_id=org.id
    )
    other.sync()
    other.library.edit("prompt", ids["prompt"], {"title": "Laptop title"})
    other.sync()
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

    # the laptop edits its title again before it has seen this edit: the same conflict, its other side
    # changed (a conflict is one pair of writes, so it comes back under a new id): not a new one
    other.library.edit("prompt", ids["prompt"], {"title": "Laptop title, again"})
    other.sync()
    other.replica.close()
    http.close()
    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    text = wait_status(qtbot, session, "up_to_date")
    assert "1 conflict(s) changed" in text and "new conflict" not in text
    qtbot.waitUntil(lambda: "1 conflict" in session.window.conflict_label.text(), timeout=5000)

    conflicts = show(qtbot, session, "Conflicts")
    qtbot.waitUntil(lambda: conflicts.model.rowCount() == 1, timeout=5000)
    conflicts.list.select_id(conflicts.model.row_at(0).id)
    assert conflicts.mine.toPlainText() == "Desktop title"
    assert conflicts.mine_label.text() == "<b>Mine (this computer)</b>"
    assert conflicts.theirs_label.text() == "<b>Theirs (another computer)</b>"
    assert conflicts.theirs.toPlainText() == "Laptop title, again"
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


# --- the sync process --------------------------------------------------------------------------------------


def seed_outputs(org: Org, prompt_id: str, count: int) -> None:
    for start in range(0, count, 500):
        items = [
            {"prompt_id": prompt_id, "content": f"bulk output {n}"}
            for n in range(start, min(count, start + 500))
        ]
        response = org.owner.post(f"{org.base}/outputs/bulk", json={"items": items})
        assert response.status_code == 201, response.text


def process_controller(session, replica, *, pull_page: int) -> tuple[SyncController, ProcessSync]:
    """A controller over the app's service with a sync process pulling ``pull_page`` records per request
    (small pages: many progress reports, and time to act while it runs)."""
    background = ProcessSync(replica_path=replica.path, key=replica.key_material, pull_page=pull_page)
    controller = SyncController(
        service=session.sync, runner=session.runner, background=background, interval_ms=3_600_000
    )
    background.setParent(controller)
    return controller, background


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_sync_runs_in_a_child_process_and_reports_progress(qtbot, replica, session, api, live_server):
    org = new_org(api, name="Progress")  # type: ignore[arg-type]
    ids = seed_library(org)
    seed_outputs(org, ids["prompt"], 600)
    session.sync.login(server_url=live_server, email=org.owner.email, password=PASSWORD, auto_sync=False)
    controller, background = process_controller(session, replica, pull_page=50)
    statuses, reports = [], []
    controller.status_changed.connect(statuses.append)
    controller.synced.connect(reports.append)

    assert controller.sync_now()
    assert not controller.sync_now(), "one sync at a time"
    qtbot.waitUntil(lambda: background.pid != 0, timeout=5000)
    pid = background.pid
    assert pid != os.getpid()
    if sys.platform.startswith("linux"):  # the key travels over a pipe, never argv or the environment
        try:
            exposed = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:  # already finished
            exposed = b""
        assert PASSPHRASE.encode() not in exposed
    qtbot.waitUntil(lambda: controller.status.state != "syncing", timeout=60_000)

    assert controller.status.state == "up_to_date", controller.status.text
    assert controller.status.text.startswith("Up to date at ")
    pulls = [s for s in statuses if s.text.startswith("Syncing: pull ")]
    assert len(pulls) >= 10, [s.text for s in statuses]  # ~one per page of 50
    # a share of the way: the pull counts revisions, which are not records
    assert all(s.state == "syncing" and s.text.endswith("%") and s.total for s in pulls)
    assert pulls[-1].text == "Syncing: pull 100%"
    assert pulls[-1].done == pulls[-1].total
    assert [p.done for p in pulls] == sorted(p.done for p in pulls)
    assert len(reports) == 1 and isinstance(reports[0], SyncReport) and reports[0].pulled >= 601
    assert reports[0].checksum_ok is True
    assert replica.count_live(table="outputs") == 601, "the GUI's connection sees what the worker wrote"
    assert not background.running and process_gone(pid)


def test_an_edit_during_the_sync_waits_its_turn_and_a_cancel_stops_the_process(
    qtbot, replica, session, api, live_server
):
    org = new_org(api, name="Cancel")  # type: ignore[arg-type]
    ids = seed_library(org)
    seed_outputs(org, ids["prompt"], 1500)
    session.sync.login(server_url=live_server, email=org.owner.email, password=PASSWORD, auto_sync=False)
    # small pages: the sync must still be running when it is cancelled (1,500 outputs in pages of 20 were
    # all in before the cancel once pulls got faster)
    controller, background = process_controller(session, replica, pull_page=4)

    assert controller.sync_now()
    qtbot.waitUntil(lambda: controller.status.text.startswith("Syncing: pull "), timeout=30_000)
    # an edit while the worker writes pages: it waits for the page's transaction (busy timeout), then lands
    started = time.perf_counter()
    tag = library_for(replica).create("tag", {"name": "made during the sync"})
    assert time.perf_counter() - started < 5
    with pytest.raises(SyncRunningError), controller.syncs_paused():  # e.g. a passphrase change waits
        pass

    pid = background.pid
    started = time.perf_counter()
    assert controller.cancel(wait_ms=10_000)
    assert time.perf_counter() - started < 5, "stopping takes at most the worker's grace period"
    assert not background.running and not controller.running and process_gone(pid)
    assert controller.status.state == "offline" and controller.status.text.startswith("Sync stopped")
    cursor = ReplicaSyncStore(replica).cursor(server_url=live_server, org_id=org.id)
    assert cursor > 0 and replica.count_live(table="outputs") < 1501, "stopped half-way"
    assert replica.verify_integrity() == []
    assert [e.record_id for e in replica.pending_outbox()] == [tag], "the edit is still queued"
    with controller.syncs_paused():
        assert not controller.sync_now(), "no sync starts while paused"

    assert controller.sync_now()  # the next sync resumes from the cursor the stopped one saved
    qtbot.waitUntil(lambda: controller.status.state != "syncing", timeout=60_000)
    assert controller.status.state == "up_to_date", controller.status.text
    assert replica.count_live(table="outputs") == 1501
    assert replica.pending_outbox() == []
    assert "made during the sync" in {t["name"] for t in org.owner.get(f"{org.base}/tags").json()["items"]}


def test_expired_login_refreshed_by_the_process_revoked_told_in_words(
    qtbot, replica, session, api, live_server
):
    org = new_org(api, name="Tokens")  # type: ignore[arg-type]
    seed_library(org)
    log_in(qtbot, session, url=live_server, email=org.owner.email)
    wait_status(qtbot, session, "up_to_date")

    # the access token expired: the sync process swaps the refresh token for new ones and keeps them
    replica.set_setting(key="access_token", value="expired")
    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    assert wait_status(qtbot, session, "up_to_date").startswith("Up to date at ")
    assert replica.get_setting(key="access_token") not in ("expired", None)

    # a passphrase change while no sync runs: the next sync process opens the file with the new key
    settings = show(qtbot, session, "Settings")
    qtbot.keyClicks(settings.old, PASSPHRASE)
    qtbot.keyClicks(settings.new, "a brand new passphrase")
    qtbot.keyClicks(settings.confirm, "a brand new passphrase")
    qtbot.mouseClick(settings.rekey_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: settings.rekey_message.text().startswith("Passphrase changed"), timeout=20_000)
    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    assert wait_status(qtbot, session, "up_to_date").startswith("Up to date at ")

    # both tokens revoked: told in words, nothing lost
    replica.set_setting(key="access_token", value="revoked")
    replica.set_setting(key="refresh_token", value="revoked")
    qtbot.keyClick(session.window, Qt.Key.Key_F5)
    text = wait_status(qtbot, session, "error")
    assert text.startswith("Sync failed at ") and "your login has expired: log in again in Settings" in text
    # Settings and the status bar then say the login is gone, not that no server is set up (QA)
    show(qtbot, session, "Prompts")
    settings = show(qtbot, session, "Settings")
    qtbot.waitUntil(lambda: "any more" in settings.account.text(), timeout=5000)
    assert f"Not logged in to {live_server} any more" in settings.account.text()
    assert "organization <b>Tokens</b>" in settings.account.text()
    text = wait_status(qtbot, session, "not_configured")
    assert text == f"Offline: not logged in to {live_server} any more: log in again (Settings)"


def test_the_in_process_mode_syncs_on_a_runner_thread(qtbot, replica, session, api, live_server):
    """``ThreadSync``, the controller's default (the benchmark's "before"): same statuses, no process."""
    org = new_org(api, name="Thread")  # type: ignore[arg-type]
    ids = seed_library(org)
    session.sync.login(server_url=live_server, email=org.owner.email, password=PASSWORD, auto_sync=False)
    controller = SyncController(service=session.sync, runner=session.runner, interval_ms=3_600_000)
    assert controller.sync_now()
    qtbot.waitUntil(lambda: controller.status.state != "syncing", timeout=30_000)
    assert controller.status.text.startswith("Up to date at "), controller.status.text
    assert replica.get_output(id=ids["output"]) is not None
    replica.set_setting(key="server_url", value="http://127.0.0.1:9")
    assert controller.sync_in_background()
    qtbot.waitUntil(lambda: controller.status.state != "syncing", timeout=30_000)
    assert controller.status.text.startswith("Offline: server not reachable; last synced at ")


def test_the_last_sync_is_told_after_the_app_is_opened_again(qtbot, replica, session, api, live_server):
    """The status bar said "Not synced yet" after every start until the first sync, and an offline start
    never said when the library last synced: the time is kept in the library (QA)."""
    org = new_org(api, name="Last sync")  # type: ignore[arg-type]
    session.sync.login(server_url=live_server, email=org.owner.email, password=PASSWORD, auto_sync=False)
    assert session.sync.sync().checksum_ok
    synced = session.sync.last_synced()
    assert synced is not None and abs((datetime.now(UTC) - synced).total_seconds()) < 60
    reopened = SyncController(service=session.sync, runner=session.runner, interval_ms=3_600_000)
    reopened.refresh_configuration()
    qtbot.waitUntil(lambda: reopened.status.state == "offline", timeout=5000)
    shown = synced.astimezone().replace(tzinfo=None)
    assert reopened.status.text == f"Last synced at {shown:%H:%M}: press F5 or wait for the automatic sync"
    replica.set_setting(key="server_url", value="http://127.0.0.1:9")
    assert reopened.sync_in_background()
    qtbot.waitUntil(lambda: reopened.status.state != "syncing", timeout=30_000)
    assert reopened.status.text == f"Offline: server not reachable; last synced at {shown:%H:%M}"


def test_a_worker_that_dies_or_cannot_start_is_an_error_in_words(qtbot, replica, session):
    crash = [sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(7)"]
    errors: list[Exception] = []
    for command, expected in (
        (crash, "exited with status 7 before finishing: boom"),
        (["/nonexistent/python"], "cannot start"),
    ):
        background = ProcessSync(replica_path=replica.path, key=replica.key_material, command=command)
        background.start(
            only_if_reachable=False,
            on_progress=lambda *_: None,
            on_done=errors.append,
            on_error=errors.append,
        )
        qtbot.waitUntil(lambda n=len(errors): len(errors) > n, timeout=10_000)
        assert isinstance(errors[-1], SyncWorkerError) and expected in str(errors[-1]), errors[-1]
        assert not background.running


def test_the_worker_refuses_a_malformed_request_and_never_echoes_the_key() -> None:
    request = SyncRequest(Path("/tmp/x.ohb"), b"s\xc3\xa9cret", only_if_reachable=True, pull_page=300)
    assert SyncRequest.decode(request.encode()) == request
    sized = SyncRequest(Path("/tmp/x.ohb"), b"k", pull_page=300, page_size=4096)
    assert SyncRequest.decode(sized.encode()) == sized
    older = b'{"protocol": 1, "replica": "/tmp/x.ohb", "key": "aw==", "pull_page": 300}'  # an older app's
    assert SyncRequest.decode(older).page_size == 0
    for line in (b"", b"{}", b"not json", b'{"protocol": 1, "replica": "x", "key": "%%%"}'):
        with pytest.raises(ValueError) as caught:
            SyncRequest.decode(line)
        assert "cret" not in str(caught.value)


def run_worker(request: SyncRequest) -> tuple[int, list[dict]]:
    """The worker's ``main`` in this process (no stdin watch), with its events."""
    stdout = io.BytesIO()
    code = worker_main(io.BytesIO(request.encode()), stdout, watch_stdin=False)
    return code, [json.loads(line) for line in stdout.getvalue().splitlines()]


def test_the_worker_answers_in_json_lines(replica, api, live_server) -> None:
    key = replica.key_material()
    assert run_worker(SyncRequest(replica.path, key)) == (
        EXIT_OK,
        [{"event": "done", "outcome": "not_configured"}],
    )
    wrong = cipher.derive_key(b"not the passphrase", cipher.file_salt(replica.path))
    code, events = run_worker(SyncRequest(replica.path, wrong))
    assert code == EXIT_FAILED and events[-1]["error"] == "WrongPassphraseError"
    assert "passphrase does not unlock" in events[-1]["message"]
    code, events = run_worker(SyncRequest(replica.path, b"a passphrase, not the key"))  # never derived here
    assert code == EXIT_FAILED and events[-1]["error"] == "ValueError"
    assert "not a replica's key" in events[-1]["message"]

    org = new_org(api, name="Lines")  # type: ignore[arg-type]
    seed_library(org)
    SyncService(replica=replica).login(server_url=live_server, email=org.owner.email, password=PASSWORD)
    code, events = run_worker(SyncRequest(replica.path, key, pull_page=2))
    assert code == EXIT_OK
    assert {e["event"] for e in events[:-1]} == {"progress"} and len(events) > 3
    assert events[-1]["event"] == "done" and events[-1]["outcome"] == "synced"
    assert events[-1]["report"]["checksum_ok"] is True and events[-1]["report"]["pulled"] > 0
    replica.set_setting(key="server_url", value="http://127.0.0.1:9")
    code, events = run_worker(SyncRequest(replica.path, key, only_if_reachable=True))
    assert (code, events) == (EXIT_OK, [{"event": "done", "outcome": "unreachable"}])
    code, events = run_worker(SyncRequest(replica.path, key))
    assert code == EXIT_FAILED and events[-1]["error"] == "ServerUnreachableError"
    assert "cannot reach the server at http://127.0.0.1:9" in events[-1]["message"]


def test_a_desktop_sync_that_outlasts_two_access_tokens_renews_each_in_place(
    replica, api, live_server, monkeypatch
) -> None:
    """The desktop renewed an expired access token by starting the whole sync again, once: a first sync of
    a large library that outlasted two tokens stopped with "log in again". Its remote now renews the token
    on a 401 and sends the request again, as the CLI's does, keeping the rotated login."""
    import outputhub.desktop.services.sync as sync_module

    org = new_org(api, name="Long sync")  # type: ignore[arg-type]
    seed_library(org)
    expired: list[int] = []

    class TokensRunOut(sync_module.HttpRemote):  # the real remote; its token stops working twice
        sent = 0

        def _request(self, method: str, url: str, is_json: bool, **kwargs: object) -> httpx.Response:
            TokensRunOut.sent += 1
            if TokensRunOut.sent in (2, 4):
                expired.append(TokensRunOut.sent)
                self._use("an-access-token-the-server-no-longer-takes")
            return super()._request(method, url, is_json, **kwargs)

    service = SyncService(replica=replica, pull_page=3)
    service.login(server_url=live_server, email=org.owner.email, password=PASSWORD)
    first_login = replica.get_setting(key="refresh_token")
    monkeypatch.setattr(sync_module, "HttpRemote", TokensRunOut)
    report = service.sync()
    assert expired == [2, 4] and TokensRunOut.sent > 6  # pages of 3: many requests, two tokens run out
    assert report.checksum_ok is True
    prompts = org.owner.get(f"{org.base}/prompts").json()["items"]
    assert replica.count_live(table="prompts") == len(prompts) > 0
    assert replica.get_setting(key="refresh_token") not in (first_login, None)
    assert service.sync().checksum_ok is True  # the renewed login is kept and still works


def test_a_large_pull_is_shown_while_it_is_indexed_and_then_found(qtbot, replica, session, api, live_server):
    """A pulled page of many new outputs is stored without indexing their text; the worker indexes it after
    the sync, saying so, and the lists are refreshed as soon as the records are stored."""
    org = new_org(api, name="Indexing")  # type: ignore[arg-type]
    ids = seed_library(org)
    seed_outputs(org, ids["prompt"], DEFER_INDEX_ROWS + 100)
    session.sync.login(server_url=live_server, email=org.owner.email, password=PASSWORD, auto_sync=False)
    controller, _background = process_controller(session, replica, pull_page=5000)
    statuses: list = []
    order: list = []
    controller.status_changed.connect(statuses.append)
    controller.stored.connect(lambda: order.append(("stored", replica.count_live(table="outputs"))))
    controller.synced.connect(lambda _report: order.append(("synced", replica.search_backlog())))
    assert controller.sync_now()
    qtbot.waitUntil(lambda: controller.status.state != "syncing", timeout=60_000)

    assert controller.status.state == "up_to_date", controller.status.text
    total = DEFER_INDEX_ROWS + 101
    assert order == [("stored", total), ("synced", 0)], "shown when stored, found when synced"
    indexing = [s for s in statuses if s.text.startswith("Indexing for search: ")]
    assert indexing[0].done == 0 and indexing[-1].done == indexing[-1].total == total, indexing
    assert indexing[-1].text == f"Indexing for search: {total:,} of {total:,}"
    assert len(replica.search_outputs("bulk", limit=10_000)) == total - 1


def left_to_index(replica, session, api, live_server, name: str) -> int:
    """A replica logged in to a new organization of 600 outputs and synced by a sync that stopped after its
    pull (a worker killed while indexing): returns how many records wait for the index."""
    from outputhub.sync.client import HttpRemote, SyncClient

    org = new_org(api, name=name)  # type: ignore[arg-type]
    ids = seed_library(org)
    seed_outputs(org, ids["prompt"], DEFER_INDEX_ROWS + 100)
    session.sync.login(server_url=live_server, email=org.owner.email, password=PASSWORD, auto_sync=False)
    remote = HttpRemote(live_server, token=replica.get_setting(key="access_token"), org_id=org.id)
    try:
        SyncClient(ReplicaSyncStore(replica), remote).sync()
    finally:
        remote.close()
    waiting = replica.search_backlog()
    assert waiting > DEFER_INDEX_ROWS
    return waiting


def test_a_logged_out_replica_is_indexed_by_the_next_sync_run(qtbot, replica, session, api, live_server):
    """Logged out (Settings, Log out) after a sync stopped while indexing: the sync process is started all
    the same, indexes, and answers that no server is set up (QA: it answered that at once, and the records
    stayed out of every search)."""
    left_to_index(replica, session, api, live_server, "Logged out")
    session.sync.logout()
    controller, _background = process_controller(session, replica, pull_page=500)
    assert controller.sync_in_background()
    qtbot.waitUntil(lambda: controller.status.state not in ("syncing",), timeout=60_000)
    assert controller.status.state == "not_configured", controller.status.text
    assert replica.search_backlog() == 0
    assert len(replica.search_outputs("bulk", limit=10_000)) == DEFER_INDEX_ROWS + 100


def test_a_search_says_how_many_records_wait_to_be_indexed(qtbot, replica, session, api, live_server):
    waiting = left_to_index(replica, session, api, live_server, "Waiting")

    outputs = show(qtbot, session, "Outputs")
    outputs.list.search.setFocus()
    qtbot.keyClicks(outputs.list.search, "bulk")
    expected = f"0 shown of 0 matches; {waiting:,} more still being indexed for search"
    qtbot.waitUntil(lambda: outputs.list.status.text() == expected, timeout=5000)

    # the app reopened offline: its automatic sync indexes what was left, and says it is offline
    replica.set_setting(key="server_url", value="http://127.0.0.1:9")
    controller, _background = process_controller(session, replica, pull_page=500)
    statuses: list = []
    controller.status_changed.connect(statuses.append)
    assert controller.sync_in_background()
    qtbot.waitUntil(lambda: controller.status.state != "syncing", timeout=60_000)
    assert controller.status.state == "offline", controller.status.text
    assert replica.search_backlog() == 0
    assert statuses[-2].text == f"Indexing for search: {waiting:,} of {waiting:,}"
    outputs.list.search.setText("bulk output")
    qtbot.waitUntil(lambda: outputs.list.status.text().startswith("200 shown of "), timeout=5000)
    assert "indexed" not in outputs.list.status.text()
