"""Input rules of every request, enforced in one server interceptor.

The rules are declared in the protos as protovalidate annotations (`buf.validate.field`: lengths, UUID
format, custom CEL such as "no NUL"); this interceptor parses each request itself and runs protovalidate on
it, so every service answers the same way: INVALID_ARGUMENT with a message naming the field and the rule.
Parsing here rather than in gRPC's deserializer matters: a request gRPC cannot parse (a string field that is
not valid UTF-8, or bytes that are no protobuf at all) would otherwise fail inside grpc as an unnamed error.
Text limits that are settings (`AGENTMESH_MAX_MESSAGE_CHARS`, below the proto's ceiling) are data passed in.
Limits that depend on stored state (a thread's size, budgets, a run's wall time) live where that state is.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

import grpc
import protovalidate
from google.protobuf import descriptor, message

from agentmesh.errors import InvalidArgument
from agentmesh.rpc._wrap import Context, Continuation, Handler, stream_of, unary_of
from agentmesh.settings import Settings

_MAX_DEPTH = 32  # nesting the UTF-8 locator follows; the protobuf parser itself stops at 100
# Text Postgres cannot store in a text column (NUL), or that is no Unicode scalar value (a lone surrogate, which
# UTF-8 cannot carry; refused as invalid UTF-8 on the wire already, checked here again after parsing).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class TextLimit:
    """A settings-driven cap on one string field, tighter than (or equal to) the proto's declared max_len."""

    field: str
    """Full field name, e.g. agentmesh.v1.RunRequest.message."""
    max_chars: int
    """Most characters (code points) accepted."""
    setting: str
    """The environment variable that sets it, named in the error."""


def settings_text_limits(settings: Settings) -> tuple[TextLimit, ...]:
    return (TextLimit("agentmesh.v1.RunRequest.message", settings.max_message_chars, "AGENTMESH_MAX_MESSAGE_CHARS"),)


def _short(full_name: str) -> str:
    return full_name.rsplit(".", 1)[-1]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _unstorable_field(msg: message.Message, depth: int = 0) -> str | None:
    """The dotted path of the first string field (at any depth, in lists and maps too) that holds text Postgres
    cannot store, else None."""
    if depth >= _MAX_DEPTH:
        return None
    for field, value in msg.ListFields():
        if field.type == descriptor.FieldDescriptor.TYPE_STRING:
            values = value if field.is_repeated else (value,)
            if any(_UNSTORABLE.search(v) for v in values):
                return str(field.name)
        elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                items = [v for kv in value.items() for v in kv if isinstance(v, str)]
                if any(_UNSTORABLE.search(v) for v in items):
                    return str(field.name)
                inner_msgs = [v for v in value.values() if isinstance(v, message.Message)]
            elif field.is_repeated:
                inner_msgs = list(value)
            else:
                inner_msgs = [value]
            for inner in inner_msgs:
                bad = _unstorable_field(inner, depth + 1)
                if bad is not None:
                    return f"{field.name}.{bad}"
    return None


def _bad_utf8_field(data: bytes, desc: descriptor.Descriptor, depth: int = 0) -> str | None:
    """The dotted path of the first string field (at any depth) whose bytes are not UTF-8, if it can be found."""
    pos = 0
    try:
        while pos < len(data) and depth < _MAX_DEPTH:
            key, pos = _varint(data, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                size, pos = _varint(data, pos)
                chunk, pos = data[pos : pos + size], pos + size
                field = desc.fields_by_number.get(number)
                if field is None:
                    continue
                if field.type == descriptor.FieldDescriptor.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        name: str = field.name
                        return name
                elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
                    inner = _bad_utf8_field(chunk, field.message_type, depth + 1)
                    if inner is not None:
                        return f"{field.name}.{inner}"
            else:
                return None
    except ValueError:
        return None
    return None


class RequestValidator:
    """Parses raw request bytes into a message and checks its rules; raises InvalidArgument naming what failed."""

    def __init__(self, *, text_limits: Iterable[TextLimit] = ()) -> None:
        self._validator = protovalidate.Validator()
        self._text_limits: dict[str, list[TextLimit]] = {}
        for limit in text_limits:
            self._text_limits.setdefault(limit.field.rsplit(".", 1)[0], []).append(limit)

    def parse(self, raw: bytes, parse: Callable[[bytes], object]) -> object:
        try:
            request = parse(raw)
        except message.DecodeError as exc:
            desc = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
            name = _short(desc.full_name) if desc is not None else "request"
            bad = _bad_utf8_field(raw, desc) if desc is not None else None
            if bad is not None:
                raise InvalidArgument(
                    f"{name}.{bad}: not valid UTF-8 (protobuf strings must be UTF-8)", reason="INVALID_UTF8"
                ) from None
            raise InvalidArgument(
                f"{name}: the request bytes are not a valid {name} message ({exc})", reason="MALFORMED_REQUEST"
            ) from None
        if isinstance(request, message.Message):
            self.check(request)
        return request

    def check(self, request: message.Message) -> None:
        name = request.DESCRIPTOR.full_name
        try:
            self._validator.validate(request)
        except protovalidate.ValidationError as exc:
            problems = []
            for v in exc.violations:
                # A message-level rule (CEL on the message) names no field: its path is None, not empty.
                elements = v.proto.field.elements if v.proto.field is not None else ()
                path = ".".join(e.field_name for e in elements) or "(message)"
                problems.append(f"{_short(name)}.{path}: {v.proto.message} [{v.proto.rule_id}]")
            raise InvalidArgument("; ".join(problems), reason="INVALID_FIELD") from None
        # Every string of every request: a NUL would otherwise reach Postgres and end as INTERNAL there.
        bad = _unstorable_field(request)
        if bad is not None:
            raise InvalidArgument(
                f"{_short(name)}.{bad}: must not contain NUL characters or lone surrogates (text Postgres cannot "
                "store)",
                reason="UNSTORABLE_TEXT",
            )
        for limit in self._text_limits.get(name, ()):
            field = limit.field.rsplit(".", 1)[1]
            chars = len(getattr(request, field))
            if chars > limit.max_chars:
                raise InvalidArgument(
                    f"{_short(name)}.{field}: {chars} characters is over the limit of {limit.max_chars} "
                    f"({limit.setting})",
                    reason="TEXT_TOO_LONG",
                )


class ValidationInterceptor(grpc.aio.ServerInterceptor):
    """Takes over request parsing for unary-request methods so that no request reaches a servicer, or fails in
    grpc, without its rules checked. Install it innermost (after auth): strangers learn nothing from it."""

    def __init__(self, validator: RequestValidator) -> None:
        self._validator = validator

    async def intercept_service(
        self,
        continuation: Continuation,
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse_with = handler.request_deserializer
        validator = self._validator
        if (inner_uu := unary_of(handler)) is not None:

            async def unary_unary(raw: bytes, context: Context) -> object:
                return await inner_uu(validator.parse(raw, parse_with), context)

            # No deserializer: grpc hands over the raw bytes, which this wrapper parses.
            return grpc.unary_unary_rpc_method_handler(unary_unary, None, handler.response_serializer)
        if (inner_us := stream_of(handler)) is not None:

            async def unary_stream(raw: bytes, context: Context) -> AsyncIterator[object]:
                request = validator.parse(raw, parse_with)
                async for item in inner_us(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(unary_stream, None, handler.response_serializer)
        return handler
