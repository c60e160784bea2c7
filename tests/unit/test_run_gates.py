"""Which steps pause a run for a person (RunHolds.ask): derived from the recorded steps and answers only, so a run
taken over or restarted asks the same question, and an answered step passes. Step 0's input-flag check reads the
run's first event from Postgres and is covered by tests/integration/test_waiting_runs.py."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agentmesh.services.supervisor.holds import RunHolds
from agentmesh.services.supervisor.steps import AgentBody, RouteBody, Screen
from agentmesh.services.supervisor.store import RunRecord, StepRecord
from agentmesh.v1 import guard_pb2, supervisor_pb2

FLAG, REDACT = int(guard_pb2.ACTION_FLAG), int(guard_pb2.ACTION_REDACT)


def holds(*, agents: frozenset[str] = frozenset(), pause_on_flag: bool = False) -> RunHolds:
    # No pool: the gates below never read the database (only step 0 with pause_on_flag does).
    return RunHolds(pool=None, owner="t", lease_s=1, approval_agents=agents, pause_on_flag=pause_on_flag)  # type: ignore[arg-type]


def run(approvals: dict[str, Any] | None = None) -> RunRecord:
    return RunRecord(
        id=uuid.uuid4(),
        thread_id=uuid.uuid4(),
        tenant_id="t",
        status="running",
        input="Calculate 17 * 23",
        history=[],
        next_seq=1,
        iterations=0,
        input_tokens=0,
        output_tokens=0,
        llm_calls=0,
        cost_usd=0.0,
        final=None,
        error=None,
        approvals=approvals or {},
    )


def agent_step(idx: int, agent: str, screen: Screen | None) -> StepRecord:
    return StepRecord(idx, "agent", agent, AgentBody(output="out", model="m", screen=screen))


ROUTED = [StepRecord(0, "route", "supervisor", RouteBody("executor"))]


async def test_an_agent_needing_approval_pauses_before_its_step_with_the_task() -> None:
    ask = await holds(agents=frozenset({"executor"})).ask(run(), 1, "agent", "executor", ROUTED)
    assert ask is not None
    assert ask.reason == supervisor_pb2.INPUT_REASON_AGENT_APPROVAL
    assert (ask.step, ask.agent, ask.arguments) == (1, "executor", "Calculate 17 * 23")


async def test_other_agents_and_answered_steps_pass() -> None:
    gate = holds(agents=frozenset({"executor"}))
    assert await gate.ask(run(), 1, "agent", "researcher", ROUTED) is None
    assert await gate.ask(run({"1": {"approve": True, "note": ""}}), 1, "agent", "executor", ROUTED) is None
    assert await holds().ask(run(), 1, "agent", "executor", ROUTED) is None  # no policy: never pauses


@pytest.mark.parametrize(
    ("screen", "types"),
    [
        (Screen(FLAG, ("credit_card",)), ["credit_card"]),
        (Screen(REDACT, ("email",), injection=FLAG), ["email", "prompt_injection"]),
    ],
)
async def test_a_flagged_agent_output_pauses_before_the_next_step(screen: Screen, types: list[str]) -> None:
    steps = [*ROUTED, agent_step(1, "researcher", screen)]
    ask = await holds(pause_on_flag=True).ask(run(), 2, "route", "supervisor", steps)
    assert ask is not None and ask.reason == supervisor_pb2.INPUT_REASON_GUARD_FLAG
    assert (ask.step, ask.agent, list(ask.finding_types)) == (2, "researcher", types)
    # Without the setting a flag only goes to the review queue.
    assert await holds().ask(run(), 2, "route", "supervisor", steps) is None


async def test_unflagged_or_redacted_outputs_do_not_pause() -> None:
    for screen in (None, Screen(int(guard_pb2.ACTION_ALLOW)), Screen(REDACT, ("email",))):
        steps = [*ROUTED, agent_step(1, "researcher", screen)]
        assert await holds(pause_on_flag=True).ask(run(), 2, "route", "supervisor", steps) is None
