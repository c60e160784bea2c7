"""The one place that knows how to wrap a grpc.aio method handler, so interceptors only say what to do
around a call, not how handlers are rebuilt."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc

# Interceptors see every method, so requests, responses and contexts are of any message type (a behaviour
# takes its own request type, hence Any there; what it answers is only passed on).
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Unary: TypeAlias = Callable[[Any, Context], Awaitable[object]]
Stream: TypeAlias = Callable[[Any, Context], AsyncIterator[object]]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable["Handler | None"]]


def unary_of(handler: Handler) -> Unary | None:
    """The handler's unary-unary behaviour; grpc's types describe the sync API, a grpc.aio one is a coroutine."""
    return cast("Unary | None", handler.unary_unary)


def stream_of(handler: Handler) -> Stream | None:
    """The handler's unary-stream behaviour as an async generator. A handler in grpc.aio's reader/writer style (a
    coroutine that calls `context.write`, as grpc_health's `Health/Watch` does) becomes a generator that yields
    nothing and awaits it: iterating the coroutine itself failed every Watch with INTERNAL."""
    inner = cast("Callable[[Any, Context], Any] | None", handler.unary_stream)
    if inner is None or inspect.isasyncgenfunction(inner):
        return inner
    writer = inner

    async def call(request: object, context: Context) -> AsyncIterator[object]:
        await writer(request, context)  # it writes its responses itself
        return
        yield  # an async generator, like every other stream behaviour

    return call


def wrap_handler(
    handler: Handler,
    unary: Callable[[Unary], Unary],
    stream: Callable[[Stream], Stream],
) -> Handler:
    """A handler whose unary-unary or unary-stream behaviour is replaced by `unary(inner)`/`stream(inner)`.
    Client-streaming methods (none in our protos) pass through unchanged."""
    if (inner := unary_of(handler)) is not None:
        return grpc.unary_unary_rpc_method_handler(
            unary(inner), handler.request_deserializer, handler.response_serializer
        )
    if (inner_stream := stream_of(handler)) is not None:
        return grpc.unary_stream_rpc_method_handler(
            stream(inner_stream), handler.request_deserializer, handler.response_serializer
        )
    return handler


def admit_first(handler: Handler, admit: Callable[[Context], Awaitable[None]]) -> Handler:
    """A handler that awaits `admit(context)` (which aborts the call when it refuses) before the behaviour runs."""

    def unary(inner: Unary) -> Unary:
        async def call(request: object, context: Context) -> object:
            await admit(context)
            return await inner(request, context)

        return call

    def stream(inner: Stream) -> Stream:
        async def call(request: object, context: Context) -> AsyncIterator[object]:
            await admit(context)
            async for item in inner(request, context):
                yield item

        return call

    return wrap_handler(handler, unary, stream)
