"""The agent catalog: which agents the mesh routes to, as data (`agentmesh up --agents FILE`,
AGENTMESH_AGENTS_FILE). The shipped researcher, analyst and executor are the default catalog; a file entry with
the same name replaces one. An entry is either an agent someone else runs (`address`: agentmesh only routes to
it) or one `agentmesh up` launches and restarts (`command`, with `replicas`).

The file, YAML:

    agents:
      - name: translator
        description: Translates text between languages; give it the text and the target language.
        address: 127.0.0.1:50070
      - name: summarizer
        description: Summarises long texts.
        command: [node, examples/node-agent/agent.mjs]
        replicas: 2
        image: registry.example.com/summarizer:1.0   # what runs `command` in Kubernetes (`make k8s`)

An agent agentmesh serves may use tools from MCP servers (`mcp:`, see `McpServer`); an entry named like a shipped
agent with neither address nor command keeps the shipped agent's command, port and description:

    agents:
      - name: executor
        mcp:
          - {name: tools, command: [python, -m, agentmesh.testing.mcp_server], allow: [mcp_calculator]}

Unknown keys are refused (a misspelt `replica` must not be ignored); new per-agent settings become new
fields. A bad catalog raises `CatalogError` naming the entry (index and name) and the field."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentmesh import agentcard as cards
from agentmesh.agentcard import card_dict
from agentmesh.errors import InvalidArgument
from agentmesh.settings import Settings

__all__ = [
    "AGENT_PORT_ENV",
    "PORT_PLACEHOLDER",
    "SHIPPED",
    "Catalog",
    "CatalogError",
    "Entry",
    "McpServer",
    "agent_card",
    "default_catalog",
    "load_catalog",
    "parse_address",
]

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
AGENT_PORT_ENV = "AGENTMESH_AGENT_PORT"
"""The launcher tells a command agent its port in this variable (one per replica)."""
PORT_PLACEHOLDER = "{port}"
"""An argument of `command` equal to (or containing) this is replaced by the replica's port."""
# A container image reference: [registry[:port]/]path[:tag][@sha256:digest], lower-case path components.
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_PATTERN = (
    rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
COMMAND_AGENT_DEFAULT_PORT = 50060
"""Where a command agent listens in compose and Kubernetes (its own container) when its entry sets no port."""
# The shipped agents, in the router's default order, and what the router is told about each.
SHIPPED: dict[str, str] = {
    "researcher": "finds facts, sources and options about the request.",
    "analyst": "weighs what the others found and recommends; writes the answer for the user.",
    "executor": "runs tools (calculator, clock) when the request needs a computation or the time.",
}


class CatalogError(InvalidArgument):
    """The catalog file cannot be used; the message names the entry and the field."""

    reason = "INVALID_CATALOG"


def parse_address(value: str) -> tuple[str, int]:
    """HOST:PORT (a name, an IPv4 address or a bracketed IPv6 address, and a port 1..65535)."""
    host, sep, port = value.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    if not re.fullmatch(r"[A-Za-z0-9._:-]+", host) or (":" in host and not value.strip().startswith("[")):
        raise ValueError(f"{value!r} is not HOST:PORT (bracket an IPv6 address: [::1]:50070)")
    return host, int(port)


class McpServer(BaseModel):
    """An MCP server whose allow-listed tools an agent may call (over stdio or streamable HTTP)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: str = Field(pattern=NAME_PATTERN)
    """Names the server in logs and errors."""
    command: tuple[str, ...] | None = Field(default=None, min_length=1)
    """argv of a stdio server the agent starts (`python` first: the Python running agentmesh)."""
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    """A streamable-HTTP server's endpoint, e.g. http://127.0.0.1:8000/mcp."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment of a stdio server, over the MCP SDK's minimal default (PATH, HOME, ...)."""
    allow: tuple[str, ...] = Field(min_length=1)
    """The tools the model is offered, by the server's names; the server's other tools are never called."""
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Longest one call may take (the step's deadline, when sooner, wins)."""
    max_result_chars: int = Field(default=8_000, ge=1, le=100_000)
    """A result is cut to this many characters before the guard and the model read it."""

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("set exactly one of command (a stdio server) and url (streamable HTTP)")
        if len(set(self.allow)) != len(self.allow):
            raise ValueError("allow names a tool twice")
        return self


class Entry(BaseModel):
    """One agent of the catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: str = Field(pattern=NAME_PATTERN)
    """What routing, the gateway cluster and the `agentmesh-upstream` header call it."""
    description: str = Field(min_length=1, max_length=500)
    """What the router is told the agent does; route-worthy words belong here."""
    address: str | None = None
    """HOST:PORT of an agent someone else runs: the gateway routes to it, `up` does not start it."""
    command: tuple[str, ...] | None = Field(default=None, min_length=1)
    """argv of an agent `up` launches (and restarts); `python` first means the Python running agentmesh. It gets
    its port in AGENTMESH_AGENT_PORT, and `{port}` in an argument is replaced by it."""
    replicas: int = Field(default=1, ge=1, le=9)
    """Processes of a command agent, behind one gateway cluster."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Port of a command agent's first replica (replica i: port + 100 i); unset: a free port locally, 50060 in
    compose and Kubernetes."""
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    """Deadline of one call to this agent; unset: AGENTMESH_AGENT_TIMEOUT_S."""
    max_requests: int | None = Field(default=None, ge=1)
    """Gateway circuit breaker: calls in flight to all its replicas; unset: 1024."""
    image: str | None = Field(default=None, max_length=255, pattern=IMAGE_PATTERN)
    """Container image that runs `command` in Kubernetes and compose (`make k8s`), e.g.
    registry.example.com/summarizer:1.2; `up` ignores it. Unset: only `agentmesh serve NAME` entries deploy (on
    the agentmesh image); any other command agent is left out of the manifests, with a message."""
    tools: bool = True
    """Offer the agent's built-in tools (the executor's calculator and clock); false: only its MCP tools."""
    mcp: tuple[McpServer, ...] = ()
    """MCP servers whose allowed tools the agent may call; only for agents agentmesh serves (`agentmesh serve`)."""

    @field_validator("address")
    @classmethod
    def _address_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_address(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Entry:
        if (self.address is None) == (self.command is None):
            raise ValueError("set exactly one of address (an agent someone else runs) and command (one up launches)")
        if self.address is not None and self.model_fields_set & {"replicas", "port", "image"}:
            raise ValueError("replicas, port and image are for command agents; an address agent runs elsewhere")
        if self.mcp and self.address is not None:
            raise ValueError("mcp is for agents agentmesh serves; an address agent runs elsewhere")
        names = [m.name for m in self.mcp]
        if len(set(names)) != len(names):
            raise ValueError("mcp: two servers have the same name")
        tools = [t for m in self.mcp for t in m.allow]
        if len(set(tools)) != len(tools):
            raise ValueError("mcp: two servers allow a tool of the same name")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        assert self.address is not None
        return parse_address(self.address)

    @property
    def launched(self) -> bool:
        return self.command is not None


@dataclass(frozen=True)
class Catalog:
    """The agents, in the router's default order (the shipped ones first, then the file's new ones)."""

    entries: tuple[Entry, ...]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    def get(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.name == name), None)

    def descriptions(self) -> dict[str, str]:
        return {e.name: e.description for e in self.entries}

    def timeouts(self, default_s: float) -> dict[str, float]:
        return {e.name: e.timeout_s or default_s for e in self.entries}


def default_catalog(settings: Settings | None = None) -> Catalog:
    """The shipped agents, each launched as `agentmesh serve NAME` on its settings port."""
    s = settings or Settings()
    return Catalog(
        tuple(
            Entry(
                name=name,
                description=description,
                command=("python", "-m", "agentmesh", "serve", name, "--port", PORT_PLACEHOLDER),
                port=s.port_of(name),  # type: ignore[arg-type]  # a shipped name is a ServiceName
                max_requests=s.gateway_max_requests(name),  # type: ignore[arg-type]
            )
            for name, description in SHIPPED.items()
        )
    )


def _where(index: int, raw: object) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    return f"agents[{index}]" + (f" ({name})" if isinstance(name, str) else "")


def _field_errors(exc: ValidationError) -> str:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "entry"
        msg = "unknown key (not a catalog field)" if err["type"] == "extra_forbidden" else err["msg"]
        out.append(f"{loc}: {msg.removeprefix('Value error, ')}")
    return "; ".join(out)


def parse_catalog(data: object, *, base: Catalog | None = None, source: str = "the catalog") -> Catalog:
    """The catalog from a parsed YAML document merged over `base` (default: the shipped agents)."""
    if not isinstance(data, Mapping) or set(data) != {"agents"} or not isinstance(data["agents"], list):
        raise CatalogError(f"{source}: expected a mapping with one key, agents: a list of entries")
    entries: dict[str, Entry] = {e.name: e for e in (base if base is not None else default_catalog())}
    seen: dict[str, int] = {}
    for index, raw in enumerate(data["agents"]):
        where = _where(index, raw)
        if not isinstance(raw, Mapping):
            raise CatalogError(f"{source}: {where}: an entry is a mapping (name, description, address or command)")
        fields = dict(raw)
        shipped = entries.get(str(fields.get("name")))
        if shipped is not None and shipped.launched and "address" not in fields and "command" not in fields:
            # Settings for a shipped agent (its tools, timeout): it keeps its command, port and description.
            keep = shipped.model_dump(include={"description", "command", "port", "max_requests"}, exclude_none=True)
            fields = keep | fields
        try:
            entry = Entry.model_validate(fields)
        except ValidationError as exc:
            raise CatalogError(f"{source}: {where}: {_field_errors(exc)}") from None
        if entry.name in seen:
            raise CatalogError(f"{source}: {where}: name: duplicate of agents[{seen[entry.name]}]")
        seen[entry.name] = index
        entries[entry.name] = entry  # same name as a shipped agent: replaces it, in its place
    return Catalog(tuple(entries.values()))


def load_catalog(path: str | Path | None, settings: Settings | None = None) -> Catalog:
    """The catalog of AGENTMESH_AGENTS_FILE (`path`), or the shipped agents when it is unset."""
    base = default_catalog(settings)
    if path is None:
        return base
    p = Path(path)
    try:
        data: Any = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise CatalogError(f"agents file {p}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"agents file {p}: not valid YAML: {exc}") from None
    return parse_catalog(data, base=base, source=f"agents file {p}")


def agent_card(entry: Entry, *, url: str) -> dict[str, Any]:
    """The entry's A2A agent card, in the shape the gateway serves the mesh's (agentmesh.agentcard, a2a-sdk's
    AgentCard as A2A JSON), narrowed to this agent's one skill. `url` is where A2A clients reach it: the gateway's
    public address (an agent speaks agentmesh.v1.AgentService to the gateway, not A2A, whatever its address)."""
    return card_dict(cards.agent_card(entry.name, entry.description, url, [(entry.name, entry.description)]))
