"""What an LLMClient reports per logical call, when its process gives it instruments: one span named and
attributed by the OpenTelemetry GenAI semantic conventions (plus our own `agentmesh.*` attributes), and the
call's latency in a histogram.

Why our span and not the anthropic SDK's (`anthropic.messages.create`): the SDK opens one span per HTTP
attempt, cannot carry our attributes (cost, attempts, breaker state, run and step), and names its finish
reason `anthropic.message.stop_reason`. The SDK emits its spans only through OpenTelemetry's global tracer
provider, which agentmesh never installs (see `agentmesh.telemetry._tracing`), so there is no duplicate.

Spans carry metadata only: model, token counts, cost, attempts, finish reason. Never prompt or answer text.

This module takes the tracer and the histogram as given (`agentmesh.telemetry` builds them): the llm package
imports only OpenTelemetry's API and prometheus_client's types, never agentmesh.telemetry, which imports it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.trace import Tracer
from opentelemetry.util.types import AttributeValue
from prometheus_client import Histogram

from agentmesh.errors import AgentMeshError

PROVIDER = "anthropic"


@dataclass(frozen=True)
class LLMInstruments:
    """How one process observes its LLM calls (`Telemetry.llm_instruments()` builds it).

    `agent` names the process (the `agentmesh.agent` span attribute and the histogram's `agent` label).
    `tracer` None: no span (tracing off), the call is only timed. `call_seconds` None: not timed."""

    agent: str
    tracer: Tracer | None = None
    call_seconds: Histogram | None = None

    def observe(self, model: str, outcome: str, started: float) -> None:
        """One call's wall time since `started` (time.perf_counter()), by model and outcome."""
        if self.call_seconds is not None:
            self.call_seconds.labels(self.agent, model, outcome).observe(time.perf_counter() - started)

    def request_attributes(
        self, model: str, max_tokens: int, extra: Mapping[str, AttributeValue] | None
    ) -> dict[str, AttributeValue]:
        """A call's span attributes known before it is sent; `extra` (e.g. run id and step) from the caller."""
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": max_tokens,
            "agentmesh.agent": self.agent,
            **(extra or {}),
        }


def outcome_of(exc: BaseException) -> str:
    """A stable, bounded label for a failed call: the error's ErrorInfo reason (LLM_RATE_LIMITED,
    LLM_CIRCUIT_OPEN, ...), else the exception's type name. Never its message."""
    return exc.reason if isinstance(exc, AgentMeshError) else type(exc).__name__
