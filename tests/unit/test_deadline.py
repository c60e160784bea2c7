"""The one deadline type: its arithmetic on the monotonic clock, and what it reads from a real gRPC call."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import AsyncIterator

import grpc
import pytest

import agentmesh
from agentmesh.deadline import Deadline

PATH = "/test.Deadline/Probe"


def test_after_counts_down_from_now() -> None:
    d = Deadline.after(30)
    assert 29 < d.remaining() <= 30
    assert not d.expired


@pytest.mark.parametrize("seconds", [0, -5])
def test_a_past_deadline_is_expired_with_nothing_left(seconds: float) -> None:
    d = Deadline.after(seconds)
    assert d.expired and d.remaining() == 0.0


def test_no_deadline_never_expires_and_times_out_at_the_cap() -> None:
    d = Deadline(math.inf)
    assert d.remaining() == math.inf and not d.expired
    assert d.timeout(5.0) == 5.0


def test_timeout_is_the_lesser_of_what_is_left_and_the_cap() -> None:
    assert Deadline.after(60).timeout(5.0) == 5.0
    assert 1.0 < Deadline.after(2).timeout(5.0) <= 2.0


def test_an_expired_deadline_still_gives_a_positive_timeout() -> None:
    # 0 would read as "no wait at all" (non-blocking) to a socket, not as "fail now".
    assert Deadline.after(-1).timeout(5.0) == 0.001


def test_the_earlier_of_two_deadlines_is_their_min() -> None:
    soon, later = Deadline.after(1), Deadline.after(2)
    assert min(later, soon) is soon
    assert min(Deadline(math.inf), soon) is soon


def test_it_is_a_frozen_hashable_value() -> None:
    d = Deadline(10.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.at = 11.0  # type: ignore[misc]
    assert d == Deadline(10.0) and len({d, Deadline(10.0)}) == 1


def test_the_runtime_exports_it() -> None:
    assert agentmesh.Deadline is Deadline and "Deadline" in agentmesh.__all__


async def _probe(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    cap_s = json.loads(request)["cap_s"]
    d = Deadline.from_grpc_context(context, cap_s=cap_s)
    return json.dumps({"remaining": None if math.isinf(d.remaining()) else d.remaining()}).encode()


@pytest.fixture
async def address() -> AsyncIterator[str]:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "test.Deadline", {"Probe": grpc.unary_unary_rpc_method_handler(_probe)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


async def _remaining(address: str, *, client_timeout: float | None, cap_s: float | None) -> float | None:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await channel.unary_unary(PATH)(json.dumps({"cap_s": cap_s}).encode(), timeout=client_timeout)
    remaining: float | None = json.loads(reply)["remaining"]
    return remaining


async def test_from_grpc_context_reads_the_callers_deadline(address: str) -> None:
    remaining = await _remaining(address, client_timeout=30, cap_s=None)
    assert remaining is not None and 20 < remaining <= 30.5  # grpc-timeout is coarse: it may round up a little


async def test_from_grpc_context_with_no_caller_deadline_has_none_or_the_cap(address: str) -> None:
    assert await _remaining(address, client_timeout=None, cap_s=None) is None
    capped = await _remaining(address, client_timeout=None, cap_s=5.0)
    assert capped is not None and 0 < capped <= 5.0


async def test_from_grpc_context_caps_a_later_caller_deadline(address: str) -> None:
    capped = await _remaining(address, client_timeout=30, cap_s=1.0)
    assert capped is not None and 0 < capped <= 1.0
    # A cap later than the caller's deadline changes nothing.
    uncapped = await _remaining(address, client_timeout=2, cap_s=60.0)
    assert uncapped is not None and 0 < uncapped <= 2.5
