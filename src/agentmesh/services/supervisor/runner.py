"""The run loop. A run is a sequence of steps (route, agent, ..., route=FINISH, guard on the answer), each
checkpointed before the next begins; the next step is derived from the recorded ones, so a resumed run
continues exactly where the last checkpoint left it and never repeats a finished step."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

from google.protobuf import json_format

from agentmesh.deadline import Deadline
from agentmesh.errors import AgentMeshError, FailedPrecondition, PermissionDenied, ResourceExhausted
from agentmesh.llm import LLMClient
from agentmesh.services.supervisor.budgets import TenantBudgets
from agentmesh.services.supervisor.clients import MeshClients
from agentmesh.services.supervisor.deltas import answer_chunks
from agentmesh.services.supervisor.health import GatewayHealth, offered
from agentmesh.services.supervisor.holds import RunHolds
from agentmesh.services.supervisor.observe import RunObserver
from agentmesh.services.supervisor.router import FINISH, allowed_next, parse_route, router_system, routing_prompt
from agentmesh.services.supervisor.screening import GUARD, GuardScreens, guard_types
from agentmesh.services.supervisor.steps import AgentBody, GuardBody, RouteBody, ToolRun, llm_call
from agentmesh.services.supervisor.store import CheckpointStore, Event, RunRecord, StepRecord
from agentmesh.settings import Settings
from agentmesh.v1 import agent_pb2, guard_pb2, supervisor_pb2, usage_pb2

log = logging.getLogger(__name__)

SUPERVISOR = "supervisor"
_KIND = {
    "route": supervisor_pb2.STEP_KIND_ROUTE,
    "agent": supervisor_pb2.STEP_KIND_AGENT,
    "guard": supervisor_pb2.STEP_KIND_GUARD,
}
_REASON = {
    "COMPLETED": supervisor_pb2.FINISH_REASON_COMPLETED,
    "ITERATION_LIMIT": supervisor_pb2.FINISH_REASON_ITERATION_LIMIT,
    "BUDGET_EXHAUSTED": supervisor_pb2.FINISH_REASON_BUDGET_EXHAUSTED,
}
_ROLE = {"user": agent_pb2.ROLE_USER, "assistant": agent_pb2.ROLE_ASSISTANT}
# Statuses after which Resume can finish the run later (the cause was outside the run).
_RESUMABLE = {
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "RESOURCE_EXHAUSTED",
    "ABORTED",
    "DATABASE_UNAVAILABLE",
    "LLM_PROVIDER_UNAVAILABLE",
    "LLM_CIRCUIT_OPEN",
    "LLM_RATE_LIMITED",
}


class Emitter:
    """Numbers a run's events: seq increases by one per event, continuing across resumes."""

    def __init__(self, run_id: str, thread_id: str, seq: int) -> None:
        self.run_id, self.thread_id, self.seq = run_id, thread_id, seq

    def __call__(self, **event: Any) -> supervisor_pb2.RunEvent:
        ev = supervisor_pb2.RunEvent(run_id=self.run_id, thread_id=self.thread_id, seq=self.seq, **event)
        ev.time.FromNanoseconds(time.time_ns())  # GetCurrentTime goes through a datetime: 3x the cost
        self.seq += 1
        return ev


def _spent(err: AgentMeshError) -> StepRecord | None:
    """What a failed agent step spent, from its error's ErrorInfo metadata (None when it says nothing)."""
    md = err.metadata
    if not md.get("spent_llm_calls"):
        return None
    try:
        return StepRecord(
            -1,
            "agent",
            "",
            AgentBody(output="", model=""),
            int(md.get("spent_input_tokens", 0)),
            int(md.get("spent_output_tokens", 0)),
            int(md["spent_llm_calls"]),
            float(md.get("spent_cost_usd", 0.0)),
        )
    except ValueError:
        return None


@dataclasses.dataclass
class _LeaseClock:
    """When this execution last renewed its run's lease (a checkpoint renews it as well as the heartbeat)."""

    renewed_at: float


def recorded(ev: supervisor_pb2.RunEvent) -> Event:
    """An event as the store records it for WatchRun."""
    return ev.seq, ev.SerializeToString()


def _limit_reached(limit: Deadline) -> bool:
    """Whether this run is at AGENTMESH_MAX_RUN_DURATION_S (`limit`), with slack: a call it cuts fails ms early."""
    return limit.remaining() <= 0.05


def _usage(step: StepRecord) -> usage_pb2.Usage:
    return usage_pb2.Usage(input_tokens=step.input_tokens, output_tokens=step.output_tokens, llm_calls=step.llm_calls)


class RunExecutor:
    def __init__(
        self,
        *,
        settings: Settings,
        store: CheckpointStore,
        llm: LLMClient,
        mesh: MeshClients,
        agents: Mapping[str, str],
        budgets: TenantBudgets | None = None,
        observer: RunObserver | None = None,
        holds: RunHolds | None = None,
        health: GatewayHealth | None = None,
    ) -> None:
        """`agents`: the catalog's, in order, name -> description; `health`: the gateway's view (None: all offered)."""
        self._s = settings
        self._store = store
        self._llm = llm
        self._mesh = mesh
        self._agents = tuple(agents)
        self._descriptions = dict(agents)
        self._system = router_system(self._descriptions)
        self._health = health
        self._budgets = budgets
        self._obs = observer or RunObserver()
        self._screens = GuardScreens(mesh=mesh, observer=self._obs)
        self._holds = holds  # pauses for a person (None: no run ever pauses)

    async def _check_budget(self, tenant: str, *, fresh: bool = True) -> None:
        if self._budgets is not None:
            await self._budgets.check(tenant, fresh=fresh)

    def _run_too_long(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"the run reached its wall-time limit of {self._s.max_run_duration_s:g} s for one execution "
            "(AGENTMESH_MAX_RUN_DURATION_S); Resume continues it from its last checkpoint",
            reason="RUN_DURATION_EXCEEDED",
        )

    # --- entry points ----------------------------------------------------------------------------

    async def start(
        self, *, tenant: str, message: str, thread_id: str, deadline: Deadline, enqueue: bool = False
    ) -> AsyncIterator[supervisor_pb2.RunEvent]:
        run_id = uuid.uuid4()
        em = Emitter(str(run_id), thread_id, 0)
        await self._check_budget(tenant)  # a spent budget costs no guard call and creates no run
        limit = Deadline.after(self._s.max_run_duration_s)
        deadline = min(deadline, limit)
        # The thread's restore token keeps <EMAIL_1> meaning the same value across its turns.
        token = await self._store.thread_restore_token(thread_id, tenant) if thread_id else ""
        # The input is checked before anything is stored, so raw PII never reaches a checkpoint.
        verdict = await self._mesh.check(
            message,
            guard_pb2.DIRECTION_INPUT,
            tenant=tenant,
            deadline=deadline,
            restore_token=token,
        )
        self._obs.run_started(str(run_id), tenant)
        self._obs.guard(guard_pb2.DIRECTION_INPUT, verdict)
        decision = em(
            guard_decision=supervisor_pb2.GuardDecision(
                direction=guard_pb2.DIRECTION_INPUT, action=verdict.action, finding_types=guard_types(verdict)
            )
        )
        if verdict.action == guard_pb2.ACTION_BLOCK:
            yield decision
            err = PermissionDenied(
                f"the guard blocked the input ({', '.join(guard_types(verdict))})", reason="GUARD_BLOCKED_INPUT"
            )
            yield em(error=supervisor_pb2.RunError(code=err.code.value[0], message=err.message, resumable=False))
            raise err
        text = verdict.redacted_text if verdict.action == guard_pb2.ACTION_REDACT else message

        def first_event(tid: str) -> Event:
            em.thread_id = decision.thread_id = tid
            return recorded(decision)

        run = await self._store.create_run(
            tenant=tenant,
            thread_id=thread_id,
            run_id=run_id,
            text=text,
            history_limit=self._s.history_messages,
            next_seq=em.seq,
            max_thread_messages=self._s.max_thread_messages,
            restore_token=verdict.restore_token or token,
            first_event=first_event,
            history_chars=self._s.history_chars,
            enqueue=enqueue,
        )
        yield decision
        if run.status == "queued":
            return  # started by the supervisor that ends the run before it, or by the sweep
        async for ev in self._execute(run, [], em, deadline, limit):
            yield ev

    async def resume(self, *, tenant: str, run_id: str, deadline: Deadline) -> AsyncIterator[supervisor_pb2.RunEvent]:
        run = await self._store.get_run(run_id, tenant)
        if run.status in ("cancelled", "paused", "queued"):  # ended, or waiting: for SubmitInput, for its thread
            raise FailedPrecondition(
                f"run {run_id} is {run.status}, not interrupted", reason=f"RUN_{run.status.upper()}"
            )
        if run.status == "completed" and run.final is not None:
            # A finished run answers with its final event again; no agent is called.
            yield json_format.ParseDict(run.final, supervisor_pb2.RunEvent())
            return
        await self._check_budget(tenant)
        limit = Deadline.after(self._s.max_run_duration_s)
        deadline = min(deadline, limit)
        run = await self._store.claim(run)
        self._obs.run_started(str(run.id), tenant)
        steps = await self._store.steps(run.id)
        em = Emitter(str(run.id), str(run.thread_id), run.next_seq)
        async for ev in self._execute(run, steps, em, deadline, limit):
            yield ev

    async def take_over(self, run: RunRecord) -> AsyncIterator[supervisor_pb2.RunEvent]:
        """Continue a run claimed from a supervisor that stopped (its lease ran out): no client is waiting, so
        only the run's own wall-time limit bounds it."""
        limit = Deadline.after(self._s.max_run_duration_s)
        self._obs.run_started(str(run.id), run.tenant_id)
        steps = await self._store.steps(run.id)
        em = Emitter(str(run.id), str(run.thread_id), run.next_seq)
        log.info("run taken over", extra={"run_id": str(run.id), "steps": len(steps)})
        async for ev in self._execute(run, steps, em, limit, limit):
            yield ev

    # --- the loop --------------------------------------------------------------------------------

    async def _execute(
        self, run: RunRecord, steps: list[StepRecord], em: Emitter, deadline: Deadline, limit: Deadline
    ) -> AsyncIterator[supervisor_pb2.RunEvent]:
        """`deadline`: the caller's, capped by `limit`, this execution's wall-time limit."""
        lease = _LeaseClock(time.monotonic())
        heartbeat = asyncio.create_task(self._heartbeat(run, lease))
        try:
            async for ev in self._loop(run, steps, em, deadline, limit, lease):
                yield ev
        except AgentMeshError as caught:
            # A call cut by the run's wall-time limit fails with the call's own error; name the limit instead.
            exc = self._run_too_long() if _limit_reached(limit) else caught
            resumable = exc.reason in _RESUMABLE or exc.code.name in _RESUMABLE
            info: dict[str, Any] = {"code": exc.code.value[0], "message": exc.message, "resumable": resumable}
            log.warning("run failed", extra={"run_id": str(run.id), "reason": exc.reason, "resumable": resumable})
            self._obs.run_failed(exc.reason)
            spent = _spent(caught)
            if self._budgets is not None and spent is not None:
                self._budgets.spent(run.tenant_id, tokens=spent.input_tokens + spent.output_tokens, usd=spent.cost_usd)
            error = em(error=supervisor_pb2.RunError(**info))
            with contextlib.suppress(AgentMeshError):
                await self._store.fail(run, error=info, next_seq=em.seq, event=recorded(error), spent=spent)
            yield error
            if exc is caught:
                raise
            raise exc from caught
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, run: RunRecord, lease: _LeaseClock) -> None:
        # Every checkpoint renews the lease too: renew here only after a third of the lease with no checkpoint.
        period = self._s.run_lease_s / 3
        while True:
            await asyncio.sleep(max(0.0, lease.renewed_at + period - time.monotonic()))
            if time.monotonic() - lease.renewed_at >= period:
                with contextlib.suppress(AgentMeshError):
                    await self._store.renew_lease(run)
                lease.renewed_at = time.monotonic()

    async def _loop(
        self,
        run: RunRecord,
        steps: list[StepRecord],
        em: Emitter,
        deadline: Deadline,
        limit: Deadline,
        lease: _LeaseClock,
    ) -> AsyncIterator[supervisor_pb2.RunEvent]:
        tokens = run.input_tokens + run.output_tokens
        cost = run.cost_usd
        llm_calls = run.llm_calls
        iterations = run.iterations
        # Set by this execution's guard step; a run resumed after that step shows the redacted answer.
        restored = ""
        # The output check of this execution's latest agent step when its text passed unchanged, and so is
        # the answer as the guard step would check it (see GuardScreens.answer).
        answer_check: guard_pb2.CheckResponse | None = None
        while True:
            last = steps[-1].result if steps else None
            outputs = [(s.agent, s.result.output) for s in steps if isinstance(s.result, AgentBody)]
            idx = len(steps)
            if isinstance(last, GuardBody):
                guard = last
                break
            if isinstance(last, AgentBody) and last.screen is not None and last.screen.stop_reason:
                # A step whose output the guard refused ends the run (also when a resumed run reaches it again).
                raise PermissionDenied(last.screen.stop_message, reason=last.screen.stop_reason)
            started = time.monotonic()
            if not isinstance(last, RouteBody):  # the first step, or the one after an agent's
                kind, agent = "route", SUPERVISOR
            elif last.decision == FINISH:
                kind, agent = "guard", GUARD
            else:
                kind, agent = "agent", last.decision
            if kind != "guard":  # steps that spend: the budget and the wall-time limit stop the run before them
                await self._check_budget(run.tenant_id, fresh=False)
                if _limit_reached(limit):
                    raise self._run_too_long()
            if self._holds is not None and (ask := await self._holds.ask(run, idx, kind, agent, steps)):
                yield await self._holds.pause(run, em(input_required=ask))
                return  # the run waits in Postgres; SubmitInput continues it
            started_event = em(step_started=supervisor_pb2.StepStarted(step=idx, kind=_KIND[kind], agent=agent))
            yield started_event
            with self._obs.step(
                run_id=str(run.id), idx=idx, kind=kind, agent=agent, iteration=iterations + (kind == "agent")
            ) as observed:
                if kind == "route":
                    step = await self._route(run, idx, outputs, iterations, tokens, deadline)
                elif kind == "agent":
                    step, answer_check = await self._act(run, idx, agent, outputs, tokens, deadline)
                else:
                    last_agent = next((s.result for s in reversed(steps) if isinstance(s.result, AgentBody)), None)
                    step, restored = await self._screens.answer(run, idx, last_agent, deadline, answer_check)
                step = dataclasses.replace(step, duration_ms=int((time.monotonic() - started) * 1000))
                observed(step)
            body = step.result
            finished = [
                em(
                    step_finished=supervisor_pb2.StepFinished(
                        step=idx,
                        kind=_KIND[kind],
                        agent=agent,
                        duration_ms=step.duration_ms,
                        usage=_usage(step),
                        cost_usd=step.cost_usd,
                        decision=body.decision if isinstance(body, RouteBody) else "",
                        output=body.output if isinstance(body, AgentBody) else "",
                    )
                )
            ]
            if isinstance(body, GuardBody):
                finished.append(
                    em(
                        guard_decision=supervisor_pb2.GuardDecision(
                            direction=guard_pb2.DIRECTION_OUTPUT,
                            # Stored as the enum's number (JSON); the message takes it as the enum it is.
                            action=cast("guard_pb2.Action", body.action),
                            finding_types=body.finding_types,
                        )
                    )
                )
            # Checkpoint first, then tell the client: an event the client saw is always recoverable. The step's
            # events are recorded with it (the started event too: WatchRun sees a step once it is done).
            await self._store.commit_step(
                run,
                step,
                next_seq=em.seq,
                iteration=kind == "agent",
                events=[recorded(started_event), *map(recorded, finished)],
            )
            lease.renewed_at = time.monotonic()
            step_tokens = step.input_tokens + step.output_tokens
            if self._budgets is not None:
                self._budgets.spent(run.tenant_id, tokens=step_tokens, usd=step.cost_usd)
            steps.append(step)
            tokens += step_tokens
            cost += step.cost_usd
            llm_calls += step.llm_calls
            iterations += kind == "agent"
            for ev in finished:
                yield ev
        if guard.action == guard_pb2.ACTION_BLOCK:
            raise PermissionDenied(
                f"the guard blocked the answer ({', '.join(guard.finding_types)})", reason="GUARD_BLOCKED_OUTPUT"
            )
        route_reason = next(s.result.reason or "COMPLETED" for s in reversed(steps) if isinstance(s.result, RouteBody))
        answer = guard.answer
        deltas = [em(text_delta=supervisor_pb2.TextDelta(text=c)) for c in answer_chunks(answer)]
        final = em(
            final=supervisor_pb2.Final(
                answer=answer,
                reason=_REASON.get(route_reason, supervisor_pb2.FINISH_REASON_COMPLETED),
                usage=usage_pb2.Usage(
                    input_tokens=sum(s.input_tokens for s in steps),
                    output_tokens=sum(s.output_tokens for s in steps),
                    llm_calls=sum(s.llm_calls for s in steps),
                ),
                cost_usd=sum(s.cost_usd for s in steps),
                iterations=iterations,
            )
        )
        # Checkpoints, the thread and the replayed final event keep the redacted answer (later runs feed it to
        # the LLM); only the event sent to this client carries the values put back by the guard.
        events = [*map(recorded, deltas), recorded(final)]
        await self._store.finish(
            run, final_event=json_format.MessageToDict(final), next_seq=em.seq, answer=answer, events=events
        )
        if restored:
            final.final.answer = restored
        log.info(
            "run completed",
            extra={
                "run_id": str(run.id),
                "iterations": iterations,
                "llm_calls": llm_calls,
                "tokens": tokens,
                "cost_usd": round(cost, 6),
                "reason": route_reason,
            },
        )
        self._obs.run_completed(reason=route_reason, iterations=iterations)
        for delta in deltas:
            yield delta
        yield final

    # --- steps -----------------------------------------------------------------------------------

    async def _route(
        self, run: RunRecord, idx: int, outputs: list[tuple[str, str]], iterations: int, tokens: int, deadline: Deadline
    ) -> StepRecord:
        # Limits end the run through a recorded FINISH, so a resumed run ends the same way.
        if iterations >= self._s.max_iterations:
            return StepRecord(idx, "route", SUPERVISOR, RouteBody(FINISH, reason="ITERATION_LIMIT"))
        if tokens >= self._s.run_token_budget:
            return StepRecord(idx, "route", SUPERVISOR, RouteBody(FINISH, reason="BUDGET_EXHAUSTED"))
        done = [a for a, _ in outputs]
        agents, down, note = await offered(self._health, self._agents, done=done, run_id=str(run.id))
        if not agents:  # every agent is down: the work so far is the answer
            return StepRecord(idx, "route", SUPERVISOR, RouteBody(FINISH, reason="COMPLETED", skipped=down, note=note))
        allowed = allowed_next(agents, done)
        prompt = routing_prompt(self._request_with_history(run), outputs, allowed, self._descriptions)
        result = await self._llm.complete(
            system=self._system,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=8,
            deadline=deadline,
            attributes={"agentmesh.run_id": str(run.id), "agentmesh.step": idx},
            tenant=run.tenant_id,  # its turns at the LLM budget (llm/_fair.py)
        )
        route = parse_route(result.text, allowed, agents, done)
        # The routing call is the step's only work: it starts with it.
        body = RouteBody(
            route.decision,
            llm=(
                llm_call(
                    result.model,
                    result.input_tokens,
                    result.output_tokens,
                    0.0,
                    result.latency_ms,
                    result.cost_usd,
                    result.attempts,
                    result.stop_reason,
                ),
            ),
            reason="COMPLETED" if route.decision == FINISH else "",
            invalid_answer=None if route.valid else route.raw,
            skipped=down,  # agents the gateway had no healthy host for, and the note that says so
            note=note,
        )
        if not route.valid:
            log.warning(
                "router answered outside the allowed set; fallback applied",
                extra={"run_id": str(run.id), "step": idx, "decision": route.decision},
            )
        return StepRecord(idx, "route", SUPERVISOR, body, result.input_tokens, result.output_tokens, 1, result.cost_usd)

    async def _act(
        self, run: RunRecord, idx: int, agent: str, outputs: list[tuple[str, str]], tokens: int, deadline: Deadline
    ) -> tuple[StepRecord, guard_pb2.CheckResponse | None]:
        """The step, and its output check when that let the output through unchanged (ALLOW)."""
        context = [
            agent_pb2.ContextMessage(role=_ROLE.get(m["role"], agent_pb2.ROLE_USER), content=m["content"])
            for m in run.history
        ]
        context += [agent_pb2.ContextMessage(role=agent_pb2.ROLE_AGENT, agent=a, content=o) for a, o in outputs]
        remaining = max(1, self._s.run_token_budget - tokens)
        request = agent_pb2.ActRequest(
            run_id=str(run.id),
            step=idx,
            task=run.input,
            context=context,
            max_output_tokens=min(self._s.agent_max_output_tokens, remaining),
        )
        resp = await self._mesh.act(agent, request, tenant=run.tenant_id, deadline=deadline)
        try:
            output, screen, checked = await self._screens.output(run, agent, resp.output, deadline)
        except AgentMeshError as exc:
            # The agent's calls were paid for even if the guard could not be asked about their result.
            exc.metadata.update(
                spent_input_tokens=str(resp.usage.input_tokens),
                spent_output_tokens=str(resp.usage.output_tokens),
                spent_llm_calls=str(resp.usage.llm_calls),
                spent_cost_usd=repr(resp.cost_usd),
            )
            raise
        body = AgentBody(
            output,
            resp.model,
            llm=tuple(
                llm_call(
                    c.model,
                    c.input_tokens,
                    c.output_tokens,
                    c.start_ms,
                    c.duration_ms,
                    c.cost_usd,
                    c.attempts,
                    c.stop_reason,
                )
                for c in resp.llm_calls
            ),
            tools=tuple(ToolRun(t.name, t.executed) for t in resp.tool_calls),
            screen=screen,
        )
        step = StepRecord(
            idx,
            "agent",
            agent,
            body,
            resp.usage.input_tokens,
            resp.usage.output_tokens,
            resp.usage.llm_calls,
            resp.cost_usd,
        )
        return step, checked

    @staticmethod
    def _request_with_history(run: RunRecord) -> str:
        if not run.history:
            return run.input
        earlier = " | ".join(f"{m['role']}: {m['content'][:200]}" for m in run.history[-6:])
        return f"{run.input} (earlier in this thread: {earlier})"
