"""The simulator's control plane from async tests. The simulator runs on the test's own event loop there, so
these calls must not block it (a urllib call would deadlock)."""

from __future__ import annotations

from typing import Any

import aiohttp


async def put_faults(sim: str, **faults: Any) -> None:
    async with aiohttp.ClientSession() as http, http.put(f"{sim}/_sim/faults", json=faults) as resp:
        assert resp.status == 200, await resp.text()


async def sim_stats(sim: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{sim}/_sim/stats") as resp:
        return await resp.json()
