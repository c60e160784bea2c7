"""Calls from the supervisor to agents and the guard, through the gateway, with gRPC errors mapped once."""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from agentmesh.deadline import Deadline
from agentmesh.errors import AgentMeshError, grpc_error_to_mesh
from agentmesh.rpc import GatewayChannels
from agentmesh.v1 import agent_pb2, agent_pb2_grpc, guard_pb2, guard_pb2_grpc


class MeshClients:
    """`agent_timeout_s` and `guard_timeout_s` cap one call of each kind, whatever is left of the run's deadline;
    `agent_timeouts` overrides the first per agent (a catalog entry's timeout_s)."""

    def __init__(
        self,
        *,
        channels: GatewayChannels,
        agent_timeout_s: float,
        guard_timeout_s: float,
        agent_timeouts: Mapping[str, float] | None = None,
    ) -> None:
        self._channels = channels
        self._agent_timeouts = dict(agent_timeouts or {})
        self._agents = agent_pb2_grpc.AgentServiceStub(channels.channel)
        self._guard = guard_pb2_grpc.GuardServiceStub(channels.channel)
        self._agent_timeout_s = agent_timeout_s
        self._guard_timeout_s = guard_timeout_s

    async def act(
        self, agent: str, request: agent_pb2.ActRequest, *, tenant: str, deadline: Deadline
    ) -> agent_pb2.ActResponse:
        try:
            response: agent_pb2.ActResponse = await self._agents.Act(
                request,
                metadata=self._channels.metadata(agent, tenant=tenant),
                timeout=deadline.timeout(self._agent_timeouts.get(agent, self._agent_timeout_s)),
            )
            return response
        except grpc.aio.AioRpcError as exc:
            raise self._map(exc, f"agent {agent}") from exc

    async def check(
        self,
        text: str,
        direction: guard_pb2.Direction,
        *,
        tenant: str,
        deadline: Deadline,
        restore_token: str = "",
        check_as_input: bool = False,
    ) -> guard_pb2.CheckResponse:
        """`check_as_input` (output only): the guard also checks the text passed on as input (`input_check`)."""
        try:
            verdict: guard_pb2.CheckResponse = await self._guard.Check(
                guard_pb2.CheckRequest(
                    text=text, direction=direction, restore_token=restore_token, check_as_input=check_as_input
                ),
                metadata=self._channels.metadata("guard", tenant=tenant),
                timeout=deadline.timeout(self._guard_timeout_s),
            )
            return verdict
        except grpc.aio.AioRpcError as exc:
            raise self._map(exc, "guard") from exc

    @staticmethod
    def _map(exc: grpc.aio.AioRpcError, what: str) -> AgentMeshError:
        return grpc_error_to_mesh(exc, what)
