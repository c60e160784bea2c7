#!/usr/bin/env node
// An agentmesh agent in Node.js: the summarizer. Any server that implements agentmesh.v1.AgentService/Act and
// grpc.health.v1.Health/Check is an agent; the supervisor reaches it through the gateway, which routes by the
// catalog entry's name. This one answers from its own logic (no LLM): the first sentences of the text it is given.
//
//   agents:
//     - name: summarizer
//       description: Summarises long texts into a few sentences.
//       command: [node, examples/node-agent/agent.mjs]
//
// Port: AGENTMESH_AGENT_PORT (set by `agentmesh up` for each replica), else 50060. Protos: ../../protos, or
// AGENTMESH_PROTOS.
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTOS = process.env.AGENTMESH_PROTOS ?? path.resolve(here, "..", "..", "protos");
const NAME = process.env.AGENTMESH_AGENT_NAME ?? "summarizer";
const PORT = Number(process.env.AGENTMESH_AGENT_PORT ?? 50060);
const HOST = process.env.AGENTMESH_HOST ?? "127.0.0.1";
const MAX_CHARS = 32_000;

const options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };
const agentPkg = grpc.loadPackageDefinition(
  protoLoader.loadSync(["agentmesh/v1/agent.proto"], { ...options, includeDirs: [PROTOS] }),
);
const healthPkg = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(here, "health.proto"), options));

let serving = true;

/** The text to work on: the task, or after "text:" when the request says so. */
function textOf(task) {
  const m = task.match(/text\s*:\s*([\s\S]+)$/i);
  return (m ? m[1] : task).trim();
}

/** At most `n` sentences of `text`, whole. */
function summarise(text, n = 2) {
  const sentences = text.match(/[^.!?]+[.!?]*/g) ?? [text];
  return sentences.slice(0, n).map((s) => s.trim()).join(" ");
}

function act(call, callback) {
  const { task, max_output_tokens: maxTokens } = call.request;
  // Errors are gRPC statuses: INVALID_ARGUMENT fails the run (not resumable); UNAVAILABLE would let Resume retry.
  if (!task || task.length > MAX_CHARS) {
    callback({ code: grpc.status.INVALID_ARGUMENT, details: `task must hold 1 to ${MAX_CHARS} characters` });
    return;
  }
  // The supervisor's deadline arrives with the call; work that cannot finish before it is not started.
  const deadline = call.getDeadline();
  if (deadline instanceof Date && deadline.getTime() <= Date.now()) {
    callback({ code: grpc.status.DEADLINE_EXCEEDED, details: "the deadline passed before the work started" });
    return;
  }
  let summary = `Summary (${NAME}): ${summarise(textOf(task))}`;
  if (maxTokens > 0) summary = summary.slice(0, maxTokens * 4); // about 4 characters a token
  // No LLM call was made: usage is zero, and the supervisor adds nothing to the run's budget for this step.
  callback(null, {
    agent: NAME,
    output: summary,
    usage: { input_tokens: 0, output_tokens: 0, llm_calls: 0 },
    cost_usd: 0,
    model: "none (rule-based)",
    tool_calls: [],
    llm_calls: [],
  });
}

function check(_call, callback) {
  callback(null, { status: serving ? "SERVING" : "NOT_SERVING" });
}

const server = new grpc.Server();
server.addService(agentPkg.agentmesh.v1.AgentService.service, { Act: act });
server.addService(healthPkg.grpc.health.v1.Health.service, { Check: check });
server.bindAsync(`${HOST}:${PORT}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    console.error(`${NAME}: cannot listen on ${HOST}:${PORT}: ${err.message}`);
    process.exit(1);
  }
  console.log(`${NAME} agent listening on ${HOST}:${port}`);
});

// Clean shutdown: NOT_SERVING first (the gateway stops sending new calls), then finish the calls in flight.
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    serving = false;
    server.tryShutdown(() => process.exit(0));
    setTimeout(() => process.exit(0), 5000).unref();
  });
}
