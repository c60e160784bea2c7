"""Server interceptor that turns AgentMeshError into a gRPC status with ErrorInfo and RetryInfo."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentmesh.errors import AgentMeshError
from agentmesh.rpc._wrap import Context, Continuation, Handler, Stream, Unary, wrap_handler

log = logging.getLogger(__name__)


def to_status(err: AgentMeshError) -> grpc.Status:
    details: list[any_pb2.Any] = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=err.domain, metadata=err.metadata))
    details.append(info)
    if err.retry_after_s is not None:
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(err.retry_after_s * 1e9))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    status = status_pb2.Status(code=err.code.value[0], message=err.message, details=details)
    return rpc_status.to_status(status)


async def _abort(context: Context, exc: Exception, method: str) -> NoReturn:
    """Ends the call with `exc` as its status: abort_with_status raises grpc's AbortError."""
    if isinstance(exc, AgentMeshError):
        await context.abort_with_status(to_status(exc))
    # A cause nobody named: log it with the method (never the request) and answer INTERNAL.
    log.exception("unhandled error in %s", method, extra={"method": method})
    await context.abort_with_status(
        rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error in {method}"))
    )
    raise AssertionError("abort_with_status returned")  # it never does; this tells the type checker so


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions escaping a servicer to statuses, so servicers just raise."""

    async def intercept_service(
        self,
        continuation: Continuation,
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method

        def unary(inner: Unary) -> Unary:
            async def call(request: object, context: Context) -> object:
                try:
                    return await inner(request, context)
                except (grpc.aio.AbortError, grpc.aio.UsageError):
                    raise
                except Exception as exc:  # this is the boundary that maps everything
                    await _abort(context, exc, method)

            return call

        def stream(inner: Stream) -> Stream:
            async def call(request: object, context: Context) -> AsyncIterator[object]:
                try:
                    async for item in inner(request, context):
                        yield item
                except (grpc.aio.AbortError, grpc.aio.UsageError):
                    raise
                except Exception as exc:
                    await _abort(context, exc, method)

            return call

        return wrap_handler(handler, unary, stream)
