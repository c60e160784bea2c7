"""The offline Anthropic-compatible simulator (`agentmesh sim`).

It speaks the Messages API on the wire (streaming and not, count_tokens), so the real `anthropic`
SDK talks to it through `base_url`, and it injects faults set through `PUT /_sim/faults`.
"""

from agentmesh.testing.sim._app import create_app, serve_sim, start_sim

__all__ = ["create_app", "serve_sim", "start_sim"]
