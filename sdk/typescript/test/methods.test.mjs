// Every method of the gateway's OpenRPC document is in the SDK's typed table, and failures are
// typed FleetErrors.
import assert from "node:assert/strict";
import { test } from "node:test";
import { FleetError, METHOD_NAMES } from "../dist/esm/index.js";
import { fleet } from "./helpers.mjs";

test("the SDK types every method of the gateway's OpenRPC document, and only those", async () => {
  const f = fleet();
  const doc = await f.call("rpc.discover", {});
  const served = doc.methods.map((m) => m.name);
  assert.deepEqual([...METHOD_NAMES], served);
  console.log(
    `methods: ${served.length} in rpc.discover, ${METHOD_NAMES.length} typed in generated.ts`,
  );
});

test("a missing machine is a typed NotFound", async () => {
  const f = fleet();
  const err = await f.machines.get("m-0000000000000000").catch((e) => e);
  assert.ok(err instanceof FleetError, String(err));
  assert.equal(err.code, 1004);
  assert.equal(err.name, "NotFound");
  assert.equal(err.httpStatus, 404);
  assert.equal(err.retryable, false);
  assert.match(err.message, /m-0000000000000000/);
});

test("bad params are a typed InvalidParams naming the field", async () => {
  const f = fleet();
  const err = await f.call("machines.get", { machineId: "not-an-id" }).catch((e) => e);
  assert.ok(err instanceof FleetError, String(err));
  assert.equal(err.code, -32602);
  assert.equal(err.name, "InvalidParams");
  assert.equal(err.data?.field, "$.machineId");
});

test("a wrong token is a typed Unauthorized", async () => {
  const { Fleet } = await import("../dist/esm/index.js");
  const f = new Fleet({ url: process.env.FLEET_URL, token: "not-a-token" });
  const err = await f.instances.list().catch((e) => e);
  assert.ok(err instanceof FleetError, String(err));
  assert.equal(err.code, 1001);
  assert.equal(err.httpStatus, 401);
});

test("an aborted call rejects with the signal's reason", async () => {
  const f = fleet();
  const controller = new AbortController();
  controller.abort(new Error("stop"));
  await assert.rejects(
    f.instances.list().then(() => f.call("instances.list", {}, { signal: controller.signal })),
    /stop/,
  );
});
