// Benchmark 28's TypeScript side, driven by bench/typescript_sdk.py over stdin, one command a
// line, each answered with one JSON line on stdout: `exec N` times N machines.exec calls of
// `echo x` through @fleetd/sdk ({"execs": [seconds...]}); `write MIB PATH` times one
// files.write of MIB MiB of random bytes ({"writeS": seconds}). FLEET_URL and FLEET_TOKEN name
// the stack; the machine is argv's.
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { Fleet } from "../sdk/typescript/dist/esm/index.js";

const [machineId] = process.argv.slice(2);
const fleet = new Fleet();
const argv = ["echo", "x"];

async function execs(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fleet.machines.exec(machineId, argv);
    out.push((performance.now() - t0) / 1000);
  }
  return { execs: out };
}

async function write(mib, path) {
  const data = new Uint8Array(randomBytes(mib * 1024 * 1024));
  const t0 = performance.now();
  const done = await fleet.files.write(machineId, path, data);
  const writeS = (performance.now() - t0) / 1000;
  if (done.size !== data.byteLength) throw new Error(`wrote ${done.size} of ${data.byteLength}`);
  return { writeS };
}

for await (const line of createInterface({ input: process.stdin })) {
  const [verb, a, b] = line.trim().split(" ");
  const answer = verb === "exec" ? await execs(Number(a)) : await write(Number(a), b);
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
