"""agentmesh: the shared runtime every service imports (settings, LLM client, RPC plumbing, telemetry)."""

from agentmesh.settings import Settings

__all__ = ["Settings"]
