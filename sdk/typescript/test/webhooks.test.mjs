// fleet.webhooks against the stack: an endpoint on this host (the stack allows 127.0.0.1 as a
// webhook's destination: FLEET_WEBHOOK_ALLOW_PRIVATE, tests/e2e/test_typescript_sdk.py) gets
// a webhook.test event, signed as the Standard Webhooks specification says.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:http";
import { test } from "node:test";
import { fleet } from "./helpers.mjs";

/** The `v1,` signature of `id.timestamp.body` with a `whsec_` secret. */
function sign(secret, id, timestamp, body) {
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  return `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

test("a webhook endpoint gets a signed test event, and its delivery is listed", async () => {
  const f = fleet();
  const got = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(204).end();
      server.emit("webhook");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  try {
    const inst = await f.instances.create({ name: "ts-webhooks" });
    const url = `http://127.0.0.1:${server.address().port}/hook`;
    const hook = await f.webhooks.create({ instanceId: inst.id, url, events: ["machine.ready"] });
    assert.match(hook.secret, /^whsec_/);
    assert.deepEqual(
      (await f.webhooks.list(inst.id)).map((h) => [h.id, "secret" in h]),
      [[hook.id, false]],
    );
    const arrived = once(server, "webhook", { signal: AbortSignal.timeout(30_000) });
    const eventId = await f.webhooks.test(hook.id);
    await arrived;
    const [{ headers, body }] = got;
    assert.equal(headers["webhook-id"], eventId);
    const expected = sign(hook.secret, eventId, headers["webhook-timestamp"], body);
    assert.equal(headers["webhook-signature"], expected);
    assert.equal(JSON.parse(body).type, "webhook.test");
    // The attempt is recorded once its answer is read: moments after the endpoint answered.
    let attempts = [];
    for (let i = 0; i < 100 && !attempts.length; i++) {
      ({ attempts } = await f.webhooks.deliveries({ webhookId: hook.id }));
      if (!attempts.length) await new Promise((ok) => setTimeout(ok, 100));
    }
    assert.equal(attempts[0]?.outcome, "delivered");
    assert.equal(attempts[0]?.status, 204);
    const rotated = await f.webhooks.rotateSecret(hook.id);
    assert.notEqual(rotated.secret, hook.secret);
    assert.equal(await f.webhooks.delete(hook.id), true);
  } finally {
    server.close();
  }
});
