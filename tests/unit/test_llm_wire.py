"""The direct wire for non-streaming calls (llm/_wire.py) against the SDK it stands in for: the same request on
the wire, and the SDK's own exceptions for each failure, so nothing above it can tell the two apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from aiohttp import web

from agentmesh.llm._wire import MessagesWire

BODY = {
    "model": "claude-haiku-4-5",
    "system": "You are a researcher.",
    "messages": [{"role": "user", "content": "Héllo, wörld"}],
    "max_tokens": 64,
    "tools": [{"name": "t", "description": "d", "input_schema": {"type": "object", "properties": {}}}],
}
ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 1},
}
# Headers the SDK computes per request (its timeout hint) or that depend on the body's encoding.
PER_REQUEST = {"x-stainless-read-timeout", "x-stainless-timeout", "content-length", "host"}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], Any]] = []
        self.status = 200
        self.headers: dict[str, str] = {}
        self.body: Any = ANSWER
        self.delay_s = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)
        self.seen.append((request.path, {k.lower(): v for k, v in request.headers.items()}, await request.json()))
        return web.json_response(self.body, status=self.status, headers=self.headers)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Recorder]]:
    rec = Recorder()
    app = web.Application()
    app.router.add_post("/v1/messages", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", rec
    finally:
        await runner.cleanup()


def sdk(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="sk-test", base_url=url, max_retries=0, http_client=anthropic.DefaultAioHttpClient()
    )


async def test_the_wire_sends_what_the_sdk_sends(server: tuple[str, Recorder]) -> None:
    url, rec = server
    client = sdk(url)
    wire = MessagesWire(client, connect_timeout_s=5, read_timeout_s=30)
    try:
        await client.messages.create(**BODY)  # type: ignore[call-overload]
        answer, headers = await wire.create(BODY)
    finally:
        await wire.aclose()
        await client.close()
    (path_sdk, h_sdk, body_sdk), (path_wire, h_wire, body_wire) = rec.seen
    assert path_sdk == path_wire == "/v1/messages"
    assert body_wire == body_sdk == BODY
    # Transport-level: aiohttp and httpx2 each offer their own decoders; HTTP/1.1 keeps alive unless told not to.
    drop = PER_REQUEST | {"accept-encoding", "connection"}
    assert {k: v for k, v in h_wire.items() if k not in drop} == {k: v for k, v in h_sdk.items() if k not in drop}
    assert h_wire["authorization"] == "Bearer sk-test" and h_wire["anthropic-version"]
    assert answer == ANSWER and headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("status", "error_type", "exc"),
    [
        (429, "rate_limit_error", anthropic.RateLimitError),
        (529, "overloaded_error", anthropic.InternalServerError),
        (400, "invalid_request_error", anthropic.BadRequestError),
        (401, "authentication_error", anthropic.AuthenticationError),
        (500, "api_error", anthropic.InternalServerError),
    ],
)
async def test_a_refusal_is_the_sdks_own_exception(
    server: tuple[str, Recorder], status: int, error_type: str, exc: type[Exception]
) -> None:
    url, rec = server
    rec.status, rec.headers = status, {"retry-after": "2", "request-id": "req_9"}
    rec.body = {"type": "error", "error": {"type": error_type, "message": "no"}}
    client = sdk(url)
    wire = MessagesWire(client, connect_timeout_s=5, read_timeout_s=30)
    try:
        with pytest.raises(exc) as from_sdk:
            await client.messages.create(**BODY)  # type: ignore[call-overload]
        with pytest.raises(exc) as from_wire:
            await wire.create(BODY)
    finally:
        await wire.aclose()
        await client.close()
    a, b = from_sdk.value, from_wire.value
    assert isinstance(a, anthropic.APIStatusError) and isinstance(b, anthropic.APIStatusError)
    assert type(a) is type(b) and a.status_code == b.status_code == status
    assert b.body == a.body and b.response.headers["retry-after"] == "2" and b.request_id == "req_9"
    assert str(b) == str(a)


async def test_no_server_is_a_connection_error() -> None:
    client = sdk("http://127.0.0.1:9")  # discard port: nothing listens
    wire = MessagesWire(client, connect_timeout_s=1, read_timeout_s=1)
    try:
        with pytest.raises(anthropic.APIConnectionError):
            await wire.create(BODY)
    finally:
        await wire.aclose()
        await client.close()


async def test_a_server_that_never_answers_is_a_timeout(server: tuple[str, Recorder]) -> None:
    url, rec = server
    rec.delay_s = 3.0
    wire = MessagesWire(sdk(url), connect_timeout_s=1, read_timeout_s=0.2)
    try:
        with pytest.raises(anthropic.APITimeoutError):
            await wire.create(BODY)
    finally:
        await wire.aclose()


def test_the_environments_proxy_applies_as_it_does_to_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert MessagesWire(sdk("https://api.anthropic.com"), connect_timeout_s=1, read_timeout_s=1)._proxy == (
        "http://proxy.internal:3128"
    )
    monkeypatch.setenv("no_proxy", "api.anthropic.com")
    assert MessagesWire(sdk("https://api.anthropic.com"), connect_timeout_s=1, read_timeout_s=1)._proxy is None
