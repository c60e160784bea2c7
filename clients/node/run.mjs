#!/usr/bin/env node
// Runs one conversation turn through the agentmesh gateway and prints every streamed event, one per line,
// ending with the final answer. The stubs are built at run time from ../../protos: no generated code.
//
//   AGENTMESH_API_KEY=... AGENTMESH_GATEWAY_ADDR=127.0.0.1:8080 node run.mjs "Compare two payment providers" [--thread ID]
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTOS = process.env.AGENTMESH_PROTOS ?? path.resolve(here, "..", "..", "protos");
const STATUS_NAME = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

function parseArgs(argv) {
  const args = { message: "Compare two payment providers and recommend one", thread: "", timeoutS: 300 };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--thread") args.thread = argv[++i] ?? "";
    else if (argv[i] === "--timeout") args.timeoutS = Number(argv[++i]);
    else rest.push(argv[i]);
  }
  if (rest.length) args.message = rest.join(" ");
  return args;
}

function loadSupervisor() {
  const definition = protoLoader.loadSync(["agentmesh/v1/supervisor.proto"], {
    includeDirs: [PROTOS],
    keepCase: true, // field names as in the .proto (thread_id, step_started)
    longs: Number, // seq and durations fit in a double here
    enums: String, // ACTION_ALLOW rather than 1
    defaults: true,
    oneofs: true, // event.event names which oneof member is set
  });
  return grpc.loadPackageDefinition(definition).agentmesh.v1.SupervisorService;
}

function describe(ev) {
  const tag = `[${ev.seq}]`;
  switch (ev.event) {
    case "guard_decision": {
      const g = ev.guard_decision;
      const found = g.finding_types.length ? ` (${g.finding_types.join(", ")})` : "";
      return `${tag} guard ${g.direction.replace("DIRECTION_", "").toLowerCase()}: ${g.action}${found}`;
    }
    case "step_started":
      return `${tag} step ${ev.step_started.step} started: ${ev.step_started.kind.replace("STEP_KIND_", "").toLowerCase()} ${ev.step_started.agent}`;
    case "step_finished": {
      const s = ev.step_finished;
      const decision = s.decision ? ` -> ${s.decision}` : "";
      return `${tag} step ${s.step} finished: ${s.kind.replace("STEP_KIND_", "").toLowerCase()} ${s.agent}${decision} (${s.duration_ms} ms, ${s.usage?.llm_calls ?? 0} LLM calls)`;
    }
    case "final": {
      const f = ev.final;
      return `${tag} final: ${f.reason.replace("FINISH_REASON_", "").toLowerCase()}, ${f.iterations} agent steps, ` +
        `${f.usage.llm_calls} LLM calls, tokens in ${f.usage.input_tokens} out ${f.usage.output_tokens}, cost $${f.cost_usd.toFixed(6)}`;
    }
    case "error":
      return `${tag} error: code ${ev.error.code}${ev.error.resumable ? " (resumable)" : ""}: ${ev.error.message}`;
    default:
      return `${tag} ${ev.event}`;
  }
}

function main() {
  const key = process.env.AGENTMESH_API_KEY;
  if (!key) {
    console.error("set AGENTMESH_API_KEY (agentmesh up prints a dev key)");
    return Promise.resolve(2);
  }
  const addr = process.env.AGENTMESH_GATEWAY_ADDR ?? "127.0.0.1:8080";
  const args = parseArgs(process.argv.slice(2));
  const Supervisor = loadSupervisor();
  const client = new Supervisor(addr, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${key}`);

  return new Promise((resolve) => {
    let answer = null;
    let printedRun = false;
    const call = client.Run({ message: args.message, thread_id: args.thread }, metadata,
      { deadline: Date.now() + args.timeoutS * 1000 });
    call.on("data", (ev) => {
      if (!printedRun) {
        console.log(`run ${ev.run_id} thread ${ev.thread_id}`);
        printedRun = true;
      }
      console.log(describe(ev));
      if (ev.event === "final") answer = ev.final.answer;
    });
    call.on("error", (err) => {
      console.error(`error: ${STATUS_NAME[err.code] ?? err.code}: ${err.details}`);
      client.close();
      resolve(1);
    });
    call.on("end", () => {
      client.close();
      if (answer === null) {
        console.error("error: the stream ended without a final event");
        resolve(1);
        return;
      }
      console.log(`answer: ${answer}`); // last line: the final answer
      resolve(0);
    });
  });
}

process.exitCode = await main();
