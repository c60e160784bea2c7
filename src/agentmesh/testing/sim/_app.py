"""The simulator's aiohttp app: the Messages API on the wire, a control plane for faults, and counters.

All state lives in one `SimState` stored on the app, so two apps in one process never share anything.
The event loop is single-threaded, so the counters need no locks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import secrets
import signal
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agentmesh.testing.sim._faults import FaultError, Faults, parse_faults
from agentmesh.testing.sim._limits import Admission, RateLimits, Refusal
from agentmesh.testing.sim._responder import (
    Answer,
    Block,
    answer_request,
    classify,
    count_input_tokens,
    fit_max_tokens,
)

__all__ = ["create_app", "serve_sim", "start_sim"]

_HANG_POLL_S = 0.05
_DELTA_CHARS = 24  # text per content_block_delta; keeps ~10-20 events for a typical answer
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {
    429: "Number of concurrent connections has exceeded your rate limit (simulated).",
    500: "Internal server error (simulated).",
    503: "Service unavailable (simulated).",
    529: "Overloaded (simulated).",
}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# --- state --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Stats:
    """Counters for `GET /_sim/stats`."""

    requests_total: int = 0
    responses_by_status: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    in_flight_max: int = 0
    input_tokens_total: int = 0
    output_tokens_total: int = 0
    requests_by_kind: Counter[str] = field(default_factory=Counter)
    retried_requests_total: int = 0
    streams_total: int = 0
    stream_faults_total: int = 0
    hung_total: int = 0
    rate_limited_by_bucket: Counter[str] = field(default_factory=Counter)
    """429s by cause: "concurrency", "requests", "input-tokens" or "output-tokens"."""

    def reset(self) -> None:
        # in_flight is live, not a counter: requests still running will decrement it.
        in_flight = self.in_flight
        for f in dataclasses.fields(self):
            setattr(self, f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        self.in_flight = self.in_flight_max = in_flight

    def to_json(self) -> dict[str, Any]:
        return {
            f.name: (dict(v) if isinstance(v := getattr(self, f.name), Counter) else v)
            for f in dataclasses.fields(self)
        }


_RECENT_REQUESTS = 200


@dataclass(slots=True)
class SimState:
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_RECENT_REQUESTS))
    """The last requests' bodies (`GET /_sim/requests`): what the model was shown, for tests that must prove
    what never reached it."""
    rng: random.Random = field(default_factory=random.Random)
    limits: RateLimits = field(default_factory=RateLimits)
    closing: bool = False
    """Set on shutdown so hung requests let go."""


_STATE = web.AppKey("agentmesh_sim_state", SimState)


# --- responses ----------------------------------------------------------------------------------


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _ratelimit_headers(state: SimState, faults: Faults, key: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    # A concurrency cap says nothing in the headers: the real API publishes no concurrency limit, and its
    # requests-* headers describe the per-minute bucket only. A client learns the cap from 429s alone.
    if state.limits.on:
        headers.update(state.limits.headers(key))  # with rpm on, requests-* describe the RPM bucket
    return headers


def _api_key(request: web.Request) -> str:
    """Buckets are per API key: the 2.x SDK sends a bearer token, older ones x-api-key."""
    key = request.headers.get("x-api-key")
    if key is None:
        auth = request.headers.get("authorization", "")
        key = auth[7:] if auth[:7].lower() == "bearer " else auth
    return key


def _error(
    state: SimState,
    faults: Faults,
    rid: str,
    status: int,
    message: str | None = None,
    *,
    key: str = "",
    refusal: Refusal | None = None,
) -> web.Response:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    text = (
        refusal.message if refusal is not None else message or _ERROR_MESSAGES.get(status, f"Simulated error {status}.")
    )
    headers = {"request-id": rid, **_ratelimit_headers(state, faults, key)}
    if refusal is not None:
        # As the real API: whole seconds until the short bucket holds what the request costs, no retry-after-ms.
        headers["retry-after"] = str(refusal.retry_after_s)
        state.stats.rate_limited_by_bucket[refusal.kind] += 1
    elif status == 429:
        headers["retry-after"] = str(math.ceil(faults.retry_after_s))
        headers["retry-after-ms"] = str(round(faults.retry_after_s * 1000))
        state.stats.rate_limited_by_bucket["concurrency"] += 1
    if faults.should_retry is not None and status != 400:
        headers["x-should-retry"] = "true" if faults.should_retry else "false"
    state.stats.responses_by_status[str(status)] += 1
    body = {"type": "error", "error": {"type": kind, "message": text}, "request_id": rid}
    return web.Response(status=status, body=_dumps(body), content_type="application/json", headers=headers)


def _ok(state: SimState, headers: dict[str, str], body: Any) -> web.Response:
    state.stats.responses_by_status["200"] += 1
    return web.Response(body=_dumps(body), content_type="application/json", headers=headers)


# --- request validation -------------------------------------------------------------------------


def _validate(body: Any, *, count_only: bool) -> str | None:
    """The first problem the real API would name, in its wording, or None."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    model = body.get("model")
    if model is None:
        return "model: Field required"
    if not isinstance(model, str) or not model.strip():
        return "model: Input should be a non-empty string"
    if not count_only:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            return "max_tokens: Field required"
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            return "max_tokens: Input should be a valid integer"
        if max_tokens < 1:
            return "max_tokens: Input should be greater than or equal to 1"
        if "stream" in body and not isinstance(body["stream"], bool):
            return "stream: Input should be a valid boolean"
    messages = body.get("messages")
    if messages is None:
        return "messages: Field required"
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if content is None:
            return f"messages.{i}.content: Field required"
        if isinstance(content, list):
            if any(not isinstance(b, dict) or not isinstance(b.get("type"), str) for b in content):
                return f"messages.{i}.content: each content block must be an object with a type"
        elif not isinstance(content, str):
            return f"messages.{i}.content: Input should be a valid string or list of content blocks"
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a valid string or list of text blocks"
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                return f"tools.{i}.name: Field required"
    return None


# --- streaming ----------------------------------------------------------------------------------


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _content_events(message: dict[str, Any], blocks: tuple[Block, ...]) -> list[bytes]:
    """message_start .. the last content_block_stop: everything before message_delta."""
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**message["usage"], "output_tokens": 1}
    events = [_event("message_start", {"type": "message_start", "message": start}), _event("ping", {"type": "ping"})]
    for index, block in enumerate(blocks):
        if block["type"] == "tool_use":
            head = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _pieces(json.dumps(block["input"]), _DELTA_CHARS)
            ]
        else:
            head = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], _DELTA_CHARS)]
        events.append(
            _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": head})
        )
        events.extend(
            _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas
        )
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


async def _stream(
    request: web.Request, state: SimState, faults: Faults, headers: dict[str, str], message: dict[str, Any]
) -> web.StreamResponse:
    stats = state.stats
    fault = faults.stream_fault
    if fault is not None and faults.stream_fault_rate < 1.0 and state.rng.random() >= faults.stream_fault_rate:
        fault = None
    content = _content_events(message, tuple(message["content"]))
    tail = [
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        ),
        _event("message_stop", {"type": "message_stop"}),
    ]
    if fault in ("error_event", "cut"):
        # Fail mid-way: after message_start, ping and the first half of the content.
        content = content[: max(3, len(content) // 2)]
        tail = []
    elif fault == "truncate":
        tail = []
    if fault == "error_event":
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (simulated)."}}
        tail = [_event("error", {**error, "request_id": headers["request-id"]})]

    response = web.StreamResponse(
        headers={**headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    )
    stats.responses_by_status["200"] += 1
    stats.streams_total += 1
    if fault is not None:
        stats.stream_faults_total += 1
    await response.prepare(request)
    for chunk in content:
        await response.write(chunk)
    if fault == "cut":
        # Close the socket without the final chunk: the client sees an incomplete chunked body.
        if request.transport is not None:
            request.transport.close()
        return response
    for chunk in tail:
        await response.write(chunk)
    await response.write_eof()
    return response


# --- the Messages API ---------------------------------------------------------------------------


async def _hang(request: web.Request, state: SimState, faults: Faults, rid: str, key: str) -> web.StreamResponse:
    state.stats.hung_total += 1
    # Poll rather than rely on handler cancellation, which depends on how the app is run.
    while not state.closing:
        transport = request.transport
        if transport is None or transport.is_closing():
            return web.Response(status=499)  # nobody is listening; never counted
        await asyncio.sleep(_HANG_POLL_S)
    return _error(state, faults, rid, 503, "Simulator shutting down.", key=key)


def _retry_count(request: web.Request) -> int:
    try:
        return int(request.headers.get("x-stainless-retry-count", "0"))
    except ValueError:
        return 0


async def _api(request: web.Request, *, count_only: bool) -> web.StreamResponse:
    state = request.app[_STATE]
    stats = state.stats
    faults = state.faults  # one snapshot per request: a PUT mid-request does not change its fate
    stats.requests_total += 1
    if _retry_count(request) > 0:
        stats.retried_requests_total += 1
    rid = _new_id("req_")
    key = _api_key(request)
    if faults.outage is not None:
        return _error(state, faults, rid, faults.outage, key=key)
    if faults.max_concurrency is not None and stats.in_flight >= faults.max_concurrency:
        return _error(state, faults, rid, 429, key=key)
    stats.in_flight += 1
    stats.in_flight_max = max(stats.in_flight_max, stats.in_flight)
    admission: Admission | None = None
    try:
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return _error(state, faults, rid, 400, "Request body is not valid JSON.", key=key)
        problem = _validate(body, count_only=count_only)
        if problem is not None:
            return _error(state, faults, rid, 400, problem, key=key)
        input_tokens = count_input_tokens(body)
        if state.limits.on and not count_only:
            # Charged before any work, as the real API: max_tokens stands for the output until it is known.
            verdict = state.limits.admit(key, input_tokens=input_tokens, max_tokens=body["max_tokens"])
            if isinstance(verdict, Refusal):
                return _error(state, faults, rid, 429, key=key, refusal=verdict)
            admission = verdict
        return await _admitted(request, state, faults, rid, key, body, input_tokens, admission, count_only=count_only)
    finally:
        stats.in_flight -= 1
        if admission is not None:
            admission.settle(0)  # failed or cut short: nothing was output (a no-op once settled)


async def _admitted(
    request: web.Request,
    state: SimState,
    faults: Faults,
    rid: str,
    key: str,
    body: dict[str, Any],
    input_tokens: int,
    admission: Admission | None,
    *,
    count_only: bool,
) -> web.StreamResponse:
    stats = state.stats
    kind = "count_tokens" if count_only else classify(body)
    stats.requests_by_kind[kind] += 1
    state.recent.append({"kind": kind, "system": body.get("system"), "messages": body.get("messages")})
    if faults.hang:
        return await _hang(request, state, faults, rid, key)
    delay = faults.sample_latency_s(state.rng)
    if delay > 0:
        await asyncio.sleep(delay)
    if faults.error_rate > 0 and state.rng.random() < faults.error_rate:
        return _error(state, faults, rid, 500, key=key)
    if count_only:
        headers = {"request-id": rid, **_ratelimit_headers(state, faults, key)}
        return _ok(state, headers, {"input_tokens": input_tokens})

    answer: Answer = answer_request(
        body,
        tool_id=_new_id("toolu_"),
        tool_fault=faults.tool_fault,
        invalid_route=faults.route_fault == "invalid",
        reply_suffix=faults.reply_suffix,
    )
    blocks, stop_reason, output_tokens = fit_max_tokens(answer, body["max_tokens"])
    if admission is not None:
        # Settled before the headers are read, so they show the refund of the estimate's unused part.
        admission.settle(output_tokens)
    headers = {"request-id": rid, **_ratelimit_headers(state, faults, key)}
    message = {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": list(blocks),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    stats.input_tokens_total += input_tokens
    stats.output_tokens_total += output_tokens
    if body.get("stream"):
        return await _stream(request, state, faults, headers, message)
    return _ok(state, headers, message)


async def _messages(request: web.Request) -> web.StreamResponse:
    return await _api(request, count_only=False)


async def _count_tokens(request: web.Request) -> web.StreamResponse:
    return await _api(request, count_only=True)


async def _not_found(request: web.Request) -> web.Response:
    body = {"type": "error", "error": {"type": "not_found_error", "message": f"Not found: {request.path}"}}
    return web.Response(status=404, body=_dumps(body), content_type="application/json")


# --- control plane ------------------------------------------------------------------------------


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_dumps(data), content_type="application/json")


async def _get_faults(request: web.Request) -> web.Response:
    return _json(request.app[_STATE].faults.to_json())


async def _put_faults(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        changes = parse_faults(json.loads(await request.read()))
    except (ValueError, UnicodeDecodeError) as exc:
        message = str(exc) if isinstance(exc, FaultError) else "body is not valid JSON"
        return _json({"error": message}, status=400)
    if "seed" in changes:
        state.rng.seed(changes["seed"])
    state.faults = dataclasses.replace(state.faults, **changes)
    state.limits.configure(state.faults)
    return _json(state.faults.to_json())


async def _get_stats(request: web.Request) -> web.Response:
    return _json(request.app[_STATE].stats.to_json())


async def _get_requests(request: web.Request) -> web.Response:
    """The most recent request bodies (system and messages), oldest first; `?limit=N` keeps the last N."""
    recent = list(request.app[_STATE].recent)
    limit = request.query.get("limit", "")
    if limit.isdigit():
        recent = recent[-int(limit) :] if int(limit) else []
    return _json({"requests": recent})


async def _reset(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    state.stats.reset()
    state.recent.clear()
    state.limits.clear()  # every bucket starts full again
    if request.query.get("faults", "").lower() in ("1", "true", "yes"):
        state.faults = Faults()
        state.rng = random.Random()
        state.limits.configure(state.faults)
    return _json(state.stats.to_json())


async def _on_shutdown(app: web.Application) -> None:
    app[_STATE].closing = True


# --- assembly -----------------------------------------------------------------------------------


def create_app() -> web.Application:
    """A fresh simulator with its own state (no faults, zero counters)."""
    app = web.Application()
    app[_STATE] = SimState()
    app.on_shutdown.append(_on_shutdown)
    app.router.add_post("/v1/messages", _messages)
    app.router.add_post("/v1/messages/count_tokens", _count_tokens)
    app.router.add_get("/_sim/faults", _get_faults)
    app.router.add_put("/_sim/faults", _put_faults)
    app.router.add_post("/_sim/reset", _reset)
    app.router.add_get("/_sim/stats", _get_stats)
    app.router.add_get("/_sim/requests", _get_requests)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


async def start_sim(host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve a new simulator on host:port (0: any free port). Returns the runner and the bound port."""
    # handler_cancellation: a client that gives up frees its in-flight slot at once, as on a real server.
    runner = web.AppRunner(create_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


def _url(host: str, port: int) -> str:
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve_sim(host: str, port: int, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Run a simulator until SIGTERM or SIGINT; on_ready gets its URL once it listens."""
    runner, bound = await start_sim(host, port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
                handled.append(sig)
            except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
                pass
        if on_ready is not None:
            on_ready(_url(host, bound))
        await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
