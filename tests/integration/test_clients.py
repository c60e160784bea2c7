"""Every client through the real gateway (agentmesh up: simulator, five services, Envoy): reflection lists the
public services; HTTP/JSON (Envoy's gRPC-JSON transcoder) for guard checks, runs as NDJSON, threads and errors;
the OpenAPI document the gateway serves."""

from __future__ import annotations

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.mesh import Mesh

PUBLIC = {"agentmesh.v1.SupervisorService", "agentmesh.v1.GuardService", "agentmesh.v1.ReviewService"}


def test_reflection_through_the_gateway_lists_every_public_service(channel: grpc.Channel) -> None:
    db = ProtoReflectionDescriptorDatabase(channel)
    names = set(db.get_services())
    assert PUBLIC <= names
    assert "agentmesh.v1.AgentService" not in names
    # The descriptors resolve too, so grpcurl can describe and call a method of each (not just list it).
    pool = DescriptorPool(db)
    guard = pool.FindServiceByName("agentmesh.v1.GuardService")
    assert guard.methods_by_name["Check"].input_type.full_name == "agentmesh.v1.CheckRequest"
    review = pool.FindServiceByName("agentmesh.v1.ReviewService")
    assert {m.name for m in review.methods} >= {"ListReviews", "GetReview", "ResolveReview"}


def test_reflection_needs_no_key(mesh: Mesh) -> None:
    # Discovery is open (as health is); a call of a listed method is not.
    with grpc.insecure_channel(mesh.gateway) as ch:
        assert "agentmesh.v1.SupervisorService" in ProtoReflectionDescriptorDatabase(ch).get_services()
