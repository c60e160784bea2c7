"""One span per logical LLM call, named and attributed by the OpenTelemetry GenAI semantic conventions, plus
our own `agentmesh.*` attributes; and the call's latency in a histogram.

Why our span and not the anthropic SDK's (`anthropic.messages.create`): the SDK opens one span per HTTP
attempt, cannot carry our attributes (cost, attempts, breaker state, run and step), and names its finish
reason `anthropic.message.stop_reason`. The SDK emits its spans only through OpenTelemetry's global tracer
provider, which agentmesh never installs (see `_tracing.py`), so there is no duplicate.

Spans carry metadata only: model, token counts, cost, attempts, finish reason. Never prompt or answer text."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue
from prometheus_client import Histogram

from agentmesh.errors import AgentMeshError
from agentmesh.llm import LLMClient, LLMResult

PROVIDER = "anthropic"


class TracedLLM:
    """The process's LLMClient as its callers use it: `complete()` with the same arguments plus `attributes`
    (e.g. run id and step) for the span. With tracing off (`tracer=None`) it only times the call."""

    def __init__(self, llm: LLMClient, *, agent: str, tracer: Tracer | None, call_seconds: Histogram) -> None:
        self._llm = llm
        self._agent = agent
        self._tracer = tracer
        self._seconds = call_seconds

    @property
    def model(self) -> str:
        return self._llm.model

    async def complete(
        self,
        *,
        system: str,
        messages: Sequence[dict[str, Any]],
        max_tokens: int,
        tools: Sequence[dict[str, Any]] | None = None,
        model: str | None = None,
        deadline: float | None = None,
        stream: bool | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> LLMResult:
        model = model or self._llm.model
        kwargs: dict[str, Any] = {"system": system, "messages": messages, "max_tokens": max_tokens, "tools": tools,
                                  "model": model, "deadline": deadline, "stream": stream}
        started = time.perf_counter()
        if self._tracer is None:
            try:
                result = await self._llm.complete(**kwargs)
            except Exception as exc:
                self._observe(model, _outcome(exc), started)
                raise
            self._observe(result.model or model, "ok", started)
            return result
        return await self._traced(kwargs, model, max_tokens, started, attributes or {})

    async def _traced(self, kwargs: dict[str, Any], model: str, max_tokens: int, started: float,
                      attributes: Mapping[str, AttributeValue]) -> LLMResult:
        assert self._tracer is not None
        with self._tracer.start_as_current_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.request.model": model,
                "gen_ai.request.max_tokens": max_tokens,
                "agentmesh.agent": self._agent,
                **attributes,
            },
            # Exception events carry messages and stack traces; we record a stable error type instead.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = await self._llm.complete(**kwargs)
            except Exception as exc:
                outcome = _outcome(exc)
                span.set_attribute("error.type", outcome)
                span.set_attribute("agentmesh.breaker.state", self._llm.breaker.state.value)
                span.set_status(Status(StatusCode.ERROR, outcome))
                self._observe(model, outcome, started)
                raise
            span.set_attributes({
                "gen_ai.response.model": result.model,
                "gen_ai.usage.input_tokens": result.input_tokens,
                "gen_ai.usage.output_tokens": result.output_tokens,
                "gen_ai.response.finish_reasons": [result.stop_reason or "unknown"],
                "agentmesh.llm.attempts": result.attempts,
                "agentmesh.llm.retries": result.attempts - 1,
                "agentmesh.cost_usd": result.cost_usd,
                "agentmesh.breaker.state": self._llm.breaker.state.value,
            })
        self._observe(result.model or model, "ok", started)
        return result

    def _observe(self, model: str, outcome: str, started: float) -> None:
        self._seconds.labels(self._agent, model, outcome).observe(time.perf_counter() - started)


def _outcome(exc: BaseException) -> str:
    # A stable, bounded label: the error's ErrorInfo reason (LLM_RATE_LIMITED, LLM_CIRCUIT_OPEN, ...).
    return exc.reason if isinstance(exc, AgentMeshError) else type(exc).__name__
