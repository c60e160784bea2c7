"""The CLI's exit codes, and the one place where errors from gRPC and Postgres become them.

Commands raise `CliError` (or let a grpc / asyncpg / OS error through); `main()` prints the message on stderr and
exits with the code, so stdout carries only results (and stays parseable with --json)."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # imported on use: `agentmesh --version` and `--help` should not load grpc
    import grpc


class ExitCode(enum.IntEnum):
    """What a script can branch on; documented in `agentmesh --help` (EPILOG)."""

    OK = 0
    FAILURE = 1  # the operation ran and failed: a run ended in error, a key was not revoked
    USAGE = 2  # bad arguments or a request the server rejected as invalid (argparse uses 2 as well)
    UNAVAILABLE = 3  # the gateway or the database is not reachable, or did not answer in time
    UNAUTHENTICATED = 4  # no API key, or one the gateway refused (unknown, revoked, not allowed)
    NOT_FOUND = 5  # the run, thread or review does not exist
    EXHAUSTED = 6  # a rate limit, concurrency limit or budget: retry later
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


EPILOG = """exit codes:
  0    ok
  1    the operation failed (a run ended in an error or incomplete, an internal error)
  2    usage error: bad arguments, or a request rejected as INVALID_ARGUMENT
  3    the gateway or the database is not reachable (UNAVAILABLE, DEADLINE_EXCEEDED)
  4    no API key, or it was refused (UNAUTHENTICATED, PERMISSION_DENIED)
  5    not found (NOT_FOUND)
  6    a limit or budget was reached: retry later (RESOURCE_EXHAUSTED)
  130  interrupted
errors and progress go to stderr; results (and --json output) to stdout."""

# By grpc.StatusCode name.
_BY_STATUS: dict[str, ExitCode] = {
    "OK": ExitCode.OK,
    "INVALID_ARGUMENT": ExitCode.USAGE,
    "OUT_OF_RANGE": ExitCode.USAGE,
    "UNAVAILABLE": ExitCode.UNAVAILABLE,
    "DEADLINE_EXCEEDED": ExitCode.UNAVAILABLE,
    "UNAUTHENTICATED": ExitCode.UNAUTHENTICATED,
    "PERMISSION_DENIED": ExitCode.UNAUTHENTICATED,
    "NOT_FOUND": ExitCode.NOT_FOUND,
    "RESOURCE_EXHAUSTED": ExitCode.EXHAUSTED,
    "CANCELLED": ExitCode.INTERRUPTED,
}


class StatusError(Protocol):
    """What a failed call exposes (grpc.aio.AioRpcError, and the sync API's errors)."""

    def code(self) -> grpc.StatusCode: ...
    def details(self) -> str | None: ...


class CliError(Exception):
    """A failure to report on stderr (without a traceback) and exit with `code`."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def exit_code_for_status(code: grpc.StatusCode) -> ExitCode:
    """Every other status (INTERNAL, UNKNOWN, FAILED_PRECONDITION, ...) is a failure of the operation."""
    return _BY_STATUS.get(code.name, ExitCode.FAILURE)


def from_rpc_error(exc: StatusError) -> CliError:
    """`CODE: details`, with the code a script can act on."""
    code = exc.code()
    return CliError(f"{code.name}: {exc.details()}", exit_code_for_status(code))


def to_cli_error(exc: BaseException) -> CliError | None:
    """The boundary: our errors as they are, gRPC statuses by the table above, a database that cannot be reached
    as UNAVAILABLE. None for anything else (a bug: let its traceback show)."""
    import asyncpg
    import grpc

    from agentmesh.errors import AgentMeshError

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, AgentMeshError):  # the runtime's tree (a store call behind `db_errors`) carries its status
        return CliError(str(exc), exit_code_for_status(exc.code))
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return from_rpc_error(exc)
    if isinstance(exc, (asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError)):
        return CliError(f"database unavailable: {exc}", ExitCode.UNAVAILABLE)
    if isinstance(exc, (ConnectionError, TimeoutError)):  # create_pool against a server that is down
        return CliError(f"database unavailable: {exc}", ExitCode.UNAVAILABLE)
    return None
