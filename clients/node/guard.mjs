#!/usr/bin/env node
// Checks one text with the guard through the agentmesh gateway and prints its decision.
//
//   AGENTMESH_API_KEY=... node guard.mjs [--output] "TEXT"
//
// Prints `action: ACTION_...`, `redacted: TEXT` when the guard redacted, one `finding: TYPE ACTION` line per
// finding, and `review: ID` when the text was queued for review. --output checks a text on its way to the user
// (an answer) instead of to the LLM. Exit codes: 0 checked (whatever the action), 1 the call failed, 2 bad usage.
import process from "node:process";

import { connect, failed, loadService, unary } from "./lib.mjs";

async function main(argv) {
  const output = argv.includes("--output");
  const text = argv.filter((a) => a !== "--output").join(" ");
  if (!text) {
    console.error('usage: node guard.mjs [--output] "TEXT"');
    return 2;
  }
  const conn = connect(loadService("agentmesh/v1/guard.proto", "GuardService"));
  if (!conn) return 2;
  try {
    const reply = await unary(conn, "Check", { text, direction: output ? "DIRECTION_OUTPUT" : "DIRECTION_INPUT" });
    console.log(`action: ${reply.action}`);
    if (reply.action === "ACTION_REDACT") console.log(`redacted: ${reply.redacted_text}`);
    for (const f of reply.findings) console.log(`finding: ${f.type} ${f.action}`);
    if (reply.review_id) console.log(`review: ${reply.review_id}`);
    return 0;
  } catch (err) {
    return failed(err);
  } finally {
    conn.client.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
