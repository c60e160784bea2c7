"""A non-streaming `POST /v1/messages` on the SDK's own transport (aiohttp), without the SDK's request pipeline.

Measured side by side against our simulator (`agentmesh bench llm-client`, one process, 20 calls in flight): the
SDK's `messages.with_raw_response.create` costs about 0.43 ms of CPU per call, and the same request with the same
headers on the same aiohttp transport about 0.09 ms. The difference is the SDK's per-request machinery (params
transform, options model, httpx2 request and URL objects, the httpx2 -> aiohttp adapter, the response wrapper),
and at five calls a run it was the largest single cost left in the mesh's CPU per call (issue 16).

The SDK stays the source of truth for everything but the happy path's plumbing:
- the headers are the SDK's own (`default_headers`: its auth, `anthropic-version`, user agent), read once;
- a non-2xx answer becomes the SDK's own exception (`_make_status_error_from_response`: RateLimitError,
  OverloadedError, ... with the body and headers), so retries, the breaker and error mapping see what they saw;
- a connection failure or a read timeout becomes `APIConnectionError` / `APITimeoutError`, as the SDK raises;
- streaming, and calls large enough for the SDK's own checks (`max_tokens` above `SDK_ABOVE_TOKENS`), still go
  through the SDK.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import aiohttp
import anthropic
import httpx2

__all__ = ["SDK_ABOVE_TOKENS", "MessagesWire"]

SDK_ABOVE_TOKENS = 4096
"""Calls with a larger `max_tokens` go through the SDK, which refuses non-streaming calls it expects to run
over ten minutes (a check that depends on the model)."""


class MessagesWire:
    """`create(body)`: the Messages API's JSON answer and its headers, or the SDK's exception for the failure."""

    def __init__(self, sdk: anthropic.AsyncAnthropic, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        self._sdk = sdk
        self._url = str(sdk.base_url).rstrip("/") + "/v1/messages"
        # What the SDK sends on every request (auth, version, user agent); it adds its retry count per attempt.
        self._headers = {k: v for k, v in sdk.default_headers.items() if isinstance(v, str)}
        self._headers["x-stainless-retry-count"] = "0"
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        # The proxy the environment names for this URL (HTTPS_PROXY, NO_PROXY), as httpx2 finds it for the SDK:
        # looked up once. aiohttp's own trust_env would also look for a netrc file on every request, in a thread.
        url = urllib.parse.urlsplit(self._url)
        proxy = urllib.request.getproxies().get(url.scheme)
        self._proxy = None if proxy is None or urllib.request.proxy_bypass(url.hostname or "") else proxy
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on the running loop, on the first call, as the SDK's aiohttp client is, with its limits: 1,000
        # connections, idle ones kept 5 s, and its TLS context (which honours SSL_CERT_FILE and SSL_CERT_DIR).
        if self._session is None or self._session.closed:
            limits = anthropic.DEFAULT_CONNECTION_LIMITS
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=limits.max_connections or 0,
                    keepalive_timeout=limits.keepalive_expiry,
                    ssl=httpx2.create_ssl_context(trust_env=True),
                ),
                timeout=self._timeout,
                headers=self._headers,  # the same on every request: the session's defaults
            )
        return self._session

    async def create(self, body: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]:
        session = self._open()
        try:
            async with session.post(self._url, data=json.dumps(body), proxy=self._proxy) as resp:
                content = await resp.read()
                status, headers = resp.status, resp.headers
        except aiohttp.ServerTimeoutError as exc:  # a read or connect timeout of this request (not the caller's)
            raise anthropic.APITimeoutError(request=self._request()) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise anthropic.APIConnectionError(message=str(exc) or type(exc).__name__, request=self._request()) from exc
        if 200 <= status < 300:
            try:
                return json.loads(content), headers
            except ValueError as exc:
                raise anthropic.APIResponseValidationError(
                    response=self._response(status, headers, content), body=content.decode(errors="replace")
                ) from exc
        raise self._sdk._make_status_error_from_response(self._response(status, headers, content))

    def _request(self) -> httpx2.Request:
        return httpx2.Request("POST", self._url)

    def _response(self, status: int, headers: Mapping[str, str], content: bytes) -> httpx2.Response:
        # The SDK's exceptions carry an httpx2 response: built only for a failure, so its cost is off the hot path.
        return httpx2.Response(status, headers=list(headers.items()), content=content, request=self._request())

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
