"""Prometheus metrics of one process, kept in a CollectorRegistry that the process's composition root owns
(never prometheus-client's global default registry), and served on an HTTP /metrics port.

- RpcTelemetryInterceptor: gRPC calls by method and final status code, and their latency.
- LLMStatsCollector: the LLM client's own counters (`llm.stats`, `llm.breaker`) read at scrape time, so the
  client needs no metrics code: calls, attempts, failures by cause, tokens, cost, queue depth, breaker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator

import grpc
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agentmesh.deadline import Deadline
from agentmesh.llm import BreakerState, LLMClient
from agentmesh.rpc._wrap import Context, Continuation, Handler, Stream, Unary, wrap_handler

log = logging.getLogger(__name__)

# A Run stream lasts the whole run (LLM calls with retries): buckets reach the 300 s the gateway allows.
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


class RpcMetrics:
    """The families every gRPC server exports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "agentmesh_grpc_server_handled",
            "gRPC calls this server finished, by method and final status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "agentmesh_grpc_server_handling_seconds",
            "Time from a call's arrival to its last message or status (a Run stream: the whole run).",
            ["grpc_service", "grpc_method"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )


def _final_code(context: Context, exc: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(exc, asyncio.CancelledError):
        expired = Deadline.from_grpc_context(context).expired
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    return grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN


class RpcTelemetryInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every call by method and final status code.

    It sits outside the ErrorInterceptor, so it sees the code that a raised error was mapped to. With tracing on,
    it also puts that code on the call's span: the OpenTelemetry interceptor (further out) does not see a status
    set through `abort_with_status`, which is how the ErrorInterceptor answers."""

    def __init__(self, metrics: RpcMetrics, *, tracing: bool) -> None:
        self._m = metrics
        self._tracing = tracing

    async def intercept_service(
        self,
        continuation: Continuation,
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        service, _, method = details.method.lstrip("/").partition("/")
        seconds = self._m.seconds.labels(service, method)

        def finish(context: Context, started: float, exc: BaseException | None) -> None:
            code = _final_code(context, exc)
            seconds.observe(time.perf_counter() - started)
            self._m.handled.labels(service, method, code.name).inc()
            if self._tracing:
                _set_span_status(code)

        def unary(inner: Unary) -> Unary:
            async def call(request: object, context: Context) -> object:
                started = time.perf_counter()
                try:
                    response = await inner(request, context)
                except BaseException as exc:
                    finish(context, started, exc)
                    raise
                finish(context, started, None)
                return response

            return call

        def stream(inner: Stream) -> Stream:
            async def call(request: object, context: Context) -> AsyncIterator[object]:
                started = time.perf_counter()
                try:
                    async for item in inner(request, context):
                        yield item
                except BaseException as exc:
                    finish(context, started, exc)
                    raise
                finish(context, started, None)

            return call

        return wrap_handler(handler, unary, stream)


def _set_span_status(code: grpc.StatusCode) -> None:
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        # The code's name only: a status message may quote what a client sent.
        span.set_status(Status(StatusCode.ERROR, code.name))


class LLMStatsCollector(Collector):
    """Exports an LLMClient's `stats` and breaker as they are at scrape time (nothing is copied per call).

    Labels: `agent` is the process's service name (the supervisor's router counts as "supervisor"); `model` is
    the client's configured model, which every call of the mesh uses."""

    def __init__(self, llm: LLMClient, *, agent: str) -> None:
        self._llm = llm
        self._agent = agent

    def collect(self) -> Iterator[Metric]:
        s = self._llm.stats
        base = [self._agent, self._llm.model]
        names = ["agent", "model"]

        def counter(name: str, doc: str, value: float, extra: dict[str, str] | None = None) -> CounterMetricFamily:
            fam = CounterMetricFamily(name, doc, labels=[*names, *(extra or {})])
            fam.add_metric([*base, *(extra or {}).values()], value)
            return fam

        yield counter("agentmesh_llm_calls", "Logical LLM calls started (each may take several attempts).", s.calls)
        yield counter("agentmesh_llm_attempts", "HTTP attempts sent to the LLM provider.", s.attempts)
        failed = CounterMetricFamily(
            "agentmesh_llm_failed_attempts",
            "LLM attempts that failed, by cause (429, 529, 500, timeout, connection, "
            "stream_cut, ...); every one but a call's last was retried.",
            labels=[*names, "cause"],
        )
        for cause, n in sorted(s.failures.items()):
            failed.add_metric([*base, cause], n)
        yield failed
        fast = CounterMetricFamily(
            "agentmesh_llm_fast_failures",
            "LLM calls refused without a further attempt, by reason (circuit_open, deadline, ...).",
            labels=[*names, "reason"],
        )
        for reason, n in sorted(s.fast_failures.items()):
            fast.add_metric([*base, reason], n)
        yield fast
        tokens = CounterMetricFamily(
            "agentmesh_llm_tokens", "Tokens billed by the LLM provider, by type.", labels=[*names, "type"]
        )
        tokens.add_metric([*base, "input"], s.input_tokens)
        tokens.add_metric([*base, "output"], s.output_tokens)
        yield tokens
        yield counter("agentmesh_llm_cost_usd", "Cost of the LLM calls in USD (list prices).", s.cost_usd)
        yield _gauge("agentmesh_llm_in_flight", "LLM attempts in flight now.", names, base, s.in_flight)
        yield _gauge(
            "agentmesh_llm_queued",
            "LLM calls waiting for a concurrency slot now (queue depth at the limiter).",
            names,
            base,
            s.queued,
        )
        yield _gauge(
            "agentmesh_llm_concurrency_limit", "The adaptive concurrency limit now.", names, base, s.concurrency_limit
        )
        yield counter(
            "agentmesh_llm_paced",
            "LLM attempts that waited for the provider's per-minute buckets (learned from its headers) to refill.",
            s.paced,
        )
        yield counter(
            "agentmesh_llm_paced_wait_seconds", "Time LLM attempts waited for the buckets' refill.", s.paced_wait_s
        )
        yield counter(
            "agentmesh_llm_budget_fallbacks",
            "LLM calls the mesh-wide budget in Redis could not serve (unreachable), paced by this process alone.",
            s.budget_fallbacks,
        )
        yield _gauge(
            "agentmesh_llm_pace_share",
            "This process's assumed share of the provider buckets' refill (below 1: other processes spend the key).",
            names,
            base,
            s.pace_share,
        )
        state = GaugeMetricFamily(
            "agentmesh_llm_breaker_state",
            "The circuit breaker's state: 1 for the current one, 0 for the others.",
            labels=[*names, "state"],
        )
        current = self._llm.breaker.state
        for st in BreakerState:
            state.add_metric([*base, st.value], 1.0 if st is current else 0.0)
        yield state
        transitions = CounterMetricFamily(
            "agentmesh_llm_breaker_transitions", "Circuit breaker state changes.", labels=[*names, "from", "to"]
        )
        for change, n in sorted(s.breaker_transitions.items()):
            old, _, new = change.partition("->")
            transitions.add_metric([*base, old, new], n)
        yield transitions


def _gauge(name: str, doc: str, names: list[str], values: list[str], value: float) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, doc, labels=names)
    fam.add_metric(values, value)
    return fam


def llm_call_seconds(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "agentmesh_llm_call_duration_seconds",
        "Wall time of one logical LLM call (retries and waits included), by outcome.",
        ["agent", "model", "outcome"],
        buckets=LLM_BUCKETS,
        registry=registry,
    )


class MetricsServer:
    """GET /metrics on the process's event loop (aiohttp): a scrape reads `llm.stats` on the thread that writes
    them, so no lock is needed, and a stalled loop shows up as a stalled scrape, which is itself a signal."""

    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self._runner = runner
        self.url = url

    @classmethod
    async def start(
        cls, registry: CollectorRegistry, host: str, port: int, serving: Callable[[], bool] | None = None
    ) -> MetricsServer | None:
        """Serving, or None (logged) when the port cannot be bound: metrics never stop a service from starting.
        With `serving`, GET /healthz answers 200 SERVING or 503 NOT_SERVING as the gRPC health service does:
        for probes that cannot speak gRPC over mTLS (the kubelet's gRPC probe presents no client certificate)."""

        async def metrics(_request: web.Request) -> web.Response:
            body = generate_latest(registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        if serving is not None:

            async def healthz(_request: web.Request) -> web.Response:
                up = serving()
                return web.Response(status=200 if up else 503, text="SERVING\n" if up else "NOT_SERVING\n")

            app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            log.warning("metrics endpoint not served", extra={"port": port, "error": str(exc)})
            return None
        bound = runner.addresses[0][1]  # the port picked, when `port` is 0
        return cls(runner, f"http://{host}:{bound}/metrics")

    async def stop(self) -> None:
        await self._runner.cleanup()
