"""Writes that reach the server at the same moment must all survive: two pushes of one record, a REST edit
and a push, two If-Match edits of one revision, a purge and a push restoring a tombstone, one batch sent
twice, and a crowd of devices pushing at once.

On PostgreSQL (READ COMMITTED) a writer that read records before waiting for the organization's revision
counter would act on a stale copy once the writer ahead of it committed: a push would take the other push's
edit for a REST edit reverting it and drop it. Every writing request now takes the counter before it reads
(``lock_org_writes``). The tests make each interleaving certain: they hold the counter row themselves while
the requests start, in a set order, then let go. On SQLite a write transaction takes the database lock before
it reads anything, so writers cannot interleave; the same requests run there one after the other.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from outputhub.common.clock import HLC
from outputhub.server.api.sync.service import purge_tombstones
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.sync.engine import DEFAULT_SCHEMA, make_edit
from outputhub.sync.protocol import change_to_wire, state_from_wire
from tests.support.client import Org, new_org, seed_library


@contextmanager
def counter_held(backend: str, request: pytest.FixtureRequest, org_id: str) -> Iterator[None]:
    """Hold the organization's revision counter row (PostgreSQL) until the block ends."""
    if backend != "postgres":
        yield
        return
    with psycopg.connect(request.getfixturevalue("pg_url")) as conn:
        conn.execute("SELECT set_config('outputhub.org_id', %s, true)", (org_id,))
        locked = conn.execute(
            "SELECT revision FROM org_revisions WHERE org_id = %s FOR UPDATE", (org_id,)
        ).fetchall()
        assert len(locked) == 1, "the counter row must be visible to lock it"
        yield
        conn.rollback()


def waiting_on_the_counter(backend: str, request: pytest.FixtureRequest, count: int) -> bool:
    """Whether ``count`` other sessions are blocked on a row lock (the two pushes, on the counter)."""
    if backend != "postgres":
        return True
    with psycopg.connect(request.getfixturevalue("pg_url")) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()
    return row is not None and int(row[0]) >= count


def _edit(org: Org, prompt_id: str, values: dict[str, Any], node: str) -> dict[str, Any]:
    wire = org.owner.get(f"{org.base}/sync/records/prompt/{prompt_id}").json()
    state = state_from_wire("prompt", prompt_id, wire["state"])
    change = make_edit(
        state,
        values,
        schema=DEFAULT_SCHEMA,
        node=node,
        hlc=HLC(int(time.time() * 1000), 0, node),
        op_id=f"{node}-{uuid.uuid4()}",
    )
    assert change is not None
    return change_to_wire(change)


Send = Callable[[TestClient], Any]


def race(
    app: FastAPI, backend: str, request: pytest.FixtureRequest, org: Org, sends: list[Send]
) -> list[Any]:
    """Run the requests at the same moment. On PostgreSQL each starts while the test holds the
    organization's revision counter, in the order given (the next starts once the previous one waits), and
    all of them are waiting when it lets go. SQLite runs one write transaction at a time: there they run one
    after the other, in the order given. Returns their responses, in order."""
    answers: list[Any] = [None] * len(sends)

    def run(i: int) -> None:
        answers[i] = sends[i](TestClient(app))  # one client per thread (the app is started already)

    if backend != "postgres":
        for i in range(len(sends)):
            run(i)
        return answers
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sends))]
    with counter_held(backend, request, org.id):
        waiting = 0
        for n, t in enumerate(threads, start=1):
            t.start()
            deadline = time.monotonic() + 20
            # a request that does not take the counter first runs to its end right away (the assertions on
            # the outcome then tell what that did)
            while t.is_alive() and not waiting_on_the_counter(backend, request, waiting + 1):
                assert time.monotonic() < deadline, f"request {n} neither queued on the counter nor ended"
                time.sleep(0.02)
            waiting += t.is_alive()
    for t in threads:
        t.join(timeout=60)
    return answers


def pushing(org: Org, device: str, change: dict[str, Any]) -> Send:
    return lambda c: c.post(
        f"{org.base}/sync/push",
        headers=org.owner.headers,
        json={"protocol": 4, "device": device, "changes": [change]},
    )


def patching(org: Org, prompt_id: str, values: dict[str, Any], if_match: int | None = None) -> Send:
    headers = {**org.owner.headers, **({"If-Match": f'"{if_match}"'} if if_match is not None else {})}
    return lambda c: c.patch(f"{org.base}/prompts/{prompt_id}", headers=headers, json=values)


def served_state(org: Org, prompt_id: str) -> tuple[dict[str, Any], Any]:
    served = org.owner.get(f"{org.base}/prompts/{prompt_id}").json()
    record = org.owner.get(f"{org.base}/sync/records/prompt/{prompt_id}").json()
    return served, state_from_wire("prompt", prompt_id, record["state"])


def test_concurrent_pushes_to_one_record_keep_both_edits(
    app: FastAPI, client: TestClient, backend: str, request: pytest.FixtureRequest
) -> None:
    org = new_org(client, name="Race")
    prompt_id = seed_library(org)["prompt"]
    laptop = _edit(org, prompt_id, {"title": "Title from the laptop"}, "laptop")
    desktop = _edit(org, prompt_id, {"description": "Description from the desktop"}, "desktop")
    answers = race(
        app, backend, request, org, [pushing(org, "laptop", laptop), pushing(org, "desktop", desktop)]
    )
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert [r["status"] for r in answer.json()["results"]] == ["applied"], answer.text

    served, state = served_state(org, prompt_id)
    for shown in (served, state.values):
        assert shown["title"] == "Title from the laptop"
        assert shown["description"] == "Description from the desktop"
    assert not state.conflicts, "different fields merge without a conflict"


def test_a_rest_edit_and_a_push_at_once_keep_both_edits(
    app: FastAPI, client: TestClient, backend: str, request: pytest.FixtureRequest
) -> None:
    org = new_org(client, name="Race REST")
    prompt_id = seed_library(org)["prompt"]
    desktop = _edit(org, prompt_id, {"description": "Description from the desktop"}, "desktop")
    answers = race(
        app,
        backend,
        request,
        org,
        [patching(org, prompt_id, {"title": "Title from the web"}), pushing(org, "desktop", desktop)],
    )
    assert answers[0].status_code == 200, answers[0].text
    assert answers[1].status_code == 200, answers[1].text
    assert [r["status"] for r in answers[1].json()["results"]] == ["applied"], answers[1].text

    served, state = served_state(org, prompt_id)
    for shown in (served, state.values):
        assert shown["title"] == "Title from the web"
        assert shown["description"] == "Description from the desktop"
    assert not state.conflicts


def test_two_edits_from_one_revision_at_once_one_is_refused(
    app: FastAPI, client: TestClient, backend: str, request: pytest.FixtureRequest
) -> None:
    """``If-Match``: of two edits made from the same revision, the second to arrive gets 412, even when
    they arrive together."""
    org = new_org(client, name="Race If-Match")
    prompt_id = seed_library(org)["prompt"]
    revision = org.owner.get(f"{org.base}/prompts/{prompt_id}").json()["revision"]
    answers = race(
        app,
        backend,
        request,
        org,
        [
            patching(org, prompt_id, {"title": "First"}, if_match=revision),
            patching(org, prompt_id, {"title": "Second"}, if_match=revision),
        ],
    )
    assert sorted(a.status_code for a in answers) == [200, 412], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200).json()
    served, state = served_state(org, prompt_id)
    assert served["title"] == state.values["title"] == winner["title"]


def test_a_purge_waits_for_a_push_that_restores_the_tombstone(
    app: FastAPI, client: TestClient, backend: str, request: pytest.FixtureRequest
) -> None:
    """A device that was offline for months edits a record someone deleted meanwhile: the edit restores it.
    A tombstone purge running at that moment must not hard-delete the record the push is restoring."""
    org = new_org(client, name="Race purge")
    made = org.owner.post(f"{org.base}/prompts", json={"title": "Old", "body": "kept offline"})
    assert made.status_code == 201, made.text
    prompt_id = made.json()["id"]
    edit = _edit(org, prompt_id, {"body": "edited offline, before the delete arrived"}, "laptop")
    assert org.owner.delete(f"{org.base}/prompts/{prompt_id}").status_code == 204

    def purge(_: TestClient) -> int:
        services = app.state.services
        with unit_of_work(services.session_factory) as session:
            set_tenant(session, org_id=uuid.UUID(org.id))
            return purge_tombstones(
                session, org_id=uuid.UUID(org.id), before=datetime.now(UTC) + timedelta(minutes=1)
            ).records

    answers = race(app, backend, request, org, [pushing(org, "laptop", edit), purge])
    assert answers[0].status_code == 200, answers[0].text
    # the edit wins over the delete it did not see: restored, with the delete kept as a conflict to look at
    results = answers[0].json()["results"]
    assert [(r["status"], len(r["conflicts"])) for r in results] == [("conflict", 1)], answers[0].text
    assert answers[1] == 0, "nothing is purged: the push restored the only tombstone"
    served, state = served_state(org, prompt_id)
    assert served["body"] == "edited offline, before the delete arrived"
    assert not state.deleted


def test_many_devices_pushing_at_once_lose_no_edit(app: FastAPI, client: TestClient) -> None:
    """Four devices push edits of two records at once, each from the record as it last fetched it (so they
    also edit concurrently in the engine's sense): every write ends up known to the record's state, each
    displayed value is a head or a conflict's, and the rows show what the states display."""
    org = new_org(client, name="Race crowd")
    prompts = [
        org.owner.post(f"{org.base}/prompts", json={"title": f"P{n}", "body": "one\ntwo\nthree"}).json()["id"]
        for n in range(2)
    ]
    rng = random.Random(20261126)
    plans = {
        f"device-{d}": [
            (rng.choice(prompts), rng.choice(["title", "description", "body"]), f"d{d} write {k}")
            for k in range(6)
        ]
        for d in range(4)
    }
    written: dict[str, set[str]] = {p: set() for p in prompts}  # record -> encoded versions pushed
    failures: list[str] = []
    lock = threading.Lock()

    def device(node: str) -> None:
        own = TestClient(app)
        last = 0
        for prompt_id, field, value in plans[node]:
            wire = own.get(f"{org.base}/sync/records/prompt/{prompt_id}", headers=org.owner.headers).json()
            state = state_from_wire("prompt", prompt_id, wire["state"])
            last = max(last + 1, int(time.time() * 1000))
            change = make_edit(
                state,
                {field: value},
                schema=DEFAULT_SCHEMA,
                node=node,
                hlc=HLC(last, 0, node),
                op_id=f"{node}-{uuid.uuid4()}",
            )
            assert change is not None
            answer = own.post(
                f"{org.base}/sync/push",
                headers=org.owner.headers,
                json={"protocol": 4, "device": node, "changes": [change_to_wire(change)]},
            )
            with lock:
                if answer.status_code != 200:
                    failures.append(f"{node}: {answer.status_code} {answer.text}")
                    continue
                statuses = [r["status"] for r in answer.json()["results"]]
                if statuses[0] not in ("applied", "merged", "conflict"):
                    failures.append(f"{node}: {answer.text}")
                written[prompt_id].add(change.hlc.encode())

    threads = [threading.Thread(target=device, args=(node,)) for node in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    for prompt_id in prompts:
        served, state = served_state(org, prompt_id)
        known = {v.encode() for v in state.known_versions}
        assert written[prompt_id] <= known, f"{prompt_id}: writes lost: {written[prompt_id] - known}"
        for name in ("title", "description", "body"):
            assert served[name] == state.values[name], name


def test_a_push_retried_while_the_first_attempt_runs_is_answered_once(
    app: FastAPI, client: TestClient, backend: str, request: pytest.FixtureRequest
) -> None:
    """A client that timed out sends the same batch again while the server is still applying the first:
    the second attempt waits, then gets the first one's answers (replayed), and the edit is applied once."""
    org = new_org(client, name="Race retry")
    prompt_id = seed_library(org)["prompt"]
    edit = _edit(org, prompt_id, {"title": "Sent twice"}, "laptop")
    before = org.owner.get(f"{org.base}/prompts/{prompt_id}").json()["revision"]
    first, second = race(
        app, backend, request, org, [pushing(org, "laptop", edit), pushing(org, "laptop", edit)]
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    [one], [two] = first.json()["results"], second.json()["results"]
    assert one["status"] == "applied" and not one.get("replayed")
    assert two["replayed"] is True and two["revision"] == one["revision"] and two["status"] == one["status"]
    served = org.owner.get(f"{org.base}/prompts/{prompt_id}").json()
    assert served["title"] == "Sent twice" and served["revision"] == one["revision"] > before


def test_an_api_key_write_and_a_revoke_of_that_key_at_once_do_not_deadlock(
    app: FastAPI, client: TestClient, backend: str, request: pytest.FixtureRequest
) -> None:
    """An API-key write notes the key's last use (a row lock on the key) and a revoke of the key locks the
    key's row while it holds the organization's write lock. The write must not lock the key's row before it
    queues on the organization's lock: the revoke would then wait for the write and the write for the revoke
    (PostgreSQL breaks the cycle by failing one of them: ``503 DeadlockDetected``). The test plays the
    revoke's part itself: it holds the counter, lets the write queue, then locks the key's row."""
    org = new_org(client, name="Race key")
    made = org.owner.post(f"{org.base}/api-keys", json={"name": "ci", "scope": "write"})
    assert made.status_code == 201, made.text
    key = made.json()
    headers = {"Authorization": f"Bearer {key['key']}"}

    def write(c: TestClient) -> Any:
        return c.post(f"{org.base}/prompts", headers=headers, json={"title": "From CI", "body": "b"})

    if backend != "postgres":  # one writer at a time: nothing can interleave; both simply work
        assert write(client).status_code == 201
        assert org.owner.delete(f"{org.base}/api-keys/{key['id']}").status_code in (200, 204)
        return
    answer: list[Any] = []
    thread = threading.Thread(target=lambda: answer.append(write(TestClient(app))))
    with psycopg.connect(request.getfixturevalue("pg_url")) as conn:
        conn.execute("SELECT set_config('outputhub.org_id', %s, true)", (org.id,))
        conn.execute("SELECT revision FROM org_revisions WHERE org_id = %s FOR UPDATE", (org.id,))
        thread.start()
        deadline = time.monotonic() + 20
        while not waiting_on_the_counter(backend, request, 1):
            assert thread.is_alive(), f"the write did not queue on the organization's lock: {answer}"
            assert time.monotonic() < deadline, "the write never queued on the organization's lock"
            time.sleep(0.02)
        locked = conn.execute(  # what a revoke does next, holding the organization's lock
            "SELECT id FROM api_keys WHERE id = %s FOR UPDATE", (key["id"],)
        ).fetchall()
        assert len(locked) == 1
        conn.commit()
    thread.join(timeout=60)
    assert answer and answer[0].status_code == 201, answer[0].text if answer else "no answer"
    listed = {k["id"]: k for k in org.owner.get(f"{org.base}/api-keys").json()}
    assert listed[key["id"]]["last_used_at"] is not None, "the key's last use is still noted"
