"""RPC plumbing shared by every service: server factory, interceptors, channels through the gateway."""

from agentmesh.rpc._auth import AuthInterceptor, current_tenant
from agentmesh.rpc._channels import TENANT_HEADER, UPSTREAM_HEADER, GatewayChannels
from agentmesh.rpc._errors import ErrorInterceptor, to_status
from agentmesh.rpc._limits import KeyRateLimiter, PeerInterceptor
from agentmesh.rpc._server import RunningServer, ServiceBinding, create_server, serve_until_signal
from agentmesh.rpc._tls import channel_credentials, generate_certs, server_credentials
from agentmesh.rpc._validation import RequestValidator, TextLimit, ValidationInterceptor, settings_text_limits

__all__ = [
    "TENANT_HEADER",
    "UPSTREAM_HEADER",
    "AuthInterceptor",
    "ErrorInterceptor",
    "GatewayChannels",
    "KeyRateLimiter",
    "PeerInterceptor",
    "RequestValidator",
    "RunningServer",
    "ServiceBinding",
    "TextLimit",
    "ValidationInterceptor",
    "channel_credentials",
    "create_server",
    "current_tenant",
    "generate_certs",
    "serve_until_signal",
    "server_credentials",
    "settings_text_limits",
    "to_status",
]
