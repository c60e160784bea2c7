"""The A2A facade's pure parts: the agent card each gateway target serves (read with a2a-sdk's own parser), and how
a run's events and records become A2A tasks and updates."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from a2a.client.card_resolver import parse_agent_card
from a2a.types import a2a_pb2
from google.protobuf import json_format

from agentmesh.catalog import default_catalog, parse_catalog
from agentmesh.errors import PermissionDenied, Unavailable
from agentmesh.gateway import compose_spec, k8s_spec, local_spec, render_envoy_config
from agentmesh.gateway.render import main as render_main
from agentmesh.services.supervisor.a2a import EVENT_METADATA_KEY, TaskView
from agentmesh.services.supervisor.store import RunRecord
from agentmesh.settings import AGENTS
from agentmesh.v1 import guard_pb2, supervisor_pb2

S = a2a_pb2.TaskState
RUN, THREAD = str(uuid.uuid4()), str(uuid.uuid4())


def served_card(config_text: str) -> dict[str, Any]:
    config = yaml.safe_load(config_text)
    (public,) = [x for x in config["static_resources"]["listeners"] if x["name"] == "public"]
    routes = public["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    (route,) = [r for r in routes if r["match"].get("path") == "/.well-known/agent-card.json"]
    assert route["match"]["headers"] == [{"name": ":method", "string_match": {"exact": "GET"}}]
    card: dict[str, Any] = json.loads(route["direct_response"]["body"]["inline_string"])
    return card


@pytest.mark.parametrize(
    ("spec", "url"),
    [
        (local_spec(ports={"supervisor": [1], "guard": [2]}, public=("127.0.0.1", 18080)), "127.0.0.1:18080"),
        (compose_spec(), "127.0.0.1:8080"),  # the port compose publishes on the host
        (k8s_spec("mesh"), "gateway.mesh.svc.cluster.local:8080"),  # the gateway Service, in the cluster
    ],
)
def test_every_target_serves_an_agent_card_a2a_sdk_reads(spec: Any, url: str) -> None:
    raw = served_card(render_envoy_config(spec))
    assert "supportedInterfaces" in raw and "supported_interfaces" not in raw  # A2A's JSON names, as served
    card = parse_agent_card(raw)
    (iface,) = card.supported_interfaces
    assert (iface.url, iface.protocol_binding, iface.protocol_version) == (url, "GRPC", "1.0")
    assert [s.id for s in card.skills] == list(AGENTS) and all(s.description for s in card.skills)
    assert card.capabilities.streaming and not card.capabilities.push_notifications
    # The API key as a bearer scheme, required: a2a-sdk's AuthInterceptor sends it as `authorization` metadata.
    (requirement,) = card.security_requirements
    (scheme,) = requirement.schemes
    assert card.security_schemes[scheme].http_auth_security_scheme.scheme == "Bearer"


def test_the_cards_skills_are_the_catalogs_agents() -> None:
    extra = {"name": "translator", "description": "Translates text.", "address": "127.0.0.1:50070"}
    catalog = parse_catalog({"agents": [extra]}, base=default_catalog())
    spec = local_spec(ports={"supervisor": [1], "guard": [2]}, catalog=catalog)
    card = parse_agent_card(served_card(render_envoy_config(spec)))
    assert [(s.id, s.description) for s in card.skills][-1] == ("translator", "Translates text.")
    assert [s.id for s in card.skills] == [*AGENTS, "translator"]


def test_render_takes_the_address_clients_use(capsys: pytest.CaptureFixture[str]) -> None:
    assert render_main(["--target", "k8s", "--a2a-url", "agents.example.com:443"]) == 0
    card = parse_agent_card(served_card(capsys.readouterr().out))
    assert card.supported_interfaces[0].url == "agents.example.com:443"


# --- runs as tasks ---------------------------------------------------------------------------------------------


def event(seq: int, **kind: Any) -> supervisor_pb2.RunEvent:
    ev = supervisor_pb2.RunEvent(run_id=RUN, thread_id=THREAD, seq=seq, **kind)
    ev.time.GetCurrentTime()
    return ev


def run_events(final: supervisor_pb2.Final) -> list[supervisor_pb2.RunEvent]:
    return [
        event(0, guard_decision=supervisor_pb2.GuardDecision(direction=guard_pb2.DIRECTION_INPUT)),
        event(1, step_started=supervisor_pb2.StepStarted(step=0, agent="researcher")),
        event(2, step_finished=supervisor_pb2.StepFinished(step=0, agent="researcher", duration_ms=12, output="o")),
        event(3, final=final),
    ]


def user_message() -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="compare two")])


def test_a_completed_run_streams_status_updates_then_the_answer_artifact() -> None:
    events = run_events(supervisor_pb2.Final(answer="pick B", reason=supervisor_pb2.FINISH_REASON_COMPLETED))
    view = TaskView.started(events[0], user_message())
    assert (view.task.id, view.task.context_id, view.task.status.state) == (RUN, THREAD, S.TASK_STATE_WORKING)
    assert view.task.history[0].task_id == RUN and view.task.history[0].message_id == "m1"
    updates = [u for ev in events for u in view.apply(ev)]
    assert [u.WhichOneof("payload") for u in updates] == [*["status_update"] * 3, "artifact_update", "status_update"]
    # Every update says which run event it reports, so an A2A client can read the mesh's detail too.
    seqs = [int(u.status_update.metadata[EVENT_METADATA_KEY]["seq"]) for u in updates if u.status_update.task_id]
    assert seqs == [0, 1, 2, 3]
    assert updates[1].status_update.status.message.parts[0].text == "researcher: started"
    artifact = updates[3].artifact_update
    assert artifact.last_chunk and artifact.artifact.parts[0].text == "pick B" and artifact.task_id == RUN
    assert updates[4].status_update.status.state == S.TASK_STATE_COMPLETED and view.ended
    assert [a.name for a in view.task.artifacts] == ["answer"]
    assert [m.role for m in view.task.history] == [a2a_pb2.ROLE_USER, a2a_pb2.ROLE_AGENT]


@pytest.mark.parametrize(
    ("reason", "state", "text"),
    [
        (supervisor_pb2.FINISH_REASON_CANCELLED, S.TASK_STATE_CANCELED, "cancelled"),
        (supervisor_pb2.FINISH_REASON_BLOCKED, S.TASK_STATE_REJECTED, "blocked"),
        (supervisor_pb2.FINISH_REASON_ITERATION_LIMIT, S.TASK_STATE_COMPLETED, "finished"),
    ],
)
def test_how_a_run_ends_is_the_tasks_state(
    reason: supervisor_pb2.FinishReason, state: a2a_pb2.TaskState, text: str
) -> None:
    events = run_events(supervisor_pb2.Final(reason=reason))  # no answer: no artifact
    view = TaskView.started(events[0], user_message())
    updates = [u for ev in events for u in view.apply(ev)]
    assert "artifact_update" not in [u.WhichOneof("payload") for u in updates]
    assert view.task.status.state == state and view.task.status.message.parts[0].text == text


async def test_a_failed_run_ends_the_stream_as_a_failed_task_not_as_an_error() -> None:
    async def failing(with_error_event: bool) -> AsyncIterator[supervisor_pb2.RunEvent]:
        yield event(0, guard_decision=supervisor_pb2.GuardDecision())
        if with_error_event:
            yield event(1, error=supervisor_pb2.RunError(code=14, message="researcher unavailable"))
        raise Unavailable("researcher unavailable")  # as Run raises after the error event

    view = TaskView(RUN, THREAD)
    updates = [u async for u in view.follow(failing(True))]
    assert updates[-1].status_update.status.state == S.TASK_STATE_FAILED
    assert updates[-1].status_update.status.message.parts[0].text == "researcher unavailable"
    # An error with no terminal event before it is the call's error.
    with pytest.raises(Unavailable):
        [u async for u in TaskView(RUN, THREAD).follow(failing(False))]


def record(
    status: str, *, final: supervisor_pb2.RunEvent | None = None, error: dict[str, Any] | None = None
) -> RunRecord:
    return RunRecord(
        id=uuid.UUID(RUN),
        thread_id=uuid.UUID(THREAD),
        tenant_id="t",
        status=status,
        input="compare two",
        history=[],
        next_seq=4,
        iterations=1,
        input_tokens=1,
        output_tokens=1,
        llm_calls=1,
        cost_usd=0.0,
        final=json_format.MessageToDict(final) if final is not None else None,
        error=error,
    )


def test_get_task_reads_the_runs_record() -> None:
    final = run_events(supervisor_pb2.Final(answer="pick B", reason=supervisor_pb2.FINISH_REASON_COMPLETED))[-1]
    done = TaskView.of_run(record("completed", final=final)).task
    assert done.status.state == S.TASK_STATE_COMPLETED and done.artifacts[0].parts[0].text == "pick B"
    assert [m.parts[0].text for m in done.history] == ["compare two", "pick B"]
    running = TaskView.of_run(record("running")).task
    assert running.status.state == S.TASK_STATE_WORKING and not running.artifacts
    failed = TaskView.of_run(record("failed", error={"code": 14, "message": "down", "resumable": True})).task
    assert failed.status.state == S.TASK_STATE_FAILED and failed.status.message.parts[0].text == "down"


def test_errors_a2a_clients_act_on_carry_a2a_reasons() -> None:
    from a2a.utils.errors import A2A_REASON_TO_ERROR, TaskNotFoundError

    from agentmesh.rpc import to_status
    from agentmesh.services.supervisor.a2a import TaskNotFound

    status = to_status(TaskNotFound("task x not found"))
    assert status.code.name == "NOT_FOUND"
    # The status details a2a-sdk's client reads: ErrorInfo in A2A's domain, whose reason names its error type.
    from google.rpc import error_details_pb2, status_pb2

    rich = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    rich.details[0].Unpack(info)
    assert info.domain == "a2a-protocol.org" and A2A_REASON_TO_ERROR[info.reason] is TaskNotFoundError
    # The mesh's own errors keep the mesh's domain.
    plain = status_pb2.Status.FromString(
        dict(to_status(PermissionDenied("no")).trailing_metadata)["grpc-status-details-bin"]
    )
    plain.details[0].Unpack(info)
    assert info.domain == "agentmesh.dev"
