"""Tools from MCP servers, as a Toolbox an agent's servicer offers its model (catalog entries' `mcp:`).

Each declared server gets one long-lived session, held open by a task of its own (the SDK's transports are
anyio task groups: they must be entered and left in one task), reconnected after a failure. The model is
offered only the tools the entry allows, under the server's own names. A call is refused unless its tool is
allowed and its arguments fit the tool's JSON schema (`jsonschema`, which the mcp SDK depends on); it has a
timeout, its result is cut to the server's cap, then screened by the guard (GuardService.Check, direction
input, through the gateway's internal listener) before the model reads it. A result the guard blocks, or one
that could not be screened, is withheld: the model gets a tool error instead, and the step records it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import jsonschema
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from agentmesh.agent import Toolbox, ToolOutcome, current_call
from agentmesh.catalog import McpServer
from agentmesh.rpc import GatewayChannels
from agentmesh.v1 import guard_pb2, guard_pb2_grpc

log = logging.getLogger(__name__)

WITHHELD_INJECTION = "tool result withheld: prompt injection"
WITHHELD_UNCHECKED = "tool result withheld: the guard could not check it"
_RECONNECT_S = (0.5, 1.0, 2.0, 5.0, 10.0)

Screen = Callable[[str], Awaitable["Verdict"]]
"""Checks one tool result before the model reads it."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    text: str
    """What the model may read (the guard's redacted text when it redacted)."""
    reason: str = ""


class GuardScreen:
    """Screens tool results with the guard, through the gateway's internal listener, as the caller's tenant."""

    def __init__(self, channels: GatewayChannels, timeout_s: float) -> None:
        self._channels = channels
        self._stub = guard_pb2_grpc.GuardServiceStub(channels.channel)
        self._timeout_s = timeout_s

    async def __call__(self, text: str) -> Verdict:
        call = current_call.get(None)
        timeout = call.deadline.timeout(self._timeout_s) if call else self._timeout_s
        try:
            reply: guard_pb2.CheckResponse = await self._stub.Check(
                guard_pb2.CheckRequest(text=text, direction=guard_pb2.DIRECTION_INPUT),
                metadata=self._channels.metadata("guard", tenant=call.tenant if call else None),
                timeout=max(timeout, 0.05),
            )
        except grpc.aio.AioRpcError as exc:
            # Fail closed: an unchecked result may carry exactly what the guard is there to stop.
            log.warning("guard check of a tool result failed", extra={"code": exc.code().name})
            return Verdict(False, "", WITHHELD_UNCHECKED)
        if reply.action == guard_pb2.ACTION_BLOCK:
            kinds = sorted({f.type for f in reply.findings})
            reason = WITHHELD_INJECTION if "prompt_injection" in kinds else f"tool result withheld: {', '.join(kinds)}"
            return Verdict(False, "", reason)
        return Verdict(True, reply.redacted_text if reply.action == guard_pb2.ACTION_REDACT else text)


class _Server:
    """One MCP server: its session (owned by `_hold`), its allowed tools as listed, their validators."""

    def __init__(self, config: McpServer) -> None:
        self.config = config
        self.session: ClientSession | None = None
        self.specs: dict[str, dict[str, Any]] = {}
        self.validators: dict[str, jsonschema.protocols.Validator] = {}
        self.ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mcp-{self.config.name}")

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        c = self.config
        if c.url is not None:
            return streamable_http_client(c.url)
        assert c.command is not None
        argv = list(c.command)
        env = dict(c.env)
        if argv[0] == "python":  # the Python running agentmesh, able to import what this process imports
            argv[0] = sys.executable
            if "PYTHONPATH" in os.environ:
                env.setdefault("PYTHONPATH", os.environ["PYTHONPATH"])
        return stdio_client(StdioServerParameters(command=argv[0], args=argv[1:], env=env), errlog=sys.stderr)

    async def _run(self) -> None:
        attempt = 0
        while not self._closing.is_set():
            try:
                async with self._transport() as (read, write), ClientSession(read, write) as session:
                    await session.initialize()
                    listed = await session.list_tools()
                    self._adopt(listed.tools)
                    self.session = session
                    self.ready.set()
                    attempt = 0
                    await self._closing.wait()
            except Exception as exc:
                log.warning(
                    "mcp server unavailable", extra={"mcp_server": self.config.name, "error": type(exc).__name__}
                )
            finally:
                self.session = None
            if self._closing.is_set():
                return
            delay = _RECONNECT_S[min(attempt, len(_RECONNECT_S) - 1)]
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)

    def _adopt(self, tools: Sequence[Any]) -> None:
        listed = {t.name: t for t in tools}
        missing = [name for name in self.config.allow if name not in listed]
        if missing:
            log.warning("mcp server lacks allowed tools", extra={"mcp_server": self.config.name, "tools": missing})
        specs, validators = {}, {}
        for name in self.config.allow:
            tool = listed.get(name)
            if tool is None:
                continue
            schema = dict(tool.input_schema or {"type": "object"})
            cls = jsonschema.validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError:  # a broken schema costs its tool only: nothing could be checked against it
                log.warning(
                    "mcp tool has an invalid input schema", extra={"mcp_server": self.config.name, "tool": name}
                )
                continue
            validators[name] = cls(schema)
            schema.pop("title", None)
            specs[name] = {"name": name, "description": (tool.description or name)[:1000], "input_schema": schema}
        self.specs, self.validators = specs, validators


def _text_of(result: Any) -> str:
    parts = []
    for block in result.content:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')} omitted]")
    return "\n".join(parts)


class McpToolbox:
    """The allowed tools of the declared MCP servers, with checked arguments, timeouts, a size cap and the guard."""

    def __init__(self, servers: Sequence[McpServer], screen: Screen) -> None:
        self._servers = [_Server(c) for c in servers]
        self._screen = screen

    async def start(self, wait_s: float = 15.0) -> None:
        """Connect to every server; wait up to `wait_s` for them (one still down offers its tools once it is up)."""
        for s in self._servers:
            s.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in self._servers)), wait_s)
        for s in self._servers:
            log.info(
                "mcp server",
                extra={"mcp_server": s.config.name, "connected": s.ready.is_set(), "tools": sorted(s.specs)},
            )

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._servers))

    def specs(self) -> list[dict[str, Any]]:
        return [spec for s in self._servers if s.session is not None for spec in s.specs.values()]

    def allows(self, name: str) -> bool:
        return any(name in s.config.allow for s in self._servers)

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        server = next((s for s in self._servers if name in s.config.allow), None)
        if server is None:
            allowed = ", ".join(t for s in self._servers for t in s.config.allow)
            return ToolOutcome(False, f"refused: '{name[:64]}' is not an allowed tool (allowed: {allowed})")
        session, validator = server.session, server.validators.get(name)
        if session is None or validator is None:
            return ToolOutcome(False, f"error: the tool {name} is unavailable (MCP server {server.config.name})")
        problems = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
        if problems:
            where = "; ".join(f"{'.'.join(map(str, e.path)) or 'arguments'}: {e.message[:200]}" for e in problems[:5])
            return ToolOutcome(False, f"refused: invalid arguments for {name}: {where}")
        call = current_call.get(None)
        timeout_s = server.config.timeout_s if call is None else call.deadline.timeout(server.config.timeout_s)
        try:
            result = await asyncio.wait_for(session.call_tool(name, arguments), max(timeout_s, 0.01))
        except TimeoutError:
            return ToolOutcome(False, f"error: the tool {name} did not answer within {timeout_s:.1f} s")
        except Exception as exc:
            log.warning("mcp call failed", extra={"tool": name, "error": type(exc).__name__})
            return ToolOutcome(False, f"error: the tool {name} failed ({type(exc).__name__})")
        text = _text_of(result)
        cap = server.config.max_result_chars
        if len(text) > cap:
            text = f"{text[:cap]}\n[cut: {len(text) - cap} more characters]"
        verdict = await self._screen(text)
        if not verdict.allowed:
            log.warning("tool result withheld", extra={"tool": name, "reason": verdict.reason})
            return ToolOutcome(False, verdict.reason)
        return ToolOutcome(True, f"error: {verdict.text}" if result.is_error else verdict.text)


class CombinedToolbox:
    """MCP tools first, then the agent's built-in ones whose names no MCP tool takes (the catalog's choice wins)."""

    def __init__(self, mcp: McpToolbox, builtin: Toolbox | None) -> None:
        self._mcp = mcp
        self._builtin = builtin

    def specs(self) -> list[dict[str, Any]]:
        own = self._mcp.specs()
        rest = self._builtin.specs() if self._builtin else []
        return [*own, *(s for s in rest if not self._mcp.allows(s["name"]))]

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        if self._mcp.allows(name) or self._builtin is None:
            return await self._mcp.run(name, arguments)
        if any(s["name"] == name for s in self._builtin.specs()):
            return await self._builtin.run(name, arguments)
        offered = ", ".join(s["name"] for s in self.specs())
        return ToolOutcome(False, f"refused: '{name[:64]}' is not an allowed tool (allowed: {offered})")
