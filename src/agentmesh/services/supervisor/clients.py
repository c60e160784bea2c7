"""Calls from the supervisor to agents and the guard, through the gateway, with gRPC errors mapped once."""

from __future__ import annotations

import grpc

from agentmesh.errors import AgentMeshError, grpc_error_to_mesh
from agentmesh.rpc import GatewayChannels
from agentmesh.v1 import agent_pb2, agent_pb2_grpc, guard_pb2, guard_pb2_grpc


class MeshClients:
    def __init__(self, *, channels: GatewayChannels) -> None:
        self._channels = channels
        self._agents = agent_pb2_grpc.AgentServiceStub(channels.channel)
        self._guard = guard_pb2_grpc.GuardServiceStub(channels.channel)

    async def act(
        self, agent: str, request: agent_pb2.ActRequest, *, tenant: str, timeout_s: float
    ) -> agent_pb2.ActResponse:
        try:
            response: agent_pb2.ActResponse = await self._agents.Act(
                request, metadata=self._channels.metadata(agent, tenant=tenant), timeout=timeout_s
            )
            return response
        except grpc.aio.AioRpcError as exc:
            raise self._map(exc, f"agent {agent}") from exc

    async def check(
        self, text: str, direction: guard_pb2.Direction, *, tenant: str, timeout_s: float, restore_token: str = ""
    ) -> guard_pb2.CheckResponse:
        try:
            verdict: guard_pb2.CheckResponse = await self._guard.Check(
                guard_pb2.CheckRequest(text=text, direction=direction, restore_token=restore_token),
                metadata=self._channels.metadata("guard", tenant=tenant),
                timeout=timeout_s,
            )
            return verdict
        except grpc.aio.AioRpcError as exc:
            raise self._map(exc, "guard") from exc

    @staticmethod
    def _map(exc: grpc.aio.AioRpcError, what: str) -> AgentMeshError:
        return grpc_error_to_mesh(exc, what)
