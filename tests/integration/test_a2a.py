"""The A2A facade through the real gateway (agentmesh up: simulator, five services, Envoy), driven by a2a-sdk's own
client: the agent card resolved over HTTP, then send, stream, get, cancel and subscribe over the A2A gRPC binding,
with the mesh's API keys and tenants."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from a2a.client import (
    A2ACardResolver,
    A2AClientError,
    AuthInterceptor,
    Client,
    ClientCallContext,
    ClientConfig,
    ClientFactory,
    CredentialService,
)
from a2a.types import a2a_pb2
from a2a.utils.errors import (
    ContentTypeNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)

from agentmesh.services.supervisor.a2a import EVENT_METADATA_KEY
from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from tests.mesh import Mesh

S = a2a_pb2.TaskState
QUESTION = "Compare two payment providers and recommend one"


class Key(CredentialService):
    """The mesh's API key for the card's bearer scheme; a2a-sdk's AuthInterceptor sends it as metadata."""

    def __init__(self, key: str) -> None:
        self.key = key

    async def get_credentials(self, security_scheme_name: str, context: ClientCallContext | None) -> str | None:
        return self.key


async def card_of(mesh: Mesh) -> a2a_pb2.AgentCard:
    async with httpx.AsyncClient(timeout=10) as http:  # no key: the card is public
        return await A2ACardResolver(http, f"http://{mesh.gateway}").get_agent_card()


async def client(mesh: Mesh, *, key: str | None = None, streaming: bool = True) -> Client:
    config = ClientConfig(
        streaming=streaming,
        supported_protocol_bindings=["GRPC"],
        grpc_channel_factory=grpc.aio.insecure_channel,  # the card's url is the gateway's HOST:PORT
    )
    return ClientFactory(config).create(
        await card_of(mesh), interceptors=[AuthInterceptor(Key(mesh.key if key is None else key))]
    )


def message(text: str = QUESTION, context_id: str = "") -> a2a_pb2.SendMessageRequest:
    msg = a2a_pb2.Message(message_id=str(uuid.uuid4()), role=a2a_pb2.ROLE_USER, context_id=context_id)
    msg.parts.add(text=text)
    return a2a_pb2.SendMessageRequest(message=msg)


def seq_of(update: a2a_pb2.StreamResponse) -> int:
    return int(update.status_update.metadata[EVENT_METADATA_KEY]["seq"])


async def collect(stream: AsyncIterator[a2a_pb2.StreamResponse]) -> list[a2a_pb2.StreamResponse]:
    return [update async for update in stream]


async def test_the_agent_card_is_served_without_a_key_and_names_the_gateway(mesh: Mesh) -> None:
    card = await card_of(mesh)
    assert card.name == "agentmesh"
    (iface,) = card.supported_interfaces
    assert (iface.url, iface.protocol_binding) == (mesh.gateway, "GRPC")
    assert [s.id for s in card.skills] == ["researcher", "analyst", "executor"]


async def test_send_waits_for_the_answer_and_get_task_reads_the_run(mesh: Mesh) -> None:
    async with await client(mesh, streaming=False) as a2a:
        (reply,) = await collect(a2a.send_message(message()))
        task = reply.task
        assert task.status.state == S.TASK_STATE_COMPLETED
        answer = task.artifacts[0].parts[0].text
        assert answer and task.status.message.parts[0].text == answer
        got = await a2a.get_task(a2a_pb2.GetTaskRequest(id=task.id))
    assert (got.id, got.context_id, got.status.state) == (task.id, task.context_id, S.TASK_STATE_COMPLETED)
    assert got.artifacts[0].parts[0].text == answer
    assert [m.parts[0].text for m in got.history] == [QUESTION, answer]
    # The task is the run, its context the thread: the mesh's own API shows the same.
    with grpc.insecure_channel(mesh.gateway) as ch:
        thread = supervisor_pb2_grpc.SupervisorServiceStub(ch).GetThread(
            supervisor_pb2.GetThreadRequest(thread_id=task.context_id), metadata=mesh.auth(), timeout=10
        )
    assert [(r.run_id, r.status) for r in thread.runs] == [(task.id, supervisor_pb2.RUN_STATUS_COMPLETED)]
    assert thread.messages[-1].content == answer


async def test_streaming_sends_the_task_then_every_run_event_then_the_answer(mesh: Mesh) -> None:
    async with await client(mesh) as a2a:
        updates = await collect(a2a.send_message(message()))
        first = updates[0].task
        assert first.status.state == S.TASK_STATE_WORKING and first.history[0].parts[0].text == QUESTION
        statuses = [u for u in updates[1:] if u.HasField("status_update")]
        # One status update per run event, in order, none missing: seq 0 .. the final event's.
        assert [seq_of(u) for u in statuses] == list(range(len(statuses)))
        assert statuses[-1].status_update.status.state == S.TASK_STATE_COMPLETED
        assert {u.status_update.status.state for u in statuses[:-1]} == {S.TASK_STATE_WORKING}
        (artifact,) = [u.artifact_update for u in updates if u.HasField("artifact_update")]
        assert artifact.task_id == first.id and artifact.artifact.parts[0].text
        # The same context continues the thread: a second task on it.
        again = await collect(a2a.send_message(message("And the cheaper one?", context_id=first.context_id)))
    assert again[0].task.context_id == first.context_id and again[0].task.id != first.id
    assert again[-1].status_update.status.state == S.TASK_STATE_COMPLETED


async def test_return_immediately_then_subscribe_follows_the_task_to_its_end(mesh: Mesh) -> None:
    mesh.set_faults(latency_ms=400)  # the run takes a few seconds: the subscriber joins while it runs
    try:
        async with await client(mesh, streaming=False) as a2a:
            request = message()
            request.configuration.return_immediately = True
            (reply,) = await collect(a2a.send_message(request))
            assert reply.task.status.state == S.TASK_STATE_WORKING
        async with await client(mesh) as watcher:  # another client of the same tenant
            updates = await collect(watcher.subscribe(a2a_pb2.SubscribeToTaskRequest(id=reply.task.id)))
            assert updates[0].task.id == reply.task.id and updates[0].task.status.state == S.TASK_STATE_WORKING
            seqs = [seq_of(u) for u in updates if u.HasField("status_update")]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap, no duplicate
            assert updates[-1].status_update.status.state == S.TASK_STATE_COMPLETED
            # A task that ended has nothing to subscribe to (A2A's rule): GetTask reads it.
            with pytest.raises(UnsupportedOperationError):
                await collect(watcher.subscribe(a2a_pb2.SubscribeToTaskRequest(id=reply.task.id)))
    finally:
        mesh.set_faults(latency_ms=0)


async def test_cancel_during_an_agent_call_ends_the_task_canceled(mesh: Mesh) -> None:
    mesh.set_faults(latency_ms=3000)  # an agent call in flight for 3 s
    try:
        async with await client(mesh) as a2a:
            stream = a2a.send_message(message())
            task_id = ""
            async for update in stream:
                task_id = task_id or update.task.id
                ev = update.status_update.metadata[EVENT_METADATA_KEY] if update.HasField("status_update") else {}
                if "step_started" in ev and ev["step_started"]["kind"] == "STEP_KIND_AGENT":
                    break
            cancelled = await a2a.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id))
            assert cancelled.status.state == S.TASK_STATE_CANCELED
            rest = await asyncio.wait_for(collect(stream), timeout=10)  # the stream ends with the cancellation
            assert rest[-1].status_update.status.state == S.TASK_STATE_CANCELED
            assert (await a2a.get_task(a2a_pb2.GetTaskRequest(id=task_id))).status.state == S.TASK_STATE_CANCELED
            with pytest.raises(TaskNotCancelableError):
                await a2a.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id))
    finally:
        mesh.set_faults(latency_ms=0)


@pytest.fixture
def other_key(mesh: Mesh) -> str:
    """A key of another tenant."""
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", "keys", "create", "--tenant", "a2a-other"],
        env=mesh.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


async def test_keys_and_tenants_apply_unchanged(mesh: Mesh, other_key: str) -> None:
    for key in ("am_deadbeef_not-a-real-key", ""):
        async with await client(mesh, key=key) as stranger:
            with pytest.raises(A2AClientError) as refused:
                await collect(stranger.send_message(message()))
        assert isinstance(refused.value.__cause__, grpc.aio.AioRpcError)
        assert refused.value.__cause__.code() == grpc.StatusCode.UNAUTHENTICATED
    async with await client(mesh, streaming=False) as a2a:
        request = message()
        request.configuration.return_immediately = True
        (reply,) = await collect(a2a.send_message(request))
    async with await client(mesh, key=other_key) as neighbour:
        with pytest.raises(TaskNotFoundError):  # another tenant's task is not found, as a run is
            await neighbour.get_task(a2a_pb2.GetTaskRequest(id=reply.task.id))
        with pytest.raises(TaskNotFoundError):
            await neighbour.cancel_task(a2a_pb2.CancelTaskRequest(id=reply.task.id))


async def test_what_the_mesh_refuses_it_says_in_a2a_terms_or_its_own(mesh: Mesh) -> None:
    async with await client(mesh, streaming=False) as a2a:
        with pytest.raises(TaskNotFoundError):
            await a2a.get_task(a2a_pb2.GetTaskRequest(id="no-such-task"))
        request = message()
        request.message.parts.add(url="https://example.com/report.pdf")
        with pytest.raises(ContentTypeNotSupportedError):
            await collect(a2a.send_message(request))
        # The guard blocks the input: no run, so no task; the call fails as Run does.
        with pytest.raises(A2AClientError) as blocked:
            await collect(a2a.send_message(message("charge my card 4111 1111 1111 1111 please")))
        assert isinstance(blocked.value.__cause__, grpc.aio.AioRpcError)
        assert blocked.value.__cause__.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(A2AClientError) as invalid:
            await collect(a2a.send_message(message(context_id="not-a-uuid")))
        assert "context_id" in str(invalid.value)
