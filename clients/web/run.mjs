#!/usr/bin/env node
// A gRPC-Web client of the agentmesh gateway, as a browser page would call it (fetch, no HTTP/2 trailers), run by
// Node. `node run.mjs ask "TEXT"` streams a run's events, one JSON object a line, ending with the final answer;
// `node run.mjs guard "TEXT"` prints a guard check. No generated code: the services' descriptors come from a
// FileDescriptorSet at run time (python -m agentmesh.gateway.descriptors FILE), as the gateway itself uses.
//
// Environment: AGENTMESH_GATEWAY_ADDR (host:port, default 127.0.0.1:8080), AGENTMESH_API_KEY (required),
// AGENTMESH_DESCRIPTORS (the FileDescriptorSet file, required).
// Exit codes: 0 done; 1 the call failed (its gRPC code, message and ErrorInfo reason on stderr); 2 bad usage.
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

const [command, text] = process.argv.slice(2);
const key = process.env.AGENTMESH_API_KEY;
const descriptors = process.env.AGENTMESH_DESCRIPTORS;
if (!["ask", "guard"].includes(command) || !text || !key || !descriptors) {
  console.error('usage: AGENTMESH_API_KEY=... AGENTMESH_DESCRIPTORS=FILE node run.mjs ask|guard "TEXT"');
  process.exit(2);
}

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptors)));
const transport = createGrpcWebTransport({
  baseUrl: `http://${process.env.AGENTMESH_GATEWAY_ADDR ?? "127.0.0.1:8080"}`,
  useBinaryFormat: true, // application/grpc-web+proto, what Envoy's grpc_web filter turns into gRPC
});
const callOptions = { headers: { authorization: `Bearer ${key}` }, timeoutMs: 60_000 };
const print = (typeName, message) =>
  console.log(JSON.stringify(toJson(registry.getMessage(typeName), message, { registry, useProtoFieldName: true })));

try {
  if (command === "ask") {
    const supervisor = createClient(registry.getService("agentmesh.v1.SupervisorService"), transport);
    for await (const event of supervisor.run({ message: text }, callOptions)) {
      print("agentmesh.v1.RunEvent", event);
    }
  } else {
    const guard = createClient(registry.getService("agentmesh.v1.GuardService"), transport);
    print("agentmesh.v1.CheckResponse", await guard.check({ text }, callOptions));
  }
} catch (err) {
  const e = ConnectError.from(err);
  const [info] = e.findDetails(registry.getMessage("google.rpc.ErrorInfo"));
  console.error(`error: ${Code[e.code]}: ${e.rawMessage}${info ? ` (reason ${info.reason})` : ""}`);
  process.exit(1);
}
