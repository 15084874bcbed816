"""The ``outputhub desktop`` command is wired into the CLI."""

from __future__ import annotations

import http.server
import json
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

from typer.testing import CliRunner

from outputhub.desktop.storage import open_replica
from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from outputhub.server.cli import app
from outputhub.sync.client import LocalLibrary
from tests.support.client import PASSWORD, new_org, seed_library
from tests.support.serve import OUTPUTHUB_EXE, clean_env


def replica_exe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``outputhub replica`` on :func:`replica_cli`'s replica as its own process (a real exit, pipe, lock)."""
    command = [OUTPUTHUB_EXE, "replica", "--replica", str(tmp_path / "cli.ohr")]
    return subprocess.run(
        [*command, "--passphrase-file", str(tmp_path / "passphrase"), *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )


def test_desktop_command_is_listed_with_its_replica_option() -> None:
    result = CliRunner().invoke(app, ["desktop", "--help"])
    assert result.exit_code == 0, result.output
    assert "--replica" in result.output and "encrypted" in result.output


# --- `outputhub replica attach --org` against the live test server ---------------------------------------


def replica_cli(tmp_path: Path, *args: str, code: int = 0) -> str:
    secret = tmp_path / "passphrase"
    if not secret.exists():
        secret.write_text("a passphrase for the cli replica")
    result = CliRunner().invoke(
        app, ["replica", "--replica", str(tmp_path / "cli.ohr"), "--passphrase-file", str(secret), *args]
    )
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return result.output


def test_attach_with_several_organizations_needs_org_by_name_or_id(api, live_server, tmp_path: Path) -> None:
    first = new_org(api, name="First")  # type: ignore[arg-type]  # an httpx.Client speaks like a TestClient
    second = new_org(api, name="Second", owner=first.owner)  # type: ignore[arg-type]
    ids = seed_library(second)
    password = tmp_path / "password"
    password.write_text(PASSWORD)
    login = [
        "attach",
        "--server",
        live_server,
        "--email",
        first.owner.email,
        "--password-file",
        str(password),
    ]
    replica_cli(tmp_path, "init")

    out = replica_cli(tmp_path, *login, code=5)  # never asks: says which there are
    assert "several organizations; choose one with --org NAME_OR_ID" in out
    assert f"First (owner, id {first.id})" in out and f"Second (owner, id {second.id})" in out
    out = replica_cli(tmp_path, *login, "--org", "Third", code=5)
    assert "not a member of 'Third'" in out and "Second (owner" in out
    assert "org_id: local" in replica_cli(tmp_path, "status"), "nothing attached"

    out = replica_cli(tmp_path, *login, "--org", "second")  # a name, any case
    assert out.strip() == f"attached to organization Second ({second.id}) on {live_server}"
    assert "pulled" in replica_cli(tmp_path, "sync")
    assert ids["prompt"] in replica_cli(tmp_path, "list", "prompts")

    # attached: --org may be left out (it keeps its organization) but cannot name another one
    assert second.id in replica_cli(tmp_path, *login)
    assert "belongs to organization" in replica_cli(tmp_path, *login, "--org", first.id, code=5)


def test_attach_with_one_organization_needs_no_org(api, live_server, tmp_path: Path) -> None:
    org = new_org(api, name="Solo")  # type: ignore[arg-type]
    password = tmp_path / "password"
    password.write_text(PASSWORD)
    replica_cli(tmp_path, "init")
    out = replica_cli(
        tmp_path,
        "attach",
        "--server",
        live_server,
        "--email",
        org.owner.email,
        "--password-file",
        str(password),
    )
    assert f"Solo ({org.id})" in out
    key = tmp_path / "key"
    key.write_text("ohk_not_a_real_key")
    out = replica_cli(tmp_path, "attach", "--server", live_server, "--api-key-file", str(key), code=5)
    assert "--api-key-file needs --org" in out


def test_replica_export_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """The export is the library decrypted: 0600 like the replica (it was -rw-r--r--; found by QA)."""
    previous = os.umask(0o022)
    try:
        replica_cli(tmp_path, "init")
        replica_cli(tmp_path, "add", "prompt", "--set", "title=Secret plans", "--set", "body=do not share")
        assert stat.S_IMODE((tmp_path / "cli.ohr").stat().st_mode) == 0o600
        fresh = tmp_path / "lib.json"
        replica_cli(tmp_path, "export", "-o", str(fresh))
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
        assert [p["title"] for p in json.loads(fresh.read_text())["prompts"]] == ["Secret plans"]
        there = tmp_path / "there.json"  # a file already there, readable by everyone, and longer
        there.write_text("x" * 100_000)
        there.chmod(0o644)
        replica_cli(tmp_path, "export", "-o", str(there))
        assert stat.S_IMODE(there.stat().st_mode) == 0o600
        assert json.loads(there.read_text()) == json.loads(fresh.read_text())
    finally:
        os.umask(previous)


def test_output_cut_short_by_its_reader_ends_quietly(tmp_path: Path) -> None:
    """``replica export | head`` closes the pipe before the export is written: the command exits 141 (as a
    tool the pipe's signal stopped) and says nothing on stderr. It said "error: cannot use a file: Broken
    pipe" with exit 2 (QA); the replica is untouched either way."""
    replica_cli(tmp_path, "init")
    replica_cli(tmp_path, "add", "prompt", "--set", "title=Piped", "--set", "body=text")
    command = [
        OUTPUTHUB_EXE,
        "replica",
        "--replica",
        str(tmp_path / "cli.ohr"),
        "--passphrase-file",
        str(tmp_path / "passphrase"),
    ]
    for args in (["export"], ["--json", "list", "prompt"]):
        run = subprocess.Popen(
            [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env()
        )
        assert run.stdout is not None and run.stderr is not None
        run.stdout.close()  # the reader is gone before the first line
        error = run.stderr.read().decode()
        assert run.wait(timeout=60) == 141, (args, error)
        assert error == "", args
    assert "Piped" in replica_cli(tmp_path, "list", "prompt")


class _NotOutputHub(http.server.BaseHTTPRequestHandler):
    """Another web server at the address given as the Output Hub server: a page of HTML for everything."""

    def _page(self) -> None:
        body = b"<html><head><title>Welcome to nginx!</title></head><body>\n<h1>Welcome</h1>\n</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._page()

    def do_POST(self) -> None:
        self._page()

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_that_answers_with_a_web_page_is_said_in_a_line(tmp_path: Path) -> None:
    """Attaching or syncing to an address where another web server answers 200 with HTML: a traceback
    ending in JSONDecodeError, exit 1 and nothing on stdout with --json (QA; attach said "Expecting value"
    with exit 5). Now exit 3, as for a server that does not answer, naming the page and --server, the local
    edits kept; the HTML's markup is not printed."""
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotOutputHub)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{web.server_address[1]}"
    try:
        replica_cli(tmp_path, "init")
        password = tmp_path / "password"
        password.write_text("a password")
        login = ["--email", "a@example.com", "--password-file", str(password)]
        said = replica_cli(tmp_path, "attach", "--server", url, *login, code=3)
        assert "could not be read (200, text/html: 'Welcome to nginx!')" in said and "check --server" in said
        assert "<h1>" not in said and "Traceback" not in said
        key = tmp_path / "key"
        key.write_text("ohk_a_key")
        org = "01a22909-0000-7000-8000-000000000000"
        replica_cli(tmp_path, "attach", "--server", url, "--org", org, "--api-key-file", str(key))
        replica_cli(tmp_path, "add", "tag", "--set", "name=kept")
        run = replica_exe(tmp_path, "--json", "sync")
        assert run.returncode == 3, run.stderr
        answer = json.loads(run.stdout)
        assert answer["exit"] == 3 and "could not be read" in answer["error"], answer
        assert "local edits are kept" in answer["error"] and "Traceback" not in run.stderr
        assert json.loads(replica_cli(tmp_path, "--json", "status"))["pending"] == 1
    finally:
        web.shutdown()
        web.server_close()


def test_a_passphrase_from_the_environment_ends_at_its_line_ending_as_a_files_does(tmp_path: Path) -> None:
    """``OUTPUTHUB_PASSPHRASE`` with a trailing newline (a secret read from a file or a container's store)
    made that newline part of the key: the replica then opened through the variable only, never from a file
    or as typed (QA, a lock-out). The variable is now read as a file's first line is; a replica made the old
    way still opens through the variable as it was given."""

    def cli(*args: str, env: dict[str, str], code: int = 0) -> str:
        result = CliRunner().invoke(app, ["replica", "--replica", str(tmp_path / "env.ohr"), *args], env=env)
        assert result.exit_code == code, (args, result.output)
        return result.output

    cli("init", env={"OUTPUTHUB_PASSPHRASE": "newline passphrase\r\n"})
    cli("add", "tag", "--set", "name=made", env={"OUTPUTHUB_PASSPHRASE": "newline passphrase\n"})
    typed = tmp_path / "typed"
    typed.write_text("newline passphrase\n")
    assert "made" in cli("--passphrase-file", str(typed), "list", "tag", env={})
    assert "passphrase" in cli("status", env={"OUTPUTHUB_PASSPHRASE": "\n"}, code=2)
    cli("status", env={"OUTPUTHUB_PASSPHRASE": "newline passphrase\nsecond line, not part of it"})

    older = tmp_path / "older.ohr"  # made before: the newline is part of its key
    open_replica(older, passphrase="older passphrase\n", create=True).close()
    as_given = {"OUTPUTHUB_PASSPHRASE": "older passphrase\n"}
    result = CliRunner().invoke(app, ["replica", "--replica", str(older), "status"], env=as_given)
    assert result.exit_code == 0, result.output
    wrong = CliRunner().invoke(
        app, ["replica", "--replica", str(older), "status"], env={"OUTPUTHUB_PASSPHRASE": "not it\n"}
    )
    assert wrong.exit_code == 2 and "does not unlock" in wrong.output


def test_ctrl_c_while_the_command_loads_is_said_in_a_line(tmp_path: Path) -> None:
    """Ctrl+C in the first half second, while the command's modules load, printed a traceback from the
    middle of an import, and with --json nothing on stdout (QA). Whenever it comes, it exits 130 with one
    line (and the JSON error object with --json)."""
    command = [OUTPUTHUB_EXE, "replica", "--replica", str(tmp_path / "none.ohr"), "--json", "status"]
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
    )
    time.sleep(0.15)  # the interpreter is up (its Ctrl+C handler too), the imports are not done
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and stderr.startswith("error: interrupted (Ctrl+C)"), stderr
    assert json.loads(stdout)["exit"] == 130


def test_a_command_waits_for_another_holding_the_replica(tmp_path: Path) -> None:
    """An edit made while a sync held the replica for longer than 5 s (a large push on a loaded machine)
    failed with "the replica is locked" (QA): a command waits for the other to finish."""
    replica_cli(tmp_path, "init")
    secret = (tmp_path / "passphrase").read_text()
    holder = open_replica(tmp_path / "cli.ohr", passphrase=secret)
    holding, released = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.writing("hold the replica as a long sync does"):
            holding.set()
            time.sleep(7)
        released.set()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(30)
        run = replica_exe(tmp_path, "add", "tag", "--set", "name=waited")
        assert run.returncode == 0, run.stderr
        assert released.is_set(), "it waited for the holder"
    finally:
        thread.join()
        holder.close()
    assert "waited" in replica_cli(tmp_path, "list", "tag")


def test_restoring_a_tag_puts_it_back_on_the_records_its_delete_took_it_off(tmp_path: Path) -> None:
    """``replica restore tag`` brought the tag back on none of its records until the next sync (QA re-check;
    the desktop's Undo puts them back): it now does so at once, except where the field was edited since."""
    replica_cli(tmp_path, "init")
    tag = replica_cli(tmp_path, "add", "tag", "--set", "name=draft").strip()
    other = replica_cli(tmp_path, "add", "tag", "--set", "name=other").strip()
    tagged = ["--set", "body=b", "--set", f"tag_ids={tag}"]
    kept = replica_cli(tmp_path, "add", "prompt", "--set", "title=K", *tagged).strip()
    edited = replica_cli(tmp_path, "add", "prompt", "--set", "title=E", *tagged).strip()
    assert "taken off 2 record(s)" in replica_cli(tmp_path, "delete", "tag", tag)
    replica_cli(tmp_path, "edit", "prompt", edited, "--set", f"tag_ids={other}")
    said = json.loads(replica_cli(tmp_path, "--json", "restore", "tag", tag))
    assert said["records_relinked"] == 1
    assert json.loads(replica_cli(tmp_path, "--json", "show", "prompt", kept))["tag_ids"] == [tag]
    assert json.loads(replica_cli(tmp_path, "--json", "show", "prompt", edited))["tag_ids"] == [other]


def test_a_login_made_in_the_desktop_or_on_the_command_line_serves_both(
    api, live_server, tmp_path: Path
) -> None:
    """The desktop and ``outputhub replica`` kept their logins under keys of their own: a replica logged in
    by one was "not attached to a server" to the other, or "Not logged in" (QA). One layout now, and a login
    the command line saved the old way is taken over by either."""
    from outputhub.desktop.services.sync import SyncService

    org = new_org(api, name="Shared login")  # type: ignore[arg-type]
    ids = seed_library(org)
    password = tmp_path / "password"
    password.write_text(PASSWORD)
    replica_cli(tmp_path, "init")
    login = ("attach", "--server", live_server, "--email", org.owner.email, "--password-file", str(password))
    replica_cli(tmp_path, *login)
    replica_cli(tmp_path, "add", "tag", "--set", "name=made on the command line")
    secret = (tmp_path / "passphrase").read_text()

    def titles() -> set[str]:
        return {t["name"] for t in api.get(f"{org.base}/tags", headers=org.owner.headers).json()["items"]}

    with open_replica(tmp_path / "cli.ohr", passphrase=secret) as replica:  # the desktop opens it
        service = SyncService(replica=replica)
        assert service.configured() and service.settings().org_id == org.id
        assert service.sync().pushed == 1
        assert "made on the command line" in titles()
        service.logout()
    assert "not logged in" in replica_cli(tmp_path, "sync", code=4)

    with open_replica(tmp_path / "cli.ohr", passphrase=secret) as replica:  # logged in again in the desktop
        SyncService(replica=replica).login(server_url=live_server, email=org.owner.email, password=PASSWORD)
    replica_cli(tmp_path, "add", "tag", "--set", "name=after the desktop's login")
    assert "pushed 1" in replica_cli(tmp_path, "sync")
    assert "after the desktop's login" in titles()

    key = api.post(f"{org.base}/api-keys", json={"name": "k", "scope": "write"}, headers=org.owner.headers)
    assert key.status_code == 201, key.text
    with open_replica(tmp_path / "cli.ohr", passphrase=secret) as replica:  # saved as the command line did
        for name, value in (("api_key", None), ("refresh_token", None), ("access_token", None)):
            replica.set_setting(key=name, value=value)
        replica.set_setting(key="auth_kind", value="apikey")
        replica.set_setting(key="credential", value=key.json()["key"])
        replica.set_setting(key="org_id", value=None)
        service = SyncService(replica=replica)
        assert service.configured() and service.settings().org_id == org.id
        assert replica.get_setting(key="credential") is None
        LocalLibrary(ReplicaSyncStore(replica)).create("tag", {"name": "with the key, in the desktop"})
        assert service.sync().pushed == 1
    assert "with the key, in the desktop" in titles()
    assert "pushed 0" in replica_cli(tmp_path, "sync")
    assert ids["prompt"] in replica_cli(tmp_path, "list", "prompts")

    # a login the server refuses on the command line is forgotten there, as the desktop forgets it: both say
    # "log in again" (the desktop still said it was logged in; QA)
    with open_replica(tmp_path / "cli.ohr", passphrase=secret) as replica:
        SyncService(replica=replica).login(server_url=live_server, email=org.owner.email, password=PASSWORD)
        replica.set_setting(key="refresh_token", value="revoked")
    assert "expired or was revoked" in replica_cli(tmp_path, "sync", code=4)
    with open_replica(tmp_path / "cli.ohr", passphrase=secret) as replica:
        problem = SyncService(replica=replica).setup_problem()
    assert problem == f"Offline: not logged in to {live_server} any more: log in again (Settings)"
    # an API key attached after an email login leaves no email behind (the desktop showed the old one; QA)
    (tmp_path / "key").write_text(key.json()["key"])
    by_key = ("attach", "--server", live_server, "--org", org.id, "--api-key-file", str(tmp_path / "key"))
    replica_cli(tmp_path, *by_key)
    with open_replica(tmp_path / "cli.ohr", passphrase=secret) as replica:
        shown = SyncService(replica=replica).settings()
    assert shown.logged_in and shown.email == ""
