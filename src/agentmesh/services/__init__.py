"""The mesh's services; each depends on the shared `agentmesh` runtime, never on another service."""
