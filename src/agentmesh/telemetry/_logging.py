"""JSON log lines with metadata only: callers pass data through `extra=`, never prompt or customer text."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from opentelemetry import trace

# Attributes every LogRecord has; anything else came in through `extra=` and is emitted as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line. With `trace_ids`, a line written inside a span carries its trace_id and
    span_id, so a log line leads to its trace and back."""

    def __init__(self, service: str, *, trace_ids: bool = False) -> None:
        super().__init__()
        self._service = service
        self._trace_ids = trace_ids

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if self._trace_ids:
            _add_trace_ids(out)
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _add_trace_ids(out: dict[str, Any]) -> None:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid and ctx.trace_flags.sampled:  # an unsampled trace is nowhere to be found
        out["trace_id"] = format(ctx.trace_id, "032x")
        out["span_id"] = format(ctx.span_id, "016x")


def setup_logging(service: str, level: str = "INFO", *, trace_ids: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, trace_ids=trace_ids))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK's and httpx's debug logs would carry request bodies (prompts): keep them quiet.
    for noisy in ("httpx", "httpx2", "anthropic", "asyncio", "grpc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.Formatter.converter = time.gmtime
    # A line names its service and logger, never its source line, thread or process: a record need not look
    # them up (the caller's frame walk alone was a fifth of a line's cost on the services' per-call lines).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
