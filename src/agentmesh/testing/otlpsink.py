"""A minimal OTLP/gRPC trace receiver in this process, for tests and benchmarks: point a mesh's
OTEL_EXPORTER_OTLP_ENDPOINT at `sink.endpoint` (with OTEL_EXPORTER_OTLP_PROTOCOL=grpc) and read what every
service and the gateway exported. Not a collector: spans stay in memory (or are only counted)."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2


def _value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any] = field(default_factory=dict)


class OtlpSink(trace_service_pb2_grpc.TraceServiceServicer):
    """`keep=True` keeps every span (and the raw export payloads, to search them for text that must not be
    there); `keep=False` only counts, so a long benchmark does not grow memory."""

    def __init__(self, *, keep: bool = True) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._payloads: list[bytes] = []
        self._count = 0
        self._server: grpc.Server | None = None
        self.endpoint = ""

    def start(self, host: str = "127.0.0.1") -> OtlpSink:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port(f"{host}:0")
        self._server.start()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=1).wait()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        spans = []
        for rs in request.resource_spans:
            service = next((kv.value.string_value for kv in rs.resource.attributes if kv.key == "service.name"), "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        ReceivedSpan(
                            service=service,
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes={kv.key: _value(kv.value) for kv in s.attributes},
                        )
                    )
        with self._lock:
            self._count += len(spans)
            if self._keep:
                self._spans.extend(spans)
                self._payloads.append(request.SerializeToString())
        return trace_service_pb2.ExportTraceServiceResponse()

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def payloads(self) -> list[bytes]:
        with self._lock:
            return list(self._payloads)
