"""What each kind of step records, typed. The store turns a body into the JSON of `steps.result` and back
(`to_json` / `body_from_json`); the keys are the ones every earlier version wrote, so a run checkpointed before an
upgrade resumes exactly after it. Optional parts are written only when present, as they always were."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LLMCall:
    """One LLM call of a step, metadata only, for `agentmesh trace`. start_ms counts from when the service that
    made the call began the step's work."""

    model: str
    input_tokens: int
    output_tokens: int
    start_ms: float
    duration_ms: float
    cost_usd: float
    attempts: int
    stop_reason: str

    def to_json(self) -> Json:
        return {
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "start_ms": self.start_ms,
            "duration_ms": self.duration_ms,
            "cost_usd": self.cost_usd,
            "attempts": self.attempts,
            "stop_reason": self.stop_reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LLMCall:
        # Trace metadata: a missing field must not stop a resume, so each has the default `agentmesh trace` reads.
        return cls(
            model=data.get("model", ""),
            input_tokens=data.get("input_tokens", 0),
            output_tokens=data.get("output_tokens", 0),
            start_ms=data.get("start_ms", 0.0),
            duration_ms=data.get("duration_ms", 0.0),
            cost_usd=data.get("cost_usd", 0.0),
            attempts=data.get("attempts", 1),
            stop_reason=data.get("stop_reason", ""),
        )


def _calls(data: Mapping[str, Any]) -> tuple[LLMCall, ...]:
    # Steps recorded before calls were kept have no "llm" key.
    return tuple(LLMCall.from_json(c) for c in data.get("llm", ()))


@dataclass(frozen=True, slots=True)
class ToolRun:
    name: str
    executed: bool


@dataclass(frozen=True, slots=True)
class RouteBody:
    """The router's decision: the next agent, or FINISH with why."""

    decision: str
    llm: tuple[LLMCall, ...] = ()
    """Empty when a limit decided without asking the LLM."""
    reason: str = ""
    """Set with FINISH only: COMPLETED, ITERATION_LIMIT or BUDGET_EXHAUSTED."""
    invalid_answer: str | None = None
    """The router's raw answer when it was outside the allowed set (a fallback was applied); may be ''."""
    skipped: tuple[str, ...] = ()
    """Catalog agents not offered to the router: the gateway had no healthy host for them."""
    note: str = ""
    """Why the step decided as it did, when something other than the router's answer mattered (skipped agents)."""

    def to_json(self) -> Json:
        out: Json = {"decision": self.decision}
        if self.llm:
            out["llm"] = [c.to_json() for c in self.llm]
        if self.reason:
            out["reason"] = self.reason
        if self.invalid_answer is not None:
            out["invalid_answer"] = self.invalid_answer
        if self.skipped:
            out["skipped"] = list(self.skipped)
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouteBody:
        return cls(
            decision=data["decision"],
            llm=_calls(data),
            reason=data.get("reason", ""),
            invalid_answer=data.get("invalid_answer"),
            skipped=tuple(data.get("skipped", ())),
            note=data.get("note", ""),
        )


@dataclass(frozen=True, slots=True)
class Screen:
    """What the guard said of an agent's output before anyone saw it: the output policy's action and finding
    types, the action on planted instructions (prompt injection) when one was found, and, when the guard
    refused the output, why the run stops there (the step's output is then empty)."""

    action: int
    finding_types: tuple[str, ...] = ()
    injection: int | None = None
    stop_reason: str = ""
    stop_message: str = ""

    def to_json(self) -> Json:
        out: Json = {"action": self.action, "finding_types": list(self.finding_types)}
        if self.injection is not None:
            out["injection"] = self.injection
        return out


@dataclass(frozen=True, slots=True)
class AgentBody:
    """An agent's answer as the client may see it (the guard screened it), the model that wrote it, its LLM
    calls, the tools it asked for and the guard's screen (None in rows older than the screen)."""

    output: str
    model: str
    llm: tuple[LLMCall, ...] = ()
    tools: tuple[ToolRun, ...] = ()
    screen: Screen | None = None

    def to_json(self) -> Json:
        out: Json = {"output": self.output, "model": self.model, "llm": [c.to_json() for c in self.llm]}
        if self.tools:
            out["tools"] = [{"name": t.name, "executed": t.executed} for t in self.tools]
        if self.screen is not None:
            out["guard"] = self.screen.to_json()
            if self.screen.stop_reason:
                out["stopped"] = {"reason": self.screen.stop_reason, "message": self.screen.stop_message}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentBody:
        guard, stopped = data.get("guard"), data.get("stopped") or {}
        screen = (
            Screen(
                action=guard["action"],
                finding_types=tuple(guard.get("finding_types", ())),
                injection=guard.get("injection"),
                stop_reason=stopped.get("reason", ""),
                stop_message=stopped.get("message", ""),
            )
            if guard is not None
            else None
        )
        return cls(
            output=data["output"],
            model=data["model"],
            llm=_calls(data),
            tools=tuple(ToolRun(t["name"], t["executed"]) for t in data.get("tools", ())),
            screen=screen,
        )


@dataclass(frozen=True, slots=True)
class GuardBody:
    """The guard's verdict on the answer (a guard_pb2.Action) and the answer as checkpointed: redacted, or ''
    when blocked."""

    action: int
    finding_types: tuple[str, ...]
    answer: str

    def to_json(self) -> Json:
        return {"action": self.action, "finding_types": list(self.finding_types), "answer": self.answer}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GuardBody:
        return cls(action=data["action"], finding_types=tuple(data["finding_types"]), answer=data["answer"])


StepBody: TypeAlias = RouteBody | AgentBody | GuardBody
_BODIES: dict[str, type[RouteBody] | type[AgentBody] | type[GuardBody]] = {
    "route": RouteBody,
    "agent": AgentBody,
    "guard": GuardBody,
}


def body_from_json(kind: str, data: Mapping[str, Any]) -> StepBody:
    """The body of a stored step of `kind` (route | agent | guard)."""
    return _BODIES[kind].from_json(data)


def llm_call(
    model: str,
    input_tokens: int,
    output_tokens: int,
    start_ms: float,
    duration_ms: float,
    cost_usd: float,
    attempts: int,
    stop_reason: str | None,
) -> LLMCall:
    """One LLM call as a step records it for `agentmesh trace`: metadata only. start_ms counts from when the
    service that made the call began the step's work."""
    return LLMCall(
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        start_ms=round(max(0.0, start_ms), 1),
        duration_ms=round(duration_ms, 1),
        cost_usd=cost_usd,
        attempts=attempts,
        stop_reason=stop_reason or "",
    )


__all__ = [
    "AgentBody",
    "GuardBody",
    "LLMCall",
    "RouteBody",
    "Screen",
    "StepBody",
    "ToolRun",
    "body_from_json",
    "llm_call",
]
