"""Per-key request rate (a token bucket per API key, in this process) and the peer-identity check of mTLS.

The rate is per process: with N supervisor replicas behind the gateway a key may make up to N times the rate,
which is the price of no shared state on every call; the tenant's concurrent runs are counted in Postgres
instead (services/supervisor/runs.py), since they are what takes the mesh's slots."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import cast

import grpc

from agentmesh.errors import PermissionDenied, ResourceExhausted
from agentmesh.rpc._errors import to_status
from agentmesh.rpc._wrap import Context, Continuation, Handler, admit_first


@dataclass
class _Bucket:
    tokens: float
    at: float


class KeyRateLimiter:
    """`rate_per_s` calls a second per key, `burst` at once; a call over it raises RESOURCE_EXHAUSTED with the
    wait until a token is back as RetryInfo. Buckets are bounded: full ones are dropped when there are too many."""

    def __init__(
        self, *, rate_per_s: float, burst: int, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate_per_s
        self._burst = float(max(1, burst))
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> None:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = (1.0 - bucket.tokens) / self._rate
        raise ResourceExhausted(
            f"this API key is over its request rate ({self._rate:g}/s, bursts of {self._burst:g}); retry in {wait:.2f}s",
            reason="KEY_RATE_LIMITED",
            retry_after_s=wait,
        )

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.at) * self._rate >= self._burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()  # a key-spraying client: forget all rather than grow


# Probes check a service with its own certificate (`agentmesh health`), and health reveals nothing.
_ANY_PEER_PREFIXES = ("/grpc.health.v1.Health/",)


def peer_names(context: Context) -> set[str]:
    """The TLS peer's certificate identity: its common name, when its DNS/IP SANs name it too."""
    auth = context.auth_context()
    cn = {v.decode() for v in auth.get("x509_common_name", [])}
    san = {v.decode() for v in auth.get("x509_subject_alternative_name", [])}
    return cn & san


class PeerInterceptor(grpc.aio.ServerInterceptor):
    """With mTLS: only callers whose certificate names one of `allowed` (the gateway's) get past the port; any
    other certificate of the mesh CA (another service's) answers PERMISSION_DENIED."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self._allowed = frozenset(allowed)

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(_ANY_PEER_PREFIXES):
            return handler
        allowed = self._allowed

        async def admit(context: Context) -> None:
            if not peer_names(context) & allowed:
                exc = PermissionDenied(
                    f"this port admits only {', '.join(sorted(allowed))}'s certificate", reason="PEER_NOT_ALLOWED"
                )
                await context.abort_with_status(to_status(exc))

        if handler.stream_stream is not None:  # reflection: wrap_handler leaves request streams alone
            return _checked_bidi(handler, admit)
        return admit_first(handler, admit)


def _checked_bidi(handler: Handler, admit: Callable[[Context], Awaitable[None]]) -> Handler:
    inner = cast("Callable[[AsyncIterator[object], Context], AsyncIterator[object]]", handler.stream_stream)

    async def call(requests: AsyncIterator[object], context: Context) -> AsyncIterator[object]:
        await admit(context)
        async for item in inner(requests, context):
            yield item

    return grpc.stream_stream_rpc_method_handler(call, handler.request_deserializer, handler.response_serializer)
