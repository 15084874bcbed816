"""Replication on the server: the pull feed, conflicts, checksums and tombstone retention.

The push half is in ``push.py``; the row <-> engine state mapping in ``records.py``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from sqlalchemy import (
    BigInteger,
    TextClause,
    Uuid,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from outputhub.common.errors import (
    AlreadyResolvedError,
    CursorExpiredError,
    DuplicateError,
    FieldError,
    InUseError,
    InvalidInputError,
    NotFoundError,
)
from outputhub.common.ids import canonical_id
from outputhub.common.limits import missing_problem
from outputhub.common.names import normalize_name
from outputhub.common.sync import (
    PROTOCOL_VERSION,
    Checksums,
    ConflictRead,
    ConflictResolve,
    OpResult,
    PulledRecord,
    RefusedRecord,
    Remap,
    TableChecksum,
)
from outputhub.server.api.base import Link, Tenant, allocate_revisions, check_refs, lock_org_writes
from outputhub.server.api.lookups.service import (
    KIND_BY_TABLE,
    KINDS,
    ensure_unique_name,
    repair_stale_keys,
    take_off_records,
)
from outputhub.server.api.prompts.service import delete_outputs
from outputhub.server.api.sync.feed import (
    ENTITY_ORDER,
    FEED_BY_NAME,
    FEEDS,
    Feed,
    FeedRow,
    first_rows,
    page_rows,
    sqlite_uuid_sql,
)
from outputhub.server.api.sync.push import (
    OpRefusedError,
    apply_change,
    display_state,
    effect_verb,
    server_hlc,
)
from outputhub.server.api.sync.records import (
    SERVER_NODE,
    SPEC_BY_TABLE,
    SPECS,
    EntitySpec,
    load_state_wires,
    load_states,
)
from outputhub.server.events import DomainEvent, emit
from outputhub.server.storage.tables import (
    CustomGpt,
    Output,
    Prompt,
    PromptVersion,
    ReplicatedRow,
    SyncConflict,
    SyncHorizon,
    SyncPurge,
    SyncRecordState,
    sums_columns,
)
from outputhub.sync.engine import DEFAULT_SCHEMA, InvalidChangeError, Merged, Resolution, resolve, sides
from outputhub.sync.engine.schema import check_value
from outputhub.sync.protocol import TABLE_ENTITIES, state_to_wire


@functools.cache
def _marks_sql(dialect: str, *, remaps_since: bool = False) -> TextClause:
    """The organization's sync horizon, its newest revision, (``remaps_since``) its lookup remaps after
    ``:since`` (a JSON array of ``[entity, from_id, to_id, revision]``, in revision order: rare, so all of
    them rather than a second statement once the page's end is known) and its newest purge's revision (a
    pull reads the purge log only when it is after ``since``: a purge logs thousands of records). On
    PostgreSQL it also asks for generic plans for the rest of the pull's transaction (``SET LOCAL``): the
    page statement (one part per replicated table) takes 2-5 ms to plan and under 1 ms to run; psycopg
    prepares it after a few pulls, and a generic plan then skips the planning (its parameters never change
    which plan is right: each part walks the (org_id, revision) index)."""
    if dialect == "postgresql":
        generic = ", set_config('plan_cache_mode', 'force_generic_plan', true)"
        remaps = (
            "(SELECT coalesce(json_agg(json_build_array(entity, from_id, to_id, revision) "
            "ORDER BY revision), '[]')::text FROM sync_remaps WHERE org_id = :org AND revision > :since)"
        )
    else:
        generic = ""
        remaps = (
            "(SELECT json_group_array(json_array(entity, from_id, to_id, revision)) FROM (SELECT * FROM "
            "sync_remaps WHERE org_id = :org AND revision > :since ORDER BY revision))"
        )
    statement = text(
        "SELECT (SELECT revision FROM sync_horizons WHERE org_id = :org), "
        f"(SELECT revision FROM org_revisions WHERE org_id = :org), {remaps if remaps_since else 'NULL'}, "
        "(SELECT max(revision) FROM sync_purges WHERE org_id = :org)"
        f"{generic}"
    )
    if remaps_since:
        return statement.bindparams(bindparam("org", type_=Uuid), bindparam("since", type_=BigInteger))
    return statement.bindparams(bindparam("org", type_=Uuid))


PULL_PAGE_BYTES: Final = 32 * 1024 * 1024
"""A pull page ends before its records' data and states pass this many bytes (but holds at least one
revision): ``limit`` records of 250 KB each would otherwise make a 250 MB answer that the client has to hold
and decode at once. Pages of ordinary records (~3.3 KB each with their state) never reach it."""


def _byte_limit(found: Sequence[FeedRow], limit: int) -> int:
    """``limit``, lowered to the number of leading rows of ``found`` that fit in :data:`PULL_PAGE_BYTES`."""
    total = 0
    for n, row in enumerate(found[:limit]):
        total += row.size  # the sizes first_rows bounded its reads by: the cut needs no row it left out
        if total > PULL_PAGE_BYTES:
            return max(1, n)
    return limit


_NO_PARALLEL_WORKERS: Final = text("SET LOCAL max_parallel_workers_per_gather = 0")
"""For the rest of the pull's transaction. Once PostgreSQL has statistics of a large library, the generic plan
it keeps for the page statement (prepared: it runs on every pull) reads the outputs with a parallel index
scan, for a ``since`` that could match them all; starting the worker costs 2-4 ms, for a pull that finds one
row in 0.1 ms (measured at 50,000 outputs: 4.1 ms against 0.4 ms)."""


def _page(
    session: Session, *, org_id: uuid.UUID, since: int, limit: int, form: int
) -> tuple[int, bool, list[FeedRow]]:
    """Where the page after ``since`` ends, whether more follows, and its rows in feed order.

    The page is every record with ``since < revision <= next_since``: up to ``limit`` records cut at a
    revision boundary, or all of one revision that alone is larger than a page. One statement reads the first
    ``limit + 1`` rows of every entity; the page is cut from them (after fewer records when they are large:
    :data:`PULL_PAGE_BYTES`). Every row of the page is among them: an
    entity with more than ``limit + 1`` rows at or below ``next_since`` would put more than ``limit`` rows
    before the revision the page is cut at. Only a page of one revision larger than a page (a lookup delete
    stamps all its referencing records with one revision) is read again, whole."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NO_PARALLEL_WORKERS)
    found = page_rows(
        first_rows(
            session, FEEDS, org_id=org_id, since=since, n=limit + 1, form=form, budget=PULL_PAGE_BYTES
        ),
        ENTITY_ORDER,
    )
    if not found:
        return since, False, []
    limit = _byte_limit(found, limit)  # a smaller page of the same rows: every row of it is still among them
    if len(found) <= limit:
        return found[-1].revision, False, found
    last = found[limit - 1].revision
    if found[limit].revision > last:
        # the page ends at a revision boundary: every row at or below ``last`` is among ``found`` (more rows
        # of one feed would have come before ``found[limit]``; a feed its bytes cut was read through the
        # revision of the cut, which the page's own byte cut would have met first), so the page is
        # ``found[:limit]``, full (it was one record short, always: ``limit - 1`` records per page)
        return last, True, found[:limit]
    earlier = [row.revision for row in found[:limit] if row.revision < last]
    if earlier:
        next_since = earlier[-1]
        return next_since, True, [row for row in found if row.revision <= next_since]
    present = {row.feed.name for row in found if row.revision == last}
    whole = [
        row
        for feed in FEEDS
        if feed.name in present
        for row in feed.rows(session, org_id=org_id, since=since, until=last, form=form)
    ]
    return last, True, page_rows(whole, ENTITY_ORDER)


def _derive_stale_states(session: Session, *, org_id: uuid.UUID, rows: Sequence[FeedRow]) -> None:
    """Rows edited outside the sync layer since their state was stored (or never stored): derive it."""
    for feed in FEEDS:
        stale = [r for r in rows if r.feed is feed and r.state is None]
        if not stale:
            continue
        orm_rows = [
            row
            for start in range(0, len(stale), 500)
            for row in session.execute(
                select(feed.table).where(
                    feed.table.org_id == org_id,
                    feed.table.id.in_([uuid.UUID(r.id) for r in stale[start : start + 500]]),
                )
            ).scalars()
        ]
        wires = load_state_wires(session, org_id=org_id, spec=SPEC_BY_TABLE[feed.table], rows=orm_rows)
        for r in stale:
            r.state = wires.get(uuid.UUID(r.id))


def pull(
    session: Session,
    *,
    tenant: Tenant,
    since: int,
    limit: int,
    with_state: bool = True,
    protocol: int = PROTOCOL_VERSION,
    from_zero: bool = False,
) -> bytes:
    """Changes with revision > ``since`` in revision order, as the JSON of a :class:`PullPage`. A page never
    splits one revision, so ``next_since`` (the highest revision on the page) is always a safe cursor, and a
    page holds exactly the records with ``since < revision <= next_since``.

    Rows are read with Core queries (``feed.py``) and stored states embedded as they are stored."""
    org_id = tenant.org_id
    purged, head, remaps_json, last_purge, *_ = session.execute(
        _marks_sql(session.get_bind().dialect.name, remaps_since=True), {"org": org_id, "since": since}
    ).one()
    purged = int(purged or 0)
    if 0 < since < purged and not from_zero:
        # a pull that started at 0 walks what exists now: its later pages' cursors are below the horizon as
        # a matter of course (they expired every page after the first, and the client started again: a
        # resync after a purge never ended)
        raise CursorExpiredError(
            f"deleted records up to revision {purged} have been purged; this replica last synced at revision "
            f"{since}: pull again from 0 (local edits are kept and pushed)"
        )
    next_since, has_more, page = _page(session, org_id=org_id, since=since, limit=limit, form=protocol)
    last_head = int(head) if head is not None else 0
    if not has_more and (last_head > next_since or (not page and since > last_head)):
        # the last page: revisions up to head that no record holds were drawn and not used (a refused op's),
        # and every record at or below head was visible to the page (head is read first, and every writer
        # commits its revisions with its records), so the cursor may pass them: a client whose cursor
        # stayed behind head pulled and checked again at every sync. A cursor beyond head (the server's
        # database restored from an older backup) comes back to head: kept, it would have skipped every
        # revision written until head passed it (the check then finds what the replica has and the server
        # does not, and repairs it)
        next_since = last_head
    if with_state:
        _derive_stale_states(session, org_id=org_id, rows=page)
    records = [
        {
            "entity": r.feed.name,
            "id": r.id,
            "revision": r.revision,
            "deleted": r.deleted,
            "data": orjson.Fragment(r.data),
            "state": orjson.Fragment(r.state) if with_state and r.state is not None else None,
        }
        for r in page
    ]
    remaps = [
        Remap(entity=entity, from_id=from_id, to_id=to_id, revision=rev).model_dump(mode="json")
        for entity, from_id, to_id, rev in orjson.loads(remaps_json or "[]")
        if rev <= next_since
    ]
    gone = (
        _purged_between(session, org_id=org_id, since=since, until=next_since)
        if last_purge is not None and int(last_purge) > since
        else []
    )
    return orjson.dumps(
        {
            "protocol": protocol,
            "records": records,
            "next_since": next_since,
            "has_more": has_more,
            # read before the page (PostgreSQL reads each statement at its own snapshot): never behind it. An
            # empty page's next_since is the client's own cursor, which may be beyond the newest revision
            "head": None if head is None else max(int(head), next_since) if page else int(head),
            "remaps": remaps,
            "purged": gone,
        }
    )


_PURGED_BETWEEN: Final = (
    select(SyncPurge.entity, SyncPurge.record_id, SyncPurge.revision)
    .where(
        SyncPurge.org_id == bindparam("org"),
        SyncPurge.revision > bindparam("since"),
        SyncPurge.revision <= bindparam("until"),
    )
    .order_by(SyncPurge.revision, SyncPurge.record_id)
)


def _purged_between(session: Session, *, org_id: uuid.UUID, since: int, until: int) -> list[dict[str, Any]]:
    """The purge log's records with ``since < revision <= until``: what a page covering those revisions
    tells the replica to drop (the records themselves are gone from the feed)."""
    return [
        {"entity": entity, "id": str(record_id), "revision": int(revision)}
        for entity, record_id, revision in session.execute(
            _PURGED_BETWEEN, {"org": org_id, "since": since, "until": until}
        )
    ]


def record_state(session: Session, *, tenant: Tenant, entity: str, ident: uuid.UUID) -> PulledRecord:
    """One record as the pull feed would deliver it (used to repair a replica after a refused edit)."""
    spec = SPECS.get(entity) or SPECS.get(TABLE_ENTITIES.get(entity, ""), None)
    if spec is None:
        raise InvalidInputError("path.entity", f"unknown entity {entity!r}")
    row = session.execute(
        select(spec.table).where(spec.table.org_id == tenant.org_id, spec.table.id == ident)
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError(spec.entity, ident)
    feed = FEED_BY_NAME[spec.table.__tablename__]
    (item,) = feed.rows(session, org_id=tenant.org_id, record_id=ident)
    state = load_states(session, org_id=tenant.org_id, spec=spec, rows=[row])[row.id]
    return PulledRecord(
        entity=feed.name,
        id=row.id,
        revision=row.revision,
        deleted=row.deleted,
        data=orjson.loads(item.data),
        state=state_to_wire(state),
    )


def refused_records(session: Session, *, tenant: Tenant, results: Sequence[OpResult]) -> list[RefusedRecord]:
    """The records the refused ops of a push named, as the server has them after it (``None``: it has
    none). A replica resets its copy to them with the answer: it asked for each one afterwards, a request
    per record, and a viewer's sync of 1,500 edits ran into the rate limit and left the rest showing edits
    the server never took (found by QA). Never stored with the op's answer: a replay reads them again."""
    wanted: dict[tuple[str, str], None] = {}
    for result in results:
        if (
            result.status == "refused"
            and result.entity in SPECS
            and result.id is not None
            and canonical_id(result.id) == result.id
        ):
            wanted[(result.entity, str(result.id))] = None
    out: list[RefusedRecord] = []
    for entity, ident in wanted:
        try:
            record: PulledRecord | None = record_state(
                session, tenant=tenant, entity=entity, ident=uuid.UUID(ident)
            )
        except NotFoundError:
            record = None
        out.append(RefusedRecord(entity=entity, id=ident, record=record))
    return out


def _newest_sql(feed: Feed, dialect: str) -> str:
    """``'<id>:<revision>'`` of the organization's row of ``feed``'s table with the highest revision (the
    smallest id among rows of that revision), NULL when it has none: a scalar subquery on the
    ``(org_id, revision)`` index."""
    ident = sqlite_uuid_sql("n.id") if dialect == "sqlite" else "n.id::text"
    table = feed.table.__tablename__
    # the highest revision first (an index probe), then its rows: ordered by (revision, id) at once, SQLite
    # sorted every row of the organization (0.8 s at 100k outputs)
    return (
        f"(SELECT {ident} || ':' || n.revision FROM {table} n WHERE n.org_id = :org AND n.revision = "
        f"(SELECT max(m.revision) FROM {table} m WHERE m.org_id = :org) ORDER BY n.id LIMIT 1)"
    )


@functools.cache
def _sums_sql(dialect: str) -> TextClause:
    """(feed index, count, revision sum, newest) of every replicated table, and (-1, 0, newest revision,
    NULL), in one statement: one snapshot, one round trip (the check runs after every sync)."""
    parts = [
        f"SELECT {i} AS k, count(*) AS n, coalesce(sum(revision), 0) AS total, {_newest_sql(feed, dialect)} "
        f"AS newest FROM {feed.table.__tablename__} WHERE org_id = :org"
        for i, feed in enumerate(FEEDS)
    ]
    parts.append(
        "SELECT -1, 0, coalesce((SELECT revision FROM org_revisions WHERE org_id = :org), 0), NULL"
    )
    return text(" UNION ALL ".join(parts)).bindparams(bindparam("org", type_=Uuid))


@functools.cache
def _kept_sums_sql(dialect: str) -> TextClause:
    """The organization's ``sync_sums`` row (kept by triggers, migration 0011), the figures in feed order,
    its newest revision and each table's newest row (:func:`_newest_sql`), in one statement."""
    names = [name for feed in FEEDS for name in sums_columns(feed.table.__tablename__)]
    newest = [_newest_sql(feed, dialect) for feed in FEEDS]
    return text(
        f"SELECT {', '.join(names)}, "
        "coalesce((SELECT revision FROM org_revisions WHERE org_id = :org), 0), "
        f"{', '.join(newest)} FROM sync_sums WHERE org_id = :org"
    ).bindparams(bindparam("org", type_=Uuid))


Sums = dict[int, tuple[int, int]]
"""(count, revision sum) per feed index, and ``-1``: (0, newest revision)."""

Newest = dict[int, str | None]
"""``'<id>:<revision>'`` of each table's row with the highest revision, per feed index."""


def _counted(session: Session, org_id: uuid.UUID) -> tuple[Sums, Newest]:
    dialect = session.get_bind().dialect.name
    rows = session.execute(_sums_sql(dialect), {"org": org_id}).all()
    sums = {int(k): (int(n), int(total)) for k, n, total, _newest in rows}
    return sums, {int(k): newest for k, _n, _total, newest in rows if int(k) >= 0}


def _kept(session: Session, org_id: uuid.UUID) -> tuple[Sums, Newest] | None:
    row = session.execute(_kept_sums_sql(session.get_bind().dialect.name), {"org": org_id}).first()
    if row is None:
        return None
    figures = [int(v) for v in row[: 2 * len(FEEDS) + 1]]
    sums = {i: (figures[2 * i], figures[2 * i + 1]) for i in range(len(FEEDS))}
    sums[-1] = (0, figures[-1])
    return sums, dict(enumerate(row[2 * len(FEEDS) + 1 :]))


def counted_sums(session: Session, *, org_id: uuid.UUID) -> Sums:
    """(count, revision sum) per feed index, and ``-1``: (0, newest revision), counted from the rows."""
    return _counted(session, org_id)[0]


def kept_sums(session: Session, *, org_id: uuid.UUID) -> Sums | None:
    """:func:`counted_sums` as the triggers keep them (one row read); None if the organization has none."""
    kept = _kept(session, org_id)
    return None if kept is None else kept[0]


def checksums(session: Session, *, tenant: Tenant, full: bool = False) -> Checksums:
    """Per table: how many records (tombstones included), the sum of their revisions, as the database
    keeps them (``sync_sums``), and the id and revision of its newest record, read in the same statement;
    with ``full``, counted from the rows instead, with a digest of the sorted (id, revision) pairs.

    A replica with nothing pending computes the same from its rows; a mismatch means it missed or mangled
    something, and it repairs itself by pulling from zero. ``newest`` tells apart what counts and sums
    cannot: a server restored from a backup that has since taken as many other records as the replica had
    pulled after that backup, under the same revisions (QA)."""
    figures = None if full else _kept(session, tenant.org_id)
    sums, newest = figures if figures is not None else _counted(session, tenant.org_id)
    revision = sums[-1][1]
    tables: dict[str, TableChecksum] = {}
    for i, feed in enumerate(FEEDS):
        name, table = feed.name, feed.table
        count, total = sums[i]
        digest: str | None = None
        if full:
            hasher = hashlib.sha256()
            for ident, rev in session.execute(
                select(table.id, table.revision).where(table.org_id == tenant.org_id).order_by(table.id)
            ):
                hasher.update(f"{ident}:{rev}\n".encode())
            digest = hasher.hexdigest()
        tables[name] = TableChecksum(
            count=int(count), revision_sum=int(total), digest=digest, newest=newest[i]
        )
    return Checksums(protocol=PROTOCOL_VERSION, revision=int(revision or 0), tables=tables)


def checksums_json(session: Session, *, tenant: Tenant, full: bool) -> bytes:
    """:func:`checksums` as JSON. It is not cached: the database keeps the figures, and reading them costs
    one row and an index probe per table, as much as the marks a cache key took. A cache keyed by the
    newest revision (until 2026-11-30) was stale after a restore from a backup, whose later writes draw the
    same revisions again: a replica that matched was repaired at every sync, one that did not passed (QA)."""
    return checksums(session, tenant=tenant, full=full).model_dump_json().encode()


# -- conflicts -----------------------------------------------------------------------------------------------


def _conflict_read(item: SyncConflict) -> ConflictRead:
    data = json.loads(item.data)
    return ConflictRead(
        id=item.id,
        entity=item.entity,
        record_id=item.record_id,
        field=item.field,
        kind=item.kind,
        winner=data["winner"],
        loser=data["loser"],
        base=data["base"],
        opened_at=item.opened_at.isoformat(),
        resolved_at=item.resolved_at.isoformat() if item.resolved_at else None,
        resolved_by=item.resolved_by,
    )


def list_conflicts(
    session: Session,
    *,
    tenant: Tenant,
    include_resolved: bool = False,
    record_id: uuid.UUID | None = None,
    limit: int | None = None,
    after: uuid.UUID | None = None,
) -> list[ConflictRead]:
    query = select(SyncConflict).where(SyncConflict.org_id == tenant.org_id)
    if not include_resolved:
        query = query.where(SyncConflict.resolved_at.is_(None))
    if record_id is not None:
        query = query.where(SyncConflict.record_id == record_id)
    if after is not None:
        last = session.get(SyncConflict, (tenant.org_id, after))
        if last is None:
            raise InvalidInputError("query.after", f"no conflict {after} in this organization")
        query = query.where(
            (SyncConflict.opened_at > last.opened_at)
            | ((SyncConflict.opened_at == last.opened_at) & (SyncConflict.id > last.id))
        )
    query = query.order_by(SyncConflict.opened_at, SyncConflict.id)
    if limit is not None:
        query = query.limit(limit)
    return [_conflict_read(c) for c in session.execute(query).scalars()]


def get_conflict(session: Session, *, tenant: Tenant, ident: uuid.UUID) -> ConflictRead:
    item = session.get(SyncConflict, (tenant.org_id, ident))
    if item is None:
        raise NotFoundError("conflict", ident)
    return _conflict_read(item)


def _live_outputs(session: Session, *, tenant: Tenant, prompt_id: uuid.UUID) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Output)
            .where(Output.org_id == tenant.org_id, Output.prompt_id == prompt_id, Output.deleted.is_(False))
        )
        or 0
    )


def _take_along(
    session: Session, *, tenant: Tenant, spec: EntitySpec, ident: uuid.UUID, now: datetime
) -> int:
    """What deleting the record takes with it, as a delete through the API does: a prompt's live outputs,
    a lookup entry off the records that name it. (A delete kept as a conflict's resolution: without this,
    live records would name the deleted one; a replica's ``keep mine`` does the same by edits.) Returns how
    many outputs it deleted."""
    if spec.table is Prompt:
        count = _live_outputs(session, tenant=tenant, prompt_id=ident)
        if count:
            revision = allocate_revisions(session, org_id=tenant.org_id)
            delete_outputs(session, tenant=tenant, prompt_id=ident, revision=revision, now=now)
        return count
    if spec.lookup:
        kind = next(k for k in KINDS if k.entity == spec.entity)
        revision = allocate_revisions(session, org_id=tenant.org_id)
        take_off_records(session, kind, tenant=tenant, ident=ident, revision=revision, now=now)
    return 0


def _check_live_references(
    session: Session, *, tenant: Tenant, table: type[ReplicatedRow], value: object, field: str
) -> None:
    """Refuse (422 naming ``field``, :func:`check_refs` as a PATCH does) a resolution whose value names an
    entry deleted since: a live record never names a deleted one (a REST resolution keeping a deleted stage
    was taken, and the prompt named it on the server and in every replica; QA). A value that is not an id
    is left to the change's own checks, which refuse it naming the field."""
    members = value if isinstance(value, frozenset | set | list | tuple) else (value,)
    try:
        ids = [uuid.UUID(str(m)) for m in members if m is not None]
    except ValueError:
        return
    check_refs(session, table, tenant=tenant, ids=ids, field=field)


def _written_as_ids(value: Any) -> Any:
    """A reference given in a resolution, written as ids are (lower-case hex with dashes), as a PATCH writes
    it: ``{8D0F...}`` was stored as sent, and the merge state (and every replica) then named a string no
    record has while the row named the record (QA). What is not an id is left as it is, for the checks."""
    if isinstance(value, frozenset):
        return frozenset(canonical_id(m) or m for m in value)
    return canonical_id(value) or value if isinstance(value, str) else value


def _is_lookup_name(spec: EntitySpec, field: str) -> bool:
    return spec.lookup and field == "name"


def resolve_conflict(
    session: Session, *, tenant: Tenant, ident: uuid.UUID, body: ConflictResolve, now: datetime
) -> OpResult:
    """Close a conflict from the server side (API or CLI): keep the winner, the loser, or an edited value.

    The resolution is an ordinary change by node ``server``; it replicates to every device like any edit."""
    item = session.get(SyncConflict, (tenant.org_id, ident))
    if item is None:
        raise NotFoundError("conflict", ident)
    # the body's shape first: a conflict an edit closed meanwhile answered a malformed one with 200 (QA)
    given = "value" in body.model_fields_set  # null is a value (a reference taken away)
    if (body.keep is None) == (not given):
        raise InvalidInputError("body.keep", "give either keep (winner or loser) or value")
    if body.keep is not None and body.keep not in ("winner", "loser"):
        raise InvalidInputError("body.keep", "must be winner or loser")
    spec = SPECS[item.entity]
    row = session.execute(
        select(spec.table).where(spec.table.org_id == tenant.org_id, spec.table.id == item.record_id)
    ).scalar_one_or_none()
    if item.resolved_at is not None:
        if row is not None and row.deleted and item.kind != "delete":
            # closed because its record was deleted (it said "already resolved", naming the deleting user)
            raise AlreadyResolvedError(
                "path.conflict_id",
                f"this conflict is closed: {spec.entity} {item.record_id} is deleted (restoring it opens its "
                "conflicts again)",
            )
        raise AlreadyResolvedError("path.conflict_id", "this conflict is already resolved")
    if row is None:  # its record was purged (before purges closed their records' conflicts)
        raise NotFoundError(item.entity, item.record_id)
    state = load_states(session, org_id=tenant.org_id, spec=spec, rows=[row])[row.id]
    conflict = state.conflict(str(ident))
    if conflict is None:  # closed by an edit that replicated meanwhile
        item.resolved_at, item.resolved_by = now, tenant.actor
        return OpResult(op_id="", status="noop", entity=spec.entity, id=str(row.id), revision=row.revision)
    if given:
        if conflict.kind.value == "delete":
            raise InvalidInputError("body.value", "a delete conflict is resolved with keep (winner or loser)")
        kind = DEFAULT_SCHEMA.kind(spec.entity, conflict.field)
        value: Any = (
            frozenset(body.value) if kind.value == "set" and isinstance(body.value, list) else body.value
        )
        if conflict.field in spec.references:
            value = _written_as_ids(value)
        if kind.value == "text" and not isinstance(value, str):
            raise InvalidInputError("body.value", "must be text")
        try:
            check_value(spec.entity, conflict.field, kind, value)
        except InvalidChangeError as exc:
            raise InvalidInputError("body.value", exc.detail) from None
        missing = missing_problem(spec.entity, {conflict.field: value}, creating=False)
        if missing is not None:
            raise InvalidInputError("body.value", missing[0])
        if _is_lookup_name(spec, conflict.field) and isinstance(value, str):
            # as the lookups API takes a rename: stored stripped and in Unicode NFC, and refused (409, naming
            # the field) when another live entry of its kind has that name in any case or normal form; a
            # second "Café" (typed as e + U+0301) was stored beside the first
            value = normalize_name(value)
            if not value:
                raise InvalidInputError("body.value", f"{spec.entity}.name may not be empty")
            ensure_unique_name(
                session,
                KIND_BY_TABLE[spec.table],  # type: ignore[index]
                tenant=tenant,
                name=value,
                exclude=row.id,
                field_name="body.value",
            )
        choice = Merged(value)
    else:
        side = conflict.winner if body.keep == "winner" else conflict.loser
        kept = side.value
        if _is_lookup_name(spec, conflict.field) and isinstance(kept, str):
            kept = normalize_name(kept) or kept  # a side an older replica wrote in NFD
        choice = Merged(kept)
    if conflict.kind.value != "delete" and conflict.field in spec.references:
        _check_live_references(
            session,
            tenant=tenant,
            table=spec.references[conflict.field],
            value=choice.value,
            field="body.value" if given else "body.keep",
        )
    if conflict.kind.value == "delete" and body.keep == "loser" and spec.table is Prompt and not body.cascade:
        # as DELETE /prompts/{id} without cascade: a resolution deleted the prompt's outputs without a word,
        # outputs made or edited since the delete included (QA)
        outputs = _live_outputs(session, tenant=tenant, prompt_id=row.id)
        if outputs:
            said = (
                f"keeping the delete deletes the prompt's {outputs} live output(s) too: pass cascade=true "
                "to delete them, or keep the winner"
            )
            raise InUseError(said, errors=[FieldError("body.cascade", said)])
    before = display_state(state)
    hlc = server_hlc(state, now)
    op_id = f"server:resolve:{ident}:{hlc.encode()}"
    if conflict.kind.value == "delete":
        # winner = the surviving record; loser = the overridden delete
        target = "loser" if body.keep == "loser" else "winner"
        mine, _theirs = sides(conflict, SERVER_NODE)
        pick = Resolution.KEEP_MINE if target == mine else Resolution.KEEP_THEIRS
        change = resolve(conflict, pick, node=SERVER_NODE, hlc=hlc, op_id=op_id)
    else:
        change = resolve(conflict, choice, node=SERVER_NODE, hlc=hlc, op_id=op_id)
    try:
        applied = apply_change(session, tenant=tenant, change=change, now=now, source="api")
    except OpRefusedError as refused:  # about the resolved field: the body's value (or the side kept)
        field = "body.value" if given else "body.keep"
        if refused.error.code == "name-taken" and _is_lookup_name(spec, conflict.field):
            raise DuplicateError(field, choice.value) from None  # the side kept: its name taken since
        raise InvalidInputError(field, refused.error.detail) from None
    outputs_deleted = 0
    if conflict.kind.value == "delete" and applied.state.deleted:
        outputs_deleted = _take_along(session, tenant=tenant, spec=spec, ident=row.id, now=now)
    if spec.lookup and (applied.state.deleted or conflict.field == "name"):  # a name it held may be free
        repair_stale_keys(session, KIND_BY_TABLE[spec.table], org_id=tenant.org_id)  # type: ignore[index]
    item.resolved_at, item.resolved_by = now, tenant.actor
    # recorded and announced like any API write (a REST resolution left no audit record and no event; QA)
    emit(
        session,
        DomainEvent(
            org_id=tenant.org_id,
            kind=f"{spec.entity}.{effect_verb(before, applied.state)}",
            entity=spec.entity,
            entity_id=str(row.id),
            actor=tenant.actor,
            at=now,
            revision=applied.revision,
            source="api",
            before=before,
            after=display_state(applied.state),
            merge=applied.outcome.value,
            details={
                "conflict": str(ident),
                "field": conflict.field,
                "resolution": body.keep if body.keep is not None else "value",
                **({"outputs_deleted": outputs_deleted} if outputs_deleted else {}),
            },
        ),
    )
    return OpResult(
        op_id=op_id,
        status=applied.outcome.value,
        entity=spec.entity,
        id=str(row.id),
        revision=applied.revision,
        # a field with more than two values left: the resolution stands against the rest, a new conflict
        conflicts=[c.id for c in applied.opened],
        resolved=[c.id for c in applied.resolved],
    )


# -- tombstone retention -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Purged:
    records: int
    """Records removed for good."""
    forgotten: int
    """Purge log entries forgotten (made before the retention): cursors older than them now get 410."""


def purge_tombstones(session: Session, *, org_id: uuid.UUID, before: datetime) -> Purged:
    """Hard-delete records deleted before ``before`` that nothing references any more.

    The purge draws a revision of its own and logs every record it removed at it (:class:`SyncPurge`): a
    pull whose page covers that revision names them (``purged``), and each replica drops its copies, so an
    up-to-date replica's check still matches (it used to keep the purged tombstones, find the difference at
    its check and pull every record again; QA). Log entries made before ``before`` are forgotten, and the
    organization's sync horizon rises past them: a replica whose cursor is older than a forgotten entry gets
    410 and resynchronizes from 0 (its local edits kept).

    Takes the organization's write lock first, like every writer (:func:`lock_org_writes`): a push restoring
    one of these records (an edit made offline before the delete arrived) either commits before the purge
    reads the tombstones, or waits for the purge."""
    lock_org_writes(session, org_id=org_id)
    removed: list[tuple[str, uuid.UUID]] = []
    referencing: dict[type[ReplicatedRow], list[tuple[type[ReplicatedRow], str]]] = {}
    linking: dict[type[ReplicatedRow], list[Link]] = {}
    for spec in SPECS.values():
        for name, target in spec.references.items():
            if name in spec.columns:
                referencing.setdefault(target, []).append((spec.table, name))
            elif name in spec.links:
                linking.setdefault(target, []).append(spec.links[name])
    for table in (Output, Prompt, CustomGpt, *(k.table for k in KINDS)):
        query = select(table.id).where(
            table.org_id == org_id, table.deleted.is_(True), table.updated_at < before
        )
        for other, column in referencing.get(table, []):
            query = query.where(~exists().where(getattr(other, column) == table.id))
        ids = list(session.execute(query).scalars())
        if not ids:
            continue
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            if table is Prompt:
                session.execute(delete(PromptVersion).where(PromptVersion.prompt_id.in_(chunk)))
            for link in linking.get(table, []):
                # the link rows go with the purged records (ON DELETE CASCADE) without a new revision for
                # the records that held them: their stored feed data is rebuilt on their next pull
                session.execute(
                    update(SyncRecordState)
                    .where(
                        SyncRecordState.org_id == org_id,
                        SyncRecordState.record_id.in_(
                            select(link.parent_col()).where(link.child_col().in_(chunk))
                        ),
                    )
                    .values(data=None)
                    .execution_options(synchronize_session=False)
                )
            session.execute(delete(SyncRecordState).where(SyncRecordState.record_id.in_(chunk)))
            # a tombstone's open conflicts go with it (resolving one looked the record up: a 500)
            session.execute(
                update(SyncConflict)
                .where(
                    SyncConflict.org_id == org_id,
                    SyncConflict.record_id.in_(chunk),
                    SyncConflict.resolved_at.is_(None),
                )
                .values(resolved_at=datetime.now(UTC), resolved_by="purge")
                .execution_options(synchronize_session=False)
            )
            session.execute(delete(table).where(table.id.in_(chunk)))
        removed.extend((table.__tablename__, ident) for ident in ids)
    forgotten = _forget_old_purges(session, org_id=org_id, before=before)
    if removed:
        revision = allocate_revisions(session, org_id=org_id)
        now = datetime.now(UTC)
        for start in range(0, len(removed), 5000):
            session.execute(
                insert(SyncPurge),
                [
                    {"org_id": org_id, "revision": revision, "record_id": ident, "entity": entity}
                    | {"purged_at": now}
                    for entity, ident in removed[start : start + 5000]
                ],
            )
    session.flush()
    return Purged(records=len(removed), forgotten=forgotten)


def _forget_old_purges(session: Session, *, org_id: uuid.UUID, before: datetime) -> int:
    """Drop the purge log's entries made before ``before`` and raise the horizon past them: a cursor older
    than a forgotten entry can no longer learn what it removed, so it is answered 410. How many went."""
    old = SyncPurge.org_id == org_id, SyncPurge.purged_at < before
    top, count = session.execute(select(func.max(SyncPurge.revision), func.count()).where(*old)).one()
    if top is None:
        return 0
    session.execute(delete(SyncPurge).where(*old).execution_options(synchronize_session=False))
    item = session.get(SyncHorizon, org_id)
    if item is None:
        session.add(SyncHorizon(org_id=org_id, revision=int(top)))
    elif item.revision < int(top):
        item.revision = int(top)
    return int(count)


def count_open_conflicts(session: Session, *, org_id: uuid.UUID) -> int:
    return int(
        session.execute(
            select(func.count()).where(SyncConflict.org_id == org_id, SyncConflict.resolved_at.is_(None))
        ).scalar_one()
    )
