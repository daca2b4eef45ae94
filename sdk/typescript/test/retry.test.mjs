// Which failures are sent again, against a scripted HTTP server beside the real stack's tests
// (a gateway failing over on cue is not something the stack can be asked for): retryable
// errors are resent after the wait they name, nothing else is, and a create whose answer was
// lost is resent with the same idempotency key.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import { Fleet, FleetError } from "../dist/esm/index.js";

/** A server answering each POST /rpc with the next of `answers` (a function of the request). */
async function scripted(answers) {
  const seen = [];
  const server = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    const call = JSON.parse(body);
    seen.push(call);
    const answer = answers[seen.length - 1];
    if (answer === undefined) throw new Error(`call ${seen.length} was not expected`);
    answer(call, res);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const fleet = new Fleet({ url: `http://127.0.0.1:${server.address().port}`, token: "t" });
  return { fleet, seen, close: () => new Promise((r) => server.close(r)) };
}

const json =
  (status, doc, headers = {}) =>
  (call, res) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify({ jsonrpc: "2.0", id: call.id, ...doc }));
  };
const ok = (result) => json(200, { result });
const error = (status, code, data, headers) =>
  json(status, { error: { code, message: `error ${code}`, ...(data ? { data } : {}) } }, headers);
const cut = () => (_call, res) => res.socket.destroy();

test("1501 (failing over) is sent again after its retryAfterMs", async () => {
  const s = await scripted([error(503, 1501, { retryAfterMs: 10 }), ok({ instances: [] })]);
  try {
    assert.deepEqual(await s.fleet.instances.list(), []);
    assert.equal(s.seen.length, 2);
  } finally {
    await s.close();
  }
});

test("1502 (no daemon answered) and the rate limit's Retry-After are sent again", async () => {
  const s = await scripted([
    error(502, 1502),
    error(429, 1029, undefined, { "retry-after": "0" }),
    ok({ instances: [] }),
  ]);
  try {
    assert.deepEqual(await s.fleet.instances.list(), []);
    assert.equal(s.seen.length, 3);
  } finally {
    await s.close();
  }
});

test("an error that may have run is not sent again: InternalError, a bare 502, Conflict", async () => {
  for (const answer of [
    error(500, -32603),
    (_c, res) => res.writeHead(502).end("bad gateway"),
    error(409, 1009),
  ]) {
    const s = await scripted([answer]);
    try {
      const err = await s.fleet.instances.list().catch((e) => e);
      assert.ok(err instanceof FleetError, String(err));
      assert.equal(err.retryable, false);
      assert.equal(s.seen.length, 1);
    } finally {
      await s.close();
    }
  }
});

test("retries stop at the retry deadline, with the last error", async () => {
  const s = await scripted(Array(8).fill(error(503, 1501, { retryAfterMs: 60_000 })));
  try {
    const err = await s.fleet.instances.list().catch((e) => e);
    assert.equal(err.code, 1501);
    assert.equal(s.seen.length, 1); // a 60 s wait is past the 30 s deadline: not waited
  } finally {
    await s.close();
  }
});

test("a create whose answer was lost is sent again with the same idempotency key", async () => {
  const machine = { id: "m-0123456789abcdef", status: "created" };
  const s = await scripted([cut(), ok(machine)]);
  try {
    assert.deepEqual(await s.fleet.machines.create({ instanceId: "i-0123456789abcdef" }), machine);
    assert.equal(s.seen.length, 2);
    assert.ok(s.seen[0].params.idempotencyKey);
    assert.equal(s.seen[1].params.idempotencyKey, s.seen[0].params.idempotencyKey);
  } finally {
    await s.close();
  }
});

test("any other call whose answer was lost is not sent again", async () => {
  const s = await scripted([cut()]);
  try {
    const err = await s.fleet.call("instances.create", { name: "x" }).catch((e) => e);
    assert.ok(err instanceof FleetError, String(err));
    assert.equal(err.name, "ConnectionFailed");
    assert.equal(s.seen.length, 1);
  } finally {
    await s.close();
  }
});
