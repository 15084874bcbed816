"""The job queue: a durable job table in the SQL database, relayed to a dramatiq broker, run by its workers.

Why both. The SQL row is the record of truth (an outbox): ``enqueue`` only inserts a row, so enqueuing works
while Redis is down and nothing is lost when Redis loses its data. A relay (a thread in every API and worker
process, and a direct attempt right after each enqueue) hands pending rows to the broker. dramatiq gives the
transport: acknowledged delivery, delayed messages for the retry schedule, a pool of worker threads, and the
re-delivery of messages a dead worker held. Every message carries ``(job id, attempts so far)`` and a worker
*claims* the row with a conditional update before running it, so a message delivered twice (by dramatiq after
a worker crash, or re-sent by the relay after Redis lost it) runs the job once.

Retries are the job's own: each failed attempt schedules the next with exponential backoff and jitter
(``RetryPolicy``, per job kind); after ``max_attempts`` the row is marked ``failed`` and kept (dead letter),
visible with ``outputhub jobs failed`` and the admin API, and can be retried.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
from sqlalchemy import delete, event, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from outputhub.common.errors import NotFoundError
from outputhub.common.ids import new_uuid
from outputhub.server.jobs.tables import Job, JobStatus
from outputhub.server.storage.database import unit_of_work

log = logging.getLogger("outputhub.jobs")
QUEUE_NAME = "outputhub"
ACTOR_NAME = "outputhub_run_job"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt n (1-based) that fails waits ``base * 2**(n-1)`` (at most ``max``), +-``jitter`` of it."""

    max_attempts: int = 5
    base_seconds: float = 10.0
    max_seconds: float = 3600.0
    jitter: float = 0.2

    def delay_after(self, attempt: int, rng: random.Random) -> float:
        delay = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        return max(0.0, delay * (1 - self.jitter + 2 * self.jitter * rng.random()))

    def schedule(self) -> list[float]:
        """The nominal delays between attempts (no jitter)."""
        return [min(self.max_seconds, self.base_seconds * 2**i) for i in range(self.max_attempts - 1)]


@dataclass(frozen=True)
class JobContext:
    job_id: uuid.UUID
    kind: str
    org_id: uuid.UUID | None
    payload: dict[str, Any]
    attempt: int
    """1 for the first run."""
    max_attempts: int

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


JobHandler = Callable[[JobContext], None]
FailureHandler = Callable[[JobContext, str], None]


@dataclass(frozen=True)
class JobType:
    kind: str
    handler: JobHandler
    policy: RetryPolicy
    on_failed: FailureHandler | None = None
    timeout_seconds: float = 300.0


@dataclass
class JobRegistry:
    """The job kinds this deployment runs. Register before the worker starts (in the composition root)."""

    default_policy: RetryPolicy = field(default_factory=RetryPolicy)
    types: dict[str, JobType] = field(default_factory=dict)

    def register(
        self,
        kind: str,
        handler: JobHandler,
        *,
        policy: RetryPolicy | None = None,
        on_failed: FailureHandler | None = None,
        timeout_seconds: float = 300.0,
    ) -> None:
        if kind in self.types:
            raise ValueError(f"job kind {kind!r} is already registered")
        self.types[kind] = JobType(kind, handler, policy or self.default_policy, on_failed, timeout_seconds)


@dataclass(frozen=True)
class JobView:
    id: uuid.UUID
    kind: str
    org_id: uuid.UUID | None
    status: str
    attempts: int
    max_attempts: int
    payload: dict[str, Any]
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    run_at: datetime
    finished_at: datetime | None


def _view(row: Job) -> JobView:
    return JobView(
        id=row.id,
        kind=row.kind,
        org_id=row.org_id,
        status=row.status,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        payload=json.loads(row.payload),
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        run_at=row.run_at,
        finished_at=row.finished_at,
    )


class JobQueue:
    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        registry: JobRegistry,
        broker: dramatiq.Broker,
        relay_seconds: float = 5.0,
        stale_seconds: float = 300.0,
        keep_done_days: int = 7,
        clock: Callable[[], datetime] = utcnow,
        send_retry_seconds: float = 2.0,
    ) -> None:
        self.session_factory = session_factory
        self.registry = registry
        self.broker = broker
        self.relay_seconds = relay_seconds
        self.stale_seconds = stale_seconds
        self.keep_done = timedelta(days=keep_done_days)
        self.clock = clock
        self._rng = random.Random()
        self._send_retry_seconds = send_retry_seconds
        self._broker_down_until = 0.0
        self._broker_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._relay_thread: threading.Thread | None = None
        self._relay_lock = threading.Lock()
        self._relay_again = False  # a kick came while a relay ran: it goes round once more
        self.actor = dramatiq.actor(
            self._run_message,
            broker=broker,
            actor_name=ACTOR_NAME,
            queue_name=QUEUE_NAME,
            max_retries=50,  # only infrastructure errors (database down) reach dramatiq's own retries
            min_backoff=1000,
            max_backoff=60_000,
            time_limit=3_600_000,
        )

    # --- enqueue ---------------------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        kind: str,
        payload: dict[str, Any],
        org_id: uuid.UUID | None = None,
        delay_seconds: float = 0.0,
        session: Session | None = None,
    ) -> uuid.UUID:
        """Record a job. With ``session`` it is part of that transaction (sent once it commits); without,
        it is committed here. Either way it is handed to the broker as soon as possible, or by the relay."""
        if kind not in self.registry.types:
            raise ValueError(f"unknown job kind {kind!r}")
        now = self.clock()
        row = Job(
            id=new_uuid(),
            kind=kind,
            org_id=org_id,
            payload=json.dumps(payload, default=str),
            status=JobStatus.PENDING,
            attempts=0,
            max_attempts=self.registry.types[kind].policy.max_attempts,
            run_at=now + timedelta(seconds=delay_seconds),
            created_at=now,
            updated_at=now,
        )
        if session is not None:
            session.add(row)
            event.listen(session, "after_commit", lambda _s: self.kick(), once=True)
            return row.id
        with unit_of_work(self.session_factory) as own:
            own.add(row)
        self.kick()
        return row.id

    def enqueue_many(self, jobs: Sequence[tuple[str, dict[str, Any], uuid.UUID | None]]) -> list[uuid.UUID]:
        """Several jobs in one transaction (kind, payload, org id)."""
        if not jobs:
            return []
        now = self.clock()
        rows = [
            Job(
                id=new_uuid(),
                kind=kind,
                org_id=org_id,
                payload=json.dumps(payload, default=str),
                status=JobStatus.PENDING,
                attempts=0,
                max_attempts=self.registry.types[kind].policy.max_attempts,
                run_at=now,
                created_at=now,
                updated_at=now,
            )
            for kind, payload, org_id in jobs
        ]
        with unit_of_work(self.session_factory) as session:
            session.add_all(rows)
        self.kick()
        return [r.id for r in rows]

    # --- relay: job table -> broker ----------------------------------------------------------------------

    def kick(self) -> None:
        """Relay now if the broker is reachable (else leave it to the relay thread), without waiting for a
        relay already running: that one goes round once more instead.

        A kick runs in the committing request's thread, from its session's ``after_commit``, when that
        session still holds its pooled connection. Waiting there for the relay lock while the relay waits
        for a pooled connection was a deadlock: with a webhook registered, six concurrent writers exhausted
        the pool and every request stalled for the pool's 30 s timeout, then failed with 500."""
        if time.monotonic() < self._broker_down_until:
            return
        try:
            self.relay_once(wait=False)
        except Exception:  # never fail the caller's request: the relay thread tries again
            log.exception("job relay failed")

    def _send(self, job_id: uuid.UUID, attempts: int, run_at: datetime, now: datetime) -> bool:
        delay_ms = max(0, int((run_at - now).total_seconds() * 1000))
        try:
            self.actor.send_with_options(args=(str(job_id), attempts), delay=delay_ms or None)
        except Exception as exc:  # broker unreachable: keep the row, retry later
            first = self._broker_down_until == 0.0
            self._broker_down_until = time.monotonic() + self._send_retry_seconds
            self._broker_error = f"{exc.__class__.__name__}: {exc}"[:200]
            if first:
                log.warning("job queue unreachable, jobs stay in the outbox: %s", self._broker_error)
            return False
        if self._broker_down_until:
            log.warning("job queue reachable again")
        self._broker_down_until = 0.0
        self._broker_error = None
        return True

    def relay_once(self, *, batch: int = 500, wait: bool = True) -> int:
        """Hand pending jobs (and queued ones whose message was lost) to the broker. Returns how many.

        ``wait=False``: if a relay is running, ask it to go round once more (it then sees the jobs committed
        meanwhile) and return 0 at once."""
        total = 0
        while self._relay_lock.acquire(blocking=wait):
            try:
                self._relay_again = False
                total += self._relay(batch)
            finally:
                self._relay_lock.release()
            if not self._relay_again:  # no kick came during the round
                return total
            wait = False
        self._relay_again = True  # the relay holding the lock goes round once more
        return total

    def _relay(self, batch: int) -> int:
        now = self.clock()
        stale = now - timedelta(seconds=self.stale_seconds)
        with unit_of_work(self.session_factory) as session:
            rows = session.execute(
                select(Job.id, Job.status, Job.attempts, Job.run_at, Job.locked_until)
                .where(
                    or_(
                        Job.status == JobStatus.PENDING,
                        (Job.status == JobStatus.QUEUED) & (Job.run_at < stale),
                        (Job.status == JobStatus.RUNNING) & (Job.locked_until < now),
                    )
                )
                .order_by(Job.run_at)
                .limit(batch)
            ).all()
        sent = 0
        for job_id, status, attempts, run_at, locked_until in rows:
            if time.monotonic() < self._broker_down_until:
                break
            now = self.clock()  # not before the read: its transaction may have waited for the database
            with unit_of_work(self.session_factory) as session:
                if status == JobStatus.PENDING:
                    claim = update(Job).where(Job.id == job_id, Job.status == JobStatus.PENDING)
                elif status == JobStatus.QUEUED:
                    claim = update(Job).where(
                        Job.id == job_id, Job.status == JobStatus.QUEUED, Job.run_at == run_at
                    )
                    run_at = now
                else:  # a worker died holding it: run it again (the attempt it used counts)
                    claim = update(Job).where(
                        Job.id == job_id, Job.status == JobStatus.RUNNING, Job.locked_until == locked_until
                    )
                    run_at = now
                claimed = session.execute(
                    claim.values(status=JobStatus.QUEUED, run_at=run_at, locked_until=None, updated_at=now)
                ).rowcount
            if not claimed:
                continue
            if self._send(job_id, attempts, run_at, now):
                sent += 1
            elif status == JobStatus.PENDING:
                with unit_of_work(self.session_factory) as session:
                    session.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                        .values(status=JobStatus.PENDING, updated_at=now)
                    )
        if rows and now.minute % 10 == 0:
            self.purge_done(now=now)
        return sent

    def purge_done(self, *, now: datetime | None = None) -> int:
        cutoff = (now or self.clock()) - self.keep_done
        with unit_of_work(self.session_factory) as session:
            return session.execute(
                delete(Job).where(Job.status == JobStatus.DONE, Job.finished_at < cutoff)
            ).rowcount

    def start_relay(self) -> None:
        if self._relay_thread is not None:
            return
        self._stop.clear()
        self._relay_thread = threading.Thread(
            target=self._relay_loop, name="outputhub-job-relay", daemon=True
        )
        self._relay_thread.start()

    def _relay_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.relay_once()
            except Exception:
                log.exception("job relay failed")
            self._wake.wait(self.relay_seconds)
            self._wake.clear()

    def stop_relay(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._relay_thread is not None:
            self._relay_thread.join(timeout=10)
            self._relay_thread = None

    def status(self) -> str:
        if self._broker_error and time.monotonic() < self._broker_down_until + 60:
            return f"degraded: queue unreachable ({self._broker_error}); jobs kept in the database outbox"
        return "ok"

    # --- running ------------------------------------------------------------------------------------------

    def _run_message(self, job_id: str, attempts: int) -> None:
        self.run(uuid.UUID(job_id), expected_attempts=attempts)

    def run(self, job_id: uuid.UUID, *, expected_attempts: int) -> str | None:
        """Claim and run one attempt of a job; returns its new status (None if another run claimed it)."""
        now = self.clock()
        with unit_of_work(self.session_factory) as session:
            row = session.get(Job, job_id)
            if row is None or row.status != JobStatus.QUEUED or row.attempts != expected_attempts:
                return None
            job_type = self.registry.types.get(row.kind)
            timeout = job_type.timeout_seconds if job_type else 60.0
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.attempts == expected_attempts)
                .values(
                    status=JobStatus.RUNNING,
                    attempts=expected_attempts + 1,
                    locked_until=now + timedelta(seconds=timeout + 60),
                    updated_at=now,
                )
            ).rowcount
            if not claimed:
                return None
            ctx = JobContext(
                job_id=row.id,
                kind=row.kind,
                org_id=row.org_id,
                payload=json.loads(row.payload),
                attempt=expected_attempts + 1,
                max_attempts=row.max_attempts,
            )
        if job_type is None:
            return self._finish(ctx, error=f"unknown job kind {ctx.kind!r}", final=True)
        try:
            job_type.handler(ctx)
        except Exception as exc:
            error = "".join(traceback.format_exception_only(exc)).strip()[:2000]
            log.info("job %s (%s) attempt %d failed: %s", ctx.job_id, ctx.kind, ctx.attempt, error)
            return self._finish(ctx, error=error, final=ctx.is_last_attempt, policy=job_type.policy)
        return self._finish(ctx, error=None, final=True)

    def _finish(
        self, ctx: JobContext, *, error: str | None, final: bool, policy: RetryPolicy | None = None
    ) -> str:
        now = self.clock()
        if error is None:
            values: dict[str, Any] = {"status": JobStatus.DONE, "finished_at": now, "last_error": None}
        elif final:
            values = {"status": JobStatus.FAILED, "finished_at": now, "last_error": error}
        else:
            delay = (policy or RetryPolicy()).delay_after(ctx.attempt, self._rng)
            values = {
                "status": JobStatus.QUEUED,
                "run_at": now + timedelta(seconds=delay),
                "last_error": error,
            }
        with unit_of_work(self.session_factory) as session:
            session.execute(
                update(Job)
                .where(Job.id == ctx.job_id, Job.status == JobStatus.RUNNING)
                .values(locked_until=None, updated_at=now, **values)
            )
        if values["status"] == JobStatus.QUEUED:
            self._send(ctx.job_id, ctx.attempt, values["run_at"], now)
        elif values["status"] == JobStatus.FAILED:
            job_type = self.registry.types.get(ctx.kind)
            if job_type and job_type.on_failed:
                try:
                    job_type.on_failed(ctx, error or "")
                except Exception:
                    log.exception("failure handler of job %s failed", ctx.job_id)
        return str(values["status"])

    # --- inspection -------------------------------------------------------------------------------------

    def list_jobs(
        self, *, status: str | None = None, org_id: uuid.UUID | None = None, limit: int = 100
    ) -> list[JobView]:
        with unit_of_work(self.session_factory, read_only=True) as session:
            stmt = select(Job)
            if status:
                stmt = stmt.where(Job.status == status)
            if org_id:
                stmt = stmt.where(Job.org_id == org_id)
            rows = session.execute(stmt.order_by(Job.updated_at.desc(), Job.id).limit(limit)).scalars().all()
            return [_view(r) for r in rows]

    def get(self, job_id: uuid.UUID) -> JobView:
        with unit_of_work(self.session_factory, read_only=True) as session:
            row = session.get(Job, job_id)
            if row is None:
                raise NotFoundError("job", job_id)
            return _view(row)

    def retry(
        self, job_id: uuid.UUID, *, org_id: uuid.UUID | None = None, session: Session | None = None
    ) -> JobView:
        """Give a failed job a fresh set of attempts (in ``session``'s transaction when given)."""
        if session is None:
            with unit_of_work(self.session_factory) as own:
                view = self._retry(own, job_id, org_id=org_id)
            self.kick()
            return view
        view = self._retry(session, job_id, org_id=org_id)
        event.listen(session, "after_commit", lambda _s: self.kick(), once=True)
        return view

    def _retry(self, session: Session, job_id: uuid.UUID, *, org_id: uuid.UUID | None) -> JobView:
        now = self.clock()
        row = session.get(Job, job_id)
        if row is None or (org_id is not None and row.org_id != org_id) or row.status != JobStatus.FAILED:
            raise NotFoundError("failed job", job_id)
        row.status = JobStatus.PENDING
        row.max_attempts = row.attempts + self.registry.types[row.kind].policy.max_attempts
        row.run_at = now
        row.finished_at = None
        row.updated_at = now
        session.flush()
        return _view(row)

    def wait_idle(self, *, timeout: float = 10.0, org_ids: Iterable[uuid.UUID] | None = None) -> bool:
        """Test and bench helper: until no job is pending, queued or running (False on timeout); with
        ``org_ids``, no job of those organizations (another test's retries on a shared app then do not
        count)."""
        deadline = time.monotonic() + timeout
        busy_statuses = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING)
        query = select(Job.id).where(Job.status.in_(busy_statuses))
        if org_ids is not None:
            query = query.where(Job.org_id.in_(list(org_ids)))
        while time.monotonic() < deadline:
            with unit_of_work(self.session_factory, read_only=True) as session:
                busy = session.execute(query.limit(1)).first()
            if busy is None:
                return True
            time.sleep(0.05)
        return False
