"""Which LLM failures are transient, which count against the provider, and how long to wait.

The policy in one place: our tenacity loop is the only layer that retries LLM calls (the SDK runs with
max_retries=0; the gateway's LLM egress, when configured, queues and forwards calls but never retries them)."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

import aiohttp
import anthropic
import httpx2

# Statuses retrying cannot fix: the request itself is wrong or not allowed.
NEVER_RETRY = frozenset({400, 401, 403, 404, 413, 422})
# The error type in the body of the gateway egress's own 503 when its queue is full (gateway/envoy.yaml.j2).
EGRESS_OVERLOADED = "egress_overloaded"


class TruncatedStream(Exception):
    """A stream ended without message_stop: the SDK returns a message with stop_reason=None."""


@dataclass(frozen=True)
class Failure:
    """What one failed attempt means for the retry loop and the breaker."""

    transient: bool
    provider_fault: bool  # counts toward opening the breaker
    rate_limited: bool
    retry_after_s: float | None
    kind: str  # a short label for metrics and logs: "429", "529", "connection", "stream_cut", ...


def _header_retry_after(headers: httpx2.Headers | None) -> float | None:
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        return max(0.0, email.utils.mktime_tz(parsed) - time.time()) if parsed else None


def _is_cut(exc: BaseException | None) -> bool:
    """A body cut short: httpx2's read and protocol errors (the aiohttp transport maps ClientPayloadError to
    httpx2.ReadError), or what that transport leaves unmapped (a payload error, a server that hung up)."""
    if isinstance(exc, httpx2.ReadError | httpx2.RemoteProtocolError):
        return True
    return isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError)


def classify(exc: BaseException) -> Failure | None:
    """None: not an LLM transport/provider failure at all (a bug or cancellation: never retried)."""
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        headers = exc.response.headers if exc.response is not None else None
        should = headers.get("x-should-retry") if headers is not None else None
        retry_after = _header_retry_after(headers)
        if status == 200:
            # An SSE `error` event after HTTP 200 (e.g. overloaded_error mid-stream).
            return Failure(True, True, False, None, f"stream_error:{exc.type or 'unknown'}")
        if status == 503 and exc.type == EGRESS_OVERLOADED:
            # The mesh's own egress queue overflowed (Envoy, x-envoy-overloaded): our back-pressure, not the
            # provider's fault, so it neither opens the breaker nor lowers the adaptive limit; retried after backoff.
            return Failure(True, False, False, retry_after, EGRESS_OVERLOADED)
        rate_limited = status == 429
        provider_fault = status >= 500
        transient = rate_limited or provider_fault or status in (408, 409)
        if status in NEVER_RETRY:
            transient = False
        # The provider's explicit word wins over our table, except that we never retry a bad request.
        if should == "true" and status not in NEVER_RETRY:
            transient = True
        elif should == "false":
            transient = False
        return Failure(transient, provider_fault, rate_limited, retry_after, str(status))
    if isinstance(exc, anthropic.APITimeoutError):
        return Failure(True, True, False, None, "timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        # anthropic >= 2.17 wraps an error raised while a response body is read (a stream cut mid-way) in
        # APIConnectionError too; its cause tells a cut from a connection that never opened.
        cut = _is_cut(exc.__cause__)
        return Failure(True, True, False, None, "stream_cut" if cut else "connection")
    if _is_cut(exc):
        # Older SDKs let a connection cut mid-stream surface raw, not as an anthropic.APIError.
        return Failure(True, True, False, None, "stream_cut")
    if isinstance(exc, httpx2.TransportError) or (
        isinstance(exc, aiohttp.ClientError) and not isinstance(exc, TimeoutError)
    ):
        return Failure(True, True, False, None, "connection")
    if isinstance(exc, TruncatedStream):
        return Failure(True, True, False, None, "stream_truncated")
    if isinstance(exc, TimeoutError):
        return Failure(True, True, False, None, "timeout")
    return None
