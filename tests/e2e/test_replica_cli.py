"""`outputhub replica ...` against a real `outputhub serve` process on PostgreSQL, over real HTTP.

Two workstations (two encrypted replicas) edit offline, sync, meet a conflict and resolve it from the CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from outputhub.desktop.storage import open_replica
from outputhub.server.cli import app
from tests.e2e.support import Account, new_account, serving
from tests.support.serve import OUTPUTHUB_EXE, clean_env, free_port

pytestmark = pytest.mark.postgres
PASSWORD = "a long password"


@pytest.fixture(scope="module")
def server(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(pg_url, tmp_path_factory.mktemp("serve")) as base:
        yield base


class Workstation:
    def __init__(self, directory: Path, name: str) -> None:
        self.replica = directory / f"{name}.ohr"
        self.secret = directory / f"{name}.pass"
        self.secret.write_text("a passphrase for " + name)
        self.runner = CliRunner()

    def run(self, *args: str, code: int = 0, passphrase: Path | None = None) -> str:
        base = [
            "replica",
            "--replica",
            str(self.replica),
            "--passphrase-file",
            str(passphrase or self.secret),
        ]
        result = self.runner.invoke(app, [*base, *args])
        assert result.exit_code == code, (args, result.exit_code, result.output)
        return result.output

    def attach(self, server: str, org: str, email: str) -> str:
        """Log this replica in to ``org`` on ``server`` as ``email`` (password ``PASSWORD``, from a file)."""
        password_file = self.replica.with_name(f"{self.replica.stem}.password")
        password_file.write_text(PASSWORD)
        return self.run(
            "attach",
            "--server",
            server,
            "--org",
            org,
            "--email",
            email,
            "--password-file",
            str(password_file),
        )

    def json(self, *args: str, code: int = 0) -> object:
        base = ["replica", "--replica", str(self.replica), "--passphrase-file", str(self.secret), "--json"]
        result = self.runner.invoke(app, [*base, *args])
        assert result.exit_code == code, (args, result.output)
        return json.loads(result.stdout)


def attached(directory: Path, server: str, account: Account, *names: str) -> list[Workstation]:
    """New replicas named ``names``, each made (``init``) and logged in to ``account``'s organization."""
    made = [Workstation(directory, name) for name in names]
    for ws in made:
        ws.run("init")
        ws.attach(server, account.org_id, account.email)
    return made


def test_two_workstations_edit_offline_sync_and_resolve_a_conflict(server: str, tmp_path: Path) -> None:
    account = new_account(server, email="curator@example.com", password=PASSWORD, org_name="CLI")
    email, headers, org = account.email, account.headers, account.org_id

    a, b = Workstation(tmp_path, "a"), Workstation(tmp_path, "b")
    # init says which SQLCipher made the file, as text and as JSON
    assert f"created {a.replica} (SQLCipher 4." in a.run("init")
    created = b.json("init")
    assert isinstance(created, dict) and created["replica"] == str(b.replica)
    assert str(created["cipher"]).startswith("4.") and created["node_id"]
    for ws in (a, b):
        ws.attach(server, org, email)

    tag = a.run("add", "tag", "--set", "name=cli").strip()
    prompt = a.run(
        "add",
        "prompt",
        "--set",
        "title=Terminal",
        "--set",
        "body=act as a terminal",
        "--set",
        f"tag_ids={tag}",
    ).strip()
    assert a.json("status")["pending"] == 2  # type: ignore[index]
    assert "pushed 2" in a.run("sync")
    b.run("sync")
    listed = b.json("list", "prompts")
    assert [p["label"] for p in listed] == ["Terminal"]  # type: ignore[index, union-attr]
    assert "Terminal" in b.run("search", "terminal")

    a.run("edit", "prompt", prompt, "--set", "title=From A")
    b.run("edit", "prompt", prompt, "--set", "title=From B")
    a.run("sync")
    out = b.run("sync")
    assert "1 new conflict" in out
    [conflict] = b.json("conflicts", "list")  # type: ignore[misc]
    assert {conflict["mine"], conflict["theirs"]} == {"From A", "From B"}
    # the list shows both sides on the conflict's line
    sides = f"mine {conflict['mine']!r} / theirs {conflict['theirs']!r}"
    assert b.run("conflicts", "list").splitlines() == [f"{conflict['id']}  prompt {prompt} title  {sides}"]
    shown = b.run("conflicts", "show", conflict["id"])
    assert "mine:" in shown and "theirs:" in shown
    assert b.run("conflicts", "show", conflict["id"].upper()) == shown  # as REST takes it
    assert conflict["written_here"] == "mine" and "written here: mine" in shown
    # which side the prompt shows now (the newer write, b's own), said (QA)
    assert b.json("show", "prompt", prompt)["title"] == "From B"  # type: ignore[index]
    assert b.json("conflicts", "show", conflict["id"])["in_place"] == "mine"  # type: ignore[index]
    assert "in place: mine" in shown
    # a third workstation wrote neither side: its "mine" is only the value in place, and it is told so
    c = Workstation(tmp_path, "c")
    c.run("init")
    c.attach(server, org, email)
    c.run("sync")
    [seen] = c.json("conflicts", "list")  # type: ignore[misc]
    assert (seen["id"], seen["written_here"]) == (conflict["id"], "neither")
    listed_line = c.run("conflicts", "list").rstrip()
    assert listed_line.endswith("(neither side written here: mine is the value in place)")
    shown_there = c.run("conflicts", "show", seen["id"])
    assert "written here: neither side" in shown_there
    # and the suggestion names its mine so too: "yours" was suggested there (QA)
    assert "mine (in place here; written on another computer) is suggested" in shown_there
    assert "yours" not in shown_there
    assert conflict["mine"] == "From B"

    # a edits the title again before it has seen B's edit: the conflict's sides change, under a new id
    a.run("edit", "prompt", prompt, "--set", "title=From A again")
    a.run("sync")
    synced = b.json("sync")  # the counts the text gives, for scripts
    assert isinstance(synced, dict) and (synced["conflicts_new"], synced["conflicts_changed"]) == (0, 1)
    assert synced["conflicts_settled"] == 0  # replaced by the newer one, not settled
    [changed] = b.json("conflicts", "list")  # type: ignore[misc]
    assert changed["id"] != conflict["id"]
    assert (changed["mine"], changed["theirs"]) == ("From B", "From A again")
    assert b.json("show", "prompt", prompt)["title"] == "From A again"  # type: ignore[index]
    assert "in place: theirs" in b.run("conflicts", "show", changed["id"])
    stale = b.run("conflicts", "resolve", conflict["id"], "--keep", "mine", code=5)
    assert "is closed" in stale and "replaced by a newer one" in stale and "conflicts list" in stale
    unknown = b.run("conflicts", "resolve", "00000000-0000-5000-8000-000000000000", "--keep", "mine", code=5)
    assert "no conflict" in unknown

    b.run("conflicts", "resolve", changed["id"].upper(), "--keep", "mine")
    b.run("sync")
    # the other workstations are told their open conflict was settled elsewhere
    assert "1 conflict(s) closed (resolved on another workstation" in a.run("sync", "--full-check")
    assert c.json("sync")["conflicts_settled"] == 1  # type: ignore[index]
    assert c.json("conflicts", "list") == []
    assert a.json("show", "prompt", prompt)["title"] == "From B"  # type: ignore[index]
    assert a.json("conflicts", "list") == []
    served = httpx.get(f"{server}/api/v1/orgs/{org}/prompts/{prompt}", headers=headers).json()
    assert served["title"] == "From B" and served["tag_ids"] == [tag]

    exported = json.loads(a.run("export"))
    assert [p["title"] for p in exported["prompts"]] == ["From B"]
    # the server's fields a replica keeps but does not edit are exported as REST has them (left out; QA)
    kept = (("accuracy-levels", "accuracy_levels", "score"), ("gpt-models", "gpt_models", "provider"))
    for path, table, field in kept:
        served_items = httpx.get(f"{server}/api/v1/orgs/{org}/{path}", headers=headers).json()["items"]
        assert {i["id"]: i[field] for i in served_items} == {r["id"]: r[field] for r in exported[table]}

    # scripts may put --json after the command, in nested groups too; after "--" it is a search word
    listed = json.loads(a.run("list", "prompt", "--json"))
    assert [(p["id"], p["label"]) for p in listed] == [(prompt, "From B")]
    assert json.loads(a.run("conflicts", "list", "--json")) == []
    assert a.run("search", "--", "--json").strip() == "no matches"


def test_clear_errors_and_nothing_lost(server: str, tmp_path: Path) -> None:
    ws = Workstation(tmp_path, "w")
    ws.run("init")
    assert "already exists" in ws.run("init", code=2)
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase")
    before = ws.replica.read_bytes()
    assert "passphrase" in ws.run("status", code=2, passphrase=wrong).lower()
    assert ws.replica.read_bytes() == before
    assert "not attached" in ws.run("sync", code=5)
    # with --json an error is also a JSON object on stdout (scripts read every outcome from there)
    failed = ws.runner.invoke(
        app, ["replica", "--replica", str(ws.replica), "--passphrase-file", str(ws.secret), "sync", "--json"]
    )
    answer = json.loads(failed.stdout)
    assert failed.exit_code == 5 and answer["exit"] == 5 and "not attached" in answer["error"]
    assert "has no field" in ws.run("add", "prompt", "--set", "colour=red", code=5)

    key_file = tmp_path / "key"
    key_file.write_text("ohk_not_a_real_key")
    dead = f"http://127.0.0.1:{free_port()}"
    ws.run(
        "attach",
        "--server",
        dead,
        "--org",
        "00000000-0000-4000-8000-000000000001",
        "--api-key-file",
        str(key_file),
    )
    prompt = ws.run("add", "prompt", "--set", "title=Offline", "--set", "body=kept").strip()
    unreachable = ws.run("sync", code=3)
    assert "cannot reach" in unreachable and "local edits are kept" in unreachable
    assert ws.json("status")["pending"] == 1  # type: ignore[index]
    assert ws.json("show", "prompt", prompt)["title"] == "Offline"  # type: ignore[index]


def test_a_saved_login_offline_keeps_the_edits(server: str, tmp_path: Path) -> None:
    """Attached with a password, the replica refreshes its login before each sync: with the server gone, that
    refresh fails as "unreachable" (exit 3), says the edits are kept, and keeps them."""
    account = new_account(server, email="offline@example.com", password=PASSWORD, org_name="Offline")
    email, org = account.email, account.org_id
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    ws = Workstation(tmp_path, "o")
    ws.run("init")
    login = ("--email", email, "--password-file", str(password_file))
    ws.run("attach", "--server", server, "--org", org, *login)
    ws.run("sync")
    replica = open_replica(ws.replica, passphrase=ws.secret.read_text())
    try:  # the server moves away (as if the laptop left the office network)
        replica.set_setting(key="server_url", value=f"http://127.0.0.1:{free_port()}")
    finally:
        replica.close()
    prompt = ws.run("add", "prompt", "--set", "title=Written offline", "--set", "body=kept").strip()
    unreachable = ws.run("sync", code=3)
    assert "cannot reach" in unreachable and "local edits are kept" in unreachable
    assert ws.json("status")["pending"] == 1  # type: ignore[index]
    assert ws.json("show", "prompt", prompt)["title"] == "Written offline"  # type: ignore[index]


def test_two_syncs_of_one_replica_at_once_keep_the_login(server: str, tmp_path: Path) -> None:
    """A scheduled sync and a manual one start together: both refresh the saved login. The server rotates
    the refresh token at each use and revokes the login when a used one comes back, so the two refreshes
    must not both use the same token: both syncs succeed, and the login still works afterwards."""
    account = new_account(server, email="twice@example.com", password=PASSWORD, org_name="Twice")
    email, headers, org = account.email, account.headers, account.org_id
    ws = Workstation(tmp_path, "t")
    ws.run("init")
    ws.attach(server, org, email)
    for n in range(5):
        ws.run("add", "prompt", "--set", f"title=Prompt {n}", "--set", "body=text")

    command = [
        OUTPUTHUB_EXE,
        "replica",
        "--replica",
        str(ws.replica),
        "--passphrase-file",
        str(ws.secret),
        "sync",
    ]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert "pushed 0" in ws.run("sync")  # the login still works, and everything was pushed once
    assert ws.json("status")["pending"] == 0  # type: ignore[index]
    listed = httpx.get(f"{server}/api/v1/orgs/{org}/prompts", headers=headers).json()["items"]
    assert sorted(p["title"] for p in listed) == [f"Prompt {n}" for n in range(5)]


def test_refused_edits_are_made_again_once_allowed_or_dropped(server: str, tmp_path: Path) -> None:
    """A viewer's offline create, edit and delete are refused by the server and kept as refused edits.
    Once the viewer is made an editor, ``--keep mine`` makes each again (the create under its id, the delete
    as a delete) and the next sync shares them; ``--keep theirs`` drops one; any other ``--keep`` is refused
    and changes nothing."""
    owner = new_account(server, email="owner-refused@example.com", password=PASSWORD, org_name="Refused")
    owner_headers = {"Authorization": f"Bearer {owner.token}"}
    base = f"{server}/api/v1/orgs/{owner.org_id}"
    httpx.post(
        f"{server}/api/v1/auth/register",
        json={"email": "viewer-refused@example.com", "password": PASSWORD, "display_name": "V"},
    ).raise_for_status()
    viewer_token = httpx.post(
        f"{server}/api/v1/auth/token", data={"username": "viewer-refused@example.com", "password": PASSWORD}
    ).json()["access_token"]
    invite = httpx.post(
        f"{base}/invitations",
        json={"email": "viewer-refused@example.com", "role": "viewer"},
        headers=owner_headers,
    ).json()["token"]
    accepted = httpx.post(
        f"{server}/api/v1/invitations/accept",
        json={"token": invite},
        headers={"Authorization": f"Bearer {viewer_token}"},
    )
    accepted.raise_for_status()
    shared = httpx.post(
        f"{base}/prompts", json={"title": "Shared", "body": "b"}, headers=owner_headers
    ).json()
    doomed = httpx.post(
        f"{base}/prompts", json={"title": "Doomed", "body": "b"}, headers=owner_headers
    ).json()

    v = Workstation(tmp_path, "viewer")
    v.run("init")
    v.attach(server, owner.org_id, "viewer-refused@example.com")
    v.run("sync")
    tag = v.run("add", "tag", "--set", "name=from-the-viewer").strip()
    v.run("edit", "prompt", shared["id"], "--set", "title=Viewer title")
    v.run("delete", "prompt", doomed["id"])
    assert "pushed 3 (3 refused" in v.run("sync", code=4)  # a script sees its edits did not land
    refused = {c["record_id"]: c["id"] for c in v.json("conflicts", "list")}  # type: ignore[union-attr]
    assert set(refused) == {tag, shared["id"], doomed["id"]}
    # in words: the edit and the server's reason, not the stored dicts (QA)
    listed = v.run("conflicts", "list")
    assert listed.count("refused by the server: permission-denied") == 3, listed
    # narrowed as resolve --all is (QA: --refused and --entity were only there)
    assert len(v.json("conflicts", "list", "--refused")) == 3  # type: ignore[arg-type]
    only_tags = v.json("conflicts", "list", "--refused", "--entity", "tag")
    assert [c["record_id"] for c in only_tags] == [tag]  # type: ignore[union-attr,index]
    shown = v.run("conflicts", "show", refused[shared["id"]])
    assert "your edit: update title='Viewer title'" in shown and "reason:    permission-denied" in shown
    assert "{" not in shown
    assert "your edit: delete" in v.run("conflicts", "show", refused[doomed["id"]])
    assert v.json("show", "prompt", shared["id"])["refused_edits"] == [refused[shared["id"]]]  # type: ignore[index]
    assert "--keep takes mine, theirs or merged" in v.run(
        "conflicts", "resolve", refused[tag], "--keep", "banana", code=2
    )
    assert len(v.json("conflicts", "list")) == 3  # type: ignore[arg-type]

    user_id = next(
        m["user_id"]
        for m in httpx.get(f"{base}/members", headers=owner_headers).json()
        if m["email"] == "viewer-refused@example.com"
    )
    httpx.patch(
        f"{base}/members/{user_id}", json={"role": "editor"}, headers=owner_headers
    ).raise_for_status()
    assert "created again" in v.run("conflicts", "resolve", refused[tag], "--keep", "mine")
    assert "deleted again" in v.run("conflicts", "resolve", refused[doomed["id"]], "--keep", "mine")
    dropped = v.run("conflicts", "resolve", refused[shared["id"]], "--keep", "theirs")
    assert "dropped" in dropped and "sync" not in dropped  # nothing the server has changes: nothing to share
    assert v.json("conflicts", "list") == []
    v.run("sync")
    assert httpx.get(f"{base}/tags/{tag}", headers=owner_headers).json()["name"] == "from-the-viewer"
    assert httpx.get(f"{base}/prompts/{doomed['id']}", headers=owner_headers).status_code == 404
    assert httpx.get(f"{base}/prompts/{shared['id']}", headers=owner_headers).json()["title"] == "Shared"
    assert v.json("conflicts", "list") == []


def test_a_sync_whose_edit_is_refused_exits_5_and_a_server_address_needs_its_scheme(
    server: str, tmp_path: Path
) -> None:
    """A rename to a name another workstation took meanwhile is refused by the server (name taken): the sync
    reports it and exits 5 (with ``--json``, the report on stdout). ``attach --server`` without http:// or
    https:// is refused as such, not reported as an unreachable server."""
    account = new_account(server, email="renames@example.com", password=PASSWORD, org_name="Renames")
    a, b = Workstation(tmp_path, "a"), Workstation(tmp_path, "b")
    for ws in (a, b):
        ws.run("init")
    bare = server.removeprefix("http://")
    said = a.run("attach", "--server", bare, "--org", account.org_id, "--api-key-file", "key", code=5)
    assert "give the server's URL with http:// or https://" in said
    for ws in (a, b):
        ws.attach(server, account.org_id, account.email)
    alpha = a.run("add", "tag", "--set", "name=alpha").strip()
    a.run("sync")
    b.run("sync")
    a.run("add", "tag", "--set", "name=beta")
    a.run("sync")
    b.run("edit", "tag", alpha, "--set", "name=Beta")
    report = b.json("sync", code=5)
    refused = [(r["id"], r["reason"].split(":")[0]) for r in report["refused"]]  # type: ignore[index]
    assert refused == [(alpha, "name-taken")]
    # the name as the other tag spells it, not as the refused rename did (QA)
    assert "already named 'beta'" in report["refused"][0]["reason"]  # type: ignore[index]
    assert "pushed 0, pulled 0" in b.run("sync")  # nothing left to push: success again
    assert b.json("show", "tag", alpha)["name"] == "alpha"  # type: ignore[index]


def test_keep_merged_takes_the_line_merge_and_keeps_a_third_workstations_line(
    server: str, tmp_path: Path
) -> None:
    """A and B change the same line of a prompt's body, C another line; B's edit is the newest. On A,
    ``conflicts show`` prints the merge suggestion and ``--keep merged`` takes it: A's version of the line
    both changed, and C's line, which ``--keep mine`` (A's whole text) would have dropped."""
    account = new_account(server, email="merged-text@example.com", password=PASSWORD, org_name="Texts")
    a, b, c = attached(tmp_path, server, account, "a", "b", "c")
    body = "\n".join(f"line {n}" for n in range(1, 7))
    prompt = a.run("add", "prompt", "--set", "title=T", "--set", f"body={body}").strip()
    for ws in (a, b, c):
        ws.run("sync")
    a.run("edit", "prompt", prompt, "--set", "body=" + body.replace("line 2", "line 2 by A"))
    c.run("edit", "prompt", prompt, "--set", "body=" + body.replace("line 5", "line 5 by C"))
    b.run("edit", "prompt", prompt, "--set", "body=" + body.replace("line 2", "line 2 by B"))
    for ws in (c, a, b, a):
        ws.run("sync")
    [conflict] = a.json("conflicts", "list")  # type: ignore[misc]
    assert "line 5 by C" in conflict["theirs"] and "line 5 by C" not in conflict["mine"]
    expected = body.replace("line 2", "line 2 by A").replace("line 5", "line 5 by C")
    shown = a.run("conflicts", "show", conflict["id"])
    assert f"merged: {expected!r}" in shown and "overlapping passage" in shown
    assert a.json("conflicts", "show", conflict["id"])["suggestion"] == expected  # type: ignore[index]
    said = a.run("conflicts", "resolve", conflict["id"], "--keep", "x", code=2)
    assert "--keep takes mine, theirs or merged" in said
    a.run("conflicts", "resolve", conflict["id"], "--keep", "merged")
    for ws in (a, b, c):
        ws.run("sync")
    served = httpx.get(f"{server}/api/v1/orgs/{account.org_id}/prompts/{prompt}", headers=account.headers)
    assert served.json()["body"] == expected
    assert b.json("show", "prompt", prompt)["body"] == expected  # type: ignore[index]
    assert b.json("conflicts", "list") == [] and a.json("conflicts", "list") == []


def test_a_sync_after_the_organization_is_gone_exits_4_and_keeps_the_edits(
    server: str, tmp_path: Path
) -> None:
    """The organization deleted (or this account removed from it) while the replica holds an edit: exit 4
    (access), saying why and that the edits are kept; it was exit 1, "wrong organization?" (found by QA)."""
    account = new_account(server, email="gone@example.com", password=PASSWORD, org_name="Gone soon")
    [ws] = attached(tmp_path, server, account, "g")
    ws.run("add", "tag", "--set", "name=kept")
    gone = httpx.delete(f"{server}/api/v1/orgs/{account.org_id}", headers=account.headers)
    assert gone.status_code == 204, gone.text
    said = ws.run("sync", code=4)
    assert "no longer a member" in said and "local edits are kept" in said
    # not "pushed next time", as if it would come by itself (QA): only once a member again
    assert "next time" not in said and "if the account is made a member again" in said
    assert "outputhub replica export" in said
    assert ws.json("status")["pending"] == 1  # type: ignore[index]


def test_a_server_address_with_a_path_is_not_blamed_on_the_organization(server: str, tmp_path: Path) -> None:
    """``--server http://host:port/wrongpath``: every request is a 404 of no route, and attach said "an
    organization is not found when it was deleted or this account is no longer a member of it" (QA). It now
    says nothing is there and asks whether --server is the server's address; a real missing organization
    still says so."""
    account = new_account(server, email="wrong-path@example.com", password=PASSWORD, org_name="Path")
    ws = Workstation(tmp_path, "path")
    ws.run("init")
    password = tmp_path / "password"
    password.write_text(PASSWORD)
    login = ["--email", account.email, "--password-file", str(password)]
    said = ws.run("attach", "--server", f"{server}/wrongpath", "--org", account.org_id, *login, code=3)
    assert "nothing at /wrongpath/api/v1/auth/token" in said and "is --server the Output Hub server's" in said
    assert "organization" not in said
    missing = "01a22909-0000-7000-8000-000000000000"
    said = ws.run("attach", "--server", server, "--org", missing, *login, code=5)
    assert "is --server" not in said and missing in said
    # a sync through a proxy that rewrites paths: not "the saved login was revoked" (exit 4; QA)
    ws.run("attach", "--server", server, "--org", account.org_id, *login)
    ws.run("add", "tag", "--set", "name=kept")
    with open_replica(ws.replica, passphrase=ws.secret.read_text()) as replica:
        replica.set_setting(key="server_url", value=f"{server}/wrongpath")
    said = ws.run("sync", code=3)
    assert "nothing at /wrongpath/" in said and "revoked" not in said and "local edits are kept" in said


def test_a_sync_that_outlasts_its_access_token_renews_it_and_goes_on(server: str, tmp_path: Path) -> None:
    """A first sync over a slow link outlasted the 15-minute access token and stopped (exit 4, "refresh
    it"; found by QA). The replica's remote now renews the token on a 401, saving the rotated login, and
    sends the request again; later syncs use the renewed login."""
    from outputhub.desktop.replica_cli import _remote
    from outputhub.desktop.storage.sync_store import ReplicaSyncStore
    from outputhub.sync.client import SyncClient

    account = new_account(server, email="renew@example.com", password=PASSWORD, org_name="Renew")
    [ws] = attached(tmp_path, server, account, "renew")
    ws.run("add", "tag", "--set", "name=made before the token ran out")
    replica = open_replica(ws.replica, passphrase=ws.secret.read_text())
    try:
        store = ReplicaSyncStore(replica)
        remote = _remote(store)
        saved = replica.get_setting(key="refresh_token")
        remote._use("an-access-token-the-server-no-longer-takes")  # as one that expired mid-sync
        report = SyncClient(store, remote).sync()
        assert report.pushed == 1 and report.checksum_ok is True
        assert replica.get_setting(key="refresh_token") != saved, "the rotated login is saved"
        remote.close()
    finally:
        replica.close()
    tags = httpx.get(f"{server}/api/v1/orgs/{account.org_id}/tags", headers=account.headers).json()["items"]
    assert "made before the token ran out" in [t["name"] for t in tags]
    assert "pushed 0" in ws.run("sync")  # the saved login still works


def test_the_passphrase_file_first_line_and_a_damaged_replica(tmp_path: Path) -> None:
    """``--passphrase-file`` uses the file's first line (as its help says), with a Windows line ending too;
    an empty file is a clear error. A replica damaged past its first page opens, and the damage is found on
    reading: a one-line error (exit 2), not a traceback, and the file is left as it was."""
    ws = Workstation(tmp_path, "w")
    ws.secret.write_text("the passphrase\r\nsecond line, not part of it\n")
    ws.run("init")
    for n in range(40):
        ws.run("add", "prompt", "--set", f"title=Prompt {n}", "--set", "body=" + "text " * 400)
    only = tmp_path / "only-first-line"
    only.write_text("the passphrase")
    assert len(json.loads(ws.run("list", "prompt", "--json", passphrase=only))) == 40
    notepad = tmp_path / "saved-by-notepad"  # UTF-8 with a byte order mark: not part of the passphrase (QA)
    notepad.write_bytes("\ufeffthe passphrase\r\n".encode())
    assert len(json.loads(ws.run("list", "prompt", "--json", passphrase=notepad))) == 40
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "no passphrase on its first line" in ws.run("status", code=2, passphrase=empty)

    damaged = tmp_path / "damaged.ohr"
    data = bytearray(ws.replica.read_bytes())
    for page in range(16_384, len(data), 16_384):  # every 16 KiB page but the first (the header)
        data[page + 100 : page + 116] = b"X" * 16
    damaged.write_bytes(bytes(data))
    runner = CliRunner()
    result = runner.invoke(
        app, ["replica", "--replica", str(damaged), "--passphrase-file", str(ws.secret), "list", "prompt"]
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") and "Traceback" not in result.output
    assert damaged.read_bytes() == bytes(data)

    # `check` reads every page: damage a sync would not notice (QA) is found and named, a sound one passes
    assert "no damage found" in ws.run("check", passphrase=only)
    assert json.loads(ws.run("check", "--json", passphrase=only))["ok"] is True
    one_page = bytearray(ws.replica.read_bytes())
    one_page[len(one_page) // 2 // 16_384 * 16_384 + 200] ^= 0xFF  # one byte of one page in the middle
    damaged.write_bytes(bytes(one_page))
    result = runner.invoke(
        app, ["replica", "--replica", str(damaged), "--passphrase-file", str(ws.secret), "check"]
    )
    assert result.exit_code == 2, result.output
    assert "is damaged" in result.output and "Traceback" not in result.output

    # `check` says that `export` saves what can still be read: one damaged page kept every record from the
    # export (QA). Damaging each page in turn, an export either has all 40 prompts, or says what it could not
    # read and writes the rest, or refuses the file before reading any record
    salvaged = 0
    pages = len(one_page) // 16_384
    for page in sorted({*range(1, 4), *range(1, pages, max(1, pages // 20))}):  # the first ones, then spread
        data = bytearray(ws.replica.read_bytes())
        data[page * 16_384 + 200] ^= 0xFF
        damaged.write_bytes(bytes(data))
        target = tmp_path / f"export-{page}.json"
        opened = ["replica", "--replica", str(damaged), "--passphrase-file", str(ws.secret)]
        result = runner.invoke(app, [*opened, "export", "-o", str(target)])
        said = result.output
        assert "Traceback" not in said
        if result.exit_code == 0:
            assert len(json.loads(target.read_text())["prompts"]) == 40
        elif "could not be read" in said:
            assert result.exit_code == 2 and "are not in the export" in said
            kept = json.loads(target.read_text())["prompts"]
            named = re.findall(r"prompt ([0-9a-f-]{36})", said)  # a prompt is missing only when named
            if "the prompts" in said:
                assert kept == []
            elif " more could not be read" not in said:
                assert len(kept) + len(named) == 40, said
            salvaged += 1
        else:
            assert result.exit_code == 2 and not target.exists(), said
    assert salvaged, "some page holds prompts: its damage leaves the others exported"


def test_delete_takes_a_prompts_outputs_and_a_tags_uses_with_it(server: str, tmp_path: Path) -> None:
    """``replica delete`` leaves no reference to a deleted record, as the desktop app and the REST API do:
    a prompt with outputs is refused without --cascade and takes them with it; a tag is taken off
    the records that name it. After a sync the server holds no dangling reference either."""
    account = new_account(server, email="deleter@example.com", password=PASSWORD, org_name="Deletes")
    [ws] = attached(tmp_path, server, account, "d")
    tag = ws.run("add", "tag", "--set", "name=python").strip()
    prompt = ws.run("add", "prompt", "--set", "title=P", "--set", "body=b", "--set", f"tag_ids={tag}").strip()
    keeper = ws.run(
        "add", "prompt", "--set", "title=Keeper", "--set", "body=b", "--set", f"tag_ids={tag}"
    ).strip()
    gone = ws.run("add", "output", "--set", f"prompt_id={prompt}", "--set", "content=o").strip()
    kept = ws.run(
        "add", "output", "--set", f"prompt_id={keeper}", "--set", "content=k", "--set", f"tag_ids={tag}"
    )
    kept = kept.strip()
    ws.run("sync")

    assert "pass --cascade" in ws.run("delete", "prompt", prompt, code=5)
    assert ws.json("show", "prompt", prompt)["deleted"] is False  # type: ignore[index]
    said = ws.json("delete", "prompt", prompt, "--cascade")
    assert said == {"deleted": prompt, "outputs_deleted": [gone], "records_unlinked": 0}
    assert "taken off 2 record(s)" in ws.run("delete", "tag", tag)
    assert "deleted already" in ws.run("delete", "tag", tag, code=5)
    ws.run("sync")

    headers = {"Authorization": f"Bearer {account.token}"}
    base = f"{server}/api/v1/orgs/{account.org_id}"
    for path in (f"prompts/{prompt}", f"outputs/{gone}", f"tags/{tag}"):
        assert httpx.get(f"{base}/{path}", headers=headers).status_code == 404, path
    assert httpx.get(f"{base}/outputs/{kept}", headers=headers).json()["tag_ids"] == []
    assert httpx.get(f"{base}/prompts/{keeper}", headers=headers).json()["tag_ids"] == []
    assert ws.json("show", "output", kept)["tag_ids"] == []  # type: ignore[index]


def test_long_texts_come_from_files_verbatim(tmp_path: Path) -> None:
    """``--set-file field=PATH`` reads a text field from a file as it is: longer than a command line takes
    (300 KB), with a literal backslash-n, any character and any line ending; an unreadable file or no value: a
    clear error."""
    ws = Workstation(tmp_path, "f")
    ws.run("init")
    prompt = ws.run("add", "prompt", "--set", "title=P", "--set", "body=b").strip()
    text = ("line with a literal \\n and ünïcödé 🙂\n" * 8_000) + "end"
    content = tmp_path / "output.txt"
    content.write_text(text, encoding="utf-8")
    output = ws.run(
        "add", "output", "--set", f"prompt_id={prompt}", "--set-file", f"content={content}"
    ).strip()
    assert ws.json("show", "output", output)["content"] == text  # type: ignore[index]
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"first\r\nsecond\rthird\n")  # Windows and old Mac line endings stay as they are (QA)
    assert ws.run("edit", "output", output, "--set-file", f"notes={notes}").strip() == "changed"
    assert ws.json("show", "output", output)["notes"] == "first\r\nsecond\rthird\n"  # type: ignore[index]
    assert "cannot read" in ws.run(
        "edit", "output", output, "--set-file", f"notes={tmp_path / 'none'}", code=5
    )
    assert "at least one --set" in ws.run("edit", "output", output, code=2)
    assert "no text field" in ws.run("edit", "output", output, "--set-file", f"tag_ids={notes}", code=5)


def test_edits_the_server_would_refuse_are_refused_as_they_are_made(tmp_path: Path) -> None:
    """A required field left empty, a reference to a record the replica does not have or has deleted: exit 5
    naming the field, and nothing is queued for the server."""
    ws = Workstation(tmp_path, "r")
    ws.run("init")
    prompt = ws.run("add", "prompt", "--set", "title=P", "--set", "body=b").strip()
    tag = ws.run("add", "tag", "--set", "name=gone").strip()
    ws.run("delete", "tag", tag)
    queued = ws.json("status")["pending"]  # type: ignore[index]

    assert "output.prompt_id is required" in ws.run("add", "output", "--set", "content=x", code=5)
    assert "prompt.title is required" in ws.run("add", "prompt", "--set", "title=", "--set", "body=x", code=5)
    assert "prompt.title is required" in ws.run("edit", "prompt", prompt, "--set", "title= ", code=5)
    unknown = "8d0f7a52-3c36-4a53-9f0e-6f1d2b7c9a10"
    said = ws.run("edit", "prompt", prompt, "--set", f"tag_ids={unknown}", code=5)
    assert said.startswith("error: prompt.tag_ids: there is no tag") and unknown in said
    said = ws.run("edit", "prompt", prompt, "--set", f"tag_ids={tag}", code=5)
    assert "prompt.tag_ids" in said and "'gone'" in said and "is deleted" in said
    said = ws.run("add", "output", "--set", f"prompt_id={unknown}", "--set", "content=x", code=5)
    assert "output.prompt_id: there is no prompt" in said
    assert ws.json("status")["pending"] == queued  # type: ignore[index]
    assert ws.json("show", "prompt", prompt)["tag_ids"] == []  # type: ignore[index]


def test_deleting_an_output_deletes_no_other(tmp_path: Path) -> None:
    """``replica delete output O`` deletes O alone: it is not counted as its own dependent output."""
    ws = Workstation(tmp_path, "o")
    ws.run("init")
    prompt = ws.run("add", "prompt", "--set", "title=P", "--set", "body=b").strip()
    first, second = (
        ws.run("add", "output", "--set", f"prompt_id={prompt}", "--set", f"content={n}").strip()
        for n in ("one", "two")
    )
    assert ws.run("delete", "output", first).strip() == f"deleted {first}"
    said = ws.json("delete", "output", second)
    assert said == {"deleted": second, "outputs_deleted": [], "records_unlinked": 0}
    assert ws.json("show", "prompt", prompt)["deleted"] is False  # type: ignore[index]


def test_record_ids_are_taken_in_any_uuid_form(tmp_path: Path) -> None:
    """An id typed in upper case, in braces or without dashes names the record it names in the REST API
    (QA: show/edit/delete/restore answered "no prompt with id ..." for the upper-case id of a live one)."""
    ws = Workstation(tmp_path, "u")
    ws.run("init")
    prompt = ws.run("add", "prompt", "--set", "title=P", "--set", "body=b").strip()
    output = ws.run("add", "output", "--set", f"prompt_id={prompt}", "--set", "content=x").strip()
    upper, braced, bare = prompt.upper(), "{" + prompt + "}", prompt.replace("-", "")
    shown = ws.json("show", "prompt", upper)
    assert isinstance(shown, dict) and shown["id"] == prompt and shown["title"] == "P"
    assert ws.run("edit", "prompt", braced, "--set", "title=Q").strip() == "changed"
    assert ws.json("show", "prompt", prompt)["title"] == "Q"  # type: ignore[index]
    said = ws.json("delete", "prompt", bare, "--cascade")
    assert said == {"deleted": prompt, "outputs_deleted": [output], "records_unlinked": 0}
    said = ws.run("restore", "prompt", upper).strip()
    assert said.startswith(f"restored {prompt}; its 1 deleted output(s) stay deleted: {output}"), said
    assert ws.json("restore", "output", output) == {
        "restored": output,
        "outputs_still_deleted": [],
        "records_relinked": 0,
    }
    assert ws.json("show", "prompt", prompt)["deleted"] is False  # type: ignore[index]
    # not an id at all: the same clear refusal as before
    assert "no prompt with id not-an-id" in ws.run("show", "prompt", "not-an-id", code=5)


def test_show_and_export_give_the_times_and_a_prompts_version(server: str, tmp_path: Path) -> None:
    """``show`` and ``export`` gave a record's synced fields only: an output's ``produced_at`` (set through
    REST), a prompt's version and every record's created/updated times were missing from the export of the
    library (QA)."""
    account = new_account(server, email="times@example.com", password=PASSWORD, org_name="Times")
    [ws] = attached(tmp_path, server, account, "t")
    prompt = ws.run("add", "prompt", "--set", "title=P", "--set", "body=b").strip()
    local = ws.run("add", "output", "--set", f"prompt_id={prompt}", "--set", "content=x").strip()
    ws.run("edit", "output", local, "--set", "notes=later")
    shown = ws.json("show", "output", local)
    assert isinstance(shown, dict) and shown["produced_at"] is None  # not given
    assert str(shown["created_at"]).endswith("Z") and shown["created_at"] <= shown["updated_at"]
    ws.run("sync")
    base = f"{server}/api/v1/orgs/{account.org_id}"
    made = httpx.post(
        f"{base}/outputs",
        json={"prompt_id": prompt, "content": "y", "produced_at": "2026-01-02T03:04:05Z"},
        headers=account.headers,
    )
    assert made.status_code == 201, made.text
    edited = httpx.patch(f"{base}/prompts/{prompt}", json={"body": "b2"}, headers=account.headers)
    assert edited.status_code == 200, edited.text
    ws.run("sync")

    pulled = ws.json("show", "output", made.json()["id"])
    assert isinstance(pulled, dict) and pulled["produced_at"] == "2026-01-02T03:04:05.000000Z"
    assert ws.json("show", "prompt", prompt)["version"] == 2  # type: ignore[index]
    exported = json.loads(ws.run("export"))
    assert {o["id"]: o["produced_at"] for o in exported["outputs"]} == {
        local: None,
        made.json()["id"]: pulled["produced_at"],
    }
    [listed] = exported["prompts"]
    assert listed["version"] == 2 and listed["created_at"] <= listed["updated_at"]
    assert "produced_at: 2026-01-02T03:04:05.000000Z" in ws.run("show", "output", made.json()["id"])


def test_export_never_writes_over_the_replica_and_says_why_it_cannot_write(tmp_path: Path) -> None:
    """``export -o`` onto the replica itself (or a link to it) turned the encrypted library into its JSON,
    exit 0, its unsynced edits gone (QA); a directory or a missing one was a traceback. A file that is
    there is replaced whole, only once the export is written."""
    ws = Workstation(tmp_path, "x")
    ws.run("init")
    ws.run("add", "prompt", "--set", "title=Kept", "--set", "body=b")
    before = ws.replica.read_bytes()
    link = tmp_path / "alias.json"
    link.symlink_to(ws.replica)
    for target in (ws.replica, link, Path(f"{ws.replica}-wal")):
        said = ws.run("export", "-o", str(target), code=5)
        assert "is the replica" in said, said
    assert ws.replica.read_bytes() == before
    assert [p["label"] for p in ws.json("list", "prompt")] == ["Kept"]  # type: ignore[index]
    for target, reason in ((tmp_path, "Is a directory"), (tmp_path / "none" / "x.json", "No such file")):
        said = ws.run("export", "-o", str(target), code=5)
        assert said.startswith(f"error: cannot write {target}") and reason in said and "Traceback" not in said
    failed = ws.json("export", "-o", str(tmp_path), code=5)
    assert isinstance(failed, dict) and failed["exit"] == 5
    old = tmp_path / "old.json"
    old.write_text("an earlier export")
    ws.run("export", "-o", str(old))
    assert [p["title"] for p in json.loads(old.read_text())["prompts"]] == ["Kept"]
    assert old.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no leftovers
    pipe = tmp_path / "pipe"  # not a file: written as it is, not replaced by one (QA)
    os.mkfifo(pipe)
    with ThreadPoolExecutor(1) as pool:
        read = pool.submit(pipe.read_text)
        ws.run("export", "-o", str(pipe))
        assert [p["title"] for p in json.loads(read.result(timeout=30))["prompts"]] == ["Kept"]
    assert stat.S_ISFIFO(pipe.stat().st_mode)


def test_odd_paths_and_values_are_clear_errors_not_tracebacks(tmp_path: Path) -> None:
    """Each of these was a Python traceback (exit 1, nothing on stdout with --json; QA)."""
    ws = Workstation(tmp_path, "e")
    ws.run("init")
    nul = tmp_path / "nul.pass"
    nul.write_text("a\x00b")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cases: list[tuple[list[str], int, str]] = [
        (["--passphrase-file", str(nul), "list", "prompt"], 2, "NUL"),
        (["--replica", str(blocker / "r.ohr"), "init"], 2, "a-file"),
        (["--replica", str(tmp_path / ("n" * 300)), "list", "prompt"], 2, "File name too long"),
        (["--replica", str(tmp_path / ("n" * 300)), "init"], 2, "File name too long"),
        (["show", "prompt", "bad\udcff"], 5, "no prompt"),
        (["list", "tag", "--limit", "99999999999999999999"], 2, "limit"),
        (["attach", "--server", "http://[::1", "--api-key-file", str(nul), "--org", "x"], 5, "server"),
        # the typed value was dropped for the file's (QA)
        (
            ["conflicts", "resolve", str(uuid.UUID(int=1)), "--value", "v", "--value-file", str(nul)],
            2,
            "not both",
        ),
        # the kinds as --help spells them (QA)
        (["list", "widget"], 2, "custom-gpt, tag"),
        (["edit", "prompt", str(uuid.UUID(int=1)), "--set-file", "body"], 2, "field=PATH"),
    ]
    # no passphrase: init refuses before it makes the replica's folders
    nowhere = tmp_path / "not" / "yet" / "r.ohr"
    no_env = {"OUTPUTHUB_PASSPHRASE": None}
    refused = ws.runner.invoke(app, ["replica", "--replica", str(nowhere), "init"], env=no_env)
    assert refused.exit_code == 2 and "no passphrase" in refused.output and not (tmp_path / "not").exists()
    # usage errors (a missing argument, an unknown command, a bad option value) are on stdout too
    usages = (["list"], ["frobnicate"], ["list", "prompt", "--limit", "0"], ["conflicts", "resolve", "--x"])
    for usage in usages:
        result = ws.runner.invoke(app, ["replica", "--replica", str(ws.replica), "--json", *usage])
        assert result.exit_code == 2 and json.loads(result.stdout)["exit"] == 2, (usage, result.output)
    for args, code, said in cases:
        base = ["replica", "--replica", str(ws.replica), "--passphrase-file", str(ws.secret)]
        result = ws.runner.invoke(app, [*base, *args])
        output = result.output
        assert result.exit_code == code and said in output and "Traceback" not in output, (args, output)
        as_json = ws.runner.invoke(app, [*base, "--json", *args])
        assert json.loads(as_json.stdout)["exit"] == code, (args, as_json.stdout)


def test_attach_with_an_api_key_checks_it_where_the_server_answers(server: str, tmp_path: Path) -> None:
    """A bogus or empty key was attached (exit 0) and failed only at the first sync (QA). A server that
    answers now says whether the key opens the organization; one that does not is attached to offline, as
    before (the first sync checks it)."""
    account = new_account(server, email="keys@example.com", password=PASSWORD, org_name="Keys")
    made = httpx.post(
        f"{server}/api/v1/orgs/{account.org_id}/api-keys",
        json={"name": "cli", "scope": "write"},
        headers=account.headers,
    )
    assert made.status_code == 201, made.text
    ws = Workstation(tmp_path, "k")
    ws.run("init")
    key = tmp_path / "key"
    for text, code, said in (("", 5, "is empty"), ("ohk_not_a_real_key", 4, "did not accept")):
        key.write_text(text)
        org = account.org_id
        out = ws.run("attach", "--server", server, "--org", org, "--api-key-file", str(key), code=code)
        assert said in out, out
        assert ws.json("status")["server"] is None  # type: ignore[index]
    key.write_text(made.json()["key"] + "\n")
    for given, said in (("", "--org is empty"), ("Keys", "give the organization's id (a UUID)")):
        out = ws.run("attach", "--server", server, "--org", given, "--api-key-file", str(key), code=5)
        assert said in out, out  # "" was attached to no organization, exit 0 (QA)
        assert ws.json("status")["server"] is None  # type: ignore[index]
    other = new_account(server, email="keys2@example.com", password=PASSWORD, org_name="Other")
    out = ws.run("attach", "--server", server, "--org", other.org_id, "--api-key-file", str(key), code=4)
    assert "not found" in out
    ws.run("attach", "--server", server, "--org", account.org_id, "--api-key-file", str(key))
    ws.run("add", "tag", "--set", "name=by-key")
    assert "pushed 1" in ws.run("sync")


def test_a_merged_tag_and_a_delete_conflict_from_the_command_line(server: str, tmp_path: Path) -> None:
    """Two workstations make the tag "ml" offline (one as "ML"): the second to sync has its tag merged
    into the first's, and the two spellings are a conflict, resolved from the command line. There, restoring
    the merged tag is refused naming the one it was merged into, and naming it on a prompt names the surviving
    one. A delete conflict takes --keep, not --value (a clear exit 5, not a traceback)."""
    account = new_account(server, email="merged@example.com", password=PASSWORD, org_name="Merged")
    headers, org = account.headers, account.org_id
    a, b = Workstation(tmp_path, "a"), Workstation(tmp_path, "b")
    for ws in (a, b):
        ws.run("init")
        ws.attach(server, org, account.email)
    prompt = a.run("add", "prompt", "--set", "title=P", "--set", "body=b").strip()
    kept = b.run("add", "tag", "--set", "name=ml").strip()
    merged = a.run("add", "tag", "--set", "name=ML").strip()
    b.run("sync")
    a.run("sync")
    b.run("sync")
    assert a.json("show", "tag", merged)["deleted"] is True  # type: ignore[index]
    # the two spellings: the newer on the tag, the other in a conflict on both workstations
    assert a.json("show", "tag", kept)["name"] == "ML"  # type: ignore[index]
    for ws in (a, b):
        [spelling] = ws.json("conflicts", "list")  # type: ignore[misc]
        assert (spelling["record_id"], spelling["field"]) == (kept, "name")
        assert {spelling["mine"], spelling["theirs"]} == {"ml", "ML"}
    keep = "mine" if spelling["mine"] == "ml" else "theirs"
    b.run("conflicts", "resolve", spelling["id"], "--keep", keep)
    b.run("sync")
    a.run("sync")
    assert a.json("conflicts", "list") == []
    assert a.json("show", "tag", kept)["name"] == "ml"  # type: ignore[index]

    said = a.run("restore", "tag", merged, code=5)
    assert f"merged into tag {kept} ('ml')" in said
    assert a.json("show", "tag", merged)["deleted"] is True  # type: ignore[index]
    assert a.run("edit", "prompt", prompt, "--set", f"tag_ids={merged}").strip() == "changed"
    assert a.json("show", "prompt", prompt)["tag_ids"] == [kept]  # type: ignore[index]
    assert "refused" not in a.run("sync")
    served = httpx.get(f"{server}/api/v1/orgs/{org}/prompts/{prompt}", headers=headers).json()
    assert served["tag_ids"] == [kept]

    b.run("sync")
    b.run("delete", "prompt", prompt)
    a.run("edit", "prompt", prompt, "--set", "body=edited meanwhile")
    b.run("sync")
    a.run("sync")
    [conflict] = a.json("conflicts", "list")  # type: ignore[misc]
    assert conflict["field"] == "_deleted"
    shown = a.run("conflicts", "show", conflict["id"])  # in words, as the list says it (QA: "base: False")
    assert "deleted on one side, edited on the other" in shown
    assert "mine:   edited (body)" in shown and "theirs: deleted" in shown and "False" not in shown
    assert a.json("conflicts", "show", conflict["id"])["kept_by_edit_of"] == ["body"]  # type: ignore[index]
    for args in ((), ("--json",)):
        said = a.run("conflicts", "resolve", conflict["id"], "--value", "foo", *args, code=5)
        assert "a delete conflict is resolved with --keep mine or --keep theirs" in said
        assert "Traceback" not in said
    assert a.json("conflicts", "list") == [conflict]
    assert "resolved" in a.run("conflicts", "resolve", conflict["id"], "--keep", "mine")


def test_a_delete_conflict_the_server_opened_for_a_record_in_use_says_what_uses_it(
    server: str, tmp_path: Path
) -> None:
    """A tag deleted on one workstation while another put it on a prompt offline: the server keeps the tag
    (the prompt names it) and the delete becomes a conflict. Nobody edited the tag, so the conflict does not
    say "edited" (QA): the list, ``show`` and ``--json`` name the prompt that keeps it in use, on both
    workstations, and keeping the delete takes the tag off the prompt."""
    account = new_account(server, email="kept-in-use@example.com", password=PASSWORD, org_name="In use")
    a, b = attached(tmp_path, server, account, "a", "b")
    tag = a.run("add", "tag", "--set", "name=draft").strip()
    prompt = a.run("add", "prompt", "--set", "title=Release notes", "--set", "body=b").strip()
    a.run("sync")
    b.run("sync")
    a.run("delete", "tag", tag)
    b.run("edit", "prompt", prompt, "--set", f"tag_ids={tag}")
    b.run("sync")
    a.run("sync")
    b.run("sync")
    for ws, deleted_here in ((a, True), (b, False)):
        [conflict] = ws.json("conflicts", "list")  # type: ignore[misc]
        assert (conflict["record_id"], conflict["field"]) == (tag, "_deleted")
        assert conflict["kept_in_use"] == "prompt “Release notes”", ws.replica
        listed = ws.run("conflicts", "list")
        assert "in use by prompt “Release notes”" in listed and "edited" not in listed, listed
        shown = ws.run("conflicts", "show", conflict["id"])
        assert "kept by the server: in use by prompt “Release notes”" in shown, shown
        assert "edited" not in shown, shown
        assert ("mine:   deleted" in shown) is deleted_here, shown
    assert a.json("conflicts", "show", conflict["id"])["kept_in_use"] == "prompt “Release notes”"  # type: ignore[index]

    # an edit against a delete still says so
    b.run("edit", "prompt", prompt, "--set", "body=edited meanwhile")
    a.run("delete", "prompt", prompt)
    b.run("sync")
    a.run("sync")
    [edited] = [c for c in a.json("conflicts", "list") if c["record_id"] == prompt]  # type: ignore[union-attr]
    assert edited["kept_in_use"] is None
    assert "mine:   deleted" in a.run("conflicts", "show", edited["id"])
    assert "theirs: edited (body)" in a.run("conflicts", "show", edited["id"])

    a.run("conflicts", "resolve", edited["id"], "--keep", "theirs")
    a.run("conflicts", "resolve", conflict["id"], "--keep", "mine")
    a.run("sync")
    b.run("sync")
    for ws in (a, b):
        assert ws.json("conflicts", "list") == []
        assert ws.json("show", "tag", tag)["deleted"] is True  # type: ignore[index]
        assert ws.json("show", "prompt", prompt)["tag_ids"] == []  # type: ignore[index]


def test_conflicts_resolve_all_with_one_keep_narrowed_by_kind_and_refusal(
    server: str, tmp_path: Path
) -> None:
    """Resolving many conflicts took one command each. ``conflicts resolve --all --keep ...`` resolves every
    open one that ``--entity`` and ``--refused`` select; one the choice does not apply to (a delete conflict
    with ``merged``) stays open, is listed, and makes the exit 5; the resolutions sync like any edit."""
    account = new_account(server, email="resolve-all@example.com", password=PASSWORD, org_name="All")
    a, b = attached(tmp_path, server, account, "a", "b")
    prompts = [
        a.run("add", "prompt", "--set", f"title=P{n}", "--set", "body=line 1\nline 2\nline 3").strip()
        for n in range(3)
    ]
    tag = a.run("add", "tag", "--set", "name=alpha").strip()
    a.run("sync")
    b.run("sync")
    for ws, name in ((a, "a"), (b, "b")):
        for prompt in prompts[:2]:
            ws.run("edit", "prompt", prompt, "--set", f"body=line 1\nline 2 by {name}\nline 3")
    a.run("edit", "prompt", prompts[2], "--set", "title=edited on a")
    b.run("delete", "prompt", prompts[2])
    b.run("add", "tag", "--set", "name=beta")
    a.run("edit", "tag", tag, "--set", "name=Beta")
    b.run("sync")
    a.run("sync", code=5)  # the rename is refused: the name is taken
    opened = a.json("conflicts", "list")
    assert sorted((c["entity"], c["field"]) for c in opened) == [  # type: ignore[union-attr]
        ("prompt", "_deleted"),
        ("prompt", "body"),
        ("prompt", "body"),
        ("tag", "_rejected"),
    ]

    assert "--keep mine|theirs|merged" in a.run("conflicts", "resolve", "--all", code=2)
    one = opened[0]["id"]  # type: ignore[index]
    assert "no conflict id" in a.run("conflicts", "resolve", one, "--all", "--keep", "mine", code=2)
    said = a.json("conflicts", "resolve", "--all", "--keep", "merged", "--entity", "prompts", code=5)
    assert len(said["resolved"]) == 2  # type: ignore[index]
    [left] = said["left_open"]  # type: ignore[index]
    assert left["record_id"] == prompts[2] and left["skipped"] is True
    assert "delete conflict" in left["reason"]
    said_text = a.run("conflicts", "resolve", "--all", "--keep", "theirs", "--refused")
    assert "resolved 1 of 1 (refused edits dropped: nothing to share)" in said_text
    assert "sync" not in said_text
    assert "resolved 1 of 1; run `outputhub replica sync` to share them" in a.run(
        "conflicts", "resolve", "--all", "--keep", "mine"
    )
    assert a.json("conflicts", "list") == []

    a.run("sync")
    b.run("sync")
    served = {
        p: httpx.get(f"{server}/api/v1/orgs/{account.org_id}/prompts/{p}", headers=account.headers).json()
        for p in prompts
    }
    assert [served[p]["body"] for p in prompts[:2]] == ["line 1\nline 2 by a\nline 3"] * 2
    assert served[prompts[2]]["title"] == "edited on a"  # kept: the delete was undone
    assert b.json("show", "tag", tag)["name"] == "alpha"  # type: ignore[index]
    assert b.json("show", "prompt", prompts[0])["body"] == "line 1\nline 2 by a\nline 3"  # type: ignore[index]


def test_a_renewal_does_not_hold_the_replica_and_keeps_a_newer_login(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewal of the saved login held the replica's write lock over its HTTP request: on a slow link,
    edits made meanwhile (another command, the desktop's window) failed with "locked" (QA). It is now sent
    without the lock, and its answer is saved only over the token that was sent."""
    import outputhub.desktop.replica_cli as cli
    from outputhub.desktop.storage.sync_store import ReplicaSyncStore
    from outputhub.sync.client import LocalLibrary

    account = new_account(server, email="renewing@example.com", password=PASSWORD, org_name="Renewing")
    [ws] = attached(tmp_path, server, account, "r")
    real = cli.refresh_tokens

    def slow_link(url: str, *, refresh_token: str) -> dict[str, object]:
        # while the renewal is on its way, another process edits the replica and another sync renews
        with open_replica(ws.replica, passphrase=ws.secret.read_text()) as other:
            LocalLibrary(ReplicaSyncStore(other)).create("tag", {"name": "made during the renewal"})
            other.set_setting(key="refresh_token", value="a newer login another sync saved")
        return real(url, refresh_token=refresh_token)

    monkeypatch.setattr(cli, "refresh_tokens", slow_link)
    replica = open_replica(ws.replica, passphrase=ws.secret.read_text())
    try:
        store = ReplicaSyncStore(replica)
        token = cli._refreshed_access_token(store, server)
        assert httpx.get(f"{server}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).is_success
        assert replica.get_setting(key="refresh_token") == "a newer login another sync saved"
        names = [LocalLibrary(store).get("tag", rid)["name"] for rid in store.record_ids("tag")]
        assert names == ["made during the renewal"]
    finally:
        replica.close()


def test_keep_mine_of_a_rename_refused_as_taken_makes_the_rest_again(server: str, tmp_path: Path) -> None:
    """A rename refused because the name is taken took the description typed with it along, and keep mine
    pushed the same rename again, refused again at every sync (QA). Keep mine now makes the rest again and
    says the name is taken."""
    account = new_account(server, email="taken@example.com", password=PASSWORD, org_name="Taken")
    a, b = attached(tmp_path, server, account, "a", "b")
    alpha = a.run("add", "tag", "--set", "name=alpha").strip()
    a.run("sync")
    b.run("add", "tag", "--set", "name=beta")
    b.run("sync")
    a.run("edit", "tag", alpha, "--set", "name=Beta", "--set", "description=typed with the rename")
    a.run("sync", code=5)
    [refused] = a.json("conflicts", "list")  # type: ignore[misc]
    said = a.run("conflicts", "resolve", refused["id"], "--keep", "mine")
    assert "without its name 'Beta'" in said and "taken" in said
    assert "refused" not in a.run("sync")
    served = httpx.get(f"{server}/api/v1/orgs/{account.org_id}/tags/{alpha}", headers=account.headers).json()
    assert (served["name"], served["description"]) == ("alpha", "typed with the rename")
    assert a.json("conflicts", "list") == []


def test_resolving_a_lookup_name_with_a_value_is_checked_as_edit_checks_a_rename(
    server: str, tmp_path: Path
) -> None:
    """``conflicts resolve ID --value`` on a tag's name took a name another tag has here (typed in another
    Unicode normal form: "Café" as e + U+0301) and was refused only at the next sync. It is refused as
    ``edit`` refuses the rename (exit 5, naming the tag that has it), an empty name too; a name typed with
    spaces and in NFD is stored stripped and in NFC."""
    account = new_account(server, email="resolve-name@example.com", password=PASSWORD, org_name="Names")
    a, b = attached(tmp_path, server, account, "a", "b")
    tag = a.run("add", "tag", "--set", "name=alpha").strip()
    cafe = a.run("add", "tag", "--set", "name=Caf\u00e9").strip()
    a.run("sync")
    b.run("sync")
    a.run("edit", "tag", tag, "--set", "name=from a")
    b.run("edit", "tag", tag, "--set", "name=from b")
    a.run("sync")
    b.run("sync")
    [conflict] = b.json("conflicts", "list")  # type: ignore[misc]
    assert (conflict["record_id"], conflict["field"]) == (tag, "name")

    said = b.run("conflicts", "resolve", conflict["id"], "--value", "Cafe\u0301", code=5)
    assert f"already named 'Caf\u00e9' ({cafe})" in said and "Traceback" not in said
    refused = b.json("conflicts", "resolve", conflict["id"], "--value", " CAF\u00c9", code=5)
    assert refused["exit"] == 5 and "already named" in refused["error"]  # type: ignore[index]
    said = b.run("conflicts", "resolve", conflict["id"], "--value", "   ", code=5)
    assert "tag.name is required" in said
    assert [c["id"] for c in b.json("conflicts", "list")] == [conflict["id"]]  # type: ignore[union-attr]

    b.run("conflicts", "resolve", conflict["id"], "--value", " Cre\u0300me ")
    assert b.json("show", "tag", tag)["name"] == "Cr\u00e8me"  # type: ignore[index]
    assert "refused" not in b.run("sync")
    served = httpx.get(f"{server}/api/v1/orgs/{account.org_id}/tags/{tag}", headers=account.headers).json()
    assert served["name"] == "Cr\u00e8me"


def test_a_large_first_sync_is_searchable_when_the_command_ends(server: str, tmp_path: Path) -> None:
    """A large pulled page stores its outputs and leaves their text to index (the search backlog): the sync
    command indexes them before it ends, and `search` after a sync stopped before that indexes first."""
    from outputhub.desktop.storage.sync_store import DEFER_INDEX_ROWS

    account = new_account(server, email="backlog@example.com", password=PASSWORD, org_name="Backlog")
    base = f"{server}/api/v1/orgs/{account.org_id}"
    made = httpx.post(f"{base}/prompts", json={"title": "Bulk", "body": "x"}, headers=account.headers)
    assert made.status_code == 201, made.text
    items = [
        {"prompt_id": made.json()["id"], "content": f"output {n} " + ("quokka" if n == 77 else "plain")}
        for n in range(DEFER_INDEX_ROWS + 50)
    ]
    for start in range(0, len(items), 500):
        sent = httpx.post(
            f"{base}/outputs/bulk", json={"items": items[start : start + 500]}, headers=account.headers
        )
        assert sent.status_code == 201, sent.text
    [ws] = attached(tmp_path, server, account, "backlog")
    synced = ws.run("sync")
    # progress on stderr: the pull as a share of the way (it counts revisions, not records)
    assert "pulled" in synced and "\rpull 100%" in synced
    status = ws.json("status")
    assert isinstance(status, dict) and status["search_backlog"] == 0
    assert "output 77 [quokka]" in ws.run("search", "quokka")

    # a replica left with a backlog (a sync killed after its pull): `search` indexes it first
    other = Workstation(tmp_path, "stopped")
    other.run("init")
    other.attach(server, account.org_id, account.email)
    from outputhub.desktop.replica_cli import _remote
    from outputhub.desktop.storage.sync_store import ReplicaSyncStore
    from outputhub.sync.client import SyncClient

    with open_replica(other.replica, passphrase=other.secret.read_text()) as replica:
        store = ReplicaSyncStore(replica)
        remote = _remote(store)
        try:
            SyncClient(store, remote).sync()
        finally:
            remote.close()
        assert replica.search_backlog() >= DEFER_INDEX_ROWS
    assert other.json("status")["search_backlog"] >= DEFER_INDEX_ROWS  # type: ignore[index]
    # another process writing: search answers from the index as it stands and says what it cannot see
    with open_replica(other.replica, passphrase=other.secret.read_text()) as holder, holder.transaction():
        holder.set_setting(key="holding", value="the write lock")
        result = other.runner.invoke(
            app,
            [
                "replica",
                "--replica",
                str(other.replica),
                "--passphrase-file",
                str(other.secret),
                "search",
                "quokka",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "records are not indexed for search yet" in result.stderr and "locked" in result.stderr
    assert "no matches" in result.stdout
    assert "output 77 [quokka]" in other.run("search", "quokka")
    assert other.json("status")["search_backlog"] == 0  # type: ignore[index]


def test_resolving_names_what_a_kept_delete_takes_and_reads_values_as_edit_does(
    server: str, tmp_path: Path
) -> None:
    """QA: keeping a prompt's delete also deleted an output another workstation had made under it since,
    without a word; ``--value 7`` on a position conflict was refused ("not a whole number"), and a reference
    could not be resolved to none; ``conflicts show`` of a closed conflict offered a resolve that failed.
    Keeping such a delete now asks for ``--cascade`` and names what went; values are read as ``edit --set``
    reads them; a closed conflict says so."""
    account = new_account(server, email="kept-delete@example.com", password=PASSWORD, org_name="Kept delete")
    a, b = attached(tmp_path, server, account, "a", "b")
    prompt = a.run("add", "prompt", "--set", "title=P", "--set", "body=b").strip()
    tag = a.run("add", "tag", "--set", "name=ranked").strip()
    stages = [a.run("add", "development_stage", "--set", f"name={n}").strip() for n in ("Draft", "Live")]
    a.run("edit", "prompt", prompt, "--set", f"development_stage_id={stages[0]}")
    a.run("sync")
    b.run("sync")

    a.run("delete", "prompt", prompt)
    made = b.run("add", "output", "--set", f"prompt_id={prompt}", "--set", "content=made meanwhile").strip()
    a.run("edit", "tag", tag, "--set", "position=11")
    b.run("edit", "tag", tag, "--set", "position=12")
    b.run("sync")
    a.run("sync")
    b.run("sync")
    a.run("sync")
    conflicts = {c["field"]: c for c in a.json("conflicts", "list")}  # type: ignore[attr-defined]
    deleted = conflicts["_deleted"]
    said = a.run("conflicts", "resolve", deleted["id"], "--keep", "mine", code=5)
    assert "also deletes 1 output(s)" in said and made in said and "--cascade" in said
    assert a.json("show", "output", made)["deleted"] is False  # type: ignore[index]
    shown = a.json("conflicts", "resolve", deleted["id"], "--keep", "mine", "--cascade")
    assert shown == {"resolved": deleted["id"], "deleted_with_it": [{"entity": "output", "id": made}]}
    assert a.json("show", "output", made)["deleted"] is True  # type: ignore[index]
    assert "closed" in a.run("conflicts", "show", deleted["id"])
    assert "--keep merged" not in a.run("conflicts", "show", deleted["id"])

    assert a.json("conflicts", "resolve", conflicts["position"]["id"], "--value", "7") == {
        "resolved": conflicts["position"]["id"]
    }
    assert a.json("show", "tag", tag)["position"] == 7  # type: ignore[index]

    a.run("restore", "prompt", prompt)
    a.run("sync")
    b.run("sync")
    a.run("edit", "prompt", prompt, "--set", f"development_stage_id={stages[1]}")
    b.run("edit", "prompt", prompt, "--set", "development_stage_id=")
    b.run("sync")
    a.run("sync")
    [stage] = [c for c in a.json("conflicts", "list") if c["field"] == "development_stage_id"]  # type: ignore[attr-defined]
    a.run("conflicts", "resolve", stage["id"], "--value", "")
    assert a.json("show", "prompt", prompt)["development_stage_id"] is None  # type: ignore[index]

    # --all: a kept delete that takes outputs along needs --cascade too, and the summary names what went
    other = a.run("add", "prompt", "--set", "title=Q", "--set", "body=b").strip()
    a.run("sync")
    b.run("sync")
    a.run("delete", "prompt", other)
    under = b.run("add", "output", "--set", f"prompt_id={other}", "--set", "content=made under Q").strip()
    b.run("sync")
    a.run("sync")
    refused = a.json("conflicts", "resolve", "--all", "--keep", "mine", code=5)
    assert [x["record_id"] for x in refused["left_open"]] == [other]  # type: ignore[index]
    summary = a.json("conflicts", "resolve", "--all", "--keep", "mine", "--cascade")
    assert summary["deleted_with_it"] == [{"entity": "output", "id": under}]  # type: ignore[index]
    assert a.json("show", "output", under)["deleted"] is True  # type: ignore[index]


def test_an_interrupted_sync_says_so_and_the_next_one_completes(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl+C during a sync exited 130 with only a progress line on the screen (QA): it now says that it was
    interrupted and that nothing is lost."""
    from outputhub.sync.client import SyncClient

    account = new_account(server, email="interrupted@example.com", password=PASSWORD, org_name="Interrupted")
    [ws] = attached(tmp_path, server, account, "i")
    tag = ws.run("add", "tag", "--set", "name=made before the interruption").strip()
    real_push = SyncClient.push

    def interrupted(self: SyncClient, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SyncClient, "push", interrupted)
    said = ws.run("sync", code=130)
    assert "interrupted" in said and "local edits are kept" in said
    monkeypatch.setattr(SyncClient, "push", real_push)
    assert "pushed 1" in ws.run("sync")
    served = httpx.get(f"{server}/api/v1/orgs/{account.org_id}/tags/{tag}", headers=account.headers)
    assert served.json()["name"] == "made before the interruption"


def test_an_unknown_option_before_the_command_is_a_json_error_with_json(tmp_path: Path) -> None:
    """``replica --json --bogus list ...`` printed no JSON (QA): a usage error found before the command is a
    JSON error object on stdout too, as every other usage error with ``--json``."""
    ws = Workstation(tmp_path, "j")
    ws.run("init")
    for args in (["--json", "--bogus", "list", "prompt"], ["--bogus", "list", "prompt", "--json"]):
        result = ws.runner.invoke(app, ["replica", "--replica", str(ws.replica), *args])
        assert result.exit_code == 2, (args, result.output)
        answer = json.loads(result.stdout)
        assert answer["exit"] == 2 and "--bogus" in answer["error"], answer
    plain = ws.runner.invoke(app, ["replica", "--replica", str(ws.replica), "--bogus", "list", "prompt"])
    assert plain.exit_code == 2 and plain.stdout == "" and "--bogus" in plain.output


def test_the_same_field_given_twice_is_a_usage_error(tmp_path: Path) -> None:
    """``edit --set title=a --set title=b`` kept the last value without a word (QA): refused naming the
    field, exit 2 as other usage errors, and nothing is changed."""
    ws = Workstation(tmp_path, "twice")
    ws.run("init")
    prompt = ws.run("add", "prompt", "--set", "title=P", "--set", "body=b").strip()
    said = ws.run("edit", "prompt", prompt, "--set", "title=a", "--set", "title=b", code=2)
    assert "'title' is given twice" in said, said
    notes = tmp_path / "notes.txt"
    notes.write_text("from a file", encoding="utf-8")
    said = ws.run("edit", "prompt", prompt, "--set", "body=x", "--set-file", f"body={notes}", code=2)
    assert "'body' is given twice" in said, said
    assert "'title' is given twice" in ws.run("add", "prompt", "--set", "title=a", "--set", "title=a", code=2)
    failed = ws.json("edit", "prompt", prompt, "--set", "title=a", "--set", "title=b", code=2)
    assert isinstance(failed, dict) and failed["exit"] == 2 and "title" in failed["error"]
    shown = ws.json("show", "prompt", prompt)
    assert isinstance(shown, dict) and (shown["title"], shown["body"]) == ("P", "b")


def test_init_asks_for_the_passphrase_strength_the_desktop_asks_for(tmp_path: Path) -> None:
    """``init`` took a one-character passphrase while the desktop refuses it (QA): the same rule now, and a
    replica made with a short passphrase before still opens."""
    ws = Workstation(tmp_path, "weak")
    for weak in ("x", "abc12", "password"):
        ws.secret.write_text(weak)
        said = ws.run("init", code=2)
        assert "too weak" in said and "at least 8 characters" in said, said
        assert not ws.replica.exists()
    ws.secret.write_text("x")
    failed = ws.json("init", code=2)
    assert isinstance(failed, dict) and failed["exit"] == 2 and "at least 8 characters" in failed["error"]
    open_replica(ws.replica, passphrase="x", create=True).close()  # made before the rule
    assert ws.json("status")["pending"] == 0  # type: ignore[index]
    strong = Workstation(tmp_path, "strong")
    assert "created" in strong.run("init")


def test_a_record_made_offline_is_created_and_updated_at_one_instant(tmp_path: Path) -> None:
    """A new record's ``updated_at`` was ~40 microseconds before its ``created_at`` until synced (QA)."""
    ws = Workstation(tmp_path, "same")
    ws.run("init")
    prompt = ws.run("add", "prompt", "--set", "title=P", "--set", "body=b").strip()
    tag = ws.run("add", "tag", "--set", "name=t").strip()
    for kind, record_id in (("prompt", prompt), ("tag", tag)):
        shown = ws.json("show", kind, record_id)
        assert isinstance(shown, dict) and shown["created_at"] == shown["updated_at"], shown
    ws.run("edit", "prompt", prompt, "--set", "title=Q")
    edited = ws.json("show", "prompt", prompt)
    assert isinstance(edited, dict) and edited["updated_at"] > edited["created_at"]


def _bound_by_permissions() -> list[str]:
    """A prefix for a command that folder permissions bind: as root, one without the capability to override
    them (root writes into a read-only folder otherwise)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv to drop the override of permissions")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]


def test_export_writes_in_place_a_writable_file_in_a_folder_it_cannot_write(tmp_path: Path) -> None:
    """``export -o FILE`` failed with "Permission denied" when FILE could be written but its folder could not
    take the new file the export is written to first (QA): FILE is then written in place; a new file there
    is still refused, and the replica's own files still are."""
    ws = Workstation(tmp_path, "ro")
    ws.run("init")
    ws.run("add", "prompt", "--set", "title=Kept", "--set", "body=b")
    locked = tmp_path / "locked"
    locked.mkdir()
    target = locked / "export.json"
    target.write_text("an earlier export")
    target.chmod(0o644)
    locked.chmod(0o500)
    prefix = _bound_by_permissions()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [*prefix, OUTPUTHUB_EXE, "replica", "--replica", str(ws.replica), *args]
        env = {**clean_env(), "OUTPUTHUB_PASSPHRASE": ws.secret.read_text()}
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    try:
        done = cli("export", "-o", str(target))
        assert done.returncode == 0, done.stderr
        assert [p["title"] for p in json.loads(target.read_text())["prompts"]] == ["Kept"]
        assert target.stat().st_mode & 0o777 == 0o600
        assert sorted(p.name for p in locked.iterdir()) == ["export.json"]
        refused = cli("export", "-o", str(locked / "new.json"))
        assert refused.returncode == 5 and "Permission denied" in refused.stderr, refused.stderr
        link = locked / "replica-link"
        locked.chmod(0o700)
        link.symlink_to(ws.replica)
        locked.chmod(0o500)
        mine = cli("export", "-o", str(link))
        assert mine.returncode == 5 and "is the replica" in mine.stderr, mine.stderr
    finally:
        locked.chmod(0o700)


def test_check_of_a_replica_that_cannot_be_written_is_no_damage(tmp_path: Path) -> None:
    """A sound replica the user may only read (0444): ``check`` said "is damaged: prompt index: attempt to
    write a readonly database" and pointed to a new replica (QA). Its pages and b-trees are checked; the
    search index's check, which writes, is said not to have run, and the exit is 0. Damage is still found."""
    ws = Workstation(tmp_path, "readonly")
    ws.run("init")
    ws.run("add", "prompt", "--set", "title=Kept", "--set", "body=" + "text " * 400)
    prefix = _bound_by_permissions()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [*prefix, OUTPUTHUB_EXE, "replica", "--replica", str(ws.replica), *args]
        env = {**clean_env(), "OUTPUTHUB_PASSPHRASE": ws.secret.read_text()}
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    ws.replica.chmod(0o444)
    try:
        done = cli("--json", "check")
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["ok"] is True
        assert [n.split(":")[0] for n in answer["not_checked"]] == ["prompt index", "output index"]
        assert all("cannot be written here" in n for n in answer["not_checked"])
        said = cli("check")
        assert said.returncode == 0 and "no damage found in what could be checked" in said.stdout
        assert "damaged" not in said.stdout + said.stderr
        data = bytearray(ws.replica.read_bytes())
        data[len(data) // 2 // 16_384 * 16_384 + 200] ^= 0xFF
        ws.replica.chmod(0o644)
        ws.replica.write_bytes(bytes(data))
        ws.replica.chmod(0o444)
        damaged = cli("check")
        assert damaged.returncode == 2 and "is damaged" in damaged.stderr, damaged.stderr
    finally:
        ws.replica.chmod(0o644)


def _interrupted(
    command: list[str], *, env: dict[str, str], ready: Callable[[], object], sent: int = signal.SIGINT
) -> tuple[int, str, str]:
    """Run ``command``, wait until ``ready()`` returns (the command is inside its work), press Ctrl+C
    (SIGINT, as a terminal sends it; or send ``sent``) and return its exit code, stdout and stderr."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        held = ready()
        process.send_signal(sent)
        out, err = process.communicate(timeout=60)
        del held
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out, err


def test_ctrl_c_during_a_command_says_it_was_interrupted_and_what_is_kept(tmp_path: Path) -> None:
    """Ctrl+C exited 130 without a word (QA): a command cut short says so on one line (and as JSON with
    ``--json``), exit 130. Here the command is cut short while it waits for its passphrase (a pipe)."""
    replica = tmp_path / "r.ohr"
    env = {**clean_env(), "OUTPUTHUB_PASSPHRASE": "a passphrase for ctrl c"}
    subprocess.run([OUTPUTHUB_EXE, "replica", "--replica", str(replica), "init"], env=env, check=True)
    pipe = tmp_path / "passphrase.pipe"
    os.mkfifo(pipe)

    def reading_the_pipe() -> int:
        deadline = time.monotonic() + 60
        while True:  # a writer may open a pipe without waiting once a reader has it open
            try:
                return os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                assert time.monotonic() < deadline, "the command never read its passphrase"
                time.sleep(0.05)

    writers: list[int] = []
    for extra in ([], ["--json"]):
        command = [OUTPUTHUB_EXE, "replica", "--replica", str(replica), "--passphrase-file", str(pipe)]
        code, out, err = _interrupted(
            [*command, *extra, "export"], env=env, ready=lambda: writers.append(reading_the_pipe())
        )
        while writers:
            os.close(writers.pop())
        assert code == 130, (code, out, err)
        [line] = err.splitlines()
        assert line.startswith("error: interrupted") and "saved" in line and "next sync" in line, line
        if extra:
            answer = json.loads(out)
            assert answer["exit"] == 130 and answer["error"] == line.removeprefix("error: ")
        else:
            assert out == ""


@pytest.mark.parametrize(
    ("sent", "code", "words"),
    [
        (signal.SIGINT, 130, "error: interrupted (Ctrl+C)"),
        (signal.SIGTERM, 143, "error: terminated (SIGTERM)"),
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_during_a_real_sync_says_the_next_sync_goes_on(
    tmp_path: Path, sent: int, code: int, words: str
) -> None:
    """A sync waiting for a server that does not answer, cut short by Ctrl+C: one line saying so, exit 130,
    and the edit waiting to be pushed is still queued. SIGTERM (a service manager stopping a scheduled sync)
    the same, exit 143: it ended without a word (QA)."""
    replica = tmp_path / "r.ohr"
    env = {**clean_env(), "OUTPUTHUB_PASSPHRASE": "a passphrase for a sync cut short"}
    port = free_port()
    key = tmp_path / "key"
    key.write_text("ohk_not_a_real_key")
    base = [OUTPUTHUB_EXE, "replica", "--replica", str(replica)]
    dead = f"http://127.0.0.1:{port}"  # nothing listens yet: attached offline
    for args in (
        ["init"],
        ["attach", "--server", dead, "--org", str(uuid.uuid4()), "--api-key-file", str(key)],
        ["add", "tag", "--set", "name=kept"],
    ):
        subprocess.run([*base, *args], env=env, check=True, capture_output=True)
    with socket.socket() as silent:  # takes the connection and never answers
        silent.bind(("127.0.0.1", port))
        silent.listen()
        silent.settimeout(60)
        got, out, err = _interrupted([*base, "sync"], env=env, ready=lambda: silent.accept()[0], sent=sent)
    assert got == code, (got, out, err)
    said = err.splitlines()[-1].split("\r")[-1]
    assert said.startswith(words) and "next sync" in said, err
    status = subprocess.run([*base, "--json", "status"], env=env, check=True, capture_output=True, text=True)
    assert json.loads(status.stdout)["pending"] == 1


def test_resolve_all_keep_mine_settles_a_field_three_workstations_wrote(server: str, tmp_path: Path) -> None:
    """Three workstations set one title offline: the field holds two conflicts on the first (one pair each),
    one of them between the other two's values. ``--all --keep mine`` resolved the first, which closed the
    second, then stopped with "not open" half done, leaving another's value (QA). It now resolves its own
    pair first, skips what that closed, resolves what it opened, and ends with this workstation's value."""
    account = new_account(server, email="three-way@example.com", password=PASSWORD, org_name="Three")
    a, b, c = attached(tmp_path, server, account, "a", "b", "c")
    prompt = a.run("add", "prompt", "--set", "title=Three", "--set", "body=x").strip()
    for ws in (a, b, c):
        ws.run("sync")
    for ws, name in ((a, "A"), (b, "B"), (c, "C")):
        ws.run("edit", "prompt", prompt, "--set", f"title=from-{name}")
    for ws in (a, b, c, a):
        ws.run("sync")
    opened = a.json("conflicts", "list")
    assert isinstance(opened, list) and len(opened) == 2
    # on a copy of c's file (never synced): c holds C-B and C-A; keeping its C of C-B closes C-A (its C
    # is superseded) and opens one between the resolution and A, and the command says so
    copy = Workstation(tmp_path, "c-copy")
    for suffix in ("", "-wal"):
        if Path(f"{c.replica}{suffix}").exists():
            shutil.copyfile(f"{c.replica}{suffix}", f"{copy.replica}{suffix}")
    held = {
        x["theirs"]: x["id"] for x in json.loads(copy.run("conflicts", "list", "--json", passphrase=c.secret))
    }
    assert set(held) == {"from-A", "from-B"}
    one = json.loads(
        copy.run("conflicts", "resolve", held["from-B"], "--keep", "mine", "--json", passphrase=c.secret)
    )
    assert one["closed_with_it"] == [held["from-A"]] and len(one["opened"]) == 1
    said_text = json.loads(copy.run("conflicts", "list", "--json", passphrase=c.secret))
    assert [(x["id"], x["mine"], x["theirs"]) for x in said_text] == [(one["opened"][0], "from-C", "from-A")]

    # b held B-A; C's title replaces it with C-A and adds C-B: one changed, one new (QA: "2 changed")
    news = b.json("sync")
    assert isinstance(news, dict) and (news["conflicts_new"], news["conflicts_changed"]) == (1, 1)

    # --keep theirs (on another copy): the other side of a's own conflict, never a's own value back (QA:
    # a later round kept "theirs" of the run's own resolution, which was from-A), whatever the ids' order
    theirs = Workstation(tmp_path, "a-theirs")
    for suffix in ("", "-wal"):
        if Path(f"{a.replica}{suffix}").exists():
            shutil.copyfile(f"{a.replica}{suffix}", f"{theirs.replica}{suffix}")
    told = theirs.run("conflicts", "resolve", "--all", "--keep", "theirs", passphrase=a.secret)
    assert "resolved 2 of 2 (1 more that resolving them opened on the same field resolved too)" in told
    assert (
        json.loads(theirs.run("show", "prompt", prompt, "--json", passphrase=a.secret))["title"] == "from-C"
    )
    assert json.loads(theirs.run("conflicts", "list", "--json", passphrase=a.secret)) == []

    said = a.json("conflicts", "resolve", "--all", "--keep", "mine")
    assert isinstance(said, dict) and said["left_open"] == [] and said["resolved"]
    assert a.json("show", "prompt", prompt)["title"] == "from-A"  # type: ignore[index]
    assert a.json("conflicts", "list") == []
    for ws in (a, b, c, a):
        ws.run("sync")
    for ws in (a, b, c):
        assert ws.json("show", "prompt", prompt)["title"] == "from-A"  # type: ignore[index]
        assert ws.json("conflicts", "list") == []


def test_list_labels_stay_on_one_line_and_id_lists_take_spaces(tmp_path: Path) -> None:
    """``list`` printed an output's line breaks in its label, so a record took several lines; ``--set
    tag_ids=ID1, ID2`` refused " ID2" as no id (QA)."""
    ws = Workstation(tmp_path, "labels")
    ws.run("init")
    tags = [ws.run("add", "tag", "--set", f"name=t{n}").strip() for n in range(2)]
    prompt = ws.run("add", "prompt", "--set", "title=P", "--set", "body=b").strip()
    text = tmp_path / "answer.txt"
    text.write_text("first line\n\n   second line\tend\n")
    output = ws.run(
        "add",
        "output",
        "--set",
        f"prompt_id={prompt}",
        "--set-file",
        f"content={text}",
        "--set",
        f"tag_ids={tags[0]}, {tags[1]}",
    ).strip()
    assert ws.run("list", "output").splitlines() == [f"{output}  first line second line end  [created]"]
    assert sorted(ws.json("show", "output", output)["tag_ids"]) == sorted(tags)  # type: ignore[index]


def test_two_workstations_resolving_one_text_conflict_differently_are_told(
    server: str, tmp_path: Path
) -> None:
    """Both workstations resolve the same text conflict before syncing, each keeping its own text: the
    second resolution was merged away in silence, exit 0 (QA). The two resolutions now conflict again, on
    every replica, and neither text is lost."""
    account = new_account(server, email="two-resolutions@example.com", password=PASSWORD, org_name="Twice")
    a, b = attached(tmp_path, server, account, "a", "b")
    prompt = a.run("add", "prompt", "--set", "title=Res", "--set", "body=base").strip()
    a.run("sync")
    b.run("sync")
    a.run("edit", "prompt", prompt, "--set", "body=alpha")
    b.run("edit", "prompt", prompt, "--set", "body=beta")
    for ws in (a, b, a):
        ws.run("sync")
    for ws in (a, b):
        [conflict] = ws.json("conflicts", "list")  # type: ignore[misc]
        ws.run("conflicts", "resolve", conflict["id"], "--keep", "mine")
    a.run("sync")
    assert "1 new conflict" in b.run("sync")
    a.run("sync")
    for ws in (a, b):
        [again] = ws.json("conflicts", "list")  # type: ignore[misc]
        assert {again["mine"], again["theirs"]} == {"alpha", "beta"}
    assert a.json("show", "prompt", prompt)["body"] == b.json("show", "prompt", prompt)["body"]  # type: ignore[index]


def test_resolve_all_says_what_the_refused_edits_made_again_left_out(
    server: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A viewer's replica makes a prompt offline with a tag; the tag is deleted and purged on the server.
    Made again with ``--all`` once the viewer is an editor, the prompt comes without the tag: one at a time
    said so, ``--all`` did not (QA)."""
    owner = new_account(server, email="owner-leftout@example.com", password=PASSWORD, org_name="Left out")
    headers = {"Authorization": f"Bearer {owner.token}"}
    base = f"{server}/api/v1/orgs/{owner.org_id}"
    member = new_account(server, email="member-leftout@example.com", password=PASSWORD, org_name="Own")
    invite = httpx.post(
        f"{base}/invitations", json={"email": member.email, "role": "viewer"}, headers=headers
    ).json()["token"]
    httpx.post(
        f"{server}/api/v1/invitations/accept",
        json={"token": invite},
        headers={"Authorization": f"Bearer {member.token}"},
    ).raise_for_status()
    tag = httpx.post(f"{base}/tags", json={"name": "short-lived"}, headers=headers).json()["id"]
    v = Workstation(tmp_path, "v")
    v.run("init")
    v.attach(server, owner.org_id, member.email)
    v.run("sync")
    made = v.run("add", "prompt", "--set", "title=Offline", "--set", "body=b", "--set", f"tag_ids={tag}")
    made = made.strip()
    assert httpx.delete(f"{base}/tags/{tag}", headers=headers).status_code == 204
    monkeypatch.setenv("OUTPUTHUB_DATABASE_URL", pg_url)
    from outputhub.server.cli import app as server_app

    purged = CliRunner().invoke(
        server_app, ["sync", "purge-tombstones", "--older-than-days", "0", "--org", owner.org_id]
    )
    assert purged.exit_code == 0 and purged.output.startswith("purged 1 "), purged.output
    assert "refused" in v.run("sync", code=4)
    me = httpx.get(f"{server}/api/v1/auth/me", headers={"Authorization": f"Bearer {member.token}"}).json()
    promoted = httpx.patch(f"{base}/members/{me['id']}", json={"role": "editor"}, headers=headers)
    assert promoted.status_code == 200, promoted.text
    said = v.run("conflicts", "resolve", "--all", "--keep", "mine", "--refused")
    assert f"prompt {made} created again (left out: tag {tag}, which no longer exists)" in said, said
    assert "pushed 1" in v.run("sync")
    assert httpx.get(f"{base}/prompts/{made}", headers=headers).json()["tag_ids"] == []
