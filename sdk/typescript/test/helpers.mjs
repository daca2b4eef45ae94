// What the SDK's tests share: a Fleet of the stack the test harness started (FLEET_URL and
// FLEET_TOKEN: tests/e2e/test_typescript_sdk.py), and waits driven by events, never by sleeps.
import { createHash } from "node:crypto";
import { Fleet } from "../dist/esm/index.js";

export function fleet() {
  if (!process.env.FLEET_URL || !process.env.FLEET_TOKEN) {
    throw new Error("FLEET_URL and FLEET_TOKEN name the stack these tests run against");
  }
  return new Fleet();
}

/** A new instance (named after the test) and its machine, once ready. */
export async function readyMachine(f, name) {
  const inst = await f.instances.create({ name });
  const created = await f.machines.create({ instanceId: inst.id });
  const machine = await f.machines.waitReady(created.id, { timeoutMs: 300_000 });
  return { inst, machine };
}

/** The machine once its status is one of `statuses`, driven by its events (within 5 min). */
export async function waitStatus(f, machineId, statuses) {
  const signal = AbortSignal.timeout(300_000);
  let machine = await f.machines.get(machineId);
  if (statuses.includes(machine.status)) return machine;
  for await (const _ of f.events({ machineId, signal })) {
    machine = await f.machines.get(machineId);
    if (statuses.includes(machine.status)) return machine;
  }
  throw new Error(`machine ${machineId} is ${machine.status}, never ${statuses}`);
}

/** Call `probe` until it returns true, within `timeoutMs`: a check of state that has no event. */
export async function eventually(probe, what, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (let i = 1; ; i++) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((r) => setTimeout(r, Math.min(1000, 50 * i)));
  }
}

export const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
export const text = (bytes) => new TextDecoder().decode(bytes);

/** The command lines of every process in the machine. */
export async function processes(f, machineId) {
  const r = await f.machines.exec(machineId, [
    "sh",
    "-c",
    "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo",
  ]);
  return r.stdout;
}
