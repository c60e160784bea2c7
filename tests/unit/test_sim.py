"""The simulator over a real socket, driven by the real `anthropic` SDK (it sends through httpx2, which
respx cannot intercept, and the point is to prove the SDK parses our wire format unchanged)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import pytest

import agentmesh.testing.sim
from agentmesh.testing.sim import serve_sim, start_sim

MODEL = "claude-haiku-4-5"
ROUTER_SYSTEM = "You are the supervisor. Pick the next agent. Reply with exactly one word: an agent name or FINISH."
ALLOWED = "researcher, analyst, executor, FINISH"
CALCULATOR = {
    "name": "calculator",
    "description": "Evaluate an arithmetic expression.",
    "input_schema": {
        "type": "object",
        "properties": {"expression": {"type": "string"}, "precision": {"type": "integer", "minimum": 0}},
        "required": ["expression"],
    },
}
CLOCK = {
    "name": "get_time",
    "description": "Current time in a timezone.",
    "input_schema": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
}
CONVERT = {
    "name": "convert_units",
    "description": "Convert a distance between units.",
    "input_schema": {
        "type": "object",
        "properties": {
            "value": {"type": "number"},
            "unit": {"type": "string", "enum": ["km", "mi"]},
            "round": {"type": "boolean"},
        },
        "required": ["value", "unit", "round"],
    },
}


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
    sdk = anthropic.AsyncAnthropic(base_url=sim_url, api_key="test", max_retries=0)
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


async def ask(
    client: anthropic.AsyncAnthropic, text: str, *, system: str = "", **kwargs: Any
) -> anthropic.types.Message:
    return await client.messages.create(
        model=MODEL,
        max_tokens=kwargs.pop("max_tokens", 400),
        system=system,
        messages=[{"role": "user", "content": text}],
        **kwargs,
    )


def only_text(message: anthropic.types.Message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def test_exports_are_pinned() -> None:
    assert agentmesh.testing.sim.__all__ == ["create_app", "serve_sim", "start_sim"]


# --- answers ------------------------------------------------------------------------------------


async def test_create_returns_a_message_the_sdk_parses(client: anthropic.AsyncAnthropic) -> None:
    raw = await client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=400,
        system="You are a research agent. Report findings.",
        messages=[{"role": "user", "content": "Compare two payment providers and recommend one"}],
    )
    message = await raw.parse()
    assert re.fullmatch(r"msg_[0-9a-f]{24}", message.id)
    assert raw.headers["request-id"].startswith("req_")
    assert message.model == MODEL and message.role == "assistant" and message.stop_reason == "end_turn"
    text = only_text(message)
    assert "payment" in text and 2 <= text.count(". ") + 1 <= 4
    usage = message.usage
    assert usage.input_tokens > 5 and usage.cache_read_input_tokens == 0 and usage.cache_creation_input_tokens == 0
    assert usage.output_tokens == -(-len(text) // 4)  # ceil(chars / 4)


async def test_stream_gives_the_same_answer(client: anthropic.AsyncAnthropic) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 400,
        "system": "You are an analyst. Recommend one option.",
        "messages": [{"role": "user", "content": "Should we pick Stripe or Adyen for subscriptions?"}],
    }
    plain = await client.messages.create(**kwargs)
    async with client.messages.stream(**kwargs) as stream:
        deltas = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(deltas) > 1
    assert only_text(final) == only_text(plain) == "".join(deltas)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens


async def test_answers_are_deterministic(client: anthropic.AsyncAnthropic) -> None:
    first = await ask(client, "Summarise the trade-offs of Postgres and MySQL", system="You are a research agent.")
    again = await ask(client, "Summarise the trade-offs of Postgres and MySQL", system="You are a research agent.")
    other = await ask(client, "Summarise the trade-offs of Redis and Memcached", system="You are a research agent.")
    assert only_text(first) == only_text(again)
    assert only_text(first) != only_text(other)


async def test_max_tokens_truncates(client: anthropic.AsyncAnthropic) -> None:
    message = await ask(client, "Describe the history of the printing press in detail", max_tokens=5)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    assert 0 < len(only_text(message)) <= 20


async def test_count_tokens_matches_usage(client: anthropic.AsyncAnthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is 6 * 7?"}]
    counted = await client.messages.count_tokens(model=MODEL, messages=messages, tools=[CALCULATOR])
    created = await client.messages.create(model=MODEL, max_tokens=100, messages=messages, tools=[CALCULATOR])
    assert counted.input_tokens == created.usage.input_tokens > 10


@pytest.mark.parametrize(
    ("request_text", "route"),
    [
        ("Compare two payment providers and recommend one", ["researcher", "analyst", "FINISH"]),
        ("Calculate 17*23 and explain", ["researcher", "analyst", "executor", "FINISH"]),
    ],
)
async def test_routing_walks_the_allowed_agents(
    client: anthropic.AsyncAnthropic, request_text: str, route: list[str]
) -> None:
    done: list[str] = []
    for expected in route:
        prompt = f"Request: {request_text}\nAllowed: {ALLOWED}\nDone: {', '.join(done) or '(none)'}"
        message = await ask(client, prompt, system=ROUTER_SYSTEM, max_tokens=5)
        assert only_text(message) == expected
        assert message.stop_reason == "end_turn"
        done.append(expected)


async def test_routing_accepts_an_empty_done_line(client: anthropic.AsyncAnthropic) -> None:
    system = [{"type": "text", "text": ROUTER_SYSTEM}]
    message = await ask(client, "Request: What time is it?\nAllowed: executor, FINISH\nDone:", system=system)  # type: ignore[arg-type]
    assert only_text(message) == "executor"


@pytest.mark.parametrize(
    ("text", "tool", "args"),
    [
        ("Calculate 17*23 and explain", "calculator", {"expression": "17*23"}),
        ("What time is it in Tokyo right now?", "get_time", {"timezone": "UTC"}),
        ("Convert 42 km to miles", "convert_units", {"value": 42.0, "unit": "km", "round": True}),
    ],
)
async def test_tool_use_fits_the_schema(
    client: anthropic.AsyncAnthropic, text: str, tool: str, args: dict[str, Any]
) -> None:
    message = await ask(client, text, tools=[CLOCK, CONVERT, CALCULATOR])
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    call = message.content[1]
    assert call.type == "tool_use" and re.fullmatch(r"toolu_[0-9a-f]{24}", call.id)
    assert call.name == tool and call.input == args


async def test_tool_choice_is_respected(client: anthropic.AsyncAnthropic) -> None:
    forced = await ask(
        client, "Calculate 2+3", tools=[CALCULATOR, CLOCK], tool_choice={"type": "tool", "name": "get_time"}
    )
    assert [b.type for b in forced.content] == ["tool_use"] and forced.content[0].name == "get_time"  # type: ignore[union-attr]
    declined = await ask(client, "Calculate 2+3", tools=[CALCULATOR], tool_choice={"type": "none"})
    assert declined.stop_reason == "end_turn" and [b.type for b in declined.content] == ["text"]


async def test_tool_result_is_summarised(client: anthropic.AsyncAnthropic) -> None:
    question: Any = {"role": "user", "content": "Calculate 17*23 and explain"}
    first = await client.messages.create(model=MODEL, max_tokens=200, messages=[question], tools=[CALCULATOR])
    call = first.content[1]
    assert call.type == "tool_use"
    follow_up = await client.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=[CALCULATOR],
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "391"}]},
        ],
    )
    assert follow_up.stop_reason == "end_turn"
    assert "calculator" in only_text(follow_up) and "391" in only_text(follow_up)


async def test_streamed_tool_use(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(
        model=MODEL,
        max_tokens=200,
        tools=[CALCULATOR],
        messages=[{"role": "user", "content": "What is (12 + 30) * 2?"}],
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[1].type == "tool_use" and final.content[1].input == {"expression": "(12 + 30) * 2"}


async def test_validation_errors_look_like_the_api(
    client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession
) -> None:
    bad: list[dict[str, Any]] = [
        {"max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]},
        {"max_tokens": 10, "messages": []},
        {"max_tokens": 10, "messages": [{"role": "system", "content": "hi"}]},
    ]
    for kwargs in bad:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(model=MODEL, **kwargs)
        body = caught.value.body
        assert isinstance(body, dict) and body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error" and body["request_id"].startswith("req_")
    async with http.post("/v1/messages", data=b"{not json", headers={"x-api-key": "k"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["type"] == "invalid_request_error"
    async with http.post(
        "/v1/messages", json={"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    ) as resp:
        assert resp.status == 400 and "model" in (await resp.json())["error"]["message"]
    async with http.get("/v1/nothing-here") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["type"] == "not_found_error"
    assert (await stats(http))["responses_by_status"] == {"400": 5}


# --- faults -------------------------------------------------------------------------------------


async def test_fault_settings_merge_and_validate(http: aiohttp.ClientSession) -> None:
    await put_faults(http, latency_ms={"p50": 5, "p99": 20}, error_rate=0.1)
    current = await put_faults(http, outage=529)
    assert current["latency_ms"] == {"p50": 5.0, "p99": 20.0}
    assert current["error_rate"] == 0.1 and current["outage"] == 529 and current["hang"] is False
    for body in (
        {"nonsense": 1},
        {"error_rate": 2},
        {"hang": "yes"},
        {"max_concurrency": 1.5},
        {"stream_fault": "boom"},
        [1],
    ):
        async with http.put("/_sim/faults", json=body) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]
    async with http.get("/_sim/faults") as resp:
        assert await resp.json() == current


async def test_latency_is_applied(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, latency_ms=200)
    started = time.perf_counter()
    await ask(client, "hello")
    assert time.perf_counter() - started >= 0.2


async def test_concurrency_limit_answers_429(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, max_concurrency=1, latency_ms=300, retry_after_s=2)
    slow = asyncio.create_task(
        client.messages.with_raw_response.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "first"}]
        )
    )
    await asyncio.sleep(0.1)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await ask(client, "second")
    headers = caught.value.response.headers
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "2000"
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    raw = await slow
    # It held the only slot. The headers say nothing of the cap (the real API publishes none): no -limit or
    # -reset, which a client would read as a per-minute bucket, and no -remaining.
    assert not [h for h in raw.headers if h.startswith("anthropic-ratelimit-")]
    counters = await stats(http)
    assert counters["responses_by_status"] == {"200": 1, "429": 1} and counters["in_flight_max"] == 1


async def test_outage(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, outage=529, should_retry=False)
    with pytest.raises(anthropic.OverloadedError) as caught:
        await ask(client, "hello")
    assert caught.value.response.headers["x-should-retry"] == "false"
    await put_faults(http, outage=500, should_retry=None)
    with pytest.raises(anthropic.InternalServerError) as caught_500:
        await ask(client, "hello")
    assert "x-should-retry" not in caught_500.value.response.headers
    assert caught_500.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_error_rate_is_seeded(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, error_rate=1.0)
    with pytest.raises(anthropic.InternalServerError):
        await ask(client, "hello")

    async def pattern() -> list[bool]:
        await put_faults(http, error_rate=0.5, seed=123)
        outcomes = []
        for _ in range(12):
            try:
                await ask(client, "hello")
                outcomes.append(True)
            except anthropic.InternalServerError:
                outcomes.append(False)
        return outcomes

    first = await pattern()
    assert first == await pattern() and any(first) and not all(first)


async def test_hang_until_the_client_gives_up(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, hang=True)
    with pytest.raises(anthropic.APITimeoutError):
        await client.with_options(timeout=0.5).messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hello"}]
        )
    for _ in range(40):  # the server notices the closed socket within ~50 ms
        counters = await stats(http)
        if counters["in_flight"] == 0:
            break
        await asyncio.sleep(0.05)
    assert counters["in_flight"] == 0 and counters["hung_total"] == 1 and counters["responses_by_status"] == {}


async def stream_once(client: anthropic.AsyncAnthropic) -> anthropic.types.Message:
    async with client.messages.stream(
        model=MODEL,
        max_tokens=300,
        messages=[{"role": "user", "content": "Explain how vaccines train the immune system"}],
    ) as stream:
        return await stream.get_final_message()


async def test_stream_error_event(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, stream_fault="error_event")
    with pytest.raises(anthropic.APIStatusError) as caught:
        await stream_once(client)
    assert caught.value.status_code == 200
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


async def test_stream_cut(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, stream_fault="cut")
    with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)):
        await stream_once(client)


async def test_stream_truncate(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, stream_fault="truncate")
    final = await stream_once(client)
    assert final.stop_reason is None and only_text(final)
    await put_faults(http, stream_fault_rate=0.0)
    assert (await stream_once(client)).stop_reason == "end_turn"
    counters = await stats(http)
    assert counters["streams_total"] == 2 and counters["stream_faults_total"] == 1
    assert counters["responses_by_status"] == {"200": 2}


async def test_tool_faults(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, tool_fault="invent")
    invented = (await ask(client, "Calculate 2+3", tools=[CALCULATOR])).content[1]
    assert invented.type == "tool_use" and invented.name == "delete_all_files"
    await put_faults(http, tool_fault="malformed")
    malformed = (await ask(client, "Calculate 2+3", tools=[CALCULATOR])).content[1]
    assert malformed.type == "tool_use" and malformed.name == "calculator" and "expression" not in malformed.input


async def test_route_fault(client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await put_faults(http, route_fault="invalid")
    message = await ask(client, f"Request: Compare two options\nAllowed: {ALLOWED}\nDone: (none)", system=ROUTER_SYSTEM)
    word = only_text(message)
    assert word == "banana" and word not in ALLOWED


# --- counters and lifecycle ---------------------------------------------------------------------


async def test_stats_and_reset(sim_url: str, client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession) -> None:
    await ask(client, "Compare two payment providers", system="You are a research agent.")
    await ask(client, f"Request: hi\nAllowed: {ALLOWED}\nDone:", system=ROUTER_SYSTEM)
    await ask(client, "Calculate 1+1", tools=[CALCULATOR])
    await put_faults(http, max_concurrency=0, retry_after_s=0.01)
    # The SDK's own retry (honouring retry-after-ms: 10) marks its second attempt with x-stainless-retry-count: 1.
    retrying = anthropic.AsyncAnthropic(base_url=sim_url, api_key="test", max_retries=1)
    with pytest.raises(anthropic.RateLimitError):
        await ask(retrying, "hello")
    await retrying.close()
    counters = await stats(http)
    assert counters["requests_total"] == 5 and counters["retried_requests_total"] == 1
    assert counters["responses_by_status"] == {"200": 3, "429": 2}
    assert counters["requests_by_kind"] == {"agent": 1, "route": 1, "tool": 1}
    assert counters["input_tokens_total"] > 0 and counters["output_tokens_total"] > 0
    assert counters["in_flight"] == 0 and counters["in_flight_max"] == 1

    async with http.post("/_sim/reset") as resp:
        assert (await resp.json())["requests_total"] == 0
    counters = await stats(http)
    assert counters["requests_total"] == counters["input_tokens_total"] == counters["in_flight_max"] == 0
    assert counters["responses_by_status"] == {} and counters["requests_by_kind"] == {}
    async with http.get("/_sim/faults") as resp:
        assert (await resp.json())["max_concurrency"] == 0  # faults survive a plain reset
    async with http.post("/_sim/reset?faults=1"), http.get("/_sim/faults") as resp:
        assert (await resp.json())["max_concurrency"] is None


async def test_serve_sim_until_sigterm() -> None:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_sim("127.0.0.1", 0, on_ready=ready.set_result))
    url = await asyncio.wait_for(ready, 5)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    async with aiohttp.ClientSession() as session, session.get(url + "/_sim/stats") as resp:
        assert resp.status == 200
    os.kill(os.getpid(), signal.SIGTERM)  # serve_sim installed its handler before calling on_ready
    await asyncio.wait_for(task, 5)
