"""Tests start meshes through the runtime's local launcher helper (benchmarks use the same)."""

from agentmesh.testing.localmesh import Mesh, free_port, start_mesh, stop_mesh, wait_until

__all__ = ["Mesh", "free_port", "start_mesh", "stop_mesh", "wait_until"]
