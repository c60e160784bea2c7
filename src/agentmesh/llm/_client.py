"""The one LLM client every service uses: the anthropic SDK behind a semaphore, jitter, tenacity retries of
transient errors only, a circuit breaker, and token/cost accounting on every call."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from agentmesh.errors import (
    DeadlineExceeded,
    LLMRateLimited,
    LLMRequestRejected,
    LLMUnavailable,
)
from agentmesh.llm._breaker import BreakerState, CircuitBreaker
from agentmesh.llm._pricing import cost_usd
from agentmesh.llm._retry import Failure, TruncatedStream, classify
from agentmesh.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class LLMResult:
    """What one successful call produced (after however many attempts)."""

    text: str
    tool_uses: tuple[ToolUse, ...]
    content: list[dict[str, Any]]  # the assistant blocks, to send back in a tool-use follow-up
    stop_reason: str | None
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    attempts: int
    latency_ms: float


@dataclass
class LLMStats:
    """Counters owned by one client (one per process): what the provider saw and what it cost."""

    calls: int = 0
    attempts: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    in_flight: int = 0
    queued: int = 0


class _RetryAfterTooLong(Exception):
    def __init__(self, failure: Failure, cause: BaseException) -> None:
        super().__init__(f"provider asked to wait {failure.retry_after_s:.1f}s")
        self.failure = failure
        self.cause = cause


class LLMClient:
    """`complete()` is the only way the mesh calls an LLM."""

    def __init__(
        self,
        *,
        settings: Settings,
        sdk: anthropic.AsyncAnthropic | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_breaker_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self._s = settings
        api_key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else "offline-simulator"
        # max_retries=0: tenacity below owns retries; stacking the SDK's 3 attempts would multiply them.
        self._sdk = sdk or anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=settings.anthropic_base_url,
            max_retries=0,
            timeout=anthropic.Timeout(settings.llm_timeout_s, connect=5.0),
        )
        self._sem = asyncio.Semaphore(settings.llm_max_concurrency)
        self._rng = rng or random.Random()
        self._clock = clock
        self.breaker = CircuitBreaker(
            name="anthropic",
            failure_threshold=settings.breaker_failure_threshold,
            reset_timeout_s=settings.breaker_reset_timeout_s,
            clock=clock,
            on_change=on_breaker_change,
        )
        self.stats = LLMStats()
        self._backoff = wait_random_exponential(multiplier=settings.llm_backoff_base_s, max=settings.llm_backoff_max_s)

    @property
    def model(self) -> str:
        return self._s.model

    async def close(self) -> None:
        await self._sdk.close()

    async def complete(
        self,
        *,
        system: str,
        messages: Sequence[dict[str, Any]],
        max_tokens: int,
        tools: Sequence[dict[str, Any]] | None = None,
        model: str | None = None,
        deadline: float | None = None,
        stream: bool | None = None,
    ) -> LLMResult:
        """One logical LLM call. `deadline` is on this client's clock; no attempt or wait goes past it.

        Raises LLMUnavailable (incl. CircuitOpen), LLMRateLimited, LLMRequestRejected or DeadlineExceeded."""
        model = model or self._s.model
        use_stream = self._s.llm_stream if stream is None else stream
        kwargs: dict[str, Any] = {"model": model, "system": system, "messages": list(messages), "max_tokens": max_tokens}
        if tools:
            kwargs["tools"] = list(tools)
        started = self._clock()
        attempts = 0

        def stop_for_deadline(state: RetryCallState) -> bool:
            if deadline is None:
                return False
            upcoming = state.upcoming_sleep or 0.0
            return self._clock() + upcoming >= deadline

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._s.llm_max_attempts) | stop_for_deadline,
            wait=self._wait,
            retry=retry_if_exception(self._should_retry),
            reraise=True,
        )
        self.stats.calls += 1
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    result = await self._attempt(kwargs, use_stream, deadline)
        except _RetryAfterTooLong as exc:
            raise self._map(exc.cause, exc.failure, attempts, extra=f"; {exc}, above the cap of "
                            f"{self._s.llm_retry_after_cap_s:.0f}s") from exc.cause
        except (LLMUnavailable, DeadlineExceeded):
            raise
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            raise self._map(exc, failure, attempts) from exc
        usage_in, usage_out = result["input_tokens"], result["output_tokens"]
        cost = cost_usd(model, usage_in, usage_out)
        self.stats.input_tokens += usage_in
        self.stats.output_tokens += usage_out
        self.stats.cost_usd += cost
        latency_ms = (self._clock() - started) * 1000
        log.info("llm call", extra={"model": model, "input_tokens": usage_in, "output_tokens": usage_out,
                                    "cost_usd": round(cost, 6), "attempts": attempts, "latency_ms": round(latency_ms, 1)})
        return LLMResult(
            text=result["text"], tool_uses=result["tool_uses"], content=result["content"],
            stop_reason=result["stop_reason"], model=result["model"], input_tokens=usage_in,
            output_tokens=usage_out, cost_usd=cost, attempts=attempts, latency_ms=latency_ms,
        )

    # --- one attempt -----------------------------------------------------------------------------

    async def _attempt(self, kwargs: dict[str, Any], use_stream: bool, deadline: float | None) -> dict[str, Any]:
        timeout = self._s.llm_timeout_s
        if deadline is not None:
            timeout = min(timeout, deadline - self._clock())
            if timeout <= 0:
                raise DeadlineExceeded("the run's deadline passed before the LLM call could be made")
        probe = self.breaker.before_call()  # raises CircuitOpen while open: no semaphore slot taken
        queued = self._sem.locked()
        self.stats.queued += queued
        try:
            async with self._sem:
                self.stats.queued -= queued
                queued = False
                if self._s.llm_jitter_ms > 0 and self._sem.locked():
                    # Callers released together would hit the provider in the same millisecond.
                    await asyncio.sleep(self._rng.uniform(0, self._s.llm_jitter_ms) / 1000)
                self.stats.attempts += 1
                self.stats.in_flight += 1
                try:
                    message = await asyncio.wait_for(self._send(kwargs, use_stream), timeout)
                finally:
                    self.stats.in_flight -= 1
        except BaseException as exc:
            self.stats.queued -= queued
            failure = classify(exc)
            if failure is not None and failure.provider_fault:
                self.breaker.record_failure(probe=probe)
            else:
                self.breaker.record_neutral(probe=probe)
            if failure is not None:
                self.stats.failures[failure.kind] += 1
                log.info("llm attempt failed", extra={"kind": failure.kind, "retry_after_s": failure.retry_after_s})
            raise
        self.breaker.record_success(probe=probe)
        return message

    async def _send(self, kwargs: dict[str, Any], use_stream: bool) -> dict[str, Any]:
        if use_stream:
            async with self._sdk.messages.stream(**kwargs) as stream:
                msg = await stream.get_final_message()
            if msg.stop_reason is None:
                raise TruncatedStream("the stream ended without message_stop")
        else:
            msg = await self._sdk.messages.create(**kwargs)
        text_parts: list[str] = []
        tool_uses: list[ToolUse] = []
        content: list[dict[str, Any]] = []
        for block in msg.content:
            if block.type == "text":
                text_parts.append(block.text)
                content.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                tool_input = block.input if isinstance(block.input, dict) else {}
                tool_uses.append(ToolUse(id=block.id, name=block.name, input=tool_input))
                content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
        return {
            "text": "".join(text_parts), "tool_uses": tuple(tool_uses), "content": content,
            "stop_reason": msg.stop_reason, "model": msg.model,
            "input_tokens": msg.usage.input_tokens, "output_tokens": msg.usage.output_tokens,
        }

    # --- retry policy ----------------------------------------------------------------------------

    def _should_retry(self, exc: BaseException) -> bool:
        failure = classify(exc)
        if failure is None or not failure.transient:
            return False
        if failure.retry_after_s is not None and failure.retry_after_s > self._s.llm_retry_after_cap_s:
            raise _RetryAfterTooLong(failure, exc)
        return True

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        failure = classify(exc) if exc is not None else None
        if failure is not None and failure.retry_after_s is not None:
            # Honour the provider's wait, plus a little jitter so the herd it throttled doesn't return at once.
            return failure.retry_after_s + self._rng.uniform(0, self._s.llm_backoff_base_s)
        return float(self._backoff(state))

    def _map(self, exc: BaseException, failure: Failure, attempts: int, *, extra: str = "") -> Exception:
        where = f"after {attempts} attempt{'s' if attempts != 1 else ''}{extra}"
        if isinstance(exc, anthropic.APIStatusError) and exc.status_code in (400, 401, 403, 404, 413, 422):
            return LLMRequestRejected(f"the LLM provider rejected the request ({exc.status_code} {exc.type or ''})".strip()
                                      + f" {where}")
        if failure.rate_limited:
            return LLMRateLimited(f"the LLM provider is rate limiting (429) {where}",
                                  retry_after_s=failure.retry_after_s)
        return LLMUnavailable(f"the LLM provider failed ({failure.kind}) {where}", retry_after_s=failure.retry_after_s)
