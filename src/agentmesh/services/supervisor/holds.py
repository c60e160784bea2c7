"""Runs that wait: queued behind the run going on their thread (double texting), or paused for a person's answer
(human in the loop). Neither holds a lease, so neither a takeover nor Resume continues one; they move on only
through the statements here, each under a row lock, so two supervisors never both start or answer the same run."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from google.protobuf import json_format

from agentmesh.db import db_errors
from agentmesh.errors import Aborted, FailedPrecondition, NotFound
from agentmesh.services.supervisor.steps import AgentBody
from agentmesh.services.supervisor.store import (
    SELECT_RUN,
    CancelledRun,
    Event,
    RunRecord,
    StepRecord,
    bound_history,
    parse_uuid,
    run_from_row,
)
from agentmesh.v1 import guard_pb2, supervisor_pb2

# The pause and its input_required event together, only while this execution holds the lease.
PAUSE_RUN = """
WITH paused AS (
    UPDATE runs SET status = 'paused', pending_input = $3::jsonb, next_seq = $4, lease_owner = NULL,
                    lease_expires_at = NULL, updated_at = now()
    WHERE id = $1 AND lease_owner = $2 AND status = 'running'
    RETURNING id
)
INSERT INTO run_events (run_id, seq, body) SELECT id, $5, $6 FROM paused"""
LOCK_RUN = """
SELECT thread_id, status, pending_input, cancel_requested, next_seq, iterations, input_tokens, output_tokens, llm_calls, cost_usd
FROM runs WHERE id = $1 AND tenant_id = $2 FOR UPDATE"""
# Approve: the answer is kept by step index (the gate lets that step through), and the run is leased to the
# supervisor that received SubmitInput, which continues it.
APPROVE_RUN = """
UPDATE runs SET status = 'running', pending_input = NULL, approvals = approvals || jsonb_build_object($2::text, $3::jsonb),
                lease_owner = $4, lease_expires_at = now() + make_interval(secs => $5), updated_at = now()
WHERE id = $1"""
# Reject: the run ends (status cancelled: never resumed) with its final event, FINISH_REASON_REJECTED.
REJECT_RUN = """
WITH done AS (
    UPDATE runs SET status = 'cancelled', pending_input = NULL, final = $4::jsonb, next_seq = $5 + 1,
                    approvals = approvals || jsonb_build_object($2::text, $3::jsonb), updated_at = now()
    WHERE id = $1
    RETURNING id
)
INSERT INTO run_events (run_id, seq, body) SELECT id, $5, $6 FROM done"""
LOCK_THREAD = "SELECT tenant_id FROM threads WHERE id = $1 FOR UPDATE"
# The oldest run still going on the thread: a queued one starts only when it is the oldest.
SELECT_HEAD = """
SELECT id, status FROM runs WHERE thread_id = $1 AND status IN ('running', 'paused', 'queued')
ORDER BY created_at, id LIMIT 1"""
# What a queued run sees of its thread, read when it starts: every message but the queued runs' own requests.
SELECT_HISTORY = """
SELECT role, content FROM (
    SELECT m.id, m.role, m.content FROM messages m
    WHERE m.thread_id = $1 AND NOT EXISTS (SELECT 1 FROM runs q WHERE q.id = m.run_id AND q.status = 'queued')
    ORDER BY m.id DESC LIMIT $2
) recent ORDER BY id"""
START_QUEUED = """
UPDATE runs SET status = 'running', history = $2::jsonb, lease_owner = $3,
                lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
WHERE id = $1 AND status = 'queued'"""
SELECT_FIRST_EVENT = "SELECT body FROM run_events WHERE run_id = $1 AND seq = 0"
SELECT_QUEUED_THREADS = "SELECT DISTINCT thread_id FROM runs WHERE status = 'queued' LIMIT $1"
SELECT_GOING = """
SELECT id, status FROM runs WHERE thread_id = $1 AND tenant_id = $2 AND status IN ('running', 'paused', 'queued')
ORDER BY created_at DESC, id"""

log = logging.getLogger(__name__)
FinalFor = Callable[[CancelledRun], tuple[dict[str, Any], Event]]


class RunHolds:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        owner: str,
        lease_s: float,
        approval_agents: frozenset[str] = frozenset(),
        pause_on_flag: bool = False,
    ) -> None:
        self._pool = pool
        self._owner = owner
        self._lease_s = lease_s
        self._approval_agents = approval_agents  # AGENTMESH_APPROVAL_AGENTS
        self._pause_on_flag = pause_on_flag  # AGENTMESH_PAUSE_ON_FLAG

    def _new_lease(self) -> str:
        return f"{self._owner}/{uuid.uuid4().hex[:12]}"

    async def pause(self, run: RunRecord, event: supervisor_pb2.RunEvent) -> supervisor_pb2.RunEvent:
        """Park the run until SubmitInput answers it, with its input_required `event` (returned once recorded); its
        lease is dropped, so nothing continues it meanwhile."""
        ask = event.input_required
        pending = json.dumps(json_format.MessageToDict(ask))
        async with db_errors("run pause"):
            status = await self._pool.execute(
                PAUSE_RUN, run.id, run.lease, pending, event.seq + 1, event.seq, event.SerializeToString()
            )
        if status == "INSERT 0 0":
            raise Aborted(f"run {run.id} lease lost: another supervisor took it over")
        log.info("run paused for input", extra={"run_id": str(run.id), "step": ask.step, "agent": ask.agent})
        return event

    async def submit(
        self, run_id: str, tenant: str, *, approve: bool, note: str, final_for: FinalFor
    ) -> RunRecord | None:
        """Answer a paused run: approved, the run leased to this process (to continue); rejected, ended (None).
        NOT_FOUND for an unknown or another tenant's run; FAILED_PRECONDITION when it is not paused."""
        rid = parse_uuid(run_id, "run_id")
        async with db_errors("run input"), self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(LOCK_RUN, rid, tenant)
            if row is None:
                raise NotFound(f"run {run_id} not found")
            if row["status"] != "paused" or row["cancel_requested"]:
                raise FailedPrecondition(
                    f"run {run_id} is not waiting for input (it is {row['status']})", reason="RUN_NOT_PAUSED"
                )
            pending = row["pending_input"]
            step = str((json.loads(pending) if isinstance(pending, str) else pending).get("step", 0))  # 0 is omitted
            answer = json.dumps({"approve": approve, "note": note})
            if not approve:
                seq = int(row["next_seq"])
                final, (_, body) = final_for(CancelledRun(seq=seq, thread_id=str(row["thread_id"]), totals=dict(row)))
                await conn.execute(REJECT_RUN, rid, step, answer, json.dumps(final), seq, body)
                return None
            lease = self._new_lease()
            await conn.execute(APPROVE_RUN, rid, step, answer, lease, self._lease_s)
            fresh = await conn.fetchrow(SELECT_RUN, rid, tenant)
        assert fresh is not None  # locked above, in this transaction
        return dataclasses.replace(run_from_row(fresh), lease=lease)

    async def claim_next(self, thread_id: uuid.UUID, *, history_limit: int, history_chars: int) -> RunRecord | None:
        """Start the thread's oldest queued run if no run before it is still going; it sees the thread as it is
        now (the answers of the runs before it). None when there is nothing to start."""
        async with db_errors("queued run start"), self._pool.acquire() as conn:
            # Most runs end with nothing queued behind them: look first, outside a transaction (two round trips
            # instead of four). The thread's lock, taken and let go at once, first waits out a run being created
            # on the thread (it holds the lock until it commits), so the look sees it if it was queued.
            await conn.fetchval(LOCK_THREAD, thread_id)
            head = await conn.fetchrow(SELECT_HEAD, thread_id)
            if head is None or head["status"] != "queued":
                return None
            async with conn.transaction():  # the look again, under the lock, then the start
                tenant = await conn.fetchval(LOCK_THREAD, thread_id)
                head = await conn.fetchrow(SELECT_HEAD, thread_id)
                if tenant is None or head is None or head["status"] != "queued":
                    return None
                history = bound_history(
                    [dict(r) for r in await conn.fetch(SELECT_HISTORY, thread_id, history_limit)], history_chars
                )
                lease = self._new_lease()
                await conn.execute(START_QUEUED, head["id"], json.dumps(history), lease, self._lease_s)
                row = await conn.fetchrow(SELECT_RUN, head["id"], tenant)
        assert row is not None
        return dataclasses.replace(run_from_row(row), lease=lease)

    async def queued_threads(self, limit: int) -> list[uuid.UUID]:
        """Threads with queued runs (for the sweep, which starts those whose thread is free)."""
        async with db_errors("queue sweep"):
            return [r["thread_id"] for r in await self._pool.fetch(SELECT_QUEUED_THREADS, limit)]

    async def ask(
        self,
        run: RunRecord,
        idx: int,
        kind: str,
        agent: str,
        steps: Sequence[StepRecord],
    ) -> supervisor_pb2.InputRequired | None:
        """What step `idx` must ask a person before it runs, or None: an agent that needs approval, or (with
        AGENTMESH_PAUSE_ON_FLAG) a guard FLAG on the run's input (before step 0) or on the last agent's output.
        Derived from recorded state only, so a run taken over or restarted asks the same; an answered step passes."""
        if str(idx) in run.approvals:
            return None
        if kind == "agent" and agent in self._approval_agents:
            return supervisor_pb2.InputRequired(
                step=idx,
                reason=supervisor_pb2.INPUT_REASON_AGENT_APPROVAL,
                agent=agent,
                arguments=run.input,
                question=f"agent {agent} needs approval before it acts on this task",
            )
        if not self._pause_on_flag:
            return None
        last = steps[-1].result if steps else None
        if idx == 0:
            async with db_errors("event replay"):
                body = await self._pool.fetchval(SELECT_FIRST_EVENT, run.id)
            first = supervisor_pb2.RunEvent.FromString(bytes(body)) if body is not None else None
            if first is not None and first.guard_decision.action == guard_pb2.ACTION_FLAG:
                return supervisor_pb2.InputRequired(
                    step=idx,
                    reason=supervisor_pb2.INPUT_REASON_GUARD_FLAG,
                    finding_types=first.guard_decision.finding_types,
                    question="the guard flagged the run's input; continue?",
                )
        elif isinstance(last, AgentBody) and last.screen is not None:
            screen = last.screen
            if guard_pb2.ACTION_FLAG in (screen.action, screen.injection):
                types = {*screen.finding_types, *(("prompt_injection",) if screen.injection else ())}
                return supervisor_pb2.InputRequired(
                    step=idx,
                    reason=supervisor_pb2.INPUT_REASON_GUARD_FLAG,
                    agent=steps[-1].agent,
                    finding_types=sorted(types),
                    question=f"the guard flagged the output of agent {steps[-1].agent}; continue?",
                )
        return None

    async def going(self, thread_id: str, tenant: str) -> list[tuple[str, str]]:
        """The thread's runs still going (run id, status), newest first: what ON_BUSY_THREAD_INTERRUPT cancels."""
        tid = parse_uuid(thread_id, "thread_id")
        async with db_errors("thread runs"):
            return [(str(r["id"]), str(r["status"])) for r in await self._pool.fetch(SELECT_GOING, tid, tenant)]


__all__ = ["RunHolds"]
