"""API-key authentication as a server interceptor: one check per call, the tenant put in a ContextVar.

An interceptor rather than Envoy ext_authz: it needs no extra proto set in Envoy, works the same with or
without the gateway (tests, `bench service`), and keeps the key check next to the Postgres that holds the
hashes. Verified keys are cached for `ttl_s`, so a hot key costs no query per call; unknown keys are cached for
`negative_ttl_s`, so a client (or an attacker) repeating a wrong key costs one query per that time, not per call.
Keys that cannot be ours (wrong format) cost no query at all: `tenant_of` refuses them first."""

from __future__ import annotations

import contextvars
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable

import grpc

from agentmesh.errors import AgentMeshError, Unauthenticated
from agentmesh.rpc._channels import INTERNAL_TOKEN_HEADER, TENANT_HEADER
from agentmesh.rpc._errors import to_status
from agentmesh.rpc._limits import KeyRateLimiter
from agentmesh.rpc._wrap import Context, Continuation, Handler, admit_first

current_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("agentmesh_tenant")

# Probes and discovery must work without a key (Envoy health checks, grpcurl describe).
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class _TTLCache:
    def __init__(self, ttl_s: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._data: dict[str, tuple[float, str]] = {}

    def get(self, key: str) -> str | None:
        hit = self._data.get(key)
        if hit is None or hit[0] < self._clock():
            return None
        return hit[1]

    def put(self, key: str, value: str) -> None:
        if len(self._data) >= self._max:
            self._data.clear()  # crude but bounded; a full cache is a sign of key spraying anyway
        self._data[key] = (self._clock() + self._ttl, value)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Accepts `authorization: Bearer KEY` (a tenant's key) or, where `internal_token` is given (the guard, whom
    the supervisor calls through the gateway's internal listener), the internal token with an `agentmesh-tenant`
    header. The supervisor passes none: nobody calls it but clients, so nobody may assert a tenant to it.
    Everything else answers UNAUTHENTICATED. With `rate`, each key's calls are paced (RESOURCE_EXHAUSTED)."""

    def __init__(
        self,
        *,
        tenant_of: Callable[[str], Awaitable[str | None]],
        internal_token: str | None,
        cache_ttl_s: float = 30.0,
        negative_ttl_s: float = 5.0,
        rate: KeyRateLimiter | None = None,
    ) -> None:
        self._tenant_of = tenant_of
        self._rate = rate
        self._internal_token = internal_token
        self._cache = _TTLCache(cache_ttl_s)
        self._unknown = _TTLCache(negative_ttl_s)

    async def _authenticate(self, metadata: Iterable[tuple[str, str | bytes]]) -> str:
        md = {k: v for k, v in metadata if isinstance(v, str)}
        token = md.get(INTERNAL_TOKEN_HEADER)
        if token is not None and self._internal_token and hmac.compare_digest(token, self._internal_token):
            return md.get(TENANT_HEADER, "internal")
        auth = md.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if not auth:
            raise Unauthenticated("missing API key: send metadata 'authorization: Bearer <key>'")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("malformed authorization metadata: expected 'Bearer <key>'")
        key = key.strip()
        tenant = self._cache.get(key)
        if tenant is None:
            if self._unknown.get(key) is not None:
                raise Unauthenticated("invalid or revoked API key")
            tenant = await self._tenant_of(key)
            if tenant is None:
                self._unknown.put(key, "")
                raise Unauthenticated("invalid or revoked API key")
            self._cache.put(key, tenant)
        if self._rate is not None:
            self._rate.take(key)  # only known keys get a bucket
        return tenant

    async def intercept_service(
        self,
        continuation: Continuation,
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        authenticate = self._authenticate

        async def admit(context: Context) -> None:
            try:
                tenant = await authenticate(context.invocation_metadata() or ())
            except AgentMeshError as exc:
                await context.abort_with_status(to_status(exc))
            current_tenant.set(tenant)

        return admit_first(handler, admit)
