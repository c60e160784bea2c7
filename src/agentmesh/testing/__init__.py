"""Test doubles as public API, as `temporalio.testing` offers them: the offline Anthropic-compatible simulator
(`agentmesh.testing.sim`), the whole mesh on free ports (`agentmesh.testing.localmesh`) and an in-process
OTLP receiver (`agentmesh.testing.otlpsink`). Users of the mesh test their own agents with them; the mesh's
own tests do too. Nothing here is imported by the runtime or a service."""
