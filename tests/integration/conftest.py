"""One real mesh (agentmesh up: simulator, five services, Envoy) per test module that asks for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.mesh import Mesh, start_mesh, stop_mesh


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
