// Benchmark 27's TypeScript side (bench/typescript_sdk.py runs it): `n` machines.exec calls of
// `echo x` through @fleetd/sdk, each timed, and one files.write of `mib` MiB of random bytes,
// timed; JSON on stdout. FLEET_URL and FLEET_TOKEN name the stack.
import { randomBytes } from "node:crypto";
import { Fleet } from "../sdk/typescript/dist/esm/index.js";

const [machineId, n, mib, path] = process.argv.slice(2);
const fleet = new Fleet();
const argv = ["echo", "x"];
for (let i = 0; i < 5; i++) await fleet.machines.exec(machineId, argv); // warm the connection
const execs = [];
for (let i = 0; i < Number(n); i++) {
  const t0 = performance.now();
  await fleet.machines.exec(machineId, argv);
  execs.push((performance.now() - t0) / 1000);
}
let writeS = null;
if (Number(mib) > 0) {
  const data = new Uint8Array(randomBytes(Number(mib) * 1024 * 1024));
  const t0 = performance.now();
  const done = await fleet.files.write(machineId, path, data);
  writeS = (performance.now() - t0) / 1000;
  if (done.size !== data.byteLength) throw new Error(`wrote ${done.size} of ${data.byteLength}`);
}
console.log(JSON.stringify({ execs, writeS }));
