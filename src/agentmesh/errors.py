"""One error tree for the mesh. Library errors (asyncpg, grpc, anthropic) are mapped into it once, at the
boundary, with `raise ... from exc`; the RPC layer turns it into a gRPC status with ErrorInfo/RetryInfo."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import message
from google.rpc import error_details_pb2, status_pb2

DOMAIN = "agentmesh.dev"


class AgentMeshError(Exception):
    """Base of every error the mesh can name. `reason` is a stable UPPER_SNAKE id for ErrorInfo, within
    `domain` (ours; a protocol the mesh speaks, such as A2A, has reasons of its own that its clients read)."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"
    domain: str = DOMAIN

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after_s: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.retry_after_s = retry_after_s
        self.metadata: dict[str, str] = dict(metadata or {})
        """ErrorInfo.metadata: facts the caller may need despite the failure (e.g. the tokens a failed step
        spent, under the SPENT_* keys)."""


class Internal(AgentMeshError):
    """A fault in our own code or data: retrying the same work would fail the same way, so it is not resumable."""


class InvalidArgument(AgentMeshError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class NotFound(AgentMeshError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class Unauthenticated(AgentMeshError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(AgentMeshError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class ResourceExhausted(AgentMeshError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class FailedPrecondition(AgentMeshError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Aborted(AgentMeshError):
    code = grpc.StatusCode.ABORTED
    reason = "ABORTED"


class DeadlineExceeded(AgentMeshError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class Unavailable(AgentMeshError):
    """A dependency is down; the caller may retry later (RetryInfo says when, if known)."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class DatabaseUnavailable(Unavailable):
    reason = "DATABASE_UNAVAILABLE"


class LLMError(AgentMeshError):
    """Base of LLM-path errors."""


class LLMUnavailable(LLMError, Unavailable):
    """The provider failed (5xx, 529, connection, timeout, stream cut) after every allowed attempt."""

    reason = "LLM_PROVIDER_UNAVAILABLE"


class CircuitOpen(LLMUnavailable):
    """The breaker is open: the provider is failing, calls fail fast without reaching it."""

    reason = "LLM_CIRCUIT_OPEN"


class LLMRateLimited(LLMError, ResourceExhausted):
    """The provider kept answering 429 (or asked for a wait longer than our cap)."""

    reason = "LLM_RATE_LIMITED"


class LLMRequestRejected(LLMError, InvalidArgument):
    """The provider refused the request itself (400/401/403/404/413/422): retrying cannot help."""

    reason = "LLM_REQUEST_REJECTED"


def grpc_error_to_mesh(exc: grpc.aio.AioRpcError, what: str) -> AgentMeshError:
    """Map a downstream gRPC failure into our tree, keeping its code where it names a cause."""
    by_code: dict[grpc.StatusCode, type[AgentMeshError]] = {
        grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
        grpc.StatusCode.NOT_FOUND: NotFound,
        grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
        grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
        grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
        grpc.StatusCode.UNAUTHENTICATED: Unavailable,  # our own credentials failed: a deployment fault
        # A bug downstream answers the same on every retry: not a cause outside the run.
        grpc.StatusCode.INTERNAL: Internal,
        grpc.StatusCode.UNKNOWN: Internal,
    }
    cls = by_code.get(exc.code(), Unavailable)
    return cls(f"{what}: {exc.code().name}: {exc.details()}", metadata=_error_info_metadata(exc))


def _error_info_metadata(exc: grpc.aio.AioRpcError) -> dict[str, str]:
    """ErrorInfo.metadata from the status details in the trailers (empty when there are none)."""
    for key, value in exc.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except message.DecodeError:
            return {}
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return dict(info.metadata)
    return {}
