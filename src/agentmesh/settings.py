"""One typed settings object, read from the environment once in `main()` and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ServiceName = Literal["supervisor", "researcher", "analyst", "executor", "guard"]
SERVICES: tuple[ServiceName, ...] = ("supervisor", "researcher", "analyst", "executor", "guard")
AGENTS: tuple[ServiceName, ...] = ("researcher", "analyst", "executor")
REPLICA_PORT_STRIDE = 100  # `agentmesh up --replicas`: replica i of a service listens on its port + i * 100


class Settings(BaseSettings):
    """Every knob of the mesh. Env names are `AGENTMESH_<FIELD>` unless an alias says otherwise."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTMESH_", frozen=True, extra="ignore", use_attribute_docstrings=True
    )

    # --- addresses -------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    """Interface every service, the simulator and the gateway bind to (loopback: the gateway is the way in)."""
    gateway_addr: str = "127.0.0.1:8080"
    """Public gateway listener that clients use (AGENTMESH_GATEWAY_ADDR)."""
    gateway_internal_addr: str = "127.0.0.1:8081"
    """Internal gateway listener: service-to-service calls (supervisor -> agents, guard)."""
    gateway_admin_addr: str = "127.0.0.1:9901"
    """Envoy's admin interface (stats, clusters); loopback only."""
    gateway_egress_addr: str = "127.0.0.1:8082"
    """Egress gateway listener: every LLM call of the mesh, queued under AGENTMESH_LLM_MESH_CONCURRENCY (only
    rendered when that is set)."""
    supervisor_port: int = 50051
    """gRPC port of the supervisor."""
    researcher_port: int = 50052
    """gRPC port of the researcher."""
    analyst_port: int = 50053
    """gRPC port of the analyst."""
    executor_port: int = 50054
    """gRPC port of the executor."""
    guard_port: int = 50055
    """gRPC port of the guard."""
    sim_port: int = 8765
    """HTTP port of the offline Anthropic simulator."""
    data_dir: Path = Path(".agentmesh")
    """Where `agentmesh up` keeps the embedded Postgres, logs and the dev key."""

    # --- Postgres --------------------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "AGENTMESH_DATABASE_URL")
    )
    """Postgres DSN; unset: `agentmesh up` starts an embedded server under data_dir."""
    db_pool_min: int = 1
    """Minimum connections in each service's asyncpg pool."""
    db_pool_max: int = 10
    """Maximum connections in each service's asyncpg pool."""
    db_acquire_timeout_s: float = 5.0
    """Longest a request waits for a free pool connection before it fails with UNAVAILABLE."""

    # --- LLM -------------------------------------------------------------------------------------
    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY"))
    """Real Claude when set; otherwise the mesh talks to the simulator."""
    anthropic_base_url: str | None = Field(default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL"))
    """Where the SDK sends requests; `agentmesh up` points it at the simulator when there is no API key."""
    model: str = "claude-haiku-4-5"
    """Model for every agent and the router."""
    llm_max_concurrency: int = 30
    """Most LLM calls in flight per process: the ceiling of its adaptive (AIMD) limit, which halves on 429s and
    grows back by about one per round trip; never above llm_mesh_concurrency when that is set. Without it, the
    mesh-wide ceiling is this times the processes."""
    llm_mesh_concurrency: int = Field(default=0, ge=0)
    """LLM calls in flight for the whole mesh (the provider's concurrency you want to stay under): the gateway's
    egress listener lets at most this many through to the provider and queues the rest first come, first served;
    `agentmesh up` then points every service's SDK at it. 0: no egress cap, the SDK talks to the provider directly
    and only the per-process limits apply."""
    llm_timeout_s: float = 60.0
    """Per-attempt timeout of one LLM call (a hung provider is cut here)."""
    llm_max_attempts: int = 6
    """Attempts per LLM call on provider failures (5xx, 529, timeouts, broken streams), first included; 429s
    are retried while the deadline allows instead (tenacity; the SDK's own retries are off)."""
    llm_backoff_base_s: float = 0.25
    """First backoff step; doubles per attempt, full jitter."""
    llm_backoff_max_s: float = 8.0
    """Cap of the exponential backoff."""
    llm_retry_after_cap_s: float = 20.0
    """Cap on a provider's retry-after; a longer wait fails the call instead of stalling it."""
    llm_jitter_ms: float = 25.0
    """Upper bound of the random delay before a call that had to queue for a concurrency slot."""
    llm_pace: bool = True
    """Pace LLM calls to the provider's per-minute buckets (requests, input and output tokens), learned from its
    `anthropic-ratelimit-*` response headers, so calls wait for the refill here instead of drawing 429s."""
    llm_max_requests_per_minute: int = Field(default=0, ge=0)
    """An operator's cap on this process's LLM requests per minute (the mesh's, with redis_url set), below what the
    provider's headers allow. 0: no cap of our own."""
    redis_url: str | None = None
    """Redis holding the mesh-wide LLM budget (e.g. redis://127.0.0.1:6379/0): every process calling the provider
    with the same key admits its calls against one set of buckets there (see llm/_shared.py). Unset: each process
    paces on its own from the headers. If Redis is unreachable, calls go on paced per process (with a warning)."""
    redis_key_prefix: str = "agentmesh"
    """Prefix of the budget's Redis keys (one mesh per prefix on a shared Redis)."""
    embedded_redis: bool = True
    """With redis_url unset, `agentmesh up` starts a `redis-server` of its own (when one is on PATH) for the
    mesh-wide LLM budget and concurrency limit, as it starts Postgres; without one each process limits itself."""
    llm_stream: bool = False
    """Use the streaming Messages API (retries cover cut and truncated streams too)."""
    breaker_failure_threshold: int = 5
    """Consecutive provider-side failures that open the circuit breaker."""
    breaker_reset_timeout_s: float = 10.0
    """How long the breaker stays open before one half-open probe."""

    agents_file: Path | None = None
    """The agent catalog (YAML, `agents:` entries; see agentmesh.catalog); unset: the shipped researcher,
    analyst and executor. `agentmesh up --agents FILE` sets it for every process it starts."""
    agent_health_ttl_s: float = 2.0
    """How long the supervisor trusts the gateway's view of which agents have a healthy host before asking
    its admin interface (AGENTMESH_GATEWAY_ADMIN_ADDR) again."""

    # --- runs ------------------------------------------------------------------------------------
    max_iterations: int = 10
    """Agent steps per run before it ends with FINISH_REASON_ITERATION_LIMIT."""
    run_token_budget: int = 50_000
    """Input plus output tokens per run before it ends with FINISH_REASON_BUDGET_EXHAUSTED."""
    history_messages: int = 20
    """Earlier thread messages a new run sees."""
    history_chars: int = 16_000
    """Characters of earlier thread messages a new run sees at most (the newest kept, the oldest kept cut at its
    start), so a thread of long turns never grows past the agents' context limit or a run's token budget."""
    max_message_chars: int = 32_000
    """Longest user message accepted (INVALID_ARGUMENT above)."""
    agent_max_output_tokens: int = 512
    """Default max_tokens of an agent's LLM call."""
    agent_timeout_s: float = 120.0
    """Deadline of one agent call from the supervisor."""
    guard_timeout_s: float = 5.0
    """Deadline of one guard call from the supervisor."""
    run_lease_s: float = 30.0
    """A supervisor's lease on a run it executes; renewed while it works, so a dead one's runs free up."""
    orphaned_runs: Literal["resume", "fail"] = "resume"
    """A run whose lease expired (its supervisor died): `resume` has a live supervisor continue it within two
    lease periods, exactly once; `fail` marks it failed and resumable, for a client to Resume."""
    approval_agents: str = ""
    """Comma-separated agents that act only after a person approves (SubmitInput): the run pauses before each
    of their steps, with an input_required event (e.g. `executor`)."""
    pause_on_flag: bool = False
    """A guard FLAG on the run's input or an agent's output pauses the run for a person's review (SubmitInput)
    instead of only adding it to the review queue."""

    @property
    def approval_agent_set(self) -> frozenset[str]:
        return frozenset(a.strip() for a in self.approval_agents.split(",") if a.strip())

    # --- security --------------------------------------------------------------------------------
    internal_token: SecretStr | None = None
    """Shared secret on service-to-service calls; the public listener strips the header."""
    dev: bool = False
    """A local dev mesh (set by `agentmesh up`): the guard may derive its restore key from the internal token."""
    key_cache_ttl_s: float = 30.0
    """How long a verified API key is cached (revocation takes effect within this)."""
    key_negative_cache_ttl_s: float = 5.0
    """How long an unknown API key is remembered as unknown (a key created meanwhile works after this)."""
    tenant_max_concurrent_runs: int = Field(default=64, ge=0)
    """Runs one tenant may have executing at once, over every supervisor (running with a live lease); a Run or
    Resume past it answers RESOURCE_EXHAUSTED (reason TENANT_CONCURRENCY_LIMIT) with RetryInfo. 0: no limit."""
    key_rate_per_s: float = Field(default=20.0, ge=0)
    """Calls per second one API key may make to the supervisor or the guard (a token bucket per key and process,
    refilled at this rate); past it RESOURCE_EXHAUSTED (reason KEY_RATE_LIMITED) with RetryInfo. 0: no limit."""
    key_rate_burst: int = Field(default=100, ge=1)
    """Calls one API key may make at once before key_rate_per_s paces it (the bucket's size)."""
    shutdown_grace_s: float = Field(default=25.0, ge=0)
    """On SIGTERM: how long runs executing here may go on to finish (new runs are refused and health says
    NOT_SERVING at once); what is still running then is stopped and its lease released, so another supervisor
    continues it at once. Keep it below the pod's terminationGracePeriodSeconds (30 in deploy/k8s)."""

    # --- resilience (issue 4) -------------------------------------------------------------------
    llm_call_budget_s: float = 120.0
    """Longest one LLM call may take, retries and waits included, when its caller sets no earlier deadline:
    429s are retried until it runs out, and a retry-after beyond it fails the call at once."""
    gateway_max_requests_supervisor: int = 1024
    """Envoy circuit breaker: calls in flight to all supervisor replicas together (Run streams); above it the
    gateway answers RESOURCE_EXHAUSTED at once."""
    gateway_max_requests_researcher: int = 1024
    """Envoy circuit breaker: calls in flight to all researcher replicas together."""
    gateway_max_requests_analyst: int = 1024
    """Envoy circuit breaker: calls in flight to all analyst replicas together."""
    gateway_max_requests_executor: int = 1024
    """Envoy circuit breaker: calls in flight to all executor replicas together."""
    gateway_max_requests_guard: int = 1024
    """Envoy circuit breaker: calls in flight to all guard replicas together."""

    # --- security (issue 8) -------------------------------------------------------------------------
    tls_dir: Path | None = None
    """Directory from `agentmesh certs` (ca.crt, NAME.crt, NAME.key): when set, services accept only mTLS
    from holders of a certificate of that CA (the gateway), and the gateway's internal listener does too.
    Unset: plaintext on loopback (the local default)."""
    max_thread_messages: int = 1_000
    """Messages a thread may hold (each run adds two); a Run on a full thread answers RESOURCE_EXHAUSTED."""
    max_run_duration_s: float = 240.0
    """Wall time of one execution of a run (a Run or Resume call); past it the run stops with
    RESOURCE_EXHAUSTED and stays resumable. Keep it below the gateway's 300 s cap on a Run stream."""
    tenant_daily_tokens: int = 2_000_000
    """Input plus output tokens a tenant may spend per UTC day over all its runs (0: no limit);
    `agentmesh budget set` overrides it per tenant."""
    tenant_daily_usd: float = 20.0
    """USD a tenant may spend per UTC day over all its runs (0: no limit); `agentmesh budget set` overrides it
    per tenant."""

    # --- observability (issue 6) ------------------------------------------------------------------
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "AGENTMESH_OTEL_EXPORTER_OTLP_ENDPOINT"),
    )
    """OTLP endpoint for traces (e.g. http://127.0.0.1:4318); set: every service and the gateway export spans
    there; unset: no tracer provider, no tracing interceptors (tracing costs nothing)."""
    otel_exporter_otlp_protocol: Literal["grpc", "http/protobuf"] = Field(
        default="http/protobuf",
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_PROTOCOL", "AGENTMESH_OTEL_EXPORTER_OTLP_PROTOCOL"),
    )
    """OTLP transport of the services' and the gateway's spans: http/protobuf (port 4318) or grpc (4317)."""
    otel_traces_sampler: str = Field(
        default="parentbased_always_on",
        validation_alias=AliasChoices("OTEL_TRACES_SAMPLER", "AGENTMESH_OTEL_TRACES_SAMPLER"),
    )
    """Which runs are traced (the OpenTelemetry SDK reads it too): parentbased_traceidratio with
    OTEL_TRACES_SAMPLER_ARG=0.1 traces one run in ten; the gateway, where traces start, samples at that ratio."""
    otel_traces_sampler_arg: float | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_TRACES_SAMPLER_ARG", "AGENTMESH_OTEL_TRACES_SAMPLER_ARG")
    )
    """The sampler's ratio (0..1) for the traceidratio samplers; unset: 1."""
    metrics_port_offset: int = 1000
    """Each service (and replica) serves Prometheus metrics on HTTP /metrics at its gRPC port plus this;
    0 turns the endpoint off."""

    @field_validator("otel_exporter_otlp_endpoint", "otel_traces_sampler_arg", mode="before")
    @classmethod
    def _empty_endpoint_is_unset(cls, value: object) -> object:
        # `OTEL_EXPORTER_OTLP_ENDPOINT=` (compose, .env) means unset (tracing off), not "the empty URL".
        return None if value == "" else value

    # --- guard (issue 5) -------------------------------------------------------------------------
    guard_policy_path: Path | None = None
    """The guard's policy file (YAML: per finding type and direction, the action and thresholds); unset: the
    packaged default. Reloaded when its modification time changes (checked at most once a second) and on SIGHUP;
    an invalid edit is logged and the previous policy stays."""
    guard_llm_check: bool = True
    """Tier two: ask the LLM about prompt-injection findings whose confidence is in the grey zone."""
    guard_llm_band_low: float = 0.5
    """Lower end (inclusive) of tier two's grey zone of injection confidence."""
    guard_llm_band_high: float = 0.9
    """Upper end (exclusive) of tier two's grey zone; at or above it the tier-one decision is not questioned."""
    guard_llm_timeout_s: float = 2.0
    """Deadline of one tier-two LLM check (queueing and retries included); past it the tier-one decision stands."""
    guard_llm_calls_per_minute: int = 120
    """Tier-two budget per guard process; above it grey-zone findings keep their tier-one decision."""
    guard_llm_can_clear: bool = False
    """Let a BENIGN verdict from tier two clear a grey-zone finding (allow, no review). Off by default: the text
    under check may talk the classifier into it, so a benign verdict only annotates the review item."""
    guard_restore_key: SecretStr | None = None
    """Key that seals redaction placeholders into restore tokens (AES-GCM), at least 32 characters
    (`openssl rand -base64 32`). Required: the guard refuses to start without it, or on a known default, unless
    AGENTMESH_DEV is set (then unset means derived from AGENTMESH_INTERNAL_TOKEN)."""
    guard_restore_keys_previous: SecretStr | None = None
    """Comma-separated keys rotated out of AGENTMESH_GUARD_RESTORE_KEY: tokens they sealed still open (each token
    names its key by id) until they expire; new tokens use the current key."""
    guard_restore_ttl_s: float = 86_400.0
    """How long a restore token can be opened after it was issued."""

    # --- telemetry -------------------------------------------------------------------------------
    log_level: str = "INFO"
    """Log level of every process."""

    @field_validator(
        "database_url",
        "anthropic_api_key",
        "anthropic_base_url",
        "internal_token",
        "tls_dir",
        "guard_policy_path",
        "agents_file",
        "guard_restore_key",
        "guard_restore_keys_previous",
        "redis_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `ANTHROPIC_BASE_URL=` in a compose file or .env means "not set", not "the empty URL".
        return None if value == "" else value

    def port_of(self, service: ServiceName) -> int:
        """The gRPC port a service binds by default."""
        return int(getattr(self, f"{service}_port"))

    def gateway_max_requests(self, service: ServiceName) -> int:
        """The gateway's concurrency cap for one service's cluster."""
        return int(getattr(self, f"gateway_max_requests_{service}"))

    def addr_of(self, service: ServiceName) -> str:
        return f"{self.host}:{self.port_of(service)}"

    @property
    def sim_url(self) -> str:
        return f"http://{self.host}:{self.sim_port}"
