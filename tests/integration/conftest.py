"""One real mesh (agentmesh up: simulator, five services, Envoy) per test module that asks for it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from tests.mesh import Mesh, start_mesh, stop_mesh

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own on the machine's Redis (skipped without one); its keys are deleted
    afterwards."""
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        await r.ping()
    except OSError as exc:
        await r.aclose()
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    name = f"agentmesh-test-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        keys = [k async for k in r.scan_iter(match=f"{name}*")]
        if keys:
            await r.delete(*keys)
        await r.aclose()


@pytest.fixture(scope="module")
def mesh(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = start_mesh(tmp_path_factory.mktemp("mesh"), database_url)
    try:
        yield m
    finally:
        code = stop_mesh(m.proc)
        assert code == 0, "agentmesh up did not stop cleanly:\n" + "\n".join(m.lines[-20:])


@pytest.fixture
def channel(mesh: Mesh) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(mesh.gateway) as ch:
        yield ch


@pytest.fixture(autouse=True)
def _clean_sim(request: pytest.FixtureRequest) -> None:
    if "mesh" in request.fixturenames:
        request.getfixturevalue("mesh").reset_sim()


def data_dir_of(m: Mesh) -> Path:
    return m.data_dir
