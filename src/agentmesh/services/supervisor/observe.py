"""What the supervisor tells metrics and traces about runs: a span per step ("step {kind} {agent}") under the
Run call's span, and counters and histograms of runs, iterations, steps and guard actions.

Metadata only, like the logs: ids, kinds, agents, counts, tokens, cost, guard actions and finding types;
never the user's message, an agent's output or the answer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer
from prometheus_client import CollectorRegistry, Counter, Histogram

from agentmesh.errors import AgentMeshError
from agentmesh.services.supervisor.steps import AgentBody, RouteBody
from agentmesh.v1 import guard_pb2

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from agentmesh.services.supervisor.store import StepRecord

# Integer edges, so "runs over 8 iterations" is exact: count minus the le="8" bucket.
ITERATION_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def _direction(value: guard_pb2.Direction) -> str:
    name: str = guard_pb2.Direction.Name(value)
    return name.removeprefix("DIRECTION_").lower()


def _action(value: guard_pb2.Action) -> str:
    name: str = guard_pb2.Action.Name(value)
    return name.removeprefix("ACTION_").lower()


class RunObserver:
    """Built in the supervisor's composition root from its telemetry; a default one (own registry, no tracer)
    observes nothing anyone reads, so the run loop never checks whether telemetry is on."""

    def __init__(self, *, registry: CollectorRegistry | None = None, tracer: Tracer | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self._tracer = tracer
        self._runs = Counter(
            "agentmesh_runs",
            "Runs that ended, by outcome (completed, failed) and reason "
            "(finish reason, or the error's ErrorInfo reason).",
            ["outcome", "reason"],
            registry=registry,
        )
        self._iterations = Histogram(
            "agentmesh_run_iterations", "Agent steps per completed run.", buckets=ITERATION_BUCKETS, registry=registry
        )
        self._steps = Histogram(
            "agentmesh_step_duration_seconds",
            "Duration of one run step, by kind and agent.",
            ["kind", "agent"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self._guard = Counter(
            "agentmesh_guard_actions",
            "Guard decisions on run input and output, by action.",
            ["direction", "action"],
            registry=registry,
        )
        self._findings = Counter(
            "agentmesh_guard_findings",
            "Guard findings on run input and output, by type.",
            ["direction", "type"],
            registry=registry,
        )

    def run_started(self, run_id: str, tenant: str) -> None:
        """Names the run on the Run/Resume call's span, so a trace search by run id finds it."""
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({"agentmesh.run_id": run_id, "agentmesh.tenant": tenant})

    def run_completed(self, *, reason: str, iterations: int) -> None:
        self._runs.labels("completed", reason).inc()
        self._iterations.observe(iterations)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({"agentmesh.finish_reason": reason, "agentmesh.iterations": iterations})

    def run_failed(self, reason: str) -> None:
        self._runs.labels("failed", reason).inc()

    def guard(self, direction: guard_pb2.Direction, resp: guard_pb2.CheckResponse) -> None:
        d, action = _direction(direction), _action(resp.action)
        self._guard.labels(d, action).inc()
        types = sorted({f.type for f in resp.findings})
        for t in types:
            self._findings.labels(d, t).inc()
        span = trace.get_current_span()
        if span.is_recording():
            # On the Run call's span for the input check, on the guard step's span for the output check.
            span.set_attributes(
                {"agentmesh.guard.direction": d, "agentmesh.guard.action": action, "agentmesh.guard.findings": types}
            )

    @contextlib.contextmanager
    def step(
        self, *, run_id: str, idx: int, kind: str, agent: str, iteration: int
    ) -> Iterator[Callable[[StepRecord], None]]:
        """A span around one step; call the yielded function with the finished StepRecord."""

        def done(step: StepRecord) -> None:
            self._steps.labels(kind, agent).observe(step.duration_ms / 1000)
            if span is not None:
                span.set_attributes(_step_attributes(step))

        if self._tracer is None:
            span = None
            yield done
            return
        with self._tracer.start_as_current_span(
            f"step {kind} {agent}",
            attributes={
                "agentmesh.run_id": run_id,
                "agentmesh.step": idx,
                "agentmesh.step.kind": kind,
                "agentmesh.agent": agent,
                "agentmesh.iteration": iteration,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield done
            except AgentMeshError as exc:
                span.set_status(Status(StatusCode.ERROR, exc.reason))
                span.set_attribute("error.type", exc.reason)
                raise


def _step_attributes(step: StepRecord) -> dict[str, AttributeValue]:
    body = step.result
    calls = body.llm if isinstance(body, RouteBody | AgentBody) else ()
    attrs: dict[str, AttributeValue] = {
        "agentmesh.usage.input_tokens": step.input_tokens,
        "agentmesh.usage.output_tokens": step.output_tokens,
        "agentmesh.llm.calls": step.llm_calls,
        "agentmesh.cost_usd": step.cost_usd,
        "agentmesh.llm.attempts": sum(c.attempts for c in calls),
    }
    if isinstance(body, RouteBody):
        attrs["agentmesh.route.decision"] = body.decision
    if isinstance(body, AgentBody) and body.tools:
        attrs["agentmesh.tools"] = [t.name for t in body.tools]
    return attrs
