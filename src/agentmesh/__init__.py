"""agentmesh: the shared runtime every service imports (settings, deadlines, LLM client, RPC plumbing, telemetry)."""

from agentmesh.deadline import Deadline
from agentmesh.settings import Settings

__all__ = ["Deadline", "Settings"]
