"""/api/v1/orgs/{org_id}/sync: the replication feed, push, conflicts and checksums."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from outputhub.common.errors import CursorExpiredError, InvalidInputError
from outputhub.common.sync import (
    PULL_WITH_PUSH,
    SUPPORTED_PROTOCOLS,
    Checksums,
    ConflictRead,
    ConflictResolve,
    OpResult,
    PullAlong,
    PulledRecord,
    PullPage,
    PushRequest,
    PushResult,
)
from outputhub.server.api.base import Tenant
from outputhub.server.api.filters import DB_INT_MAX
from outputhub.server.api.sync import push as push_service
from outputhub.server.api.sync import service
from outputhub.server.deps import NowDep, Reader, Services, ServicesDep, SessionDep, Writer
from outputhub.server.request_guard import nul_checked_elsewhere
from outputhub.server.storage.database import set_tenant, unit_of_work

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/orgs/{org_id}/sync", tags=["sync"])


def _check_protocol(protocol: int, field: str) -> None:
    if protocol not in SUPPORTED_PROTOCOLS:
        raise InvalidInputError(
            field, f"unsupported sync protocol {protocol}; this server speaks {sorted(SUPPORTED_PROTOCOLS)}"
        )


@router.get("/changes", response_model=PullPage)
def pull_changes(
    tenant: Reader,
    session: SessionDep,
    protocol: Annotated[int, Query(le=DB_INT_MAX, description="Sync protocol version the client speaks.")],
    since: Annotated[
        int, Query(ge=0, le=DB_INT_MAX, description="The last revision the replica has (0: everything).")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    from_zero: Annotated[
        bool,
        Query(
            description="This page continues a pull that started at 0 (an initial sync or a full resync): "
            "its cursor, a page boundary of that pull, does not expire."
        ),
    ] = False,
) -> Response:
    """Every record changed after `since`, tombstones included, in revision order (lookups before the
    records that reference them), with each record's merge state. Pages never split a revision. A cursor
    older than the tombstone retention gets 410 `cursor-expired`: pull again from 0 (and pass `from_zero`
    with the pages after the first)."""
    _check_protocol(protocol, "query.protocol")
    page = service.pull(
        session, tenant=tenant, since=since, limit=limit, protocol=protocol, from_zero=from_zero
    )
    return Response(page, media_type="application/json")


class PushAnswer(Response):
    """A push's answer; with a ``pull``, the page of changes after the client's cursor is read when the
    answer is sent: after the push's transaction has committed (``SessionDep`` commits when the endpoint
    returns), in a read-only transaction of its own, so the page holds the push's own revisions and the
    organization's revision counter is not held while it is built. A page that cannot be read (a cursor
    older than the tombstone retention, a database error) is left out: the push stands, and the client
    pulls on its own, which reports the error."""

    media_type = "application/json"

    def __init__(self, result: PushResult, pull: Callable[[], bytes] | None = None) -> None:
        # serialized once here (the results are built as PushResult's own models; no second validation)
        super().__init__(result.model_dump_json(exclude={"changes", "checksums"}).encode())
        self._pull = pull

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._pull is not None:
            extra = await run_in_threadpool(self._pull)
            if extra:
                self.body = self.body[:-1] + extra + b"}"
                self.init_headers()  # the new Content-Length
        await super().__call__(scope, receive, send)


def _pull_after_commit(
    services: Services, tenant: Tenant, along: PullAlong, protocol: int
) -> Callable[[], bytes]:
    """What the answer gets after its results: ``,"changes":<page>`` and, when asked for,
    ``,"checksums":<sums>`` read after the page in the same transaction; nothing when they cannot be read."""

    def read() -> bytes:
        try:
            with unit_of_work(services.session_factory, read_only=True) as session:
                set_tenant(session, org_id=tenant.org_id, user_id=tenant.user_id)
                extra = b',"changes":' + service.pull(
                    session, tenant=tenant, since=along.since, limit=along.limit, protocol=protocol
                )
                if along.checksums:
                    sums = service.checksums_json(session, tenant=tenant, full=False)
                    extra += b',"checksums":' + sums
                return extra
        except CursorExpiredError:
            return b""
        except Exception:  # the push has committed: its answer goes out, without the page
            logger.exception("reading the changes to send with a push answer failed")
            return b""

    return read


@router.post("/push", response_model=PushResult)
@nul_checked_elsewhere("changes.*.values")  # a value with a NUL refuses its op alone (records.value_problem)
def push_changes(
    tenant: Reader, session: SessionDep, services: ServicesDep, body: PushRequest, now: NowDep
) -> Response:
    """Merge a batch of offline operations. Each is answered on its own (`applied`, `merged`, `conflict`,
    `noop` or `refused` with a reason); a refused one does not stop the others; replaying an op id returns
    its first answer and changes nothing. With `pull` (protocol 4), the answer also carries the changes
    after `pull.since` as read right after this push committed (`changes`), as `GET /changes` would."""
    _check_protocol(body.protocol, "body.protocol")
    if body.pull is not None and body.protocol < PULL_WITH_PUSH:
        raise InvalidInputError("body.pull", "a push carries a pull from sync protocol 4 on")
    results = push_service.push(session, tenant=tenant, device=body.device, changes=body.changes, now=now)
    refused = service.refused_records(session, tenant=tenant, results=results)
    pull = None if body.pull is None else _pull_after_commit(services, tenant, body.pull, body.protocol)
    return PushAnswer(PushResult(protocol=body.protocol, results=results, refused_records=refused), pull)


@router.get("/records/{entity}/{record_id}")
def get_record(tenant: Reader, session: SessionDep, entity: str, record_id: uuid.UUID) -> PulledRecord:
    """One record with its merge state, as the feed delivers it."""
    return service.record_state(session, tenant=tenant, entity=entity, ident=record_id)


@router.get("/checksums", response_model=Checksums)
def get_checksums(tenant: Reader, session: SessionDep, full: bool = False) -> Response:
    """Per table: record count, revision sum and newest record (and with `full=true` a digest of the sorted
    (id, revision) pairs), for the client's check after every sync."""
    body = service.checksums_json(session, tenant=tenant, full=full)
    return Response(body, media_type="application/json")


@router.get("/conflicts")
def list_conflicts(
    tenant: Reader,
    session: SessionDep,
    include_resolved: bool = False,
    record_id: uuid.UUID | None = None,
    limit: Annotated[
        int | None, Query(ge=1, le=10_000, description="At most this many (all when not given), oldest first")
    ] = None,
    after: Annotated[
        uuid.UUID | None, Query(description="The previous page's last conflict: the page starts after it.")
    ] = None,
) -> list[ConflictRead]:
    """Merge conflicts (losing values kept until someone resolves them), oldest first: the open ones, or every
    one with ``include_resolved``; page with ``limit`` and ``after`` (``limit`` was ignored, and a busy
    organization's history came as one answer of tens of MB; QA)."""
    return service.list_conflicts(
        session,
        tenant=tenant,
        include_resolved=include_resolved,
        record_id=record_id,
        limit=limit,
        after=after,
    )


@router.get("/conflicts/{conflict_id}")
def get_conflict(tenant: Reader, session: SessionDep, conflict_id: uuid.UUID) -> ConflictRead:
    return service.get_conflict(session, tenant=tenant, ident=conflict_id)


@router.post("/conflicts/{conflict_id}/resolve")
def resolve_conflict(
    tenant: Writer, session: SessionDep, conflict_id: uuid.UUID, body: ConflictResolve, now: NowDep
) -> OpResult:
    """Keep the winner, the loser, or an edited value; the resolution replicates like any edit."""
    return service.resolve_conflict(session, tenant=tenant, ident=conflict_id, body=body, now=now)
