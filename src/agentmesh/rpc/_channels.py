"""Channels from one service to another, always through the gateway's internal listener.

One long-lived HTTP/2 channel per process is shared by every call: Envoy routes each call to a cluster by
the `agentmesh-upstream` header (agents share one proto service, so the path alone cannot say which)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

UPSTREAM_HEADER = "agentmesh-upstream"
INTERNAL_TOKEN_HEADER = "agentmesh-internal-token"
TENANT_HEADER = "agentmesh-tenant"


class GatewayChannels:
    """Owns the channel to the gateway; `metadata(upstream)` gives the headers that pick a cluster.
    `interceptors` (tracing's client interceptors) add a span and the W3C traceparent to every call."""

    def __init__(
        self,
        gateway_internal_addr: str,
        *,
        internal_token: str | None,
        credentials: grpc.ChannelCredentials | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> None:
        options: list[tuple[str, int | str]] = [
            ("grpc.max_receive_message_length", 4 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 30_000),
        ]
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(gateway_internal_addr, options=options, interceptors=interceptors)
        else:
            # mTLS: the gateway is verified by the name in its certificate, whatever address reaches it.
            options.append(("grpc.ssl_target_name_override", "gateway"))
            self._channel = grpc.aio.secure_channel(
                gateway_internal_addr, credentials, options=options, interceptors=interceptors
            )
        self._token = internal_token

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    def metadata(self, upstream: str, *, tenant: str | None = None) -> tuple[tuple[str, str], ...]:
        md: list[tuple[str, str]] = [(UPSTREAM_HEADER, upstream)]
        if self._token:
            md.append((INTERNAL_TOKEN_HEADER, self._token))
        if tenant:
            md.append((TENANT_HEADER, tenant))
        return tuple(md)

    async def close(self) -> None:
        await self._channel.close()
