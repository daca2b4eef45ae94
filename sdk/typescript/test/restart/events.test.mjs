// fleet.events resumes across a gateway restart with no duplicate and no gap. The harness
// names the gateway's process (FLEET_GATEWAY_PID); `fleet up` starts a new one when it dies.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fleet } from "../helpers.mjs";

test("the event iterator resumes across a gateway restart: no duplicate, no gap", async () => {
  const pid = Number(process.env.FLEET_GATEWAY_PID);
  assert.ok(pid > 0, "FLEET_GATEWAY_PID names the gateway's process");
  const f = fleet();
  const inst = await f.instances.create({ name: "ts-events" });
  const created = await f.machines.create({ instanceId: inst.id });

  const seen = [];
  const stream = f.events({ machineId: created.id, signal: AbortSignal.timeout(300_000) });
  let killed = false;
  for await (const event of stream) {
    assert.equal(event.machineId, created.id);
    assert.ok(event.eventId && event.occurredAt, JSON.stringify(event));
    seen.push(event);
    if (!killed) {
      process.kill(pid, "SIGKILL"); // after the first event: the rest come while it restarts
      killed = true;
    }
    if (event.type === "ready" || event.type === "failed") break;
  }
  assert.ok(killed);
  assert.equal(seen.at(-1).type, "ready", JSON.stringify(seen.at(-1)));

  // What the stream stores for this machine, read afresh from the restarted gateway.
  const stored = [];
  for await (const event of f.events({ machineId: created.id, follow: false })) {
    stored.push(event);
    if (event.type === "ready") break;
  }
  assert.deepEqual(
    seen.map((e) => e.eventId),
    stored.map((e) => e.eventId),
  );
  assert.equal(new Set(seen.map((e) => e.eventId)).size, seen.length);
  await f.machines.archive(created.id);
});
