"""HTTP/JSON and gRPC-Web on the public listener: the rendered transcoder covers exactly the public services, with a descriptor
set that carries the contract's HTTP paths and the error types an error body is printed from."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool

from agentmesh.gateway import compose_spec, k8s_spec, local_spec, openapi, render_envoy_config

REPO = Path(__file__).resolve().parents[2]
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
PUBLIC = ["agentmesh.v1.SupervisorService", "agentmesh.v1.GuardService", "agentmesh.v1.ReviewService"]
# The contract's paths (CONTRACT.md, issue 17), and the review queue's.
HTTP_RULES = {
    "agentmesh.v1.SupervisorService.Run": ("post", "/v1/runs", "*"),
    "agentmesh.v1.SupervisorService.Resume": ("post", "/v1/runs/{run_id}:resume", "*"),
    "agentmesh.v1.SupervisorService.GetThread": ("get", "/v1/threads/{thread_id}", ""),
    "agentmesh.v1.SupervisorService.WatchRun": ("get", "/v1/runs/{run_id}/events", ""),
    "agentmesh.v1.SupervisorService.CancelRun": ("post", "/v1/runs/{run_id}:cancel", "*"),
    "agentmesh.v1.SupervisorService.SubmitInput": ("post", "/v1/runs/{run_id}:input", "*"),
    "agentmesh.v1.GuardService.Check": ("post", "/v1/guard:check", "*"),
    "agentmesh.v1.ReviewService.ListReviews": ("get", "/v1/reviews", ""),
    "agentmesh.v1.ReviewService.GetReview": ("get", "/v1/reviews/{review_id}", ""),
    "agentmesh.v1.ReviewService.ResolveReview": ("post", "/v1/reviews/{review_id}:resolve", "*"),
}


def _filters(config: dict[str, Any], listener: str) -> dict[str, dict[str, Any]]:
    (li,) = [x for x in config["static_resources"]["listeners"] if x["name"] == listener]
    hcm = li["filter_chains"][0]["filters"][0]["typed_config"]
    return {f["name"]: f.get("typed_config", {}) for f in hcm["http_filters"]}


@pytest.mark.parametrize("spec", [local_spec(ports={"supervisor": [1], "guard": [2]}), compose_spec(), k8s_spec()])
def test_transcoder_on_the_public_listener_only(spec: Any) -> None:
    config = yaml.safe_load(render_envoy_config(spec))
    public = _filters(config, "public")
    # gRPC-Web and JSON become gRPC before grpc_stats and the router, so both see (and count) the gRPC call.
    assert list(public) == [
        "envoy.filters.http.cors",
        "envoy.filters.http.grpc_web",
        TRANSCODER,
        "envoy.filters.http.grpc_stats",
        "envoy.filters.http.router",
    ]
    transcoder = public[TRANSCODER]
    assert transcoder["services"] == PUBLIC
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["print_options"]["stream_newline_delimited"] is True
    assert list(_filters(config, "internal")) == ["envoy.filters.http.grpc_stats", "envoy.filters.http.router"]


def test_descriptor_set_has_the_contract_paths_and_the_error_types() -> None:
    config = yaml.safe_load(render_envoy_config(local_spec(ports={"supervisor": [1], "guard": [2]})))
    raw = base64.b64decode(_filters(config, "public")[TRANSCODER]["proto_descriptor_bin"])
    fds = descriptor_pb2.FileDescriptorSet.FromString(raw)
    pool = descriptor_pool.DescriptorPool()
    for file in fds.file:  # in dependency order, as Envoy loads them; Add fails on a missing import
        pool.Add(file)
    found = {}
    for service in PUBLIC:
        for method in pool.FindServiceByName(service).methods:
            options = descriptor_pb2.MethodOptions.FromString(method.GetOptions().SerializeToString())
            rule = options.Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            found[method.full_name] = (verb, getattr(rule, verb), rule.body)
    assert found == HTTP_RULES
    # convert_grpc_status prints google.rpc.Status and the ErrorInfo inside it only if their types are here.
    for name in ("google.rpc.Status", "google.rpc.ErrorInfo", "google.rpc.RetryInfo", "google.rpc.BadRequest"):
        assert pool.FindMessageTypeByName(name)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_openapi_document_is_current_and_complete() -> None:
    text = openapi.render(REPO / "protos")
    assert openapi.OPENAPI_PATH.read_text() == text, "stale: run python -m agentmesh.gateway.openapi"
    doc = json.loads(text)
    operations = {op["operationId"]: (verb, path) for path, ops in doc["paths"].items() for verb, op in ops.items()}
    expected = {name.split(".", 2)[2].replace(".", "_"): (verb, path) for name, (verb, path, _) in HTTP_RULES.items()}
    assert operations == expected
    schemas = doc["components"]["schemas"]
    assert {ref.removeprefix("#/components/schemas/") for ref in _refs(doc)} <= set(schemas)
    # As the transcoder prints them: proto field names, 64-bit integers as strings, enums by name.
    event = schemas["agentmesh.v1.RunEvent"]["properties"]
    assert event["seq"]["type"] == "string" and "thread_id" in event
    assert "DIRECTION_INPUT" in schemas["agentmesh.v1.Direction"]["enum"]
    run = doc["paths"]["/v1/runs"]["post"]
    assert run["x-stream"] == "ndjson" and run["requestBody"]["required"] is True
    assert doc["paths"]["/v1/runs/{run_id}:resume"]["post"]["requestBody"]["required"] is False


def test_gateway_serves_the_openapi_document() -> None:
    config = yaml.safe_load(render_envoy_config(local_spec(ports={"supervisor": [1], "guard": [2]})))
    (public,) = [x for x in config["static_resources"]["listeners"] if x["name"] == "public"]
    route_config = public["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    (route,) = [r for r in route_config["virtual_hosts"][0]["routes"] if r["match"].get("path") == "/openapi.json"]
    body = route["direct_response"]["body"]["inline_string"]
    assert json.loads(body) == json.loads(openapi.OPENAPI_PATH.read_text())
    assert len(body.encode()) <= route_config["max_direct_response_body_size_bytes"]
