"""What the supervisor asks the guard about an agent's output and about the answer, and what it makes of the
verdicts: the text shown, the step's Screen, the guard step's body."""

from __future__ import annotations

import logging
from typing import cast

from agentmesh.deadline import Deadline
from agentmesh.services.supervisor.clients import MeshClients
from agentmesh.services.supervisor.observe import RunObserver
from agentmesh.services.supervisor.steps import AgentBody, GuardBody, Screen
from agentmesh.services.supervisor.store import RunRecord, StepRecord
from agentmesh.v1 import guard_pb2

log = logging.getLogger(__name__)

GUARD = "guard"


def guard_types(resp: guard_pb2.CheckResponse) -> list[str]:
    return sorted({f.type for f in resp.findings})


class GuardScreens:
    def __init__(self, *, mesh: MeshClients, observer: RunObserver) -> None:
        self._mesh = mesh
        self._obs = observer

    async def output(
        self, run: RunRecord, agent: str, raw: str, deadline: Deadline
    ) -> tuple[str, Screen, guard_pb2.CheckResponse | None]:
        """An agent's output as the client may see it (the output policy, as for the final answer), and what the
        guard said. The shown text also feeds the next LLM calls, so it is checked for indirect prompt injection
        (the input policy's prompt_injection rule): FLAG lets it through to the review queue, BLOCK stops the run.
        The raw text is neither stored nor sent. Third: the output check when it allowed the text unchanged."""
        # Both checks in one guard call (check_as_input); a guard that predates it answers without input_check.
        verdict = await self._mesh.check(
            raw,
            guard_pb2.DIRECTION_OUTPUT,
            tenant=run.tenant_id,
            deadline=deadline,
            restore_token=run.restore_token,
            check_as_input=True,
        )
        self._obs.guard(guard_pb2.DIRECTION_OUTPUT, verdict)
        types = tuple(guard_types(verdict))
        if verdict.action == guard_pb2.ACTION_BLOCK:
            stop = f"the guard blocked the output of agent {agent} ({', '.join(types)})"
            return "", Screen(int(verdict.action), types, stop_reason="GUARD_BLOCKED_OUTPUT", stop_message=stop), None
        shown = verdict.redacted_text if verdict.action == guard_pb2.ACTION_REDACT else raw
        if verdict.HasField("input_check"):
            injection = verdict.input_check
        else:
            injection = await self._mesh.check(
                shown, guard_pb2.DIRECTION_INPUT, tenant=run.tenant_id, deadline=deadline
            )
        self._obs.guard(guard_pb2.DIRECTION_INPUT, injection)
        action = max(
            (int(f.action) for f in injection.findings if f.type == "prompt_injection"),
            default=int(guard_pb2.ACTION_ALLOW),
        )
        unchanged = verdict if verdict.action == guard_pb2.ACTION_ALLOW else None
        if action < guard_pb2.ACTION_FLAG:
            return shown, Screen(int(verdict.action), types), unchanged
        log.warning(
            "prompt injection in an agent output",
            extra={
                "run_id": str(run.id),
                "agent": agent,
                "action": guard_pb2.Action.Name(cast("guard_pb2.Action", action)),
            },
        )
        if action == guard_pb2.ACTION_BLOCK:
            stop = (
                f"the guard found instructions planted in the output of agent {agent} (prompt_injection); "
                "the run stopped before they reached another LLM call"
            )
            return "", Screen(int(verdict.action), types, action, "GUARD_BLOCKED_INJECTION", stop), None
        return shown, Screen(int(verdict.action), types, action), unchanged

    async def answer(
        self,
        run: RunRecord,
        idx: int,
        last_agent: AgentBody | None,
        deadline: Deadline,
        checked: guard_pb2.CheckResponse | None = None,
    ) -> tuple[StepRecord, str]:
        """The guard's step, and the answer with the conversation's redacted values restored (in memory only).
        `checked`: the last agent step's output check in this execution, when it allowed the text unchanged."""
        # The answer is the last agent's output: the analyst (or executor) already wrote for the user, and a
        # separate "summarise" LLM call would add cost and latency to every run. That output was screened when
        # its step finished; this check finds anything left and puts the conversation's own values back.
        answer = last_agent.output if last_agent is not None else ""
        screened = last_agent.screen if last_agent is not None else None
        if checked is not None:
            # That check was this one: the same text (nothing was redacted), direction and restore token, moments
            # ago; it found nothing to act on and its restored_text is the answer's. Asking again would only
            # repeat it. A resumed run (its screen's answer not kept) or a changed output asks the guard.
            verdict = checked
        else:
            verdict = await self._mesh.check(
                answer,
                guard_pb2.DIRECTION_OUTPUT,
                tenant=run.tenant_id,
                deadline=deadline,
                restore_token=run.restore_token,
            )
        self._obs.guard(guard_pb2.DIRECTION_OUTPUT, verdict)
        shown = verdict.redacted_text if verdict.action == guard_pb2.ACTION_REDACT else answer
        # The answer's decision names what its step's check found too (Action values are ordered by strength).
        body = GuardBody(
            action=max(int(verdict.action), screened.action if screened else int(guard_pb2.ACTION_ALLOW)),
            finding_types=tuple(sorted({*guard_types(verdict), *(screened.finding_types if screened else ())})),
            answer="" if verdict.action == guard_pb2.ACTION_BLOCK else shown,
        )
        restored = "" if verdict.action == guard_pb2.ACTION_BLOCK else verdict.restored_text
        return StepRecord(idx, "guard", GUARD, body), restored


__all__ = ["GUARD", "GuardScreens", "guard_types"]
