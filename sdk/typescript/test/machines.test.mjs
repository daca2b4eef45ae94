// The SDK's surface against a live stack: one machine, driven as a user would.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { FleetError } from "../dist/esm/index.js";
import {
  eventually,
  fleet,
  processes,
  readyMachine,
  sha256,
  text,
  waitStatus,
} from "./helpers.mjs";

const MiB = 1024 * 1024;

describe("a machine", () => {
  const f = fleet();
  let inst;
  let machine;

  before(async () => {
    ({ inst, machine } = await readyMachine(f, "ts-sdk"));
  });

  after(async () => {
    if (machine) await f.machines.archive(machine.id).catch(() => undefined);
  });

  test("instances.create, machines.create, get and waitReady", async () => {
    assert.equal(machine.status, "ready");
    assert.equal(machine.instanceId, inst.id);
    assert.equal((await f.machines.get(machine.id)).id, machine.id);
    assert.ok((await f.machines.list(inst.id)).some((m) => m.id === machine.id));
    assert.equal((await f.instances.get(inst.id)).currentMachineId, machine.id);
  });

  test("exec resolves exit code, stdout and stderr", async () => {
    const r = await f.machines.exec(machine.id, ["sh", "-c", "echo out; echo err >&2; exit 3"], {
      timeoutS: 30,
    });
    assert.deepEqual([r.exitCode, r.stdout, r.stderr], [3, "out\n", "err\n"]);
  });

  test("execStream yields stdout and stderr chunks as bytes, then its result", async () => {
    const stream = f.machines.execStream(machine.id, [
      "sh",
      "-c",
      "echo one; echo two >&2; echo three",
    ]);
    const got = { stdout: "", stderr: "" };
    for await (const chunk of stream) {
      assert.ok(chunk.data instanceof Uint8Array);
      got[chunk.stream] += text(chunk.data);
    }
    assert.deepEqual(got, { stdout: "one\nthree\n", stderr: "two\n" });
    const result = await stream.result;
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout, "one\nthree\n");
  });

  test("aborting an execStream kills the remote process: none is left", async () => {
    const marker = "sleep 3617";
    const controller = new AbortController();
    const stream = f.machines.execStream(machine.id, ["sh", "-c", `echo started; exec ${marker}`], {
      signal: controller.signal,
    });
    const seen = [];
    await assert.rejects(
      (async () => {
        for await (const chunk of stream) {
          seen.push(text(chunk.data));
          assert.ok((await processes(f, machine.id)).includes(marker), "the command runs");
          controller.abort(new Error("enough"));
        }
      })(),
      /enough/,
    );
    assert.deepEqual(seen, ["started\n"]);
    await assert.rejects(stream.result, /enough/);
    await eventually(
      async () => !(await processes(f, machine.id)).includes(marker),
      "the command is gone",
    );
  });

  test("codeRun keeps state and calls its callbacks as the parts come, then resolves the answer", async () => {
    await f.machines.codeRun(machine.id, "n = 6");
    const seen = [];
    const stderr = [];
    const code =
      "import sys\nprint('one', flush=True)\nprint('two', file=sys.stderr, flush=True)\nn * 7";
    const answer = await f.machines.codeRun(machine.id, code, {
      timeoutS: 60,
      onStdout: (t) => seen.push(["stdout", t]),
      onStderr: (t) => stderr.push(t),
      onResult: (bundle) => seen.push(["result", bundle["text/plain"]]),
      onError: (error) => seen.push(["error", error.name]),
    });
    assert.deepEqual(seen, [
      ["stdout", "one\n"],
      ["result", "42"],
    ]);
    assert.deepEqual(stderr, ["two\n"]);
    assert.deepEqual(
      [answer.stdout, answer.error, answer.contextId],
      [["one\n"], null, "default-python"],
    );
    const plain = await f.machines.codeRun(machine.id, "1 / 0");
    assert.equal(plain.error?.name, "ZeroDivisionError");
  });

  test("codeRunStream yields stdout while the code runs, then the error, then the answer", async () => {
    // The code waits for a file this test writes only once it holds the first part.
    const go = `go-${randomBytes(6).toString("hex")}`;
    const code = [
      "import os, time",
      "print('waiting', flush=True)",
      "for _ in range(600):",
      `    if os.path.exists('${go}'): break`,
      "    time.sleep(0.05)",
      `raise ValueError('seen' if os.path.exists('${go}') else 'never')`,
    ].join("\n");
    const stream = f.machines.codeRunStream(machine.id, code, { timeoutS: 60 });
    const parts = [];
    for await (const part of stream) {
      parts.push(part);
      if (parts.length === 1) await f.files.write(machine.id, go, "");
    }
    assert.deepEqual(
      parts.map((p) => [p.seq, p.kind, p.text ?? p.error?.value]),
      [
        [0, "stdout", "waiting\n"],
        [1, "error", "seen"],
      ],
    );
    const answer = await stream.result;
    assert.deepEqual([answer.stdout, answer.error?.name], [["waiting\n"], "ValueError"]);
  });

  test("aborting a codeRunStream interrupts the run; its context keeps its state", async () => {
    const ctx = await f.call("machines.code.createContext", { machineId: machine.id });
    await f.machines.codeRun(machine.id, "kept = 'here'", { contextId: ctx.id });
    const controller = new AbortController();
    const spin = "print('spinning', flush=True)\nwhile True: pass";
    const stream = f.machines.codeRunStream(machine.id, spin, {
      contextId: ctx.id,
      timeoutS: 3600,
      signal: controller.signal,
    });
    await assert.rejects(
      (async () => {
        for await (const part of stream) {
          assert.equal(part.text, "spinning\n");
          controller.abort(new Error("enough"));
        }
      })(),
      /enough/,
    );
    // Not interrupted, this run would wait for the spinning one's hour.
    const after = await f.machines.codeRun(machine.id, "kept", {
      contextId: ctx.id,
      signal: AbortSignal.timeout(60_000),
    });
    assert.deepEqual(after.results, [{ "text/plain": "'here'", isMain: true }]);
    await f.call("machines.code.deleteContext", { machineId: machine.id, contextId: ctx.id });
  });

  test("files: text, bytes and a stream, 1 MiB checksummed both ways", async () => {
    const written = await f.files.write(machine.id, "notes.txt", "remember the milk\n");
    assert.equal(written.size, 18);
    assert.equal(text(await f.files.read(machine.id, "notes.txt")), "remember the milk\n");

    const bytes = new Uint8Array(randomBytes(MiB));
    const up = await f.files.write(machine.id, "blob.bin", bytes, { mode: 0o600 });
    assert.deepEqual([up.size, up.sha256, up.mode], [MiB, sha256(bytes), 0o600]);
    assert.equal(sha256(await f.files.read(machine.id, "blob.bin")), sha256(bytes));
    const download = await f.files.readStream(machine.id, "blob.bin");
    assert.deepEqual([download.size, download.mode], [MiB, 0o600]);
    const parts = [];
    for await (const chunk of download) parts.push(chunk);
    assert.equal(sha256(Buffer.concat(parts)), sha256(bytes));

    let at = 0;
    const source = new ReadableStream({
      pull(controller) {
        if (at >= bytes.length) return controller.close();
        controller.enqueue(bytes.subarray(at, at + 100_000));
        at += 100_000;
      },
    });
    const streamed = await f.files.write(machine.id, "dir/streamed.bin", source);
    assert.deepEqual([streamed.size, streamed.sha256], [MiB, sha256(bytes)]);
    const check = await f.machines.exec(machine.id, ["sha256sum", "dir/streamed.bin"]);
    assert.equal(check.stdout.split(" ")[0], sha256(bytes));
  });

  test("watch yields an exec's changes as they happen, then why the watch ended", async () => {
    await f.machines.exec(machine.id, ["mkdir", "-p", "watched"]);
    const stream = f.machines.watch(machine.id, "watched");
    const seen = [];
    let n = 0;
    const marker = setInterval(() => {
      // The watch is in place once it reports one of these; then the real changes.
      f.machines.exec(machine.id, ["touch", `watched/ready-${n++}`]).catch(() => undefined);
    }, 500);
    try {
      for await (const event of stream) {
        seen.push(`${event.type} ${event.path.split("/").pop()}`);
        if (event.path.includes("/ready-") && !seen.some((s) => s.endsWith(" a"))) {
          clearInterval(marker);
          await f.machines.exec(machine.id, ["sh", "-c", "cd watched && echo x > a && mv a b"]);
        }
        if (seen.includes("create b")) {
          await f.machines.exec(machine.id, ["rm", "-rf", "watched"]);
        }
      }
    } finally {
      clearInterval(marker);
    }
    for (const want of ["create a", "write a", "rename a", "create b"]) {
      assert.ok(seen.includes(want), `${want} in ${seen}`);
    }
    const end = await stream.result;
    assert.equal(end.reason, "removed");
  });

  test("metrics: the machine's samples, and its latest on get", async () => {
    await eventually(
      async () => (await f.machines.metrics(machine.id)).samples.length > 0,
      "a sample",
    );
    const got = await f.machines.metrics(machine.id, { step: 60 });
    assert.equal(got.stepS, 60);
    assert.ok((await f.machines.get(machine.id)).metrics, "get carries the latest sample");
  });

  test("reading a missing file is a typed FileNotFound", async () => {
    const err = await f.files.read(machine.id, "no/such/file").catch((e) => e);
    assert.ok(err instanceof FleetError, String(err));
    assert.deepEqual([err.code, err.name, err.httpStatus], [1051, "FileNotFound", 404]);
  });

  test("a terminal echoes what is typed, resizes and closes", async () => {
    const terminal = await f.terminals.open(machine.id, { cols: 100, rows: 30 });
    terminal.write("echo hello-$((6*7))\n");
    let out = "";
    for await (const chunk of terminal) {
      out += text(chunk);
      if (out.includes("hello-42")) break;
    }
    assert.match(out, /hello-42/);
    terminal.resize(120, 40);
    terminal.write("stty size\n");
    for await (const chunk of terminal) {
      out += text(chunk);
      if (out.includes("40 120")) break;
    }
    assert.match(out, /40 120/);
    await terminal.close();
    const sessions = await f.call("sessions.list", { machineId: machine.id });
    assert.ok(!sessions.sessions.some((s) => s.sessionId === terminal.sessionId && s.running));
  });

  test("ports.previewUrl is the port's preview with a single-use ticket", async () => {
    const url = new URL(await f.ports.previewUrl(machine.id, 8000));
    assert.ok(url.searchParams.get("fleet_ticket"));
    assert.match(url.href, new RegExp(`${machine.id}-8000`));
    assert.ok(Array.isArray(await f.ports.list(machine.id)));
  });

  test("fork and snapshot", async () => {
    await f.files.write(machine.id, "forked.txt", "from the parent\n");
    const [child] = await f.machines.fork(machine.id);
    try {
      const ready = await f.machines.waitReady(child.id, { timeoutMs: 300_000 });
      const r = await f.machines.exec(ready.id, ["cat", "forked.txt"]);
      assert.equal(r.stdout, "from the parent\n");
    } finally {
      await f.machines.archive(child.id);
    }
    const snap = await f.machines.snapshot(machine.id, "ts-snap");
    assert.deepEqual([snap.name, snap.machineId], ["ts-snap", machine.id]);
  });

  test("stop: a restart is a typed MachineStopped; an exec wakes it; start and stop again", async () => {
    await f.machines.stop(machine.id);
    await waitStatus(f, machine.id, ["stopped"]);
    // A restart never wakes a machine (docs/stop-start.md, wake on access).
    const err = await f.machines.restart(machine.id).catch((e) => e);
    assert.ok(err instanceof FleetError, String(err));
    assert.deepEqual(
      [err.code, err.name, err.httpStatus, err.retryable],
      [1040, "MachineStopped", 409, false],
    );
    // An exec starts it within the call, and runs.
    const woke = await f.machines.exec(machine.id, ["echo", "awake"], { timeoutS: 120 });
    assert.deepEqual([woke.exitCode, woke.stdout], [0, "awake\n"]);
    assert.equal((await f.machines.get(machine.id)).status, "ready");
    assert.equal(text(await f.files.read(machine.id, "notes.txt")), "remember the milk\n");
    await f.machines.stop(machine.id);
    await waitStatus(f, machine.id, ["stopped"]);
    await f.machines.start(machine.id);
    const back = await f.machines.waitReady(machine.id, { timeoutMs: 300_000 });
    assert.equal(back.status, "ready");
  });

  test("archive; then waitReady rejects with the status and its reason", async () => {
    const archived = await f.machines.archive(machine.id);
    assert.match(archived.status, /^archiv/);
    const err = await f.machines.waitReady(machine.id).catch((e) => e);
    assert.ok(err instanceof FleetError, String(err));
    assert.match(err.message, /archiv/);
    assert.equal(err.data.statusReason, archived.statusReason);
    machine = undefined;
  });
});

describe("env and repos", () => {
  const f = fleet();

  test("env.set, list and unset, of an instance and of the platform", async () => {
    const inst = await f.instances.create({ name: "ts-env" });
    const v = await f.env.set({ instanceId: inst.id, name: "TS_SDK_VAR", value: "it's 'quoted'" });
    assert.equal(v.name, "TS_SDK_VAR");
    assert.ok((await f.env.list({ instanceId: inst.id })).some((e) => e.name === "TS_SDK_VAR"));
    assert.equal(await f.env.unset({ instanceId: inst.id, name: "TS_SDK_VAR" }), true);
    assert.equal(await f.env.unset({ instanceId: inst.id, name: "TS_SDK_VAR" }), false);
    await f.env.set({ name: "TS_SDK_PLATFORM", value: "1" });
    assert.ok((await f.env.list()).some((e) => e.name === "TS_SDK_PLATFORM"));
    assert.equal(await f.env.unset({ name: "TS_SDK_PLATFORM" }), true);
  });

  test("repos.add, list and remove", async () => {
    const inst = await f.instances.create({ name: "ts-repos" });
    const repo = await f.repos.add({
      instanceId: inst.id,
      url: "https://git.example.com/org/app.git",
      branch: "main",
      path: "src/app",
    });
    assert.equal(repo.path, "src/app");
    assert.deepEqual(
      (await f.repos.list(inst.id)).map((r) => r.path),
      ["src/app"],
    );
    assert.equal(await f.repos.remove({ instanceId: inst.id, path: "src/app" }), true);
    assert.deepEqual(await f.repos.list(inst.id), []);
  });

  test("a bad env name is a typed InvalidParams", async () => {
    const err = await f.env.set({ name: "1 bad", value: "x" }).catch((e) => e);
    assert.ok(err instanceof FleetError, String(err));
    assert.equal(err.name, "InvalidParams");
  });
});
