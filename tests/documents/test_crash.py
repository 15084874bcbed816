"""A real server process is killed (SIGKILL) between the two writes of an output body; afterwards there is
no orphan document and no row pointing at a missing document, and no committed change lacks its audit record.

Two points: after the body document is staged in MongoDB and before the SQL transaction commits (the row
never exists: reconcile deletes the pending document), and after the commit but before the document is
confirmed and the audit record written (reconcile confirms it; the outbox delivers the audit record). The
event handlers run after the answer is sent, so in the second case the client got its 201 before the kill.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pymongo
import pytest

from tests.support.postgres import app_database
from tests.support.serve import clean_env, served

PASSWORD = "a long password"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server_env(request, tmp_path: Path, mongo_url: str) -> Iterator[dict[str, str]]:
    env = clean_env(
        OUTPUTHUB_DATA_DIR=str(tmp_path / "data"),
        OUTPUTHUB_SECRET_KEY="crash-test-secret-key-long-enough-for-hs256",
        OUTPUTHUB_MONGO_URL=mongo_url,
        OUTPUTHUB_MONGO_DATABASE=f"crash_{uuid.uuid4().hex[:8]}",
        OUTPUTHUB_RATE_LIMIT_ENABLED="false",
    )
    if request.param != "postgres":
        yield env
        return
    with app_database(request.getfixturevalue("pg_server")) as url:  # a database of its own
        yield {**env, "OUTPUTHUB_DATABASE_URL": url}


@contextmanager
def running(env: dict[str, str], **extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with served({**env, **extra}) as (proc, base):
        yield proc, base


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("outputhub"))
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=120)


def _setup(base: str) -> tuple[dict[str, str], str, str]:
    email = f"crash-{uuid.uuid4().hex[:6]}@example.com"
    httpx.post(
        f"{base}/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "C"}
    )
    token = httpx.post(f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    org = httpx.post(f"{base}/api/v1/orgs", json={"name": "Crash"}, headers=headers).json()["id"]
    prompt = httpx.post(
        f"{base}/api/v1/orgs/{org}/prompts", json={"title": "P", "body": "b"}, headers=headers
    ).json()["id"]
    return headers, org, prompt


def _bodies(env: dict[str, str]) -> dict[str, str]:
    with pymongo.MongoClient(env["OUTPUTHUB_MONGO_URL"]) as client:
        coll = client[env["OUTPUTHUB_MONGO_DATABASE"]]["output_bodies"]
        return {d["doc_id"]: d["state"] for d in coll.find({})}


def _post_until_killed(
    proc: subprocess.Popen[str], base: str, org: str, body: dict[str, object], *, answered: bool = False
) -> None:
    """Post the output; the server kills itself on the way. ``answered``: the kill comes after the commit,
    in the event handlers, which run once the answer is sent: the client gets its 201 (the write did
    commit), then the process dies."""
    url, headers = f"{base}/api/v1/orgs/{org}/outputs", body.pop("_headers")
    if answered:
        assert httpx.post(url, json=body, headers=headers, timeout=30).status_code == 201  # type: ignore[arg-type]
    else:
        with pytest.raises(httpx.TransportError):
            httpx.post(url, json=body, headers=headers, timeout=30)  # type: ignore[arg-type]
    assert proc.wait(timeout=20) == -9  # SIGKILL: no cleanup ran


def test_killed_after_the_document_before_the_commit(server_env):
    with running(server_env) as (_, base):
        headers, org, prompt = _setup(base)
    output_id = str(uuid.uuid4())
    body = {
        "id": output_id,
        "prompt_id": prompt,
        "content": "lost",
        "metadata": {"k": 1},
        "_headers": headers,
    }
    with running(server_env, OUTPUTHUB_TEST_CRASH_AT="after_body_staged") as (proc, base):
        _post_until_killed(proc, base, org, body)
    assert _bodies(server_env) == {output_id: "pending"}  # the orphan, before repair

    result = _cli(server_env, "documents", "reconcile", "--grace-seconds", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 pending bodies confirmed, 1 orphaned bodies removed" in result.stdout
    assert "0 references without a document" in result.stdout
    assert _bodies(server_env) == {}
    with running(server_env) as (_, base):
        assert httpx.get(f"{base}/api/v1/orgs/{org}/outputs/{output_id}", headers=headers).status_code == 404
        # the client's retry with the same id now succeeds
        retry = httpx.post(
            f"{base}/api/v1/orgs/{org}/outputs",
            json={"id": output_id, "prompt_id": prompt, "content": "again", "metadata": {"k": 2}},
            headers=headers,
        )
        assert retry.status_code == 201, retry.text
        assert httpx.get(f"{base}/api/v1/orgs/{org}/outputs/{output_id}/body", headers=headers).json()[
            "metadata"
        ] == {"k": 2}
    assert _bodies(server_env) == {output_id: "committed"}


def test_killed_after_the_commit_before_the_confirmation_and_the_audit(server_env):
    with running(server_env) as (_, base):
        headers, org, prompt = _setup(base)
    output_id = str(uuid.uuid4())
    body = {
        "id": output_id,
        "prompt_id": prompt,
        "content": "kept",
        "metadata": {"k": 1},
        "_headers": headers,
    }
    with running(server_env, OUTPUTHUB_TEST_CRASH_AT="after_row_committed") as (proc, base):
        _post_until_killed(proc, base, org, body, answered=True)
    assert _bodies(server_env) == {output_id: "pending"}

    # the restarted server repairs at start-up: confirms the body, delivers the outbox to the audit log
    with running(server_env, OUTPUTHUB_DOCUMENTS_PENDING_GRACE_SECONDS="0") as (_, base):
        assert _bodies(server_env) == {output_id: "committed"}
        got = httpx.get(f"{base}/api/v1/orgs/{org}/outputs/{output_id}/body", headers=headers)
        assert got.status_code == 200 and got.json()["metadata"] == {"k": 1}
        records = httpx.get(
            f"{base}/api/v1/orgs/{org}/audit", params={"entity_id": output_id}, headers=headers
        ).json()["items"]
        assert [r["kind"] for r in records] == ["output.created"]
    result = _cli(server_env, "documents", "reconcile", "--grace-seconds", "0")
    assert result.returncode == 0 and "0 references without a document" in result.stdout, result.stdout
