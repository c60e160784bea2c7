"""The one LLM client every service uses: the anthropic SDK behind an adaptive (AIMD) concurrency limit,
jitter, tenacity retries of transient errors only (429s while the deadline allows, provider failures up to an
attempt count), a circuit breaker, and token/cost accounting on every call; given instruments, a GenAI span
and a latency histogram sample per call too (see `_instruments.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anthropic
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from agentmesh.deadline import Deadline
from agentmesh.errors import (
    CircuitOpen,
    DeadlineExceeded,
    LLMRateLimited,
    LLMRequestRejected,
    LLMUnavailable,
)
from agentmesh.llm._breaker import BreakerState, CircuitBreaker
from agentmesh.llm._fair import FairTurn
from agentmesh.llm._instruments import LLMInstruments, outcome_of
from agentmesh.llm._limiter import AIMDLimiter, Outcome, Permit
from agentmesh.llm._mesh_limit import MeshLimiter
from agentmesh.llm._pacer import Pacer, Reservation
from agentmesh.llm._pricing import cost_usd
from agentmesh.llm._results import LLMResult, LLMStats, ToolUse
from agentmesh.llm._retry import EGRESS_OVERLOADED, NEVER_RETRY, Failure, TruncatedStream, classify
from agentmesh.llm._shared import SharedBudget, make_budget, make_limiter
from agentmesh.llm._wire import SDK_ABOVE_TOKENS, MessagesWire
from agentmesh.settings import Settings

log = logging.getLogger(__name__)


class _GiveUp(Exception):
    """Stop retrying now, for a reason worth putting in the caller's error message."""

    def __init__(self, failure: Failure, cause: BaseException, why: str, reason: str) -> None:
        super().__init__(why)
        self.failure = failure
        self.cause = cause
        self.why = why
        self.reason = reason


@dataclass
class _CallState:
    """One logical call's retry bookkeeping: 429s and provider failures are budgeted differently."""

    deadline: Deadline
    attempts: int = 0
    rate_limited: int = 0
    provider_failures: int = 0
    out_of_time: bool = False
    paced_429: bool = False
    """The last failure was a 429 of a bucket the pacer knows: its next reservation waits, not the backoff."""


class LLMClient:
    """`complete()` is the only way the mesh calls an LLM.

    `instruments` (from `Telemetry.llm_instruments()`): a GenAI span (with tracing on) and a latency histogram
    sample per logical call. None: neither (tests, tools); the client's own `stats` are kept either way."""

    def __init__(
        self,
        *,
        settings: Settings,
        instruments: LLMInstruments | None = None,
        sdk: anthropic.AsyncAnthropic | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_breaker_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self._s = settings
        self._instruments = instruments
        api_key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else "offline-simulator"
        # max_retries=0: our retry loop owns retries; stacking the SDK's 3 attempts would multiply them.
        # The aiohttp transport (the SDK's `aiohttp` extra): httpx2's own pool and cookie jar cost about twice
        # the CPU per call (1.01 vs 0.47 ms measured under the e2e bench). Its session is created on the first
        # request, on the running loop, and closed by close().
        self._sdk = sdk or anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=settings.anthropic_base_url,
            max_retries=0,
            timeout=anthropic.Timeout(settings.llm_timeout_s, connect=5.0),
            http_client=anthropic.DefaultAioHttpClient(),
            # The GenAI span is our own (LLMInstruments). Left on, the SDK built its span's attributes on every
            # call only to find that no tracer provider is registered globally and drop them.
            open_telemetry=False,
        )
        # Non-streaming calls skip the SDK's request pipeline (4x its CPU), keeping its headers and errors.
        self._wire = MessagesWire(self._sdk, connect_timeout_s=5.0, read_timeout_s=settings.llm_timeout_s)
        # Under a mesh-wide cap, calls beyond it would only wait in the gateway's egress queue, and that wait counts
        # in the per-attempt timeout (a long one would read as a hung provider): hold them here instead.
        ceiling = settings.llm_max_concurrency
        if settings.llm_mesh_concurrency > 0:
            ceiling = min(ceiling, settings.llm_mesh_concurrency)
        # With Redis, one limit for every process on the provider key (learned from 429s, see _mesh_limit.py);
        # this process's own AIMD limit otherwise, and while Redis is unreachable.
        self._fair = FairTurn()
        # At most two slots are kept for the next callers in line (between two turns), never a queue's worth:
        # a caller in line may yet wait for the rate buckets, and a kept slot is one the provider does not use.
        self._limiter = make_limiter(
            settings, AIMDLimiter(max_limit=ceiling), clock=clock, queued=lambda: min(2, self._fair.queued)
        )
        # Per-minute buckets, learned from the provider's headers (this process's own, or the mesh's in Redis):
        # this paces the rate, the limiter the concurrency; the turn admits tenants round-robin to both.
        self._pacer = make_budget(settings, clock=clock)
        self._rng = rng or random.Random()
        self._clock = clock  # latencies and the breaker's wait; deadlines are on time.monotonic(), as gRPC's are
        self._on_breaker_change = on_breaker_change
        self.breaker = CircuitBreaker(
            name="anthropic",
            failure_threshold=settings.breaker_failure_threshold,
            reset_timeout_s=settings.breaker_reset_timeout_s,
            clock=clock,
            on_change=self._breaker_changed,
        )
        self.stats = LLMStats()
        self._sync_limiter_stats()

    @property
    def model(self) -> str:
        return self._s.model

    @property
    def limiter(self) -> AIMDLimiter | MeshLimiter:
        return self._limiter

    @property
    def pacer(self) -> Pacer | SharedBudget:
        return self._pacer

    async def close(self) -> None:
        await self._sdk.close()
        await self._wire.aclose()
        if isinstance(self._pacer, SharedBudget):
            await self._pacer.aclose()
        if isinstance(self._limiter, MeshLimiter):
            await self._limiter.aclose()

    async def complete(
        self,
        *,
        system: str,
        messages: Sequence[dict[str, Any]],
        max_tokens: int,
        tools: Sequence[dict[str, Any]] | None = None,
        model: str | None = None,
        deadline: Deadline | None = None,
        stream: bool | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
        tenant: str = "",
    ) -> LLMResult:
        """One logical LLM call. No attempt or wait goes past `deadline` (nor past llm_call_budget_s from now).
        429s are retried while it allows; provider failures up to llm_max_attempts.
        `attributes` (e.g. run id and step) go on the call's span, when there is one. `tenant`: whose call it
        is, for fair turns at the budget when it is short.

        Raises LLMUnavailable (incl. CircuitOpen), LLMRateLimited, LLMRequestRejected or DeadlineExceeded."""
        model = model or self._s.model
        call = functools.partial(
            self._complete,
            system=system,
            messages=messages,
            max_tokens=max_tokens,
            tools=tools,
            model=model,
            deadline=deadline,
            stream=stream,
            tenant=tenant,
        )
        inst = self._instruments
        if inst is None:
            return await call()
        started = time.perf_counter()
        # Tracing off: the same path, timed, with no span to annotate.
        opened = (
            contextlib.nullcontext()
            if inst.tracer is None
            else inst.tracer.start_as_current_span(
                f"chat {model}",
                kind=SpanKind.CLIENT,
                attributes=inst.request_attributes(model, max_tokens, attributes),
                # Exception events carry messages and stack traces; we record a stable error type instead.
                record_exception=False,
                set_status_on_exception=False,
            )
        )
        with opened as span:
            try:
                result = await call()
            except Exception as exc:
                outcome = outcome_of(exc)
                if span is not None:
                    span.set_attribute("error.type", outcome)
                    span.set_attribute("agentmesh.breaker.state", self.breaker.state.value)
                    span.set_status(Status(StatusCode.ERROR, outcome))
                inst.observe(model, outcome, started)
                raise
            if span is not None:
                span.set_attributes(
                    {
                        "gen_ai.response.model": result.model,
                        "gen_ai.usage.input_tokens": result.input_tokens,
                        "gen_ai.usage.output_tokens": result.output_tokens,
                        "gen_ai.response.finish_reasons": [result.stop_reason or "unknown"],
                        "agentmesh.llm.attempts": result.attempts,
                        "agentmesh.llm.retries": result.attempts - 1,
                        "agentmesh.cost_usd": result.cost_usd,
                        "agentmesh.breaker.state": self.breaker.state.value,
                    }
                )
        inst.observe(result.model or model, "ok", started)
        return result

    async def _complete(
        self,
        *,
        system: str,
        messages: Sequence[dict[str, Any]],
        max_tokens: int,
        tools: Sequence[dict[str, Any]] | None,
        model: str,
        deadline: Deadline | None,
        stream: bool | None,
        tenant: str,
    ) -> LLMResult:
        """The call itself: retries, limiter, breaker and accounting, without the span or the histogram."""
        use_stream = self._s.llm_stream if stream is None else stream
        kwargs: dict[str, Any] = {
            "model": model,
            "system": system,
            "messages": list(messages),
            "max_tokens": max_tokens,
        }
        if tools:
            kwargs["tools"] = list(tools)
        started = self._clock()
        budget = Deadline.after(self._s.llm_call_budget_s)
        call = _CallState(deadline=budget if deadline is None else min(deadline, budget))
        retrying = AsyncRetrying(
            stop=lambda state: self._stop(call, state),
            wait=lambda state: self._wait(call, state),
            retry=retry_if_exception(lambda exc: self._should_retry(call, exc)),
            reraise=True,
        )
        self.stats.calls += 1
        try:
            async for attempt in retrying:
                with attempt:
                    call.attempts += 1
                    result = await self._attempt(kwargs, use_stream, call.deadline, call=call, tenant=tenant)
        except _GiveUp as exc:
            self.stats.fast_failures[exc.reason] += 1
            raise self._map(exc.cause, exc.failure, call.attempts, extra=f"; {exc.why}") from exc.cause
        except CircuitOpen:
            self.stats.fast_failures["circuit_open"] += 1
            raise
        except DeadlineExceeded:
            self.stats.fast_failures["deadline"] += 1
            raise
        except LLMUnavailable:
            raise
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            extra = "; the deadline leaves no time for another attempt" if call.out_of_time else ""
            raise self._map(exc, failure, call.attempts, extra=extra) from exc
        usage_in, usage_out = result["input_tokens"], result["output_tokens"]
        cost = cost_usd(model, usage_in, usage_out)
        self.stats.input_tokens += usage_in
        self.stats.output_tokens += usage_out
        self.stats.cost_usd += cost
        latency_ms = (self._clock() - started) * 1000
        log.info(
            "llm call",
            extra={
                "model": model,
                "input_tokens": usage_in,
                "output_tokens": usage_out,
                "cost_usd": round(cost, 6),
                "attempts": call.attempts,
                "latency_ms": round(latency_ms, 1),
            },
        )
        return LLMResult(
            text=result["text"],
            tool_uses=result["tool_uses"],
            content=result["content"],
            stop_reason=result["stop_reason"],
            model=result["model"],
            input_tokens=usage_in,
            output_tokens=usage_out,
            cost_usd=cost,
            attempts=call.attempts,
            latency_ms=latency_ms,
        )

    # --- one attempt -----------------------------------------------------------------------------

    async def _attempt(
        self, kwargs: dict[str, Any], use_stream: bool, deadline: Deadline, *, call: _CallState, tenant: str
    ) -> dict[str, Any]:
        # While the breaker is open, fail before queueing for a slot: an outage must not build a queue.
        self.breaker.check()
        call.paced_429 = False
        # Wait for the rate buckets before taking a concurrency slot, so a paced call holds none while it waits.
        async with self._fair.turn(tenant, deadline.remaining()):
            reservation = await self._pace(kwargs, deadline) if self._s.llm_pace else None
            try:
                permit = await self._acquire(deadline)
            except BaseException:
                if reservation is not None:
                    self._pacer.cancel(reservation)
                raise
        outcome = Outcome.NEUTRAL
        headers: Any = {}
        try:
            if permit.waited and not permit.lease and self._s.llm_jitter_ms > 0:
                # Callers released together would hit the provider in the same millisecond (a mesh-wide slot is
                # handed on one at a time, and a wait while holding one would idle a slot of the provider's).
                await asyncio.sleep(self._rng.uniform(0, self._s.llm_jitter_ms) / 1000)
            left = deadline.remaining()
            if left <= 0:
                raise DeadlineExceeded("the deadline passed while the LLM call waited for a concurrency slot")
            # Claimed only now, right before the request: every way out below records the probe's outcome.
            probe = self.breaker.before_call()  # it may have opened while this call queued
            cut_by_deadline = left < self._s.llm_timeout_s
            self.stats.attempts += 1
            if reservation is not None:
                self._pacer.sent(reservation)
            try:
                # asyncio.timeout, not wait_for: no task of its own, so no extra event-loop turn while a slot is held.
                async with asyncio.timeout(min(left, self._s.llm_timeout_s)):
                    message, headers = await self._send(kwargs, use_stream)
            except BaseException as exc:
                if isinstance(exc, anthropic.APIStatusError) and exc.response is not None:
                    headers = exc.response.headers
                if reservation is not None:
                    call.paced_429 = self._pacer.observe(reservation, headers) and isinstance(
                        exc, anthropic.RateLimitError
                    )
                if isinstance(exc, TimeoutError) and cut_by_deadline:
                    # The caller's deadline, not the provider, ended this attempt: not a provider fault.
                    self.breaker.record_neutral(probe=probe)
                    raise DeadlineExceeded("the deadline passed while the LLM call was in flight") from None
                failure = classify(exc)
                if failure is not None and failure.provider_fault:
                    self.breaker.record_failure(probe=probe)
                else:
                    self.breaker.record_neutral(probe=probe)
                if failure is not None:
                    self.stats.failures[failure.kind] += 1
                    if failure.rate_limited and not call.paced_429:
                        # A 429 of an empty per-minute bucket says nothing about concurrency: the pacer owns it.
                        outcome = Outcome.RATE_LIMITED
                    log.info(
                        "llm attempt failed",
                        extra={
                            "kind": failure.kind,
                            "retry_after_s": failure.retry_after_s,
                            "concurrency_limit": round(self._limiter.limit, 2),
                        },
                    )
                raise
            self.breaker.record_success(probe=probe)
            if reservation is not None:
                self._pacer.observe(
                    reservation, headers, input_tokens=message["input_tokens"], output_tokens=message["output_tokens"]
                )
            at_capacity = headers.get("anthropic-ratelimit-requests-remaining") == "0"
            outcome = Outcome.AT_CAPACITY if at_capacity else Outcome.SUCCESS
            return message
        finally:
            self._limiter.release(permit, outcome)
            self._sync_limiter_stats()
            if reservation is not None and not reservation.done:
                if reservation.sent_at is None:
                    self._pacer.cancel(reservation)  # never sent: give its claim back
                else:
                    self._pacer.observe(reservation, {})  # sent, no answer: the provider may have charged it
            self.stats.pace_share = self._pacer.share
            # Redis could not serve the shared buckets or the mesh-wide concurrency limit: paced/limited here.
            self.stats.budget_fallbacks = (self._pacer.fallbacks if isinstance(self._pacer, SharedBudget) else 0) + (
                self._limiter.fallbacks if isinstance(self._limiter, MeshLimiter) else 0
            )

    async def _pace(self, kwargs: dict[str, Any], deadline: Deadline) -> Reservation:
        reservation = await self._pacer.acquire(kwargs, deadline.remaining())
        self.stats.paced, self.stats.paced_wait_s = self._pacer.paced, self._pacer.paced_wait_s
        return reservation

    async def _acquire(self, deadline: Deadline) -> Permit:
        permit = self._limiter.try_acquire()
        if permit is None:
            left = deadline.remaining()
            if left <= 0:
                raise DeadlineExceeded("the deadline passed before the LLM call could be made")
            self.stats.queued += 1
            try:
                async with asyncio.timeout(left):
                    permit = await self._limiter.acquire()
            except TimeoutError:
                whose = (
                    "the mesh's"
                    if isinstance(self._limiter, MeshLimiter) and self._limiter.shared
                    else "this process's"
                )
                raise DeadlineExceeded(
                    f"the deadline passed while the LLM call queued for one of {whose} "
                    f"{self._limiter.capacity} concurrency slots (an adaptive limit the provider's 429s lowered)"
                ) from None
            finally:
                self.stats.queued -= 1
        self._sync_limiter_stats()
        return permit

    async def _send(self, kwargs: dict[str, Any], use_stream: bool) -> tuple[dict[str, Any], Any]:
        """One HTTP request. Returns the message and the response headers (the SDK parses no rate-limit ones)."""
        headers: Mapping[str, str]
        if use_stream:
            async with self._sdk.messages.stream(**kwargs) as stream:
                headers = stream.response.headers
                msg = await stream.get_final_message()
            if msg.stop_reason is None:
                raise TruncatedStream("the stream ended without message_stop")
            body: dict[str, Any] = msg.to_dict()
        elif kwargs["max_tokens"] > SDK_ABOVE_TOKENS:
            # with_raw_response: the same call, plus the response headers (the SDK does not parse rate-limit ones).
            raw = await self._sdk.messages.with_raw_response.create(**kwargs)
            headers = raw.headers
            # The JSON body as it is: the SDK's Message models (built field by field) cost more Python time than
            # the rest of a call here, and only the fields below are read.
            body = await raw.json()
        else:
            body, headers = await self._wire.create(kwargs)
        text_parts: list[str] = []
        tool_uses: list[ToolUse] = []
        content: list[dict[str, Any]] = []
        for block in body.get("content") or ():
            if block.get("type") == "text":
                text_parts.append(block["text"])
                content.append({"type": "text", "text": block["text"]})
            elif block.get("type") == "tool_use":
                tool_input = block.get("input")
                tool_uses.append(
                    ToolUse(
                        id=block["id"], name=block["name"], input=tool_input if isinstance(tool_input, dict) else {}
                    )
                )
                content.append({"type": "tool_use", "id": block["id"], "name": block["name"], "input": tool_input})
        usage = body.get("usage") or {}
        message = {
            "text": "".join(text_parts),
            "tool_uses": tuple(tool_uses),
            "content": content,
            "stop_reason": body.get("stop_reason"),
            "model": body.get("model", ""),
            "input_tokens": usage.get("input_tokens") or 0,
            "output_tokens": usage.get("output_tokens") or 0,
        }
        return message, headers

    # --- retry policy ----------------------------------------------------------------------------

    def _should_retry(self, call: _CallState, exc: BaseException) -> bool:
        failure = classify(exc)
        if failure is None or not failure.transient:
            return False
        if failure.rate_limited:
            call.rate_limited += 1
        else:
            call.provider_failures += 1
        wait = failure.retry_after_s
        if wait is not None:
            if wait > self._s.llm_retry_after_cap_s:
                raise _GiveUp(
                    failure,
                    exc,
                    f"it asked to wait {wait:.1f}s, above the cap of {self._s.llm_retry_after_cap_s:.0f}s",
                    "retry_after_above_cap",
                )
            left = call.deadline.remaining()
            if wait > left:
                # Sleeping past the deadline helps nobody: say so now, while the caller can still act on it.
                raise _GiveUp(
                    failure,
                    exc,
                    f"it asked to wait {wait:.1f}s (retry-after), more than the {left:.1f}s left before the deadline",
                    "retry_after_beyond_deadline",
                )
        return True

    def _stop(self, call: _CallState, state: RetryCallState) -> bool:
        # 429s are back-pressure, bounded by the deadline alone; provider failures also by an attempt count.
        if call.provider_failures >= self._s.llm_max_attempts:
            return True
        call.out_of_time = call.deadline.remaining() <= (state.upcoming_sleep or 0.0)
        return call.out_of_time

    def _wait(self, call: _CallState, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        failure = classify(exc) if exc is not None else None
        if call.paced_429:
            # The retry's reservation waits for the bucket's refill, measured more finely than retry-after's
            # whole seconds; only a little jitter here.
            return self._rng.uniform(0, self._s.llm_jitter_ms / 1000)
        if failure is not None and failure.retry_after_s is not None:
            # Honour the provider's wait, plus a little jitter so the herd it throttled doesn't return at once.
            return failure.retry_after_s + self._rng.uniform(0, self._s.llm_backoff_base_s)
        # Exponential backoff with full jitter, counted per kind so a run of 429s doesn't inflate 5xx waits.
        n = call.rate_limited if failure is not None and failure.rate_limited else call.provider_failures
        return self._rng.uniform(0, min(self._s.llm_backoff_max_s, self._s.llm_backoff_base_s * 2 ** max(0, n - 1)))

    def _map(self, exc: BaseException, failure: Failure, attempts: int, *, extra: str = "") -> Exception:
        where = f"after {attempts} attempt{'s' if attempts != 1 else ''}{extra}"
        if isinstance(exc, anthropic.APIStatusError) and exc.status_code in NEVER_RETRY:
            return LLMRequestRejected(
                f"the LLM provider rejected the request ({exc.status_code} {exc.type or ''})".strip() + f" {where}"
            )
        if failure.kind == EGRESS_OVERLOADED:
            return LLMUnavailable(
                f"the mesh's LLM egress queue is full (AGENTMESH_LLM_MESH_CONCURRENCY calls in flight and "
                f"its queue at its limit) {where}",
                retry_after_s=failure.retry_after_s,
            )
        what = failure.kind
        if isinstance(exc, anthropic.APIStatusError) and exc.type and exc.status_code != 200:
            what = f"{exc.status_code} {exc.type}"
        if failure.rate_limited:
            return LLMRateLimited(
                f"the LLM provider is rate limiting ({what}) {where}", retry_after_s=failure.retry_after_s
            )
        return LLMUnavailable(f"the LLM provider is unavailable ({what}) {where}", retry_after_s=failure.retry_after_s)

    # --- metrics -----------------------------------------------------------------------------------

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        self.stats.breaker_state = new.value
        self.stats.breaker_transitions[f"{old.value}->{new.value}"] += 1
        if self._on_breaker_change is not None:
            self._on_breaker_change(old, new)

    def _sync_limiter_stats(self) -> None:
        # Copied on every acquire and release, so the stats stay plain numbers an exporter can read.
        self.stats.in_flight = self._limiter.in_flight
        self.stats.concurrency_limit = self._limiter.limit
        self.stats.concurrency_limit_lowest = self._limiter.lowest
        self.stats.limit_decreases = self._limiter.decreases
