"""SupervisorService: call the run executor or the store, map the result. Nothing more: the input rules
(protos/agentmesh/v1/supervisor.proto) are enforced before a request gets here, by agentmesh.rpc's
ValidationInterceptor, and the tenant comes from the AuthInterceptor."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from agentmesh.deadline import Deadline
from agentmesh.rpc import current_tenant
from agentmesh.services.supervisor.runs import RunManager
from agentmesh.services.supervisor.store import CheckpointStore
from agentmesh.v1 import agent_pb2, supervisor_pb2, supervisor_pb2_grpc, usage_pb2

_STATUS = {
    "running": supervisor_pb2.RUN_STATUS_RUNNING,
    "completed": supervisor_pb2.RUN_STATUS_COMPLETED,
    "failed": supervisor_pb2.RUN_STATUS_FAILED,
    "cancelled": supervisor_pb2.RUN_STATUS_CANCELLED,
    "queued": supervisor_pb2.RUN_STATUS_QUEUED,
    "paused": supervisor_pb2.RUN_STATUS_PAUSED,
}
_ROLE = {"user": agent_pb2.ROLE_USER, "assistant": agent_pb2.ROLE_ASSISTANT}
_DEFAULT_PAGE_SIZE = 100


class SupervisorServicer(supervisor_pb2_grpc.SupervisorServiceServicer):
    def __init__(self, *, runs: RunManager, store: CheckpointStore) -> None:
        self._runs = runs
        self._store = store

    async def Run(
        self,
        request: supervisor_pb2.RunRequest,
        context: grpc.aio.ServicerContext[supervisor_pb2.RunRequest, supervisor_pb2.RunEvent],
    ) -> AsyncIterator[supervisor_pb2.RunEvent]:
        async for event in self._runs.run(
            tenant=current_tenant.get(),
            message=request.message,
            thread_id=request.thread_id,
            deadline=Deadline.from_grpc_context(context),
            detach=request.detach,
            on_busy=request.on_busy_thread,
        ):
            yield event

    async def Resume(
        self,
        request: supervisor_pb2.ResumeRequest,
        context: grpc.aio.ServicerContext[supervisor_pb2.ResumeRequest, supervisor_pb2.RunEvent],
    ) -> AsyncIterator[supervisor_pb2.RunEvent]:
        async for event in self._runs.resume(
            tenant=current_tenant.get(), run_id=request.run_id, deadline=Deadline.from_grpc_context(context)
        ):
            yield event

    async def WatchRun(
        self, request: supervisor_pb2.WatchRunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[supervisor_pb2.RunEvent]:
        async for event in self._runs.watch(
            tenant=current_tenant.get(), run_id=request.run_id, after_seq=request.after_seq
        ):
            yield event

    async def CancelRun(
        self, request: supervisor_pb2.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> supervisor_pb2.CancelRunResponse:
        await self._runs.cancel(tenant=current_tenant.get(), run_id=request.run_id)
        return supervisor_pb2.CancelRunResponse(status=supervisor_pb2.RUN_STATUS_CANCELLED)

    async def SubmitInput(
        self, request: supervisor_pb2.SubmitInputRequest, context: grpc.aio.ServicerContext
    ) -> supervisor_pb2.SubmitInputResponse:
        status = await self._runs.submit_input(
            tenant=current_tenant.get(), run_id=request.run_id, approve=request.approve, note=request.note
        )
        return supervisor_pb2.SubmitInputResponse(status=_STATUS[status])

    async def GetThread(
        self,
        request: supervisor_pb2.GetThreadRequest,
        context: grpc.aio.ServicerContext[supervisor_pb2.GetThreadRequest, supervisor_pb2.GetThreadResponse],
    ) -> supervisor_pb2.GetThreadResponse:
        view = await self._store.thread(
            request.thread_id,
            current_tenant.get(),
            page_size=request.page_size or _DEFAULT_PAGE_SIZE,
            page_token=request.page_token,
        )
        resp = supervisor_pb2.GetThreadResponse(thread_id=request.thread_id, next_page_token=view.next_token)
        for m in view.messages:
            msg = resp.messages.add(role=_ROLE[m["role"]], content=m["content"], run_id=str(m["run_id"] or ""))
            msg.create_time.FromDatetime(m["created_at"])
        for r in view.runs:
            run = resp.runs.add(
                run_id=str(r["id"]),
                status=_STATUS[r["status"]],
                cost_usd=r["cost_usd"],
                iterations=r["iterations"],
                usage=usage_pb2.Usage(
                    input_tokens=r["input_tokens"], output_tokens=r["output_tokens"], llm_calls=r["llm_calls"]
                ),
            )
            run.create_time.FromDatetime(r["created_at"])
        return resp
