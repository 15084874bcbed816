"""A hypothesis state machine: three or more devices edit offline and sync through a real server under faults.

The server is the real app (in process, over HTTP semantics via Starlette's test client) on SQLite and on
PostgreSQL; each device has a real encrypted replica. Faults: the request is lost, the response is lost after
the server applied it, a batch is delivered twice or in another order, the client crashes in the middle of
applying a pulled page (and reopens its replica from disk), the server restarts, device clocks are skewed by
minutes; the server purges tombstones (and forgets its purge log). At quiescence (a final fault-free sync
round): every replica equals a fresh replica of the server, every outbox is empty, and every edit any device
made is known to the server's state (or kept as a refused edit, or of a record deleted and then purged),
displayed or held by an open conflict.

CI runs a bounded, seeded number of examples (``OUTPUTHUB_SYNC_MACHINE_EXAMPLES``, default 6 per backend);
the long run: ``OUTPUTHUB_SYNC_MACHINE_EXAMPLES=1000 .venv/bin/python -m pytest -m slow tests/sync``.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from outputhub.common.clock import HLC
from outputhub.common.sync import PullAlong
from outputhub.desktop.services.conflicts import resolve_conflict
from outputhub.desktop.services.library import LibraryService
from outputhub.desktop.storage import open_replica
from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from outputhub.server.api.sync.references import dangling_references
from outputhub.server.api.sync.service import counted_sums, kept_sums, purge_tombstones
from outputhub.server.main import create_app
from outputhub.server.settings import Settings
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.server.storage.tables import SyncPurge, SyncRemap
from outputhub.sync.client import (
    HttpRemote,
    LocalEditError,
    LocalLibrary,
    Merged,
    ServerUnreachableError,
    SyncClient,
)
from outputhub.sync.engine import RecordState
from outputhub.sync.ports import ApplyResult, RemoteItem
from outputhub.sync.protocol import ENTITY_TABLES, TABLE_ENTITIES
from tests.conftest import make_settings
from tests.support.client import new_org, seed_library
from tests.support.feed import stale_feed_data
from tests.sync.support import PASSPHRASE

EXAMPLES = int(os.environ.get("OUTPUTHUB_SYNC_MACHINE_EXAMPLES", "6"))
LONG_EXAMPLES = int(os.environ.get("OUTPUTHUB_SYNC_MACHINE_EXAMPLES", "1000"))
DEVICES = ("ada", "bob", "cyd")
WORDS = ("alpha", "beta", "gamma", "delta", "echo")
FAULTS = ("none", "lose-request", "lose-response", "duplicate", "reorder", "crash-mid-apply")


class Server:
    """The app, restartable against the same database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.http = TestClient(self.app)

    def restart(self) -> None:
        self.http.close()
        self.app.state.services.engine.dispose()
        self.app = create_app(self.settings)
        self.http = TestClient(self.app)

    def close(self) -> None:
        self.http.close()
        self.app.state.services.engine.dispose()


class FaultyRemote:
    """The HTTP remote, with the next request's fault chosen by the test."""

    def __init__(self, server: Server, *, token: str, org_id: str, rng: random.Random) -> None:
        self.server = server
        self.token = token
        self._org = org_id
        self.fault = "none"
        self.rng = rng

    @property
    def server_url(self) -> str:
        return "http://testserver"

    @property
    def org_id(self) -> str:
        return self._org

    def _remote(self) -> HttpRemote:
        return HttpRemote("", token=self.token, org_id=self._org, client=self.server.http)

    def _take(self) -> str:
        fault, self.fault = self.fault, "none"
        return fault

    def pull(
        self,
        *,
        since: int,
        limit: int,
        from_zero: bool = False,
        decoding: AbstractContextManager[object] | None = None,
    ) -> Mapping[str, Any]:
        fault = self._take()
        if fault == "lose-request":
            raise ServerUnreachableError("injected: request lost")
        page = self._remote().pull(since=since, limit=limit, from_zero=from_zero, decoding=decoding)
        if fault == "lose-response":
            raise ServerUnreachableError("injected: response lost")
        if fault == "duplicate":
            page = self._remote().pull(since=since, limit=limit, from_zero=from_zero, decoding=decoding)
        return page

    def push(
        self,
        *,
        device: str,
        changes: Sequence[Mapping[str, Any]],
        pull: PullAlong | None = None,
    ) -> Mapping[str, Any]:
        fault = self._take()
        if fault == "lose-request":
            raise ServerUnreachableError("injected: request lost")
        batch = list(changes)
        if fault == "reorder":
            # other records' ops overtake each other; one record's ops keep their order (one connection)
            records = list(dict.fromkeys(c["id"] for c in batch))
            self.rng.shuffle(records)
            rank = {r: i for i, r in enumerate(records)}
            batch.sort(key=lambda c: rank[c["id"]])
        answer = self._remote().push(device=device, changes=batch, pull=pull)
        if fault == "duplicate":
            answer = self._remote().push(device=device, changes=batch, pull=pull)
        if fault == "lose-response":
            raise ServerUnreachableError("injected: response lost after the server applied it")
        return answer

    def record(self, *, entity: str, record_id: str) -> Mapping[str, Any] | None:
        return self._remote().record(entity=entity, record_id=record_id)

    def checksums(self, *, full: bool = False) -> Mapping[str, Any]:
        return self._remote().checksums(full=full)


class CrashingStore(ReplicaSyncStore):
    """The replica store; ``crash_next`` makes the next pulled page blow up half-way through applying."""

    crash_next = False

    def apply_remote(self, items: Sequence[RemoteItem]) -> ApplyResult:
        if self.crash_next and items:
            self.crash_next = False
            super().apply_remote(items[: len(items) // 2])
            raise SystemExit("injected: the client crashed while applying a pulled page")
        return super().apply_remote(items)


class Device:
    def __init__(self, name: str, directory: Path, remote: FaultyRemote, org_id: str, skew_ms: int) -> None:
        self.name = name
        self.path = directory / f"{name}.ohr"
        self.remote = remote
        self.org_id = org_id
        self.skew_ms = skew_ms
        self.open()

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.skew_ms

    def open(self) -> None:
        self.replica = open_replica(self.path, passphrase=PASSPHRASE, create=True)
        self.store = CrashingStore(self.replica)
        self.store.attach(org_id=self.org_id)
        self.library = LocalLibrary(self.store, now_ms=self.now_ms)
        self.client = SyncClient(self.store, self.remote, push_batch=7, pull_page=9, full_check=True)

    def crash_and_reopen(self) -> None:
        self.replica.close()
        self.open()

    def last_op(self) -> tuple[str, str] | None:
        pending = self.store.pending(limit=100_000)
        if not pending:
            return None
        change = pending[-1].change
        return str(change["op_id"]), str(change["hlc"])


class SyncMachine(RuleBasedStateMachine):
    server: Server
    settings_factory: Any

    records = Bundle("records")

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="sync-machine-"))
        self.server = Server(type(self).settings_factory(self.directory))
        org = new_org(self.server.http, name="Machine")
        seed_library(org)  # a shared library to start from: a tagged prompt with an output, lookups
        org.owner.post(f"{org.base}/prompts", json={"title": "second", "body": "one\ntwo\nthree\n"})
        self.org = org
        self.rng = random.Random(0)
        self.devices: list[Device] = []
        self.made: list[tuple[str, str, str, str, str]] = []  # device, entity, record id, op id, hlc
        self.purged: set[tuple[str, str]] = set()  # (entity, record id) the server purged

    @initialize(skews=st.lists(st.integers(-5, 5), min_size=len(DEVICES), max_size=len(DEVICES)))
    def start(self, skews: list[int]) -> None:
        for name, minutes in zip(DEVICES, skews, strict=True):
            remote = FaultyRemote(self.server, token=self.org.owner.token, org_id=self.org.id, rng=self.rng)
            self.devices.append(Device(name, self.directory, remote, self.org.id, minutes * 60_000))
        for device in self.devices:
            device.client.sync()

    def _remember(self, device: Device, entity: str, record_id: str) -> None:
        op = device.last_op()
        if op is not None:
            self.made.append((device.name, entity, record_id, *op))

    # -- offline edits -----------------------------------------------------------------------------------

    @rule(target=records, d=st.integers(0, len(DEVICES) - 1), word=st.sampled_from(WORDS))
    def create_prompt(self, d: int, word: str) -> tuple[str, str, int]:
        device = self.devices[d]
        rid = device.library.create("prompt", {"title": word, "body": f"{word}\nline two\nline three\n"})
        self._remember(device, "prompt", rid)
        return ("prompt", rid, d)

    @rule(
        target=records, d=st.integers(0, len(DEVICES) - 1), word=st.sampled_from(WORDS), upper=st.booleans()
    )
    def create_tag(self, d: int, word: str, upper: bool) -> tuple[str, str, int]:
        """A tag; the same name made on two devices is merged into one on the server, and another spelling
        ("Tag-" for "tag-") is moved onto the survivor as a write of its name (a conflict)."""
        device = self.devices[d]
        try:
            rid = device.library.create("tag", {"name": f"{'Tag' if upper else 'tag'}-{word}"})
        except LocalEditError:
            return ("tag", "", d)
        self._remember(device, "tag", rid)
        return ("tag", rid, d)

    def _visible(self, device: Device, entity: str, rid: str) -> RecordState | None:
        if not rid:
            return None
        local = device.store.load(entity, rid)
        return local.state if local is not None else None

    @rule(
        target=records, d=st.integers(0, len(DEVICES) - 1), p=st.integers(0, 7), word=st.sampled_from(WORDS)
    )
    def create_output(self, d: int, p: int, word: str) -> tuple[str, str, int]:
        """An output under a prompt this device shows live (another may be deleting it meanwhile)."""
        device = self.devices[d]
        prompts = self._live_ids(device, "prompt")
        if not prompts:
            return ("output", "", d)
        prompt = prompts[p % len(prompts)]
        rid = device.library.create("output", {"prompt_id": prompt, "content": f"{word} answer"})
        self._remember(device, "output", rid)
        return ("output", rid, d)

    @rule(record=records, d=st.integers(0, len(DEVICES) - 1), word=st.sampled_from(WORDS))
    def edit_title(self, record: tuple[str, str, int], d: int, word: str) -> None:
        entity, rid, _ = record
        device = self.devices[d]
        state = self._visible(device, entity, rid)
        if state is None or state.deleted:
            return
        field = {"prompt": "title", "output": "notes"}.get(entity, "name")
        value = f"tag-{word}-{device.name}" if field == "name" else word
        if device.library.edit(entity, rid, {field: value}):
            self._remember(device, entity, rid)

    @rule(
        record=records,
        d=st.integers(0, len(DEVICES) - 1),
        line=st.integers(0, 2),
        word=st.sampled_from(WORDS),
    )
    def edit_body_line(self, record: tuple[str, str, int], d: int, line: int, word: str) -> None:
        entity, rid, _ = record
        device = self.devices[d]
        state = self._visible(device, entity, rid)
        if entity != "prompt" or state is None or state.deleted:
            return
        lines = str(state.values["body"]).splitlines() or [""]
        lines[min(line, len(lines) - 1)] = f"{word} by {device.name}"
        if device.library.edit(entity, rid, {"body": "\n".join(lines) + "\n"}):
            self._remember(device, entity, rid)

    def _live_ids(self, device: Device, entity: str) -> list[str]:
        """The records of ``entity`` this device shows live, in a stable order."""
        return sorted(i for i, v in device.store.snapshot_values(entity).items() if not v["_deleted"])

    @rule(d=st.integers(0, len(DEVICES) - 1), p=st.integers(0, 7), t=st.integers(0, 7), add=st.booleans())
    def toggle_tag(self, d: int, p: int, t: int, add: bool) -> None:
        """Put a tag on a prompt, or take it off: among those this device shows (relations are drawn from what
        a device sees, so tags and prompts meet often enough for a delete to cross a new use)."""
        device = self.devices[d]
        prompts, tags = self._live_ids(device, "prompt"), self._live_ids(device, "tag")
        if not prompts or not tags:
            return
        prompt, tag = prompts[p % len(prompts)], tags[t % len(tags)]
        state = self._visible(device, "prompt", prompt)
        assert state is not None
        members = set(state.values["tag_ids"])  # type: ignore[arg-type]
        members = members | {tag} if add else members - {tag}
        if device.library.edit("prompt", prompt, {"tag_ids": sorted(members)}):
            self._remember(device, "prompt", prompt)

    @rule(record=records, d=st.integers(0, len(DEVICES) - 1))
    def delete_or_restore(self, record: tuple[str, str, int], d: int) -> None:
        entity, rid, _ = record
        device = self.devices[d]
        state = self._visible(device, entity, rid)
        if state is None:
            return
        if state.deleted:
            try:
                device.library.restore(entity, rid)
            except LocalEditError:  # a tag the server merged into another of its name is not restored
                return
        else:
            device.library.delete(entity, rid)
        self._remember(device, entity, rid)

    @rule(
        d=st.integers(0, len(DEVICES) - 1),
        entity=st.sampled_from(["prompt", "tag", "output"]),
        k=st.integers(0, 7),
    )
    def delete_like_the_desktop(self, d: int, entity: str, k: int) -> None:
        """Delete as the desktop does: a prompt with its outputs, a tag taken off the records this device
        knows (another device may be using it meanwhile)."""
        device = self.devices[d]
        live = self._live_ids(device, entity)
        if not live:
            return
        rid = live[k % len(live)]
        service = LibraryService(replica=device.replica, editor=device.library)
        before = len(device.store.pending(limit=100_000))
        deletion = service.delete_records(entity=entity, ids=[rid])
        for taken_entity, taken_id in deletion.records:
            self._remember_nth(device, taken_entity, taken_id, before)
        for user_entity, user_id, _field, _entry in deletion.unlinked:
            self._remember_nth(device, user_entity, user_id, before)

    def _remember_nth(self, device: Device, entity: str, record_id: str, since: int) -> None:
        """Remember the edits of ``record_id`` queued after the first ``since`` outbox entries."""
        for entry in device.store.pending(limit=100_000)[since:]:
            change = entry.change
            if str(change["id"]) == record_id:
                self.made.append((device.name, entity, record_id, str(change["op_id"]), str(change["hlc"])))

    @rule(d=st.integers(0, len(DEVICES) - 1), pick=st.sampled_from(["mine", "theirs", "merged"]))
    def resolve_a_conflict(self, d: int, pick: str) -> None:
        device = self.devices[d]
        open_ = [c for c in device.replica.list_conflicts() if c.field != "_rejected"]
        if not open_:
            return
        conflict = open_[0]
        state = self._visible(device, conflict.entity, conflict.record_id)
        if state is None or state.conflict(conflict.id) is None:
            return
        engine_conflict = state.conflict(conflict.id)
        assert engine_conflict is not None
        if pick == "merged" and engine_conflict.kind.value == "text":
            choice: Any = Merged(f"{engine_conflict.winner.value}{engine_conflict.loser.value}")
        elif pick == "merged" and engine_conflict.kind.value == "value":
            choice = Merged(engine_conflict.winner.value)
        else:
            choice = "mine" if pick != "theirs" else "theirs"
        try:  # as the desktop and the CLI resolve (keeping a delete takes its dependents along)
            resolve_conflict(device.replica, device.library, conflict, choice)
        except LocalEditError:
            return
        self._remember(device, conflict.entity, conflict.record_id)

    # -- syncing under faults ----------------------------------------------------------------------------

    @rule(d=st.integers(0, len(DEVICES) - 1), fault=st.sampled_from(FAULTS))
    def sync(self, d: int, fault: str) -> None:
        device = self.devices[d]
        if fault == "crash-mid-apply":
            device.store.crash_next = True
        else:
            device.remote.fault = fault
        try:
            device.client.sync()
        except ServerUnreachableError:
            pass  # the edits stay queued; the next sync retries
        except SystemExit:
            device.crash_and_reopen()
        device.remote.fault = "none"
        # a crash armed for a sync that pulled nothing is not carried into a later one (the final sync of
        # the quiescence check included, which expects no fault)
        device.store.crash_next = False

    @rule()
    def restart_server(self) -> None:
        self.server.restart()
        self.org.owner.client = self.server.http

    @rule(forget=st.booleans())
    def purge_tombstones(self, forget: bool) -> None:
        """The server purges every tombstone nothing references (a retention of 0 days). Replicas learn what
        went from the purge log at their next pull; with ``forget``, a second purge forgets the log, and
        replicas whose cursor is older get 410 and resynchronize from 0."""
        factory = self.server.app.state.services.session_factory
        org_id = uuid.UUID(self.org.id)
        for _ in range(2 if forget else 1):
            with unit_of_work(factory) as session:
                set_tenant(session, org_id=org_id)
                purge_tombstones(session, org_id=org_id, before=datetime.now(UTC) + timedelta(days=1))
                logged = session.execute(
                    select(SyncPurge.entity, SyncPurge.record_id).where(SyncPurge.org_id == org_id)
                )
                self.purged |= {(TABLE_ENTITIES[entity], str(ident)) for entity, ident in logged}

    @rule(record=records)
    def server_side_edit(self, record: tuple[str, str, int]) -> None:
        """Someone edits through the REST API meanwhile."""
        entity, rid, _ = record
        if entity != "prompt" or not rid:
            return
        response = self.org.owner.client.patch(
            f"{self.org.base}/prompts/{rid}",
            json={"description": "edited on the web"},
            headers=self.org.owner.headers,
        )
        assert response.status_code in (200, 404), response.text

    # -- quiescence ----------------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.devices:
                self._check_quiescence()
        finally:
            for device in self.devices:
                device.replica.close()
            self.server.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    def _check_quiescence(self) -> None:
        self.org.owner.client = self.server.http
        for _ in range(2):
            for device in self.devices:
                device.remote.fault = "none"
                report = device.client.sync()
                assert report.checksum_ok is not False, (device.name, report)
        for device in self.devices:  # quiet now: each one's check agrees with the server at once
            report = device.client.sync()
            assert report.checksum_ok is True and not report.repaired, (device.name, report)
        observer = Device(
            "observer",
            self.directory,
            FaultyRemote(self.server, token=self.org.owner.token, org_id=self.org.id, rng=self.rng),
            self.org.id,
            0,
        )
        self.devices.append(observer)
        observer.client.sync()
        # the data the server stored at each commit is what its rows say now (replicas would agree on a
        # stale one too, so this is checked against the rows themselves)
        # (a purge takes link rows off records without a new revision and clears their stored data: built
        # on the fly at their next pull)
        stale = stale_feed_data(
            self.server.app.state.services.session_factory, self.org.id, allow_missing=bool(self.purged)
        )
        assert stale == []
        # the check's figures the triggers kept through every fault are the rows counted
        with unit_of_work(self.server.app.state.services.session_factory) as session:
            set_tenant(session, org_id=uuid.UUID(self.org.id))
            kept = kept_sums(session, org_id=uuid.UUID(self.org.id))
            assert kept == counted_sums(session, org_id=uuid.UUID(self.org.id))
        # no live record names a deleted one (a delete that met a reference it did not see was overridden)
        with unit_of_work(self.server.app.state.services.session_factory) as session:
            set_tenant(session, org_id=uuid.UUID(self.org.id))
            assert dangling_references(session, org_id=uuid.UUID(self.org.id)) == []
        truth = {e: observer.store.snapshot_values(e) for e in ENTITY_TABLES}
        for device in self.devices:
            assert device.store.pending_count() == 0, f"{device.name}: outbox not empty"
            mine = {e: device.store.snapshot_values(e) for e in ENTITY_TABLES}
            assert mine == truth, f"{device.name} differs from the server"
        rejected = {
            (c.entity, c.record_id)
            for device in self.devices
            for c in device.replica.list_conflicts(include_resolved=True)
            if c.field == "_rejected"
        }
        # a lookup created on two devices under one name is merged into the first to arrive, and the other's
        # later edits are applied to the survivor (the merged one keeps a tombstone): follow the merges
        with unit_of_work(self.server.app.state.services.session_factory) as session:
            set_tenant(session, org_id=uuid.UUID(self.org.id))
            merged_into = {
                str(from_id): str(to_id)
                for from_id, to_id in session.execute(
                    select(SyncRemap.from_id, SyncRemap.to_id).where(
                        SyncRemap.org_id == uuid.UUID(self.org.id)
                    )
                )
            }
        for name, entity, rid, op_id, hlc in self.made:
            local = observer.store.load(entity, rid)
            survivor = rid
            while (
                local is not None
                and HLC.decode(hlc) not in local.state.known_versions
                and survivor in merged_into
            ):
                survivor = merged_into[survivor]
                local = observer.store.load(entity, survivor)
            if local is None:
                # a record deleted (by whoever) and then purged; or refused (an edit of a purged one)
                assert (entity, rid) in rejected or (entity, rid) in self.purged, (
                    f"{name}'s {entity} {rid} ({op_id}) vanished"
                )
                continue
            version = HLC.decode(hlc)
            assert version in local.state.known_versions or (entity, rid) in rejected, (
                f"{name}'s edit {op_id} of {entity} {rid} never reached the server"
            )
            _assert_heads_shown_or_in_conflict(local.state)


def _assert_heads_shown_or_in_conflict(state: RecordState) -> None:
    losers = {c.loser.version for c in state.conflicts}
    for name, register in state.fields.items():
        for head in register.heads:
            assert head.version in state.value_versions[name] or head.version in losers, (
                f"{state.entity}.{name}: write {head.version} is neither displayed nor in a conflict"
            )


def _run(backend: str, request: pytest.FixtureRequest, examples: int) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None

    class Machine(SyncMachine):
        settings_factory = staticmethod(lambda directory: make_settings(backend, tmp=directory, pg_url=url))

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_devices_converge_under_faults(backend: str, request: pytest.FixtureRequest) -> None:
    _run(backend, request, EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_devices_converge_under_faults_long(backend: str, request: pytest.FixtureRequest) -> None:
    _run(backend, request, LONG_EXAMPLES)
