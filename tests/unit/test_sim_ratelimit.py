"""The simulator's per-key token buckets (rpm, itpm, otpm), driven by the real `anthropic` SDK over a socket:
which bucket a 429 names, its retry-after, and the `anthropic-ratelimit-*` headers on every response."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import anthropic
import pytest

from agentmesh.testing.sim import start_sim

MODEL = "claude-haiku-4-5"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
KINDS = ("requests", "input-tokens", "output-tokens", "tokens")


@pytest.fixture(scope="module")
async def sim_url() -> AsyncIterator[str]:
    runner, port = await start_sim("127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture(scope="module")
async def http(sim_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sim_url) as session:
        yield session


@pytest.fixture(scope="module")
async def client(sim_url: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    sdk = anthropic.AsyncAnthropic(base_url=sim_url, api_key="key-a", max_retries=0)
    yield sdk
    await sdk.close()


@pytest.fixture(autouse=True)
async def clean(http: aiohttp.ClientSession) -> None:
    async with http.post("/_sim/reset?faults=1") as resp:
        assert resp.status == 200


async def put_faults(http: aiohttp.ClientSession, **faults: Any) -> dict[str, Any]:
    async with http.put("/_sim/faults", json=faults) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def stats(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/_sim/stats") as resp:
        return await resp.json()


async def raw_call(client: anthropic.AsyncAnthropic, *, max_tokens: int = 400, stream: bool = False) -> Any:
    return await client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=max_tokens,
        messages=[{"role": "user", "content": "Compare two payment providers and recommend one"}],
        stream=stream,
    )


async def rejected(client: anthropic.AsyncAnthropic, **kwargs: Any) -> anthropic.RateLimitError:
    with pytest.raises(anthropic.RateLimitError) as caught:
        await raw_call(client, **kwargs)
    return caught.value


def reset_in_s(value: str) -> float:
    assert RFC3339.fullmatch(value), value
    return (datetime.fromisoformat(value.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()


async def test_limits_are_set_read_back_and_turned_off(http: aiohttp.ClientSession) -> None:
    shown = await put_faults(http, rpm=3000, itpm=None, otpm=0)
    assert (shown["rpm"], shown["itpm"], shown["otpm"]) == (3000, None, None)
    async with http.get("/_sim/faults") as resp:
        assert (await resp.json())["rpm"] == 3000
    for bad in ({"rpm": -1}, {"itpm": 1.5}, {"otpm": "10"}, {"rate_window_s": 0}):
        async with http.put("/_sim/faults", json=bad) as resp:
            assert resp.status == 400, bad


async def test_no_headers_while_every_limit_is_off(client: anthropic.AsyncAnthropic) -> None:
    raw = await raw_call(client)
    assert not [name for name in raw.headers if name.startswith("anthropic-ratelimit-")]


async def test_rpm_bucket_names_itself_and_says_when_to_retry(
    client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession
) -> None:
    # 60 RPM in a 3 s window: 3 requests fit, then one refills every second.
    await put_faults(http, rpm=60, rate_window_s=3)
    remaining = []
    for _ in range(3):
        raw = await raw_call(client)
        remaining.append(int(raw.headers["anthropic-ratelimit-requests-remaining"]))
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "60"
    assert remaining == [2, 1, 0]
    error = await rejected(client)
    assert "60 requests per minute" in error.message
    assert error.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert error.response.headers["retry-after"] == "1"
    assert "retry-after-ms" not in error.response.headers
    assert error.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert 0 < reset_in_s(error.response.headers["anthropic-ratelimit-requests-reset"]) <= 4
    assert (await stats(http))["rate_limited_by_bucket"] == {"requests": 1}
    await asyncio.sleep(1.05)  # what retry-after said: one request has refilled
    await raw_call(client)


async def test_buckets_are_per_api_key(
    sim_url: str, client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession
) -> None:
    await put_faults(http, rpm=60, rate_window_s=1)
    await raw_call(client)
    await rejected(client)
    async with anthropic.AsyncAnthropic(base_url=sim_url, api_key="key-b", max_retries=0) as other:
        raw = await raw_call(other)
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "0"  # its own bucket, now spent too


async def test_itpm_charges_input_tokens(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    first = await raw_call(client)
    used = (await first.parse()).usage.input_tokens
    # Room for two prompts of this size, refilled at one token a second (so the counts hold on a busy machine).
    await put_faults(http, itpm=60, rate_window_s=2 * used)
    raw = await raw_call(client)
    assert int(raw.headers["anthropic-ratelimit-input-tokens-remaining"]) == used
    assert raw.headers["anthropic-ratelimit-input-tokens-limit"] == "60"
    assert raw.headers["anthropic-ratelimit-tokens-limit"] == "60"  # the only token bucket is the tightest
    await raw_call(client)
    error = await rejected(client)
    assert "60 input tokens per minute" in error.message
    # The whole seconds until `used` tokens have refilled at one a second, less what refilled since.
    assert int(error.response.headers["retry-after"]) in (used - 1, used)


async def test_otpm_estimates_from_max_tokens_and_settles_to_the_output(
    client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession
) -> None:
    await put_faults(http, otpm=60, rate_window_s=100)  # capacity 100 output tokens, one more a second
    raw = await raw_call(client, max_tokens=100)
    output = (await raw.parse()).usage.output_tokens
    assert output < 100
    # Settled at the end: only the actual output stays charged, not the 100 estimated.
    assert int(raw.headers["anthropic-ratelimit-output-tokens-remaining"]) == 100 - output
    # max_tokens above what is left is refused before any work, though the answer would be short.
    error = await rejected(client, max_tokens=100)
    assert "60 output tokens per minute" in error.message
    assert int(error.response.headers["retry-after"]) in (output - 1, output)  # until 100 are back
    assert (await stats(http))["rate_limited_by_bucket"] == {"output-tokens": 1}


async def test_tokens_headers_repeat_the_tighter_bucket(
    client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession
) -> None:
    await put_faults(http, rpm=1000, itpm=100_000, otpm=1000)
    raw = await raw_call(client, max_tokens=400)
    headers = raw.headers
    for kind in KINDS:
        for name in ("limit", "remaining", "reset"):
            assert f"anthropic-ratelimit-{kind}-{name}" in headers, (kind, name)
        assert RFC3339.fullmatch(headers[f"anthropic-ratelimit-{kind}-reset"])
    # Output: 1000 - the answer's tokens is a smaller share of its limit than the input bucket's.
    assert headers["anthropic-ratelimit-tokens-limit"] == "1000"
    assert headers["anthropic-ratelimit-tokens-remaining"] == headers["anthropic-ratelimit-output-tokens-remaining"]


async def test_headers_on_streams_and_errors(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, rpm=60)  # refills one a second: the counts below hold on a busy machine
    raw = await raw_call(client, stream=True)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "59"
    await raw.parse()
    await put_faults(http, rpm=60, error_rate=1.0)
    with pytest.raises(anthropic.InternalServerError) as caught:
        await raw_call(client)
    assert caught.value.response.headers["anthropic-ratelimit-requests-limit"] == "60"
    assert caught.value.response.headers["anthropic-ratelimit-requests-remaining"] == "58"


async def test_concurrency_mode_stays(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, max_concurrency=0, rpm=3000, retry_after_s=2)
    error = await rejected(client)
    assert "concurrent" in error.message
    assert error.response.headers["retry-after"] == "2"
    assert (await stats(http))["rate_limited_by_bucket"] == {"concurrency": 1}
