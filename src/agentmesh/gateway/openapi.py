"""An OpenAPI 3.0 document of the HTTP/JSON API, generated from the protos: their google.api.http rules give the
paths, their messages (as the gRPC-JSON transcoder prints them: proto field names, enums by name, 64-bit integers
as strings) give the schemas, their comments give the descriptions.

The document is checked in as `openapi.json` next to this file (the gateway serves it at GET /openapi.json and
tests check it is current): `python -m agentmesh.gateway.openapi` rewrites it from protos/. Generating needs
grpc_tools (a dev dependency) for the comments, which the runtime stubs do not carry."""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

OPENAPI_PATH = Path(__file__).parent / "openapi.json"
PROTO_FILES = ("agentmesh/v1/supervisor.proto", "agentmesh/v1/guard.proto", "agentmesh/v1/review.proto")
PUBLIC_SERVICES = ("agentmesh.v1.SupervisorService", "agentmesh.v1.GuardService", "agentmesh.v1.ReviewService")

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS: dict[int, dict[str, Any]] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "format": "byte"},
    **{t: {"type": "integer", "format": "int32"} for t in (_F.TYPE_INT32, _F.TYPE_SINT32, _F.TYPE_SFIXED32)},
    **{t: {"type": "integer", "format": "int64"} for t in (_F.TYPE_UINT32, _F.TYPE_FIXED32)},
    # proto3 JSON prints 64-bit integers as strings (JavaScript numbers cannot hold them).
    **{
        t: {"type": "string", "format": "int64"}
        for t in (_F.TYPE_INT64, _F.TYPE_SINT64, _F.TYPE_SFIXED64, _F.TYPE_UINT64, _F.TYPE_FIXED64)
    },
}
# Well-known types with a JSON form of their own.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "1.5s"},
}
_STATUS_SCHEMA = {
    "type": "object",
    "description": "A failed call: the gRPC status code (e.g. 16 UNAUTHENTICATED, answered as HTTP 401), its "
    "message, and details such as google.rpc.ErrorInfo, whose `reason` says what went wrong.",
    "properties": {
        "code": {"type": "integer", "format": "int32", "description": "A google.rpc.Code value."},
        "message": {"type": "string"},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"@type": {"type": "string"}},
                "additionalProperties": True,
                "example": {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "UNAUTHENTICATED",
                    "domain": "agentmesh.dev",
                },
            },
        },
    },
}


def load_descriptor_set(protos_dir: Path) -> descriptor_pb2.FileDescriptorSet:
    """The public protos and their imports, with comments (source info), compiled by grpc_tools' protoc."""
    from grpc_tools import protoc  # dev dependency: only generating the document needs it

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "public.binpb"
        builtin = Path(protoc.__file__).parent / "_proto"
        args = ["protoc", f"-I{protos_dir}", f"-I{builtin}", "--include_imports", "--include_source_info"]
        if protoc.main([*args, f"--descriptor_set_out={out}", *PROTO_FILES]) != 0:
            raise RuntimeError(f"protoc failed on {PROTO_FILES} under {protos_dir}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


class _Index:
    """Every message and enum of a descriptor set by full name, with the comment above each element."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.services: dict[str, descriptor_pb2.ServiceDescriptorProto] = {}
        self.comments: dict[tuple[str, str], str] = {}  # (full name of the element, member name or "") -> text
        for file in fds.file:
            locations = {tuple(loc.path): _clean(loc.leading_comments) for loc in file.source_code_info.location}
            prefix = f".{file.package}" if file.package else ""
            for i, msg in enumerate(file.message_type):
                self._message(f"{prefix}.{msg.name}", msg, (4, i), locations)
            for i, enum in enumerate(file.enum_type):
                self._enum(f"{prefix}.{enum.name}", enum, (5, i), locations)
            for i, svc in enumerate(file.service):
                name = f"{prefix}.{svc.name}"
                self.services[name[1:]] = svc
                for j, method in enumerate(svc.method):
                    self.comments[(name, method.name)] = locations.get((6, i, 2, j), "")

    def _message(
        self, name: str, msg: descriptor_pb2.DescriptorProto, path: tuple[int, ...], loc: dict[tuple[int, ...], str]
    ) -> None:
        self.messages[name] = msg
        self.comments[(name, "")] = loc.get(path, "")
        for j, field in enumerate(msg.field):
            self.comments[(name, field.name)] = loc.get((*path, 2, j), "")
        for j, nested in enumerate(msg.nested_type):
            self._message(f"{name}.{nested.name}", nested, (*path, 3, j), loc)
        for j, enum in enumerate(msg.enum_type):
            self._enum(f"{name}.{enum.name}", enum, (*path, 4, j), loc)

    def _enum(
        self,
        name: str,
        enum: descriptor_pb2.EnumDescriptorProto,
        path: tuple[int, ...],
        loc: dict[tuple[int, ...], str],
    ) -> None:
        self.enums[name] = enum
        values = [f"{v.name}: {loc.get((*path, 2, j), '')}".rstrip(": ") for j, v in enumerate(enum.value)]
        self.comments[(name, "")] = "\n".join([loc.get(path, ""), *(f"- {v}" for v in values)]).strip()


def _clean(comment: str) -> str:
    return "\n".join(line.strip() for line in comment.strip().splitlines())


def _ref(full_name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{full_name.lstrip('.')}"}


def _field_schema(index: _Index, field: descriptor_pb2.FieldDescriptorProto, wanted: list[str]) -> dict[str, Any]:
    if field.type in (_F.TYPE_MESSAGE, _F.TYPE_GROUP):
        entry = index.messages[field.type_name]
        if entry.options.map_entry:
            value = _field_schema(index, entry.field[1], wanted)
            return {"type": "object", "additionalProperties": value}
        if field.type_name[1:] in _WELL_KNOWN:
            schema = dict(_WELL_KNOWN[field.type_name[1:]])
        else:
            wanted.append(field.type_name)
            schema = _ref(field.type_name)
    elif field.type == _F.TYPE_ENUM:
        wanted.append(field.type_name)
        schema = _ref(field.type_name)
    else:
        schema = dict(_SCALARS[field.type])
    if field.label == _F.LABEL_REPEATED:
        return {"type": "array", "items": schema}
    return schema


def _schemas(index: _Index, roots: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    wanted = list(roots)
    while wanted:
        name = wanted.pop()
        key = name.lstrip(".")
        if key in out:
            continue
        if name in index.enums:
            enum = index.enums[name]
            out[key] = {
                "type": "string",
                "enum": [v.name for v in enum.value],
                "description": index.comments[(name, "")],
            }
            continue
        msg = index.messages[name]
        props: dict[str, Any] = {}
        for field in msg.field:
            schema = _field_schema(index, field, wanted)
            text = index.comments[(name, field.name)]
            if field.HasField("oneof_index") and not field.proto3_optional:
                group = msg.oneof_decl[field.oneof_index].name
                text = f"{text} (one of `{group}`: at most one of its fields is set)".strip()
            if text:
                # A $ref cannot carry siblings in OpenAPI 3.0; allOf wraps it so the description shows.
                schema = (
                    {"allOf": [schema], "description": text} if "$ref" in schema else {**schema, "description": text}
                )
            props[field.name] = schema
        out[key] = {"type": "object", "description": index.comments[(name, "")], "properties": props}
    return dict(sorted(out.items()))


def build(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, Any]:
    """The OpenAPI document for the public services' HTTP rules in `fds`."""
    index = _Index(fds)
    paths: dict[str, dict[str, Any]] = {}
    roots: list[str] = []
    for service_name in PUBLIC_SERVICES:
        service = index.services[service_name]
        for method in service.method:
            rule = method.options.Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            if verb is None or verb == "custom":
                continue
            template = getattr(rule, verb)
            request = index.messages[method.input_type]
            path_params = re.findall(r"{([a-z_.]+)(?:=[^}]*)?}", template)
            fields = {f.name: f for f in request.field}
            params: list[dict[str, Any]] = [
                {
                    "name": p,
                    "in": "path",
                    "required": True,
                    "schema": _field_schema(index, fields[p], roots),
                    "description": index.comments[(method.input_type, p)],
                }
                for p in path_params
            ]
            if not rule.body:  # every other scalar field of the request is a query parameter
                params += [
                    {
                        "name": f.name,
                        "in": "query",
                        "schema": _field_schema(index, f, roots),
                        "description": index.comments[(method.input_type, f.name)],
                    }
                    for f in request.field
                    if f.name not in path_params and f.type != _F.TYPE_MESSAGE
                ]
            roots += [method.input_type, method.output_type]
            streamed = method.server_streaming
            op: dict[str, Any] = {
                "operationId": f"{service.name}_{method.name}",
                "tags": [service.name],
                "summary": index.comments[(f".{service_name}", method.name)].split("\n")[0],
                "description": index.comments[(f".{service_name}", method.name)],
                "parameters": params,
                "responses": {
                    "200": {
                        "description": (
                            "Newline-delimited JSON: one message per line as it happens (content-type "
                            "application/json); the stream ends with a `final` or `error` event."
                            if streamed
                            else "OK"
                        ),
                        "content": {"application/json": {"schema": _ref(method.output_type)}},
                    },
                    "default": {
                        "description": "An error: the gRPC status as JSON, with an HTTP status to match.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}},
                    },
                },
            }
            if streamed:
                op["x-stream"] = "ndjson"
            if rule.body:
                op["requestBody"] = {
                    "required": any(f.name not in path_params for f in request.field),
                    "content": {"application/json": {"schema": _ref(method.input_type)}},
                }
            paths.setdefault(template, {})[verb] = op
    schemas = _schemas(index, roots)
    schemas["google.rpc.Status"] = _STATUS_SCHEMA
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "agentmesh",
            "version": "v1",
            "description": "HTTP/JSON for agentmesh's public gRPC services, transcoded by the gateway (Envoy) on "
            "its public port. Every call but this document needs `authorization: Bearer <key>`.",
        },
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An agentmesh API key."}},
            "schemas": schemas,
        },
    }


def render(protos_dir: Path) -> str:
    """The document as written to openapi.json (stable key order, a trailing newline)."""
    return json.dumps(build(load_descriptor_set(protos_dir)), indent=1, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentmesh.gateway.openapi", description=__doc__)
    parser.add_argument("--protos", type=Path, default=Path("protos"), help="the protos/ directory")
    parser.add_argument("--check", action="store_true", help="exit 1 if openapi.json is not current")
    args = parser.parse_args(argv)
    text = render(args.protos)
    if args.check:
        current = OPENAPI_PATH.read_text() if OPENAPI_PATH.exists() else ""
        if current != text:
            print(f"{OPENAPI_PATH} is stale: run python -m agentmesh.gateway.openapi", file=sys.stderr)
            return 1
        return 0
    OPENAPI_PATH.write_text(text)
    print(f"wrote {OPENAPI_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
