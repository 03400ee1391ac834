// Sends records to a Forward server with @fluent-org/logger, driven by the Python tests.
// Usage: node send.js '<json options>'
//   {"port": 24224} or {"path": "/tmp/x.sock"}, "mode": "Message|Forward|PackedForward|CompressedPackedForward",
//   "ack": true, "sharedKey": "", "count": 100, "tag": "app", "prefix": "line", "eventTime": false,
//   "batch": 0 (records per flush; 0 = client default), "field": "log"
// Prints one JSON line {"sent": n, "acked": n, "errors": [...]} and exits 0 when every emit resolved.
"use strict";
const { FluentClient, EventTime } = require("@fluent-org/logger");

async function main() {
  const opts = JSON.parse(process.argv[2] || "{}");
  const socket = opts.path ? { path: opts.path } : { host: "127.0.0.1", port: opts.port };
  socket.disableReconnect = !!opts.disableReconnect;
  socket.timeout = opts.timeout || 10000;
  const clientOpts = {
    eventMode: opts.mode || "PackedForward",
    socket,
    flushInterval: opts.flushInterval || 20,
    sendQueueIntervalFlushLimit: opts.batch ? { length: opts.batch } : undefined,
    disconnect: { waitForPending: true, waitForPendingDelay: 5000, socketDisconnectDelay: 100 },
  };
  if (opts.ack) clientOpts.ack = { ackTimeout: opts.ackTimeout || 10000 };
  if (opts.sharedKey) clientOpts.security = { clientHostname: "node-client", sharedKey: opts.sharedKey };
  if (opts.eventRetry !== undefined) clientOpts.eventRetry = opts.eventRetry;
  const client = new FluentClient(opts.tag || "app", clientOpts);
  const field = opts.field || "log";
  const count = opts.count || 10;
  const errors = [];
  let acked = 0;
  const pending = [];
  // Emits that can never resolve (a refused handshake, reconnect disabled) leave node with
  // nothing to wait for: report what happened instead of exiting silently.
  process.on("beforeExit", () => {
    process.stdout.write(JSON.stringify({ sent: count, acked, incomplete: true, errors: errors.slice(0, 5) }) + "\n");
    process.exit(0);
  });
  for (let i = 0; i < count; i++) {
    const record = { [field]: `${opts.prefix || "line"} ${i}`, seq: i };
    const ts = opts.eventTime ? EventTime.now() : undefined;
    const p = (ts ? client.emit("log", record, ts) : client.emit("log", record))
      .then(() => { acked += 1; })
      .catch((e) => { errors.push(String(e && e.message ? e.message : e)); });
    pending.push(p);
  }
  await Promise.all(pending);
  try { await client.shutdown(); } catch (e) { errors.push("shutdown: " + String(e)); }
  process.stdout.write(JSON.stringify({ sent: count, acked, errors: errors.slice(0, 5), nerrors: errors.length }) + "\n");
  process.exit(0);
}

main().catch((e) => { process.stdout.write(JSON.stringify({ fatal: String(e) }) + "\n"); process.exit(3); });
setTimeout(() => { process.stdout.write(JSON.stringify({ fatal: "timeout" }) + "\n"); process.exit(4); }, 60000).unref();
