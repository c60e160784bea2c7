#!/usr/bin/env node
// The guard's human review queue through the agentmesh gateway (the caller's tenant only).
//
//   node reviews.mjs list [--status pending|resolved] [--page-size N] [--page-token T]
//   node reviews.mjs get ID
//   node reviews.mjs resolve ID confirmed|dismissed [--reviewer NAME] [--note TEXT]
//
// list: one line per item, newest first: `ID STATUS ACTION DIRECTION CHARS`, then `next: TOKEN` if there is
// another page. get: the item as JSON. resolve: `resolved ID: DECISION` (the reviewer: --reviewer, else $USER).
// Exit codes: 0 done, 1 the call failed (NOT_FOUND, FAILED_PRECONDITION when already resolved, ...), 2 bad usage.
import process from "node:process";

import { connect, failed, loadService, unary } from "./lib.mjs";

const USAGE = "usage: node reviews.mjs list [--status pending|resolved] [--page-size N] [--page-token T] | get ID | " +
  "resolve ID confirmed|dismissed [--reviewer NAME] [--note TEXT]";

function options(argv) {
  const out = { positional: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith("--")) out[argv[i].slice(2)] = argv[++i] ?? "";
    else out.positional.push(argv[i]);
  }
  return out;
}

function request(command, opts) {
  const [id, decision] = opts.positional;
  if (command === "list" && !opts.positional.length) {
    return {
      status: opts.status ? `REVIEW_STATUS_${opts.status.toUpperCase()}` : "REVIEW_STATUS_UNSPECIFIED",
      page_size: Number(opts["page-size"] ?? 0),
      page_token: opts["page-token"] ?? "",
    };
  }
  if (command === "get" && id && opts.positional.length === 1) return { review_id: id };
  const reviewer = opts.reviewer || process.env.USER || process.env.LOGNAME;
  if (command === "resolve" && id && ["confirmed", "dismissed"].includes(decision) && reviewer) {
    return {
      review_id: id,
      decision: `REVIEW_DECISION_${decision.toUpperCase()}`,
      reviewer,
      note: opts.note ?? "",
    };
  }
  return null;
}

async function main([command, ...argv]) {
  const req = request(command, options(argv));
  if (!req) {
    console.error(USAGE);
    return 2;
  }
  const conn = connect(loadService("agentmesh/v1/review.proto", "ReviewService"));
  if (!conn) return 2;
  try {
    if (command === "list") {
      const reply = await unary(conn, "ListReviews", req);
      for (const r of reply.reviews) {
        console.log(`${r.review_id} ${r.status} ${r.action} ${r.direction} ${r.text_chars}`);
      }
      if (reply.next_page_token) console.log(`next: ${reply.next_page_token}`);
    } else if (command === "get") {
      console.log(JSON.stringify((await unary(conn, "GetReview", req)).review));
    } else {
      const reply = await unary(conn, "ResolveReview", req);
      console.log(`resolved ${reply.review.review_id}: ${reply.review.decision}`);
    }
    return 0;
  } catch (err) {
    return failed(err);
  } finally {
    conn.client.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
