"""Issue 12's pure parts: calculator inputs that used to fail a run, text Postgres cannot store refused at the
boundary, agent INTERNAL not resumable, and a failed step's spend carried back to the supervisor."""

from __future__ import annotations

import grpc
import pytest

from agentmesh.agent import _with_spend
from agentmesh.errors import AgentMeshError, Internal, InvalidArgument, Unavailable, grpc_error_to_mesh
from agentmesh.rpc import RequestValidator
from agentmesh.rpc._errors import to_status
from agentmesh.services.executor.tools import Registry
from agentmesh.services.supervisor.runner import _RESUMABLE, _spent
from agentmesh.services.supervisor.store import bound_history
from agentmesh.v1 import guard_pb2, review_pb2, supervisor_pb2

UUID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("1e6**64", "error: the result is too large"),  # float overflow: used to raise OverflowError
        ("1e308*10", "error: the result is too large"),  # inf
        ("10**100000", "error: exponent too large"),
        ("999999**64*999999**64*999999**64", "error: the result has more than 1000 digits"),  # int-to-str limit
        ("(10**60)**60", "error: exponent too large"),
        ("1/0", "error: division by zero"),
        ("5 % 0", "error: division by zero"),
        ("2.0 // 0", "error: division by zero"),
        ("(-8)**0.5", "error: the result is not a real number"),
        ("(" * 90 + "1" + ")" * 90, None),  # deep but fine
        ("__import__('os')", "error: unsupported syntax: Call"),
        ("1 +", "error: not an arithmetic expression"),
    ],
)
async def test_calculator_answers_a_tool_error_for_every_bad_input(expression: str, error: str | None) -> None:
    outcome = await Registry().run("calculator", {"expression": expression})
    assert outcome.executed
    if error is None:
        assert outcome.result.endswith("= 1")
    else:
        assert outcome.result == error


async def test_calculator_still_computes() -> None:
    assert (await Registry().run("calculator", {"expression": "17 * 23 + 4"})).result == "17 * 23 + 4 = 395"
    assert (await Registry().run("calculator", {"expression": "2^10"})).result == "2^10 = 1024"
    assert (await Registry().run("calculator", {"expression": "999999**64"})).result.startswith("999999**64 = 999")


VALIDATOR = RequestValidator()


@pytest.mark.parametrize(
    ("request_", "path"),
    [
        (guard_pb2.CheckRequest(text="a\x00b"), "CheckRequest.text"),
        (guard_pb2.CheckRequest(text="ok", restore_token="v1.\x00"), "CheckRequest.restore_token"),
        (
            review_pb2.ResolveReviewRequest(
                review_id=UUID, decision=review_pb2.REVIEW_DECISION_CONFIRMED, reviewer="ann", note="fine\x00"
            ),
            "ResolveReviewRequest.note",
        ),
        (
            review_pb2.ResolveReviewRequest(
                review_id=UUID, decision=review_pb2.REVIEW_DECISION_CONFIRMED, reviewer="a\x00n"
            ),
            "ResolveReviewRequest.reviewer",
        ),
    ],
)
def test_nul_is_refused_in_every_text_field(request_: object, path: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        VALIDATOR.parse(request_.SerializeToString(), type(request_).FromString)  # type: ignore[attr-defined]
    assert info.value.message.startswith(f"{path}: must not contain NUL")
    assert info.value.reason == "UNSTORABLE_TEXT"


def test_nul_in_the_run_message_keeps_its_declared_rule() -> None:
    with pytest.raises(InvalidArgument) as info:
        VALIDATOR.parse(
            supervisor_pb2.RunRequest(message="a\x00b").SerializeToString(), supervisor_pb2.RunRequest.FromString
        )
    assert "RunRequest.message: must not contain NUL characters" in info.value.message


def test_a_lone_surrogate_is_refused() -> None:
    # A surrogate as UTF-8 bytes (CESU style) is invalid UTF-8 on the wire: refused, field named.
    with pytest.raises(InvalidArgument) as info:
        VALIDATOR.parse(b"\x0a\x03\xed\xa0\x80", guard_pb2.CheckRequest.FromString)
    assert "CheckRequest.text: not valid UTF-8" in info.value.message


def _downstream(err: AgentMeshError, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """The error a client sees for `err` raised in a servicer: the status our interceptor sends, as received."""
    status = to_status(err)
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), details=status.details
    )


def test_agent_internal_is_not_resumable_and_carries_what_it_spent() -> None:
    err = _with_spend(ZeroDivisionError("x"), "executor", input_tokens=120, output_tokens=30, calls=2, cost=0.0015)
    assert isinstance(err, Internal)
    mapped = grpc_error_to_mesh(_downstream(err, grpc.StatusCode.INTERNAL), "agent executor")
    assert isinstance(mapped, Internal)
    assert mapped.reason not in _RESUMABLE and mapped.code.name not in _RESUMABLE
    spent = _spent(mapped)
    assert spent is not None
    assert (spent.input_tokens, spent.output_tokens, spent.llm_calls, spent.cost_usd) == (120, 30, 2, 0.0015)


def test_a_named_agent_error_keeps_its_code_and_its_spend() -> None:
    err = _with_spend(Unavailable("provider down"), "researcher", input_tokens=5, output_tokens=1, calls=1, cost=0.1)
    mapped = grpc_error_to_mesh(_downstream(err, grpc.StatusCode.UNAVAILABLE), "agent researcher")
    assert isinstance(mapped, Unavailable) and mapped.code.name in _RESUMABLE
    assert _spent(mapped) is not None and _spent(mapped).llm_calls == 1  # type: ignore[union-attr]
    plain = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "reset")
    assert _spent(grpc_error_to_mesh(plain, "agent")) is None


def _turns(*sizes: int) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": str(i % 10) * n} for i, n in enumerate(sizes)]


def test_history_keeps_the_newest_turns_within_the_character_bound() -> None:
    turns = _turns(*[30_000] * 20)
    kept = bound_history(turns, 16_000)
    assert sum(len(m["content"]) for m in kept) <= 16_000
    assert kept[-1] == turns[-1] or kept[-1]["content"].endswith(turns[-1]["content"][-100:])
    small = _turns(100, 200, 300)
    assert bound_history(small, 16_000) == small  # under the bound: unchanged
    assert bound_history(small, 0) == small  # 0: no bound
    kept = bound_history(_turns(5_000, 5_000, 5_000, 5_000), 12_000)
    assert [len(m["content"]) for m in kept] == [2_000, 5_000, 5_000]
    assert kept[0]["content"].startswith("[earlier text cut] ") and kept[0]["content"].endswith("1" * 100)
