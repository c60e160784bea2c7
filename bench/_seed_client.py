"""The seed design's LLM client, as the baseline runs it: every call inside one `asyncio.Semaphore(30)` and retried
by tenacity (random exponential backoff with jitter, at most 6 attempts), the SDK's own retries off.

It honours nothing the provider says (no retry-after, no rate-limit headers): the backoff is the only pacing, which
is what the mesh's limiter is compared against. Kept apart from bench/baseline_langgraph.py so the retry
classification is testable without LangGraph or a simulator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anthropic
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

SEED_CONCURRENCY = 30
SEED_ATTEMPTS = 6
SEED_MAX_WAIT_S = 30.0

CLIENTS = {
    "seed": f"seed: asyncio.Semaphore({SEED_CONCURRENCY}) + tenacity (wait_random_exponential(multiplier=1, "
    f"max={SEED_MAX_WAIT_S:.0f}), stop_after_attempt({SEED_ATTEMPTS})), SDK max_retries=0",
    "sdk": "anthropic.AsyncAnthropic defaults (max_retries=2 honouring retry-after, timeout 600 s)",
}
CHECKPOINTERS = {
    "postgres": "langgraph AsyncPostgresSaver (psycopg pool)",
    "memory": "langgraph InMemorySaver",
}


def design_label(client: str, checkpointer: str) -> str:
    """The baseline row's name in tables and plots: what actually ran."""
    who = f"semaphore {SEED_CONCURRENCY} + tenacity" if client == "seed" else "SDK defaults"
    saver = "AsyncPostgresSaver" if checkpointer == "postgres" else "InMemorySaver"
    return f"LangGraph {'seed' if client == 'seed' else 'in-process'} ({who}, {saver})"


def seed_retryable(exc: BaseException) -> bool:
    """What the seed retries: 429, any 5xx (529 overloaded included), connection failures and timeouts. A 4xx
    other than 429 is the caller's mistake and is raised at once."""
    # APITimeoutError is an APIConnectionError; OverloadedError (529) is an InternalServerError.
    return isinstance(exc, anthropic.RateLimitError | anthropic.InternalServerError | anthropic.APIConnectionError)


class SeedClient:
    """`create(**kwargs)` as `client.messages.create`, with the seed's semaphore and retries.

    The semaphore is held per attempt, not across the backoff (tenacity decorates a function that takes the
    semaphore inside, the usual way the two are combined): a call sleeping before its retry frees its slot."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        *,
        concurrency: int = SEED_CONCURRENCY,
        attempts: int = SEED_ATTEMPTS,
        max_wait_s: float = SEED_MAX_WAIT_S,
    ) -> None:
        self.client = client
        self.semaphore = asyncio.Semaphore(concurrency)
        self.attempts = attempts
        self.max_wait_s = max_wait_s
        self.semaphore_wait_s: list[float] = []  # per attempt: time spent waiting for a slot (queueing)

    async def create(self, **kwargs: Any) -> Any:
        retrying = AsyncRetrying(
            retry=retry_if_exception(seed_retryable),
            wait=wait_random_exponential(multiplier=1, max=self.max_wait_s),
            stop=stop_after_attempt(self.attempts),
            reraise=True,  # the last error itself, as the seed's callers see it (not tenacity's RetryError)
        )
        async for attempt in retrying:
            with attempt:
                queued = time.monotonic()
                async with self.semaphore:
                    self.semaphore_wait_s.append(time.monotonic() - queued)
                    return await self.client.messages.create(**kwargs)
        raise AssertionError("unreachable: tenacity reraises the last error")
