// What the Node client's commands share: stubs built at run time from ../../protos (no generated code), the
// gateway address and key from the environment, and one way to report a failed call.
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
export const PROTOS = process.env.AGENTMESH_PROTOS ?? path.resolve(here, "..", "..", "protos");
export const STATUS_NAME = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

/** The service `name` of agentmesh.v1 from `file` (e.g. "agentmesh/v1/guard.proto", "GuardService"). */
export function loadService(file, name) {
  const definition = protoLoader.loadSync([file], {
    includeDirs: [PROTOS],
    keepCase: true, // field names as in the .proto (review_id, redacted_text)
    longs: Number,
    enums: String, // ACTION_ALLOW rather than 1
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).agentmesh.v1[name];
}

/** A client of `Service` on AGENTMESH_GATEWAY_ADDR with AGENTMESH_API_KEY as its bearer key; null without a key. */
export function connect(Service) {
  const key = process.env.AGENTMESH_API_KEY;
  if (!key) {
    console.error("set AGENTMESH_API_KEY (agentmesh up prints a dev key)");
    return null;
  }
  const client = new Service(process.env.AGENTMESH_GATEWAY_ADDR ?? "127.0.0.1:8080", grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${key}`);
  return { client, metadata };
}

/** One unary call as a promise (rejects with the gRPC error). */
export function unary({ client, metadata }, method, request, timeoutS = 30) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + timeoutS * 1000 }, (err, reply) =>
      err ? reject(err) : resolve(reply));
  });
}

/** "error: CODE: message" on stderr; exit code 1. */
export function failed(err) {
  console.error(`error: ${STATUS_NAME[err.code] ?? err.code}: ${err.details ?? err.message}`);
  return 1;
}
