"""RPC plumbing shared by every service: server factory, interceptors, channels through the gateway."""

from agentmesh.rpc._auth import AuthInterceptor, current_tenant
from agentmesh.rpc._channels import UPSTREAM_HEADER, GatewayChannels
from agentmesh.rpc._errors import ErrorInterceptor, to_status
from agentmesh.rpc._server import RunningServer, ServiceBinding, create_server, serve_until_signal

__all__ = [
    "UPSTREAM_HEADER",
    "AuthInterceptor",
    "ErrorInterceptor",
    "GatewayChannels",
    "RunningServer",
    "ServiceBinding",
    "create_server",
    "current_tenant",
    "serve_until_signal",
    "to_status",
]
