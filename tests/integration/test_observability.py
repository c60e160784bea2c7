"""Observability of a whole mesh (`agentmesh up`: Envoy, five services, the simulator) exporting traces to an
OTLP/gRPC receiver in this test: one run is one trace through every hop, LLM spans carry the GenAI token
attributes, no customer text reaches a log line or a span, every service serves /metrics with what the alert
rules need, and `agentmesh trace` reads the run back from the checkpoints alone."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentmesh.settings import SERVICES
from agentmesh.testing.otlpsink import OtlpSink, ReceivedSpan
from agentmesh.v1 import guard_pb2, supervisor_pb2, supervisor_pb2_grpc
from tests.mesh import Mesh, start_mesh, stop_mesh, wait_until
from tests.promrules import exposed_series, rules, selected_metrics

QUESTION = "Compare two payment providers and recommend one"
SERVER, CLIENT = 2, 3  # OTLP span kinds
# Envoy's OpenTelemetry tracer flushes every 5 s (or every 5 spans); the services' batch delay is set to 100 ms.
SPAN_WAIT_S = 15
EMAIL = "marguerite.lindqvist@example.com"
NAME = "Marguerite Okonkwo-Lindqvist"
CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def sink() -> Iterator[OtlpSink]:
    s = OtlpSink().start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def traced_mesh(database_url: str, tmp_path_factory: pytest.TempPathFactory, sink: OtlpSink) -> Iterator[Mesh]:
    m = start_mesh(
        tmp_path_factory.mktemp("traced-mesh"),
        database_url,
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    try:
        yield m
    finally:
        assert stop_mesh(m.proc) == 0, "\n".join(m.lines[-20:])


def run(mesh: Mesh, message: str) -> list[supervisor_pb2.RunEvent]:
    with grpc.insecure_channel(mesh.gateway) as channel:
        stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
        return list(stub.Run(supervisor_pb2.RunRequest(message=message), metadata=mesh.auth(), timeout=60))


def trace_of(sink: OtlpSink, run_id: str) -> list[ReceivedSpan]:
    """Every span of the trace(s) in which some span names this run."""
    spans = sink.spans()
    traces = {s.trace_id for s in spans if s.attributes.get("agentmesh.run_id") == run_id}
    return [s for s in spans if s.trace_id in traces]


def complete(spans: list[ReceivedSpan], services: set[str]) -> bool:
    """Every expected service is there and every parent has arrived (Envoy's spans come last)."""
    ids = {s.span_id for s in spans}
    return services <= {s.service for s in spans} and all(
        not s.parent_span_id or s.parent_span_id in ids for s in spans
    )


def test_one_run_is_one_trace_through_gateway_supervisor_guard_and_agents(traced_mesh: Mesh, sink: OtlpSink) -> None:
    events = run(traced_mesh, QUESTION)
    final = events[-1].final
    run_id = events[-1].run_id
    expected = {
        "agentmesh-gateway",
        "agentmesh-supervisor",
        "agentmesh-guard",
        "agentmesh-researcher",
        "agentmesh-analyst",
    }
    assert wait_until(lambda: complete(trace_of(sink, run_id), expected), SPAN_WAIT_S), sorted(
        {(s.service, s.name) for s in trace_of(sink, run_id)}
    )
    spans = trace_of(sink, run_id)
    assert len({s.trace_id for s in spans}) == 1
    by_id = {s.span_id: s for s in spans}
    (root,) = [s for s in spans if not s.parent_span_id]
    assert root.service == "agentmesh-gateway"  # the client's call entered the trace at Envoy
    # Every service-to-service hop went through the gateway, whose span sits between caller and callee.
    for s in spans:
        if s.kind == SERVER and s.service not in ("agentmesh-supervisor", "agentmesh-gateway"):
            assert by_id[s.parent_span_id].service == "agentmesh-gateway", s
    assert len([s for s in spans if s.service == "agentmesh-gateway"]) >= 5  # Run, 2 x Check, 2 x Act
    steps = [s.name for s in spans if s.name.startswith("step ")]
    assert {"step route supervisor", "step agent researcher", "step agent analyst", "step guard guard"} <= set(steps)

    llm = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(llm) == final.usage.llm_calls == 5  # 3 routing calls + 2 agent calls, one span each
    for s in llm:
        a = s.attributes
        assert s.kind == CLIENT and s.name == f"chat {a['gen_ai.request.model']}"
        assert a["gen_ai.provider.name"] == "anthropic"
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert a["gen_ai.response.finish_reasons"] == ["end_turn"]
        assert a["agentmesh.run_id"] == run_id and a["agentmesh.llm.attempts"] == 1 and a["agentmesh.cost_usd"] > 0
    assert sum(s.attributes["gen_ai.usage.input_tokens"] for s in llm) == final.usage.input_tokens
    assert not [s for s in sink.spans() if s.name.startswith("anthropic.")]  # the SDK's own span stays off


def test_customer_text_reaches_no_log_line_and_no_exported_span(traced_mesh: Mesh, sink: OtlpSink) -> None:
    redacted = run(traced_mesh, f"I am {NAME}; email {EMAIL} a comparison of two payment providers")
    assert redacted[0].guard_decision.action == guard_pb2.ACTION_REDACT and redacted[-1].WhichOneof("event") == "final"
    with pytest.raises(grpc.RpcError) as blocked:
        run(traced_mesh, f"Charge my card {CARD} for the premium plan")
    assert blocked.value.code() is grpc.StatusCode.PERMISSION_DENIED
    expected = {"agentmesh-gateway", "agentmesh-supervisor", "agentmesh-guard", "agentmesh-researcher"}
    assert wait_until(lambda: complete(trace_of(sink, redacted[-1].run_id), expected), SPAN_WAIT_S)

    # The blocked run was named on its Run span before the guard answered: wait for its gateway span too.
    def blocked_run_traced() -> bool:
        run_id = next(
            (
                s.attributes["agentmesh.run_id"]
                for s in sink.spans()
                if s.attributes.get("agentmesh.guard.findings") == ["credit_card"]
            ),
            None,
        )
        return run_id is not None and any(
            s.service == "agentmesh-gateway" and not s.parent_span_id for s in trace_of(sink, run_id)
        )

    assert wait_until(blocked_run_traced, SPAN_WAIT_S)

    logs = {
        p.name: p.read_text(encoding="utf-8", errors="replace") for p in (traced_mesh.data_dir / "logs").glob("*.log")
    }
    assert {f"{name}.log" for name in SERVICES} <= set(logs) and '"event": "act"' in logs["researcher.log"]
    payloads = sink.payloads()
    assert payloads
    for secret in (EMAIL, NAME, "Okonkwo", CARD, CARD.replace(" ", "")):
        leaked = [name for name, text in logs.items() if secret in text]
        assert not leaked, f"{secret!r} is in {leaked}"
        assert not [p for p in payloads if secret.encode() in p], f"{secret!r} is in an exported span"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_every_service_serves_metrics_and_the_alert_rules_name_exposed_series(traced_mesh: Mesh) -> None:
    run(traced_mesh, QUESTION)
    urls = traced_mesh.metrics_urls()
    assert set(urls) == set(SERVICES)
    texts = {name: urllib.request.urlopen(url, timeout=5).read().decode() for name, url in urls.items()}
    exposed = set().union(*(exposed_series(t) for t in texts.values()))
    for rule in rules():
        missing = selected_metrics(rule["expr"]) - exposed
        assert not missing, f"{rule['alert']}: {missing} not exposed by any service"
    sup, res = _samples(texts["supervisor"]), _samples(texts["researcher"])
    assert sup[("agentmesh_runs_total", frozenset({("outcome", "completed"), ("reason", "COMPLETED")}))] >= 1
    assert sup[("agentmesh_run_iterations_bucket", frozenset({("le", "8.0")}))] >= 1  # the alert's bucket
    assert sup[("agentmesh_guard_actions_total", frozenset({("direction", "input"), ("action", "allow")}))] >= 1
    run_calls = frozenset(
        {("grpc_service", "agentmesh.v1.SupervisorService"), ("grpc_method", "Run"), ("grpc_code", "OK")}
    )
    assert sup[("agentmesh_grpc_server_handled_total", run_calls)] >= 1
    llm = {("agent", "researcher"), ("model", "claude-haiku-4-5")}
    assert res[("agentmesh_llm_calls_total", frozenset(llm))] >= 1
    assert res[("agentmesh_llm_tokens_total", frozenset(llm | {("type", "output")}))] > 0
    assert res[("agentmesh_llm_cost_usd_total", frozenset(llm))] > 0
    assert res[("agentmesh_llm_breaker_state", frozenset(llm | {("state", "closed")}))] == 1
    assert ("agentmesh_llm_queued", frozenset(llm)) in res


def test_trace_cli_prints_each_llm_call_and_writes_a_waterfall(traced_mesh: Mesh, tmp_path: Path) -> None:
    events = run(traced_mesh, "Calculate 17*23 and explain the result")
    html = tmp_path / "run.html"
    out = subprocess.run(
        [sys.executable, "-m", "agentmesh", "trace", events[-1].run_id, "--html", str(html)],
        env=traced_mesh.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"run {events[-1].run_id} completed" in text
    assert text.count("LLM call 1 claude-haiku-4-5 · tokens in ") == 7  # 4 routing steps + 3 agents
    assert "tool calculator ran" in text and "action ALLOW" in text and " ms · $0.0" in text
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.count('class="bar"') == 8 + events[-1].final.usage.llm_calls


def test_checkpoint_writes_are_spans_of_the_run(traced_mesh: Mesh, sink: OtlpSink) -> None:
    """With opentelemetry-instrumentation-asyncpg installed, each step's checkpoint write (one statement) is a
    CLIENT span of the supervisor inside the run's trace, its SQL without the values."""
    pytest.importorskip("opentelemetry.instrumentation.asyncpg", reason="opentelemetry-instrumentation-asyncpg")
    events = run(traced_mesh, QUESTION)
    run_id = events[-1].run_id
    steps = sum(1 for e in events if e.WhichOneof("event") == "step_finished")

    def writes() -> list[ReceivedSpan]:
        return [s for s in trace_of(sink, run_id) if "INSERT INTO steps" in str(s.attributes.get("db.statement"))]

    assert wait_until(lambda: len(writes()) == steps, SPAN_WAIT_S), len(writes())
    ids = {s.span_id for s in trace_of(sink, run_id)}
    for s in writes():
        assert s.service == "agentmesh-supervisor" and s.kind == CLIENT
        assert s.attributes["db.system"] == "postgresql"
        assert s.parent_span_id in ids  # inside the run's trace, under the span that committed it
        assert QUESTION not in str(s.attributes)
