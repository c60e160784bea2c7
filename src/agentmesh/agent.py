"""The AgentService servicer that researcher, analyst and executor share: validate, call the LLM with the
agent's own system prompt (and, for the executor, an allow-listed toolbox), answer with usage and cost.

Each service supplies only its prompt and, optionally, its tools; everything else is common runtime."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from opentelemetry import trace

from agentmesh.deadline import Deadline
from agentmesh.errors import AgentMeshError, Internal, InvalidArgument
from agentmesh.llm import LLMClient
from agentmesh.rpc import TENANT_HEADER
from agentmesh.v1 import agent_pb2, agent_pb2_grpc, usage_pb2

log = logging.getLogger(__name__)

MAX_TASK_CHARS = 32_000
MAX_CONTEXT_MESSAGES = 100
MAX_CONTEXT_CHARS = 200_000
MAX_TOOL_ROUNDS = 3

_ROLE_LABEL = {agent_pb2.ROLE_USER: "user", agent_pb2.ROLE_ASSISTANT: "assistant", agent_pb2.ROLE_AGENT: "agent"}


@dataclass(frozen=True)
class ToolOutcome:
    executed: bool
    result: str


@dataclass(frozen=True)
class CallInfo:
    """The Act call a tool runs for: a toolbox that calls out (the guard) uses its tenant and deadline."""

    tenant: str | None
    deadline: Deadline


current_call: ContextVar[CallInfo] = ContextVar("agentmesh_current_call")


class Toolbox(Protocol):
    """What the executor gives the shared servicer: tool specs for the LLM and a checked way to run them."""

    def specs(self) -> list[dict[str, Any]]: ...

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome: ...


def render_prompt(task: str, context: Sequence[agent_pb2.ContextMessage]) -> str:
    """One user turn: the conversation so far as a transcript, then the task (the Messages API wants
    alternating roles; a transcript keeps agent outputs attributable without faking assistant turns)."""
    lines = []
    if context:
        lines.append("Conversation so far:")
        for m in context:
            who = m.agent if m.role == agent_pb2.ROLE_AGENT and m.agent else _ROLE_LABEL.get(m.role, "user")
            lines.append(f"[{who}] {m.content}")
        lines.append("")
    lines.append(f"Task: {task}")
    return "\n".join(lines)


def validate_act(request: agent_pb2.ActRequest) -> None:
    if not request.task.strip():
        raise InvalidArgument("ActRequest.task must not be empty")
    if len(request.task) > MAX_TASK_CHARS:
        raise InvalidArgument(f"ActRequest.task is {len(request.task)} characters; the limit is {MAX_TASK_CHARS}")
    if len(request.context) > MAX_CONTEXT_MESSAGES:
        raise InvalidArgument(
            f"ActRequest.context has {len(request.context)} messages; the limit is {MAX_CONTEXT_MESSAGES}"
        )
    if sum(len(m.content) for m in request.context) > MAX_CONTEXT_CHARS:
        raise InvalidArgument(f"ActRequest.context exceeds {MAX_CONTEXT_CHARS} characters")
    if request.max_output_tokens < 0:
        raise InvalidArgument("ActRequest.max_output_tokens must not be negative")


def _tenant_of(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    for key, value in metadata:
        if key == TENANT_HEADER:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return ""


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        *,
        name: str,
        system_prompt: str,
        llm: LLMClient,
        default_max_tokens: int,
        toolbox: Toolbox | None = None,
    ) -> None:
        self._name = name
        self._system = system_prompt
        self._llm = llm
        self._default_max_tokens = default_max_tokens
        self._toolbox = toolbox

    async def Act(
        self,
        request: agent_pb2.ActRequest,
        context: grpc.aio.ServicerContext[agent_pb2.ActRequest, agent_pb2.ActResponse],
    ) -> agent_pb2.ActResponse:
        validate_act(request)
        started = time.monotonic()
        deadline = Deadline.from_grpc_context(context)
        arrived_with = deadline.remaining()
        max_tokens = request.max_output_tokens or self._default_max_tokens
        # The supervisor names the run's tenant in the call's metadata: its LLM calls take that tenant's turns, and
        # a toolbox that calls out (the guard) acts for it.
        tenant = _tenant_of(context.invocation_metadata() or ())
        current_call.set(CallInfo(tenant or None, deadline))
        messages: list[dict[str, Any]] = [{"role": "user", "content": render_prompt(request.task, request.context)}]
        tools = self._toolbox.specs() if self._toolbox else None
        usage_in = usage_out = calls = 0
        cost = 0.0
        tool_calls: list[agent_pb2.ToolCall] = []
        llm_calls: list[agent_pb2.LlmCall] = []
        text = ""
        model = self._llm.model
        span_attrs: dict[str, str | int] = {"agentmesh.run_id": request.run_id, "agentmesh.step": request.step}
        try:
            for _round in range(MAX_TOOL_ROUNDS + 1):
                # The last round offers no tools, so the model must answer in text.
                offer = tools if _round < MAX_TOOL_ROUNDS else None
                call_start_ms = (time.monotonic() - started) * 1000
                result = await self._llm.complete(
                    system=self._system,
                    messages=messages,
                    max_tokens=max_tokens,
                    tools=offer,
                    deadline=deadline,
                    attributes=span_attrs,
                    tenant=tenant,
                )
                llm_calls.append(
                    agent_pb2.LlmCall(
                        model=result.model,
                        input_tokens=result.input_tokens,
                        output_tokens=result.output_tokens,
                        start_ms=round(call_start_ms, 1),
                        duration_ms=round(result.latency_ms, 1),
                        cost_usd=result.cost_usd,
                        attempts=result.attempts,
                        stop_reason=result.stop_reason or "",
                    )
                )
                usage_in += result.input_tokens
                usage_out += result.output_tokens
                cost += result.cost_usd
                calls += 1
                text, model = result.text, result.model
                if not result.tool_uses or self._toolbox is None:
                    break
                messages.append({"role": "assistant", "content": result.content})
                tool_results = []
                for use in result.tool_uses:
                    outcome = await self._toolbox.run(use.name, use.input)
                    tool_calls.append(
                        agent_pb2.ToolCall(
                            name=use.name,
                            arguments_json=json.dumps(use.input)[:2000],
                            result=outcome.result[:2000],
                            executed=outcome.executed,
                        )
                    )
                    log.info(
                        "tool call", extra={"agent": self._name, "tool": use.name[:64], "executed": outcome.executed}
                    )
                    tool_results.append(
                        {
                            "type": "tool_result",
                            "tool_use_id": use.id,
                            "content": outcome.result,
                            "is_error": not outcome.executed,
                        }
                    )
                messages.append({"role": "user", "content": tool_results})
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            # The calls that finished were paid for: the error carries their usage so the supervisor charges it.
            err = _with_spend(exc, self._name, input_tokens=usage_in, output_tokens=usage_out, calls=calls, cost=cost)
            if err is exc:
                raise
            raise err from exc
        # deadline_s: the budget this call arrived with (the caller's, through every hop), for tracing timeouts.
        log.info(
            "act",
            extra={
                "agent": self._name,
                "run_id": request.run_id,
                "step": request.step,
                "llm_calls": calls,
                "input_tokens": usage_in,
                "output_tokens": usage_out,
                "deadline_s": None if math.isinf(arrived_with) else round(arrived_with, 3),
                "latency_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        _annotate_span(request, self._name, llm_calls)
        return agent_pb2.ActResponse(
            agent=self._name,
            output=text,
            model=model,
            cost_usd=cost,
            tool_calls=tool_calls,
            llm_calls=llm_calls,
            usage=usage_pb2.Usage(input_tokens=usage_in, output_tokens=usage_out, llm_calls=calls),
        )


SPENT_KEYS = ("spent_input_tokens", "spent_output_tokens", "spent_llm_calls", "spent_cost_usd")


def _with_spend(
    exc: Exception, agent: str, *, input_tokens: int, output_tokens: int, calls: int, cost: float
) -> AgentMeshError:
    """`exc` as one of our errors whose ErrorInfo.metadata holds what the failed step spent. A cause we did not
    name becomes INTERNAL (logged here, with its traceback): the supervisor does not resume such a failure."""
    if isinstance(exc, AgentMeshError):
        err = exc
    else:
        log.exception("act failed", extra={"agent": agent})
        err = Internal(f"internal error in agent {agent} ({type(exc).__name__})")
    values = (str(input_tokens), str(output_tokens), str(calls), repr(cost))
    err.metadata.update(zip(SPENT_KEYS, values, strict=True))
    return err


def _annotate_span(request: agent_pb2.ActRequest, agent: str, calls: Sequence[agent_pb2.LlmCall]) -> None:
    """Our attributes on the Act call's server span (present only with tracing on): ids and totals, no text."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attributes(
        {
            "agentmesh.run_id": request.run_id,
            "agentmesh.step": request.step,
            "agentmesh.agent": agent,
            "agentmesh.llm.calls": len(calls),
            "agentmesh.llm.attempts": sum(c.attempts for c in calls),
            "agentmesh.usage.input_tokens": sum(c.input_tokens for c in calls),
            "agentmesh.usage.output_tokens": sum(c.output_tokens for c in calls),
            "agentmesh.cost_usd": sum(c.cost_usd for c in calls),
        }
    )
