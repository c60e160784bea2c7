"""The public contract as Envoy's gRPC-JSON transcoder needs it: a FileDescriptorSet of the public services'
proto files and everything they import, built from the generated stubs this process already loaded (so
rendering needs neither protoc nor the .proto files, and the set always matches the stubs the services run)."""

from __future__ import annotations

from google.protobuf import descriptor, descriptor_pb2
from google.rpc import error_details_pb2, status_pb2

from agentmesh.v1 import guard_pb2, review_pb2, supervisor_pb2

# What clients may call through the public listener (gRPC, HTTP/JSON, reflection). AgentService is internal.
PUBLIC_FILES: tuple[descriptor.FileDescriptor, ...] = (
    supervisor_pb2.DESCRIPTOR,
    guard_pb2.DESCRIPTOR,
    review_pb2.DESCRIPTOR,
)
PUBLIC_SERVICES: tuple[str, ...] = tuple(
    service.full_name for file in PUBLIC_FILES for service in file.services_by_name.values()
)

# What an error body is made of: the transcoder prints google.rpc.Status and the details packed in it (ErrorInfo,
# RetryInfo, BadRequest) as JSON only when their types are in the set; without them it sends no body at all.
ERROR_FILES: tuple[descriptor.FileDescriptor, ...] = (status_pb2.DESCRIPTOR, error_details_pb2.DESCRIPTOR)


def public_files() -> list[descriptor.FileDescriptor]:
    """The public files and their imports, each after everything it imports (as protoc --include_imports)."""
    ordered: list[descriptor.FileDescriptor] = []
    seen: set[str] = set()

    def visit(file: descriptor.FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dep in file.dependencies:
            visit(dep)
        ordered.append(file)

    for file in (*PUBLIC_FILES, *ERROR_FILES):
        visit(file)
    return ordered


def descriptor_set() -> bytes:
    """The serialized FileDescriptorSet (deterministic for a given set of stubs)."""
    fds = descriptor_pb2.FileDescriptorSet()
    for file in public_files():
        fds.file.add().MergeFromString(file.serialized_pb)
    data: bytes = fds.SerializeToString(deterministic=True)
    return data


def main(argv: list[str] | None = None) -> int:
    """`python -m agentmesh.gateway.descriptors FILE`: write the set (for clients that load descriptors at run
    time, such as clients/web)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m agentmesh.gateway.descriptors FILE", file=sys.stderr)
        return 2
    with open(args[0], "wb") as out:
        out.write(descriptor_set())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
