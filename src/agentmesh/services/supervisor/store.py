"""Checkpoints in Postgres: SQL as named constants, serialization kept apart from I/O, one statement per
step so a step is either wholly recorded (result, totals, next event seq, lease) or not at all. Creating a
run on a new thread and finishing a run are one statement each too: round trips are the supervisor's cost."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from agentmesh.db import db_errors
from agentmesh.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from agentmesh.services.supervisor.history import bound_history
from agentmesh.services.supervisor.steps import AgentBody, StepBody, body_from_json

SELECT_THREAD = "SELECT id FROM threads WHERE id = $1 AND tenant_id = $2"
INSERT_THREAD = "INSERT INTO threads (id, tenant_id) VALUES ($1, $2)"
# Locks the thread row for the run-creating transaction, so concurrent runs cannot overfill it together.
LOCK_THREAD = "SELECT id FROM threads WHERE id = $1 AND tenant_id = $2 FOR UPDATE"
COUNT_THREAD_MESSAGES = "SELECT count(*) FROM messages WHERE thread_id = $1"
SELECT_HISTORY = """
SELECT role, content FROM (
    SELECT id, role, content FROM messages WHERE thread_id = $1 ORDER BY id DESC LIMIT $2
) recent ORDER BY id"""
_RUN_COLUMNS = """id, thread_id, tenant_id, status, input, history, next_seq, iterations, input_tokens, output_tokens,
       llm_calls, cost_usd, final, error, restore_token, lease_owner, lease_expires_at > now() AS leased, approvals"""
# Double texting: the thread's runs that are still going (under the thread's row lock), oldest first.
SELECT_BUSY = """
SELECT id, status FROM runs WHERE thread_id = $1 AND status IN ('running', 'paused', 'queued') ORDER BY created_at, id"""
# A new thread, its run and the user's message in one statement (one round trip; the foreign keys are
# checked at the statement's end, when the thread row exists).
CREATE_RUN_NEW_THREAD = f"""
WITH thread AS (INSERT INTO threads (id, tenant_id, restore_token) VALUES ($2, $3, $8)),
     message AS (INSERT INTO messages (thread_id, run_id, role, content) VALUES ($2, $1, 'user', $4)),
     run AS (
         INSERT INTO runs (id, thread_id, tenant_id, status, input, history, next_seq, lease_owner, lease_expires_at,
                           restore_token)
         VALUES ($1, $2, $3, 'running', $4, '[]'::jsonb, $5, $6, now() + make_interval(secs => $7), $8)
         RETURNING *),
     event AS (INSERT INTO run_events (run_id, seq, body) VALUES ($1, $9, $10))
SELECT {_RUN_COLUMNS} FROM run"""
# The run on an existing thread (locked and counted first, in the same transaction).
CREATE_RUN = f"""
WITH message AS (INSERT INTO messages (thread_id, run_id, role, content) VALUES ($2, $1, 'user', $4)),
     run AS (
         INSERT INTO runs (id, thread_id, tenant_id, status, input, history, next_seq, lease_owner, lease_expires_at,
                           restore_token)
         VALUES ($1, $2, $3, $12, $4, $8::jsonb, $5, $6, now() + make_interval(secs => $7), $9)
         RETURNING *),
     event AS (INSERT INTO run_events (run_id, seq, body) VALUES ($1, $10, $11))
SELECT {_RUN_COLUMNS} FROM run"""
SELECT_RUN = f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = $1 AND tenant_id = $2"
SELECT_THREAD_TOKEN = "SELECT restore_token FROM threads WHERE id = $1 AND tenant_id = $2"
SET_THREAD_TOKEN = "UPDATE threads SET restore_token = $2 WHERE id = $1"
# Take the run if no execution holds a live lease on it. Completed runs are never re-taken.
CLAIM_RUN = """
UPDATE runs SET lease_owner = $3, lease_expires_at = now() + make_interval(secs => $4), status = 'running',
                error = NULL, updated_at = now()
WHERE id = $1 AND tenant_id = $2 AND status IN ('running', 'failed')
  AND (lease_owner IS NULL OR lease_expires_at < now())
RETURNING id"""
# Takeover: runs whose execution stopped renewing its lease (its supervisor died or lost its network), each
# taken by exactly one supervisor (SKIP LOCKED, and the lease condition re-checked on the locked row), with a
# lease token of its own per run. A run with a pending cancel is not continued (see CANCEL_RUN).
CLAIM_ORPHANS = """
WITH orphan AS (
    SELECT id FROM runs
    WHERE status = 'running' AND lease_expires_at < now() AND NOT cancel_requested
    ORDER BY lease_expires_at LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE runs r SET lease_owner = $1 || '/' || substr(md5(random()::text || r.id::text), 1, 12),
                  lease_expires_at = now() + make_interval(secs => $2), updated_at = now()
FROM orphan WHERE r.id = orphan.id
RETURNING r.id, r.tenant_id, r.lease_owner"""
RELEASE_LEASES = """
UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE status = 'running' AND lease_owner LIKE $1"""
# Other supervisors sweep at once on this notification instead of at their next half-lease tick.
NOTIFY_ORPHANS = "SELECT pg_notify('agentmesh_run_orphans', '')"
# A tenant's runs executing now on any supervisor (index runs_tenant_running).
COUNT_TENANT_RUNNING = """
SELECT count(*) FROM runs WHERE tenant_id = $1 AND status = 'running' AND lease_expires_at > now()"""
INSERT_EVENT = "INSERT INTO run_events (run_id, seq, body) VALUES ($1, $2, $3)"
SELECT_EVENTS = "SELECT seq, body FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000"
REQUEST_CANCEL = """
UPDATE runs SET cancel_requested = true WHERE id = $1 AND tenant_id = $2
RETURNING status, lease_owner IS NOT NULL AND lease_expires_at > now() AS live"""
LOCK_RUN_FOR_CANCEL = """
SELECT thread_id, status, next_seq, iterations, input_tokens, output_tokens, llm_calls, cost_usd, lease_owner,
       lease_owner IS NOT NULL AND lease_expires_at > now() AS live
FROM runs WHERE id = $1 FOR UPDATE"""
# The cancelled end: status, final event and the recorded event in one transaction with the lock above.
CANCEL_RUN = """
WITH done AS (
    UPDATE runs SET status = 'cancelled', final = $3::jsonb, next_seq = $2 + 1, lease_owner = NULL,
                    lease_expires_at = NULL, error = NULL, updated_at = now()
    WHERE id = $1
    RETURNING id
)
INSERT INTO run_events (run_id, seq, body) SELECT id, $2, $4 FROM done"""
SELECT_STEPS = """
SELECT idx, kind, agent, result, input_tokens, output_tokens, llm_calls, cost_usd, duration_ms
FROM steps WHERE run_id = $1 ORDER BY idx"""
# One statement, so one round trip and atomic by itself: the run's totals, event seq and lease advance
# together with the step row, and only while this process still holds the lease (else 0 rows: ABORTED).
# A step index that already exists violates the primary key: a step is never recorded twice.
COMMIT_STEP = """
WITH advanced AS (
    UPDATE runs SET next_seq = $11, iterations = iterations + $12, input_tokens = input_tokens + $6,
                    output_tokens = output_tokens + $7, llm_calls = llm_calls + $8, cost_usd = cost_usd + $9,
                    lease_expires_at = now() + make_interval(secs => $14), updated_at = now()
    WHERE id = $1 AND lease_owner = $13 AND status = 'running'
    RETURNING id
),
events AS (
    INSERT INTO run_events (run_id, seq, body)
    SELECT advanced.id, e.seq, e.body FROM advanced, unnest($15::bigint[], $16::bytea[]) AS e(seq, body)
)
INSERT INTO steps (run_id, idx, kind, agent, result, input_tokens, output_tokens, llm_calls, cost_usd, duration_ms)
SELECT id, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10 FROM advanced"""
RENEW_LEASE = """
UPDATE runs SET lease_expires_at = now() + make_interval(secs => $3)
WHERE id = $1 AND lease_owner = $2 AND status = 'running'"""
# The final answer and the run's completion in one statement; 0 rows inserted means the lease was lost.
FINISH_RUN = """
WITH done AS (
    UPDATE runs SET status = 'completed', final = $3::jsonb, next_seq = $4, lease_owner = NULL,
                    lease_expires_at = NULL, updated_at = now()
    WHERE id = $1 AND lease_owner = $2 AND status = 'running'
    RETURNING id, thread_id
),
event AS (
    INSERT INTO run_events (run_id, seq, body)
    SELECT done.id, e.seq, e.body FROM done, unnest($6::bigint[], $7::bytea[]) AS e(seq, body)
)
INSERT INTO messages (thread_id, run_id, role, content) SELECT thread_id, id, 'assistant', $5 FROM done"""
# A failed step's spend (reported by the agent) counts in the run's totals, and so in the tenant's budget.
FAIL_RUN = """
WITH failed AS (
    UPDATE runs SET status = 'failed', error = $3::jsonb, next_seq = $4, lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = now(), input_tokens = input_tokens + $7, output_tokens = output_tokens + $8,
                    llm_calls = llm_calls + $9, cost_usd = cost_usd + $10
    WHERE id = $1 AND lease_owner = $2 AND status = 'running'
    RETURNING id
)
INSERT INTO run_events (run_id, seq, body) SELECT id, $5, $6 FROM failed"""
# Runs whose supervisor died (its lease ran out) become resumable failures, so GetThread tells the truth
# and a client can decide to Resume them.
MARK_ABANDONED = """
UPDATE runs SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
                error = jsonb_build_object('code', 14, 'resumable', true,
                                           'message', 'interrupted: the supervisor executing the run stopped')
WHERE status = 'running' AND lease_expires_at < now()
RETURNING id"""
# Threads idle for longer than the retention, with no run in progress; cascades to runs, steps, messages.
PRUNE_THREADS = """
DELETE FROM threads t
WHERE t.created_at < now() - $1::interval
  AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.thread_id = t.id
                  AND (r.updated_at >= now() - $1::interval OR r.status IN ('running', 'paused', 'queued')))
  AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.thread_id = t.id AND m.created_at >= now() - $1::interval)"""
SELECT_THREAD_MESSAGES = """
SELECT id, role, content, run_id, created_at FROM messages WHERE thread_id = $1 AND id > $2 ORDER BY id LIMIT $3"""
# A GetThread page ends before its messages pass this many UTF-8 bytes: gRPC's 4 MiB message limit holds with
# room for the runs (at most ~500 summaries of ~100 bytes).
PAGE_MAX_BYTES = 2 * 1024 * 1024
SELECT_THREAD_RUNS = """
SELECT id, status, input_tokens, output_tokens, llm_calls, cost_usd, iterations, created_at
FROM runs WHERE thread_id = $1 ORDER BY created_at, id"""


# A recorded run event: its seq and the serialized agentmesh.v1.RunEvent.
Event = tuple[int, bytes]


@dataclass(frozen=True)
class CancelledRun:
    """What the cancelled final event is made of: its seq, the thread, and the run's totals so far."""

    seq: int
    thread_id: str
    totals: dict[str, Any]


def parse_uuid(value: str, field_name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field_name} must be a UUID, got {value[:40]!r}") from None


@dataclass(frozen=True, slots=True)
class StepRecord:
    idx: int
    kind: str  # route | agent | guard
    agent: str
    result: StepBody  # stored as JSON in steps.result
    input_tokens: int = 0
    output_tokens: int = 0
    llm_calls: int = 0
    cost_usd: float = 0.0
    duration_ms: int = 0


@dataclass(frozen=True)
class RunRecord:
    id: uuid.UUID
    thread_id: uuid.UUID
    tenant_id: str
    status: str
    input: str
    history: list[dict[str, str]]
    next_seq: int
    iterations: int
    input_tokens: int
    output_tokens: int
    llm_calls: int
    cost_usd: float
    final: dict[str, Any] | None
    error: dict[str, Any] | None
    restore_token: str = ""  # the guard's sealed placeholder -> value map (ciphertext)
    leased: bool = False
    lease: str = ""  # this execution's lease token (empty when the run was only read)
    approvals: dict[str, Any] = field(default_factory=dict)  # a person's answers to pauses, by step index


@dataclass(frozen=True)
class ThreadView:
    messages: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    next_token: str = ""


def _page_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"m": last_id}).encode()).decode().rstrip("=")


def _after_id(token: str) -> int:
    try:
        after = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["m"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token: not a token this service issued", reason="INVALID_PAGE_TOKEN") from None
    if not isinstance(after, int) or after < 0:
        raise InvalidArgument("page_token: not a token this service issued", reason="INVALID_PAGE_TOKEN")
    return after


def run_from_row(row: asyncpg.Record) -> RunRecord:
    d = dict(row)
    d.pop("lease_owner", None)
    for key in ("history", "final", "error", "approvals"):
        if isinstance(d[key], str):
            d[key] = json.loads(d[key])
    d["leased"] = bool(d["leased"])
    return RunRecord(**d)


class CheckpointStore:
    """Every query is scoped by tenant; another tenant's id is indistinguishable from an unknown one."""

    def __init__(self, *, pool: asyncpg.Pool, owner: str, lease_s: float) -> None:
        self._pool = pool
        self._owner = owner  # names this process; each execution adds a token of its own
        self._lease_s = lease_s

    async def create_run(
        self,
        *,
        tenant: str,
        thread_id: str,
        run_id: uuid.UUID,
        text: str,
        history_limit: int,
        next_seq: int,
        first_event: Callable[[str], Event],
        max_thread_messages: int = 0,
        restore_token: str = "",
        history_chars: int = 0,
        enqueue: bool = False,
    ) -> RunRecord:
        """A new run (and thread, if thread_id is empty) with the user's message and the run's first event
        (made for the thread's id), in one transaction. RESOURCE_EXHAUSTED when the run's two messages would
        take the thread past `max_thread_messages`. A thread with a run still going: FAILED_PRECONDITION naming
        it, or with `enqueue` the run is created `queued` (no lease) for RunHolds.claim_next to start later."""
        lease: str | None = self._new_lease()
        if not thread_id:
            new_thread = uuid.uuid4()
            async with db_errors("run creation"):
                row = await self._pool.fetchrow(
                    CREATE_RUN_NEW_THREAD,
                    run_id,
                    new_thread,
                    tenant,
                    text,
                    next_seq,
                    lease,
                    self._lease_s,
                    restore_token,
                    *first_event(str(new_thread)),
                )
            assert row is not None  # INSERT ... RETURNING
            return dataclasses.replace(run_from_row(row), lease=lease or "")
        tid = parse_uuid(thread_id, "thread_id")
        async with db_errors("run creation"), self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(LOCK_THREAD, tid, tenant) is None:
                raise NotFound(f"thread {thread_id} not found")
            busy = await conn.fetch(SELECT_BUSY, tid)
            if busy and not enqueue:
                raise FailedPrecondition(
                    f"thread {thread_id} has a run still going: run {busy[0]['id']} ({busy[0]['status']}); wait for "
                    "it, cancel it, or send on_busy_thread ENQUEUE or INTERRUPT",
                    reason="THREAD_BUSY",
                    metadata={"run_id": str(busy[0]["id"])},
                )
            if busy:
                lease = None  # queued: no execution holds it yet
            if (
                max_thread_messages
                and (held := await conn.fetchval(COUNT_THREAD_MESSAGES, tid)) + 2 > max_thread_messages
            ):
                raise ResourceExhausted(
                    f"thread {thread_id} is full: it holds {held} messages and a run adds 2, over the limit of "
                    f"{max_thread_messages} (AGENTMESH_MAX_THREAD_MESSAGES); start a new thread",
                    reason="THREAD_FULL",
                )
            history = bound_history(
                [dict(r) for r in await conn.fetch(SELECT_HISTORY, tid, history_limit)], history_chars
            )
            row = await conn.fetchrow(
                CREATE_RUN,
                run_id,
                tid,
                tenant,
                text,
                next_seq,
                lease,
                self._lease_s,
                json.dumps(history),
                restore_token,
                *first_event(str(tid)),
                "queued" if busy else "running",
            )
            await conn.execute(SET_THREAD_TOKEN, tid, restore_token)
        assert row is not None  # INSERT ... RETURNING
        return dataclasses.replace(run_from_row(row), lease=lease or "")

    async def thread_restore_token(self, thread_id: str, tenant: str) -> str:
        """The thread's restore token (NOT_FOUND for an unknown or another tenant's thread)."""
        tid = parse_uuid(thread_id, "thread_id")
        async with db_errors("thread lookup"):
            token = await self._pool.fetchval(SELECT_THREAD_TOKEN, tid, tenant)
        if token is None:
            raise NotFound(f"thread {thread_id} not found")
        return str(token)

    async def get_run(self, run_id: str, tenant: str) -> RunRecord:
        rid = parse_uuid(run_id, "run_id")
        async with db_errors("run lookup"):
            row = await self._pool.fetchrow(SELECT_RUN, rid, tenant)
        if row is None:
            raise NotFound(f"run {run_id} not found")
        return run_from_row(row)

    async def claim(self, run: RunRecord) -> RunRecord:
        """Take the lease of an unfinished run; ABORTED if another live execution holds it (in this process
        or another: the token is per execution, so two Resumes landing on one supervisor exclude each other too)."""
        lease = self._new_lease()
        async with db_errors("run claim"), self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(CLAIM_RUN, run.id, run.tenant_id, lease, self._lease_s) is None:
                raise Aborted(
                    f"run {run.id} is being executed by another supervisor; retry when its lease expires",
                    retry_after_s=self._lease_s,
                )
            row = await conn.fetchrow(SELECT_RUN, run.id, run.tenant_id)
        assert row is not None  # the claim just found it, in this transaction
        return dataclasses.replace(run_from_row(row), lease=lease)

    async def steps(self, run_id: uuid.UUID) -> list[StepRecord]:
        async with db_errors("step load"):
            rows = await self._pool.fetch(SELECT_STEPS, run_id)
        out = []
        for r in rows:
            d = dict(r)
            result = json.loads(d["result"]) if isinstance(d["result"], str) else d["result"]
            d["result"] = body_from_json(d["kind"], result)
            out.append(StepRecord(**d))
        return out

    async def commit_step(
        self, run: RunRecord, step: StepRecord, *, next_seq: int, iteration: bool, events: Sequence[Event] = ()
    ) -> None:
        """The step, the run's totals and lease, and the step's events (recorded for WatchRun), together."""
        run_id = run.id
        try:
            async with db_errors("checkpoint write"):
                status = await self._pool.execute(
                    COMMIT_STEP,
                    run_id,
                    step.idx,
                    step.kind,
                    step.agent,
                    json.dumps(step.result.to_json()),
                    step.input_tokens,
                    step.output_tokens,
                    step.llm_calls,
                    step.cost_usd,
                    step.duration_ms,
                    next_seq,
                    int(iteration),
                    run.lease,
                    self._lease_s,
                    [seq for seq, _ in events],
                    [body for _, body in events],
                )
        except asyncpg.UniqueViolationError as exc:
            raise Aborted(f"run {run_id} step {step.idx} is already recorded by another supervisor") from exc
        if status == "INSERT 0 0":
            raise Aborted(f"run {run_id} lease lost: another supervisor took it over")

    async def renew_lease(self, run: RunRecord) -> bool:
        async with db_errors("lease renewal"):
            status: str = await self._pool.execute(RENEW_LEASE, run.id, run.lease, self._lease_s)
            return status != "UPDATE 0"

    async def finish(
        self, run: RunRecord, *, final_event: dict[str, Any], next_seq: int, answer: str, events: Sequence[Event]
    ) -> None:
        """The run's end: its final event and the answer's text deltas before it (`events`), with the answer."""
        async with db_errors("run completion"):
            status = await self._pool.execute(
                FINISH_RUN,
                run.id,
                run.lease,
                json.dumps(final_event),
                next_seq,
                answer,
                [seq for seq, _ in events],
                [body for _, body in events],
            )
        if status == "INSERT 0 0":
            raise Aborted(f"run {run.id} lease lost: another supervisor took it over")

    async def fail(
        self,
        run: RunRecord,
        *,
        error: dict[str, Any],
        next_seq: int,
        event: Event,
        spent: StepRecord | None = None,
    ) -> None:
        """Record the failure and its error event; `spent`: the usage of the step that failed (its calls were
        paid for)."""
        s = spent or StepRecord(-1, "agent", "", AgentBody(output="", model=""))
        async with db_errors("run failure record"):
            await self._pool.execute(
                FAIL_RUN,
                run.id,
                run.lease,
                json.dumps(error),
                next_seq,
                *event,
                s.input_tokens,
                s.output_tokens,
                s.llm_calls,
                s.cost_usd,
            )

    async def events(self, run_id: uuid.UUID, after_seq: int) -> list[Event]:
        """Recorded events with a seq above `after_seq`, in order (at most 1,000 a call)."""
        async with db_errors("event replay"):
            return [(r["seq"], bytes(r["body"])) for r in await self._pool.fetch(SELECT_EVENTS, run_id, after_seq)]

    async def claim_orphans(self, limit: int) -> list[RunRecord]:
        """Take up to `limit` runs whose execution stopped renewing its lease, each with a lease of its own."""
        async with db_errors("orphan claim"), self._pool.acquire() as conn:
            claimed = await conn.fetch(CLAIM_ORPHANS, self._owner, self._lease_s, limit)
            runs = []
            for c in claimed:
                row = await conn.fetchrow(SELECT_RUN, c["id"], c["tenant_id"])
                runs.append(dataclasses.replace(run_from_row(row), lease=c["lease_owner"]))
        return runs

    async def request_cancel(self, run_id: str, tenant: str) -> tuple[str, bool]:
        """Mark the run for cancellation and tell every supervisor; (its status, whether a live execution
        holds it). NOT_FOUND for an unknown or another tenant's run."""
        rid = parse_uuid(run_id, "run_id")
        async with db_errors("run cancel"), self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(REQUEST_CANCEL, rid, tenant)
            if row is None:
                raise NotFound(f"run {run_id} not found")
            await conn.execute("SELECT pg_notify('agentmesh_run_cancel', $1)", str(rid))
        return str(row["status"]), bool(row["live"])

    async def end_cancelled(
        self,
        run_id: uuid.UUID,
        *,
        force: bool,
        seen: Sequence[Event] = (),
        final_for: Callable[[CancelledRun], tuple[dict[str, Any], Event]],
    ) -> bool:
        """Record the cancelled end of a run, unless it already ended, or (without `force`) a live execution
        holds it. `seen`: the latest events a live client was sent; those not yet recorded (a step that had
        started) are recorded first, so the final event follows them with no gap in the run's seqs."""
        async with db_errors("run cancel"), self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(LOCK_RUN_FOR_CANCEL, run_id)
            if row is None or row["status"] in ("completed", "cancelled"):
                return False
            if not force and row["status"] == "running" and row["live"]:
                return False
            seq = int(row["next_seq"])
            for ev_seq, ev_body in sorted(seen):
                if ev_seq == seq:
                    await conn.execute(INSERT_EVENT, run_id, ev_seq, ev_body)
                    seq += 1
            final, (_, body) = final_for(CancelledRun(seq=seq, thread_id=str(row["thread_id"]), totals=dict(row)))
            await conn.execute(CANCEL_RUN, run_id, seq, json.dumps(final), body)
        return True

    async def release_leases(self) -> int:
        """Expire the leases of every run this process executes (on shutdown), so another supervisor's sweep
        continues them at once instead of after the lease period."""
        async with db_errors("lease release"):
            status = await self._pool.execute(RELEASE_LEASES, self._owner + "/%")
            released = int(status.split()[-1])
            if released:
                await self._pool.execute(NOTIFY_ORPHANS)
        return released

    async def running_runs(self, tenant: str) -> int:
        """The tenant's runs executing under a live lease, on every supervisor."""
        async with db_errors("run count"):
            return int(await self._pool.fetchval(COUNT_TENANT_RUNNING, tenant))

    def _new_lease(self) -> str:
        return f"{self._owner}/{uuid.uuid4().hex[:12]}"

    async def mark_abandoned(self) -> int:
        async with db_errors("abandoned-run sweep"):
            return len(await self._pool.fetch(MARK_ABANDONED))

    async def thread(self, thread_id: str, tenant: str, *, page_size: int = 100, page_token: str = "") -> ThreadView:
        """One page of the thread's messages (at most `page_size`, and at most PAGE_MAX_BYTES but never none)
        and all its runs."""
        tid = parse_uuid(thread_id, "thread_id")
        after = _after_id(page_token) if page_token else 0
        async with db_errors("thread lookup"), self._pool.acquire() as conn:
            if await conn.fetchval(SELECT_THREAD, tid, tenant) is None:
                raise NotFound(f"thread {thread_id} not found")
            rows = [dict(r) for r in await conn.fetch(SELECT_THREAD_MESSAGES, tid, after, page_size + 1)]
            runs = [dict(r) for r in await conn.fetch(SELECT_THREAD_RUNS, tid)]
        messages: list[dict[str, Any]] = []
        size = 0
        for row in rows[:page_size]:
            size += len(row["content"].encode())
            if messages and size > PAGE_MAX_BYTES:
                break
            messages.append(row)
        more = len(messages) < len(rows)
        return ThreadView(messages=messages, runs=runs, next_token=_page_token(messages[-1]["id"]) if more else "")


async def prune_threads(pool: asyncpg.Pool, older_than: datetime.timedelta) -> int:
    """Delete threads (and their runs, steps, messages) with no activity within `older_than`."""
    async with db_errors("prune"):
        status = await pool.execute(PRUNE_THREADS, older_than)
    return int(status.split()[-1])


__all__ = [
    "CancelledRun",
    "CheckpointStore",
    "Event",
    "RunRecord",
    "StepRecord",
    "ThreadView",
    "bound_history",
    "parse_uuid",
    "prune_threads",
    "run_from_row",
]
