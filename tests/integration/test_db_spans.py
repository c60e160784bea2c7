"""Database spans: asyncpg queries traced by the project's own provider (opentelemetry-instrumentation-asyncpg),
a child of the span they run in, and none for the pool's background queries outside any span. Against the
real Postgres; the spans land in an in-memory exporter."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from agentmesh.db import create_pool
from agentmesh.telemetry._tracing import trace_database

pytest.importorskip("opentelemetry.instrumentation.asyncpg", reason="opentelemetry-instrumentation-asyncpg")


async def test_a_query_inside_a_span_is_its_child_and_one_outside_is_not_traced(database_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert trace_database(provider)
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        await pool.fetchval("SELECT 1")  # no span of ours around it: a lease renewal, a poll
        with provider.get_tracer("test").start_as_current_span("step agent analyst") as step:
            assert await pool.fetchval("SELECT $1::int + 1", 41) == 42
    finally:
        await pool.close()
    spans = exporter.get_finished_spans()
    (query,) = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert query.parent is not None and query.parent.span_id == step.get_span_context().span_id
    assert query.context.trace_id == step.get_span_context().trace_id
    attributes = dict(query.attributes or {})
    assert attributes["db.system"] == "postgresql"
    assert attributes["db.statement"] == "SELECT $1::int + 1"  # the SQL, never the values
    assert "41" not in " ".join(str(v) for v in attributes.values())
    assert [s.name for s in spans if s.kind != SpanKind.CLIENT] == ["step agent analyst"]


async def test_the_provider_set_last_gets_the_spans(database_url: str) -> None:
    """asyncpg is patched once per process; a second provider (another test, a restarted service) takes over."""
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    providers = []
    for exporter in (first, second):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        assert trace_database(provider)
        providers.append(provider)
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        with providers[1].get_tracer("test").start_as_current_span("rpc"):
            await pool.execute("SELECT 1")
    finally:
        await pool.close()
    assert [s.kind for s in second.get_finished_spans()] == [SpanKind.CLIENT, SpanKind.INTERNAL]
    assert first.get_finished_spans() == ()
