"""The A2A facade: the A2A v1 gRPC binding (`lf.a2a.v1.A2AService`, a2a-sdk's stubs) over the run lifecycle.

| A2A                   | agentmesh                                                                        |
| --------------------- | -------------------------------------------------------------------------------- |
| SendMessage           | Run: text parts -> RunRequest.message, context_id -> thread_id; the task is the run |
|   return_immediately  | Run, answered after the run's first event (the run goes on in the background)    |
| SendStreamingMessage  | Run: the Task, then each RunEvent as a status update; the answer as an artifact  |
| GetTask               | the run's record: status, final answer, error                                    |
| CancelTask            | CancelRun                                                                        |
| SubscribeToTask       | WatchRun from the run's current position                                         |

It serves in the supervisor process next to SupervisorService, behind the same interceptors: API keys and
tenants apply unchanged (the requests' `tenant` field is not used: the key names the tenant), and a message
meets RunRequest's input rules, checked by the same validator. Errors an A2A client acts on (unknown task, task
not cancelable, operation not offered) carry A2A's ErrorInfo reasons, so a2a-sdk's client raises its own types;
everything else keeps the mesh's codes and reasons (a spent budget is RESOURCE_EXHAUSTED, a blocked input
PERMISSION_DENIED)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeAlias, cast

import grpc
from a2a.types import a2a_pb2, a2a_pb2_grpc
from a2a.utils import errors as a2a_errors
from google.protobuf import empty_pb2, json_format, struct_pb2

from agentmesh.deadline import Deadline
from agentmesh.errors import AgentMeshError, FailedPrecondition, InvalidArgument, NotFound
from agentmesh.rpc import RequestValidator, current_tenant
from agentmesh.services.supervisor.runs import RunManager
from agentmesh.services.supervisor.store import CheckpointStore, RunRecord
from agentmesh.v1 import guard_pb2, supervisor_pb2

A2A_DOMAIN = "a2a-protocol.org"
A2A_SERVICE = a2a_pb2.DESCRIPTOR.services_by_name["A2AService"].full_name
ANSWER_ARTIFACT = "answer"  # the artifact that carries a run's final answer
EVENT_METADATA_KEY = "agentmesh_event"  # each update's metadata: the RunEvent it came from, as JSON

S = a2a_pb2.TaskState
_TERMINAL = (S.TASK_STATE_COMPLETED, S.TASK_STATE_FAILED, S.TASK_STATE_CANCELED, S.TASK_STATE_REJECTED)
_FINISHED = {
    supervisor_pb2.FINISH_REASON_CANCELLED: S.TASK_STATE_CANCELED,
    # The guard refused the answer: the agent declined the task, in A2A's words.
    supervisor_pb2.FINISH_REASON_BLOCKED: S.TASK_STATE_REJECTED,
    # A reviewer said no to a paused run (SubmitInput approve=false).
    supervisor_pb2.FINISH_REASON_REJECTED: S.TASK_STATE_REJECTED,
}
_FINISH_TEXT = {supervisor_pb2.FINISH_REASON_CANCELLED: "cancelled", supervisor_pb2.FINISH_REASON_BLOCKED: "blocked"}


class _A2AError(AgentMeshError):
    domain = A2A_DOMAIN


class TaskNotFound(_A2AError, NotFound):
    reason = a2a_errors.A2A_ERROR_REASONS[a2a_errors.TaskNotFoundError]


class TaskNotCancelable(_A2AError, FailedPrecondition):
    reason = a2a_errors.A2A_ERROR_REASONS[a2a_errors.TaskNotCancelableError]


class UnsupportedOperation(_A2AError, FailedPrecondition):
    reason = a2a_errors.A2A_ERROR_REASONS[a2a_errors.UnsupportedOperationError]


class PushNotificationNotSupported(_A2AError, FailedPrecondition):
    reason = a2a_errors.A2A_ERROR_REASONS[a2a_errors.PushNotificationNotSupportedError]


class ContentTypeNotSupported(_A2AError, InvalidArgument):
    reason = a2a_errors.A2A_ERROR_REASONS[a2a_errors.ContentTypeNotSupportedError]


class ExtendedAgentCardNotConfigured(_A2AError, FailedPrecondition):
    reason = a2a_errors.A2A_ERROR_REASONS[a2a_errors.ExtendedAgentCardNotConfiguredError]


Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Events: TypeAlias = AsyncGenerator[supervisor_pb2.RunEvent, None]


class A2AServicer(a2a_pb2_grpc.A2AServiceServicer):
    def __init__(self, *, runs: RunManager, store: CheckpointStore, validator: RequestValidator) -> None:
        self._runs = runs
        self._store = store
        self._validator = validator

    async def SendMessage(self, request: a2a_pb2.SendMessageRequest, context: Context) -> a2a_pb2.SendMessageResponse:
        async with contextlib.aclosing(self._start(request, context)) as events:
            first = await anext(events)
            view = TaskView.started(first, request.message)
            view.apply(first)
            if request.configuration.return_immediately:
                # Closing the stream leaves the run going: it executes in a task of its own (RunManager).
                return a2a_pb2.SendMessageResponse(task=view.task)
            async for _ in view.follow(events):
                pass
        return a2a_pb2.SendMessageResponse(task=view.task)

    async def SendStreamingMessage(
        self, request: a2a_pb2.SendMessageRequest, context: Context
    ) -> AsyncIterator[a2a_pb2.StreamResponse]:
        async with contextlib.aclosing(self._start(request, context)) as events:
            first = await anext(events)
            view = TaskView.started(first, request.message)
            yield a2a_pb2.StreamResponse(task=view.task)
            for update in view.apply(first):  # the first event is an update too: every event is one
                yield update
            async for update in view.follow(events):
                yield update

    async def GetTask(self, request: a2a_pb2.GetTaskRequest, context: Context) -> a2a_pb2.Task:
        task = TaskView.of_run(await self._run(request.id)).task
        if request.HasField("history_length"):
            keep = task.history[len(task.history) - request.history_length :] if request.history_length else []
            del task.history[:]
            task.history.extend(keep)
        return task

    async def CancelTask(self, request: a2a_pb2.CancelTaskRequest, context: Context) -> a2a_pb2.Task:
        run_id = _run_id(request.id)
        try:
            await self._runs.cancel(tenant=current_tenant.get(), run_id=run_id)
        except NotFound:
            raise TaskNotFound(f"task {run_id} not found") from None
        except FailedPrecondition as exc:
            raise TaskNotCancelable(exc.message) from exc
        return TaskView.of_run(await self._run(run_id)).task

    async def SubscribeToTask(
        self, request: a2a_pb2.SubscribeToTaskRequest, context: Context
    ) -> AsyncIterator[a2a_pb2.StreamResponse]:
        run = await self._run(request.id)
        view = TaskView.of_run(run)
        if view.ended:
            state = a2a_pb2.TaskState.Name(view.task.status.state)
            raise UnsupportedOperation(f"task {run.id} already ended ({state}); GetTask reads it")
        yield a2a_pb2.StreamResponse(task=view.task)
        # The snapshot holds every event below next_seq; WatchRun sends the rest, each once, to the end.
        watch = _generator(
            self._runs.watch(tenant=current_tenant.get(), run_id=str(run.id), after_seq=run.next_seq - 1)
        )
        async with contextlib.aclosing(watch) as events:
            async for update in view.follow(events):
                yield update

    # --- what the mesh does not offer --------------------------------------------------------------------------

    async def ListTasks(self, request: a2a_pb2.ListTasksRequest, context: Context) -> a2a_pb2.ListTasksResponse:
        raise UnsupportedOperation(
            "ListTasks is not offered: GetTask reads a task; agentmesh.v1.SupervisorService/GetThread lists the "
            "runs (tasks) of a thread (context)"
        )

    async def CreateTaskPushNotificationConfig(
        self, request: a2a_pb2.TaskPushNotificationConfig, context: Context
    ) -> a2a_pb2.TaskPushNotificationConfig:
        raise _no_push()

    async def GetTaskPushNotificationConfig(
        self, request: a2a_pb2.GetTaskPushNotificationConfigRequest, context: Context
    ) -> a2a_pb2.TaskPushNotificationConfig:
        raise _no_push()

    async def ListTaskPushNotificationConfigs(
        self, request: a2a_pb2.ListTaskPushNotificationConfigsRequest, context: Context
    ) -> a2a_pb2.ListTaskPushNotificationConfigsResponse:
        raise _no_push()

    async def DeleteTaskPushNotificationConfig(
        self, request: a2a_pb2.DeleteTaskPushNotificationConfigRequest, context: Context
    ) -> empty_pb2.Empty:
        raise _no_push()

    async def GetExtendedAgentCard(
        self, request: a2a_pb2.GetExtendedAgentCardRequest, context: Context
    ) -> a2a_pb2.AgentCard:
        raise ExtendedAgentCardNotConfigured(
            "no extended agent card: the public one at /.well-known/agent-card.json is the whole card"
        )

    # --- helpers -----------------------------------------------------------------------------------------------

    async def _start(self, request: a2a_pb2.SendMessageRequest, context: Context) -> Events:
        """The run the message starts, as its events; an input the guard blocks creates no run (so no task) and
        fails the call PERMISSION_DENIED, as Run does."""
        run = self._run_request(request)
        events = _generator(
            self._runs.run(
                tenant=current_tenant.get(),
                message=run.message,
                thread_id=run.thread_id,
                deadline=Deadline.from_grpc_context(context),
                detach=False,
            )
        )
        async with contextlib.aclosing(events):
            first = await anext(events)  # errors before the run exists (budget, unknown thread) propagate
            if _blocked_input(first):
                async for _ in events:  # the run's error event, then its PermissionDenied
                    pass
                raise AssertionError("a blocked input ended without its error")  # Run always raises after it
            yield first
            async for ev in events:
                yield ev

    def _run_request(self, request: a2a_pb2.SendMessageRequest) -> supervisor_pb2.RunRequest:
        msg = request.message
        if not msg.parts:
            raise InvalidArgument("SendMessageRequest.message: needs at least one text part", reason="EMPTY_MESSAGE")
        other = sorted({p.WhichOneof("content") or "empty" for p in msg.parts} - {"text"})
        if other:
            raise ContentTypeNotSupported(f"message parts of kind {', '.join(other)}: the mesh takes text parts only")
        if msg.task_id:
            # A2A continues a task with a message only while the task waits for input.
            raise UnsupportedOperation(
                "a message with a task_id continues a task waiting for input, and no task here waits for one; "
                "send it without task_id (with the same context_id) to start a new task on the thread"
            )
        run = supervisor_pb2.RunRequest(message="\n".join(p.text for p in msg.parts), thread_id=msg.context_id)
        try:
            self._validator.check(run)  # RunRequest's rules: length, not blank, no NUL, context_id a UUID
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"{exc.message} (the message's text parts and context_id, as the run's input)", reason=exc.reason
            ) from None
        return run

    async def _run(self, task_id: str) -> RunRecord:
        run_id = _run_id(task_id)
        try:
            return await self._store.get_run(run_id, current_tenant.get())
        except NotFound:
            raise TaskNotFound(f"task {run_id} not found") from None


class TaskView:
    """One run as A2A sees it: the Task the run's events add up to, and the updates that say so."""

    def __init__(self, run_id: str, thread_id: str) -> None:
        self.task = a2a_pb2.Task(id=run_id, context_id=thread_id, status=a2a_pb2.TaskStatus(state=S.TASK_STATE_WORKING))

    @property
    def ended(self) -> bool:
        return self.task.status.state in _TERMINAL

    @classmethod
    def started(cls, first: supervisor_pb2.RunEvent, message: a2a_pb2.Message) -> TaskView:
        view = cls(first.run_id, first.thread_id)
        sent = a2a_pb2.Message()
        sent.CopyFrom(message)
        sent.task_id, sent.context_id = first.run_id, first.thread_id
        sent.message_id = sent.message_id or f"{first.run_id}/input"
        view.task.history.append(sent)
        view.task.status.timestamp.CopyFrom(first.time)
        return view

    @classmethod
    def of_run(cls, run: RunRecord) -> TaskView:
        """From the run's record (the answer as stored: what the guard redacted stays redacted)."""
        view = cls(str(run.id), str(run.thread_id))
        view.task.history.append(view._message(run.input, a2a_pb2.ROLE_USER, "input"))
        if run.final is not None:
            view.apply(json_format.ParseDict(run.final, supervisor_pb2.RunEvent(), ignore_unknown_fields=True))
        elif run.status == "failed":
            error = json_format.ParseDict(run.error or {}, supervisor_pb2.RunError(), ignore_unknown_fields=True)
            view.apply(supervisor_pb2.RunEvent(error=error))
        elif run.status == "cancelled":
            view.task.status.state = S.TASK_STATE_CANCELED
        elif run.status == "paused":
            view.task.status.state = S.TASK_STATE_INPUT_REQUIRED
        # Any other status is a run not yet ended: WORKING.
        return view

    async def follow(self, events: AsyncIterator[supervisor_pb2.RunEvent]) -> AsyncIterator[a2a_pb2.StreamResponse]:
        """The updates of `events`, until the run ends. A run that failed ends the stream as a FAILED task, not
        as an error of the call: its error event comes first, and the error that Run raises after it is that."""
        try:
            async for ev in events:
                for update in self.apply(ev):
                    yield update
        except AgentMeshError:
            if not self.ended:
                raise

    def apply(self, ev: supervisor_pb2.RunEvent) -> list[a2a_pb2.StreamResponse]:
        """Fold one run event into the task; the A2A updates that report it."""
        kind = ev.WhichOneof("event")
        out: list[a2a_pb2.StreamResponse] = []
        state, text = S.TASK_STATE_WORKING, describe(ev)
        if kind == "final":
            state = _FINISHED.get(ev.final.reason, S.TASK_STATE_COMPLETED)
            if ev.final.answer:
                answer = a2a_pb2.Artifact(
                    artifact_id=ANSWER_ARTIFACT, name=ANSWER_ARTIFACT, parts=[a2a_pb2.Part(text=ev.final.answer)]
                )
                self.task.artifacts.append(answer)
                update = a2a_pb2.TaskArtifactUpdateEvent(
                    task_id=self.task.id, context_id=self.task.context_id, artifact=answer, last_chunk=True
                )
                out.append(a2a_pb2.StreamResponse(artifact_update=update))
        elif kind == "error":
            state = S.TASK_STATE_FAILED
        elif kind == "input_required":
            state = S.TASK_STATE_INPUT_REQUIRED  # the approval pause: SubmitInput answers it, the task goes on
        ended = state in _TERMINAL
        status = a2a_pb2.TaskStatus(
            state=state, message=self._message(text, a2a_pb2.ROLE_AGENT, "final" if ended else f"event-{ev.seq}")
        )
        if ev.HasField("time"):
            status.timestamp.CopyFrom(ev.time)
        if ended:
            self.task.history.append(status.message)
        self.task.status.CopyFrom(status)
        metadata = struct_pb2.Struct()
        as_json = json_format.MessageToDict(
            ev, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        metadata.update({EVENT_METADATA_KEY: as_json})
        update = a2a_pb2.TaskStatusUpdateEvent(
            task_id=self.task.id, context_id=self.task.context_id, status=status, metadata=metadata
        )
        out.append(a2a_pb2.StreamResponse(status_update=update))
        return out

    def _message(self, text: str, role: a2a_pb2.Role, suffix: str) -> a2a_pb2.Message:
        # Ids derived from the run: the same message read twice (stream, GetTask) has the same id.
        return a2a_pb2.Message(
            message_id=f"{self.task.id}/{suffix}",
            task_id=self.task.id,
            context_id=self.task.context_id,
            role=role,
            parts=[a2a_pb2.Part(text=text)],
        )


def describe(ev: supervisor_pb2.RunEvent) -> str:
    """One line a person can read for a run event (the event itself travels in the update's metadata)."""
    kind = ev.WhichOneof("event")
    if kind == "guard_decision":
        d = ev.guard_decision
        direction = guard_pb2.Direction.Name(d.direction).removeprefix("DIRECTION_").lower()
        action = guard_pb2.Action.Name(d.action).removeprefix("ACTION_").lower()
        found = f" ({', '.join(d.finding_types)})" if d.finding_types else ""
        return f"guard: {direction} {action}{found}"
    if kind == "step_started":
        return f"{ev.step_started.agent}: started"
    if kind == "step_finished":
        s = ev.step_finished
        chose = f", chose {s.decision}" if s.decision else ""
        return f"{s.agent}: finished in {s.duration_ms} ms{chose}"
    if kind == "final":
        return ev.final.answer or _FINISH_TEXT.get(ev.final.reason, "finished")
    if kind == "error":
        return ev.error.message or "the run failed"
    return kind or "event"


def _blocked_input(ev: supervisor_pb2.RunEvent) -> bool:
    d = ev.guard_decision
    return (
        ev.WhichOneof("event") == "guard_decision"
        and d.direction == guard_pb2.DIRECTION_INPUT
        and d.action == guard_pb2.ACTION_BLOCK
    )


def _run_id(task_id: str) -> str:
    """A2A task ids are opaque to clients: one this mesh never issued (not a UUID) is simply not found."""
    try:
        return str(uuid.UUID(task_id))
    except ValueError:
        raise TaskNotFound(f"task {task_id[:80]!r} not found") from None


def _generator(events: AsyncIterator[supervisor_pb2.RunEvent]) -> Events:
    """RunManager's streams are async generators (typed as iterators): closed explicitly when a call ends early."""
    return cast(Events, events)


def _no_push() -> PushNotificationNotSupported:
    return PushNotificationNotSupported(
        "push notifications are not offered: SubscribeToTask (or agentmesh.v1.SupervisorService/WatchRun) follows "
        "a task"
    )


__all__ = ["A2A_SERVICE", "A2AServicer", "TaskView", "describe"]
