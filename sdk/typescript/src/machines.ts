import { type CodeRunOptions, type CodeRunStream, codeRun, codeRunStream } from "./code.js";
import { FleetError } from "./errors.js";
import { EventStream } from "./events.js";
import type {
  CodeRunResult,
  ExecCommandResult,
  FileEvent,
  ForkedMachines,
  Machine,
  MachineMetrics,
  MachinesCreateParams,
  OutputChunk,
  Snapshot,
  WatchEnded,
} from "./generated.js";
import { RpcStream } from "./rpc_stream.js";
import { anySignal, type Transport } from "./transport.js";
import { webcrypto } from "./webcrypto.js";

/** A command's default time limit on the machine, as the daemon's (s). */
export const DEFAULT_EXEC_TIMEOUT_S = 60;
/** How long past a command's own limit its answer may take (network, queueing; ms). */
const EXEC_MARGIN_MS = 15_000;

export interface ExecOptions {
  /** The command's time limit on the machine (s); it is killed past it. */
  timeoutS?: number;
  cwd?: string;
  env?: Record<string, string>;
  /** Aborting it abandons the call (exec) or kills the command (execStream). */
  signal?: AbortSignal;
}

/** One piece of a streamed command's output. */
export interface ExecChunk {
  stream: "stdout" | "stderr";
  data: Uint8Array;
}

/** machines.create's params; `idempotencyKey` is made for you when not given. */
export type CreateMachine = MachinesCreateParams;

async function newKey(): Promise<string> {
  return (await webcrypto()).randomUUID().replaceAll("-", "");
}

/** `fleet.machines`: create, look up, wait for, run commands on and change machines. */
export class Machines {
  constructor(private readonly transport: Transport) {}

  /**
   * The instance's machine. One idempotency key per logical create, sent with every retry of
   * it: a retry whose first answer was lost gets that machine, not a second one.
   */
  async create(params: CreateMachine, options: { signal?: AbortSignal } = {}): Promise<Machine> {
    const body = { ...params, idempotencyKey: params.idempotencyKey ?? (await newKey()) };
    return this.transport.call("machines.create", body, { ...options, resendCut: true });
  }

  /** Archive the instance's current machine and make a new one (idempotent, as create). */
  async rebuild(
    instanceId: string,
    options: { idempotencyKey?: string; signal?: AbortSignal } = {},
  ): Promise<Machine> {
    const params = { instanceId, idempotencyKey: options.idempotencyKey ?? (await newKey()) };
    return this.transport.call("machines.rebuild", params, {
      resendCut: true,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  get(machineId: string, options: { signal?: AbortSignal } = {}): Promise<Machine> {
    return this.transport.call("machines.get", { machineId }, options);
  }

  async list(instanceId?: string): Promise<Machine[]> {
    return (await this.transport.call("machines.list", instanceId ? { instanceId } : {})).machines;
  }

  /**
   * The machine once `ready`, driven by its events. Rejects with a FleetError whose message
   * is the machine's `statusReason` when it fails or is archived instead, and with a
   * `Timeout` FleetError after `timeoutMs` (default 10 min).
   */
  async waitReady(
    machineId: string,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<Machine> {
    const timeoutMs = options.timeoutMs ?? 600_000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const { signal, dispose } = anySignal([options.signal, timeout]);
    try {
      let machine = await this.get(machineId, { signal });
      if (settled(machine)) return ready(machine);
      for await (const _ of new EventStream(this.transport, { machineId, signal })) {
        machine = await this.get(machineId, { signal });
        if (settled(machine)) return ready(machine);
      }
      if (options.signal?.aborted) throw options.signal.reason;
      throw new FleetError(0, `machine ${machineId} was not ready within ${timeoutMs} ms`, {
        name: "Timeout",
        httpStatus: 0,
        data: { status: machine.status, statusReason: machine.statusReason },
      });
    } finally {
      dispose();
    }
  }

  /** Run argv on the machine; its exit code and (capped) output once it ends. */
  exec(
    machineId: string,
    command: string[],
    options: ExecOptions = {},
  ): Promise<ExecCommandResult> {
    const timeoutS = options.timeoutS ?? DEFAULT_EXEC_TIMEOUT_S;
    const { signal, ...rest } = options;
    return this.transport.call(
      "machines.exec",
      { machineId, command, ...rest, timeoutS },
      { timeoutMs: timeoutS * 1000 + EXEC_MARGIN_MS, ...(signal ? { signal } : {}) },
    );
  }

  /**
   * Run argv on the machine, its output as it comes: iterate the stream for the chunks, then
   * await `result`. Aborting `signal` (or leaving the loop early) kills the command.
   */
  execStream(machineId: string, command: string[], options: ExecOptions = {}): ExecStream {
    const timeoutS = options.timeoutS ?? DEFAULT_EXEC_TIMEOUT_S;
    const { signal, ...rest } = options;
    const body = this.transport.request("machines.execStream", {
      machineId,
      command,
      ...rest,
      timeoutS,
    });
    return new ExecStream(this.transport, body, signal);
  }

  /**
   * Run code in a stateful kernel of the machine (`machines.code.run`): its answer (results
   * as MIME bundles, stdout, stderr, the error). Given `onStdout`, `onStderr`, `onResult` or
   * `onError`, the run streams and each is called as its part comes, before this resolves.
   */
  codeRun(machineId: string, code: string, options: CodeRunOptions = {}): Promise<CodeRunResult> {
    return codeRun(this.transport, machineId, code, options);
  }

  /**
   * Run code in a stateful kernel of the machine, its parts as they come: iterate the stream
   * for them (`stdout`, `stderr`, `result`, `error`), then await `result`.
   */
  codeRunStream(machineId: string, code: string, options: CodeRunOptions = {}): CodeRunStream {
    return codeRunStream(this.transport, machineId, code, options);
  }

  /**
   * Watch a path of the machine's home (`machines.watch`): iterate the stream for each change
   * (`create`, `write`, `remove`, `rename`, `chmod`) as the machine's kernel reports it, then
   * await `result` for why the watch ended (its machine paused or stopped, the path removed).
   * Events left out for a reader slower than the machine come as one `overflow` event
   * (`dropped`: how many). Aborting `signal` (or leaving the loop early) ends the watch.
   */
  watch(machineId: string, path: string, options: WatchOptions = {}): WatchStream {
    const { signal, ...rest } = options;
    const body = this.transport.request("machines.watch", { machineId, path, ...rest });
    return new WatchStream(this.transport, body, signal, path);
  }

  /** The machine's samples of CPU, memory, disk and network (`machines.metrics`). */
  metrics(
    machineId: string,
    options: { since?: number; step?: number } = {},
  ): Promise<MachineMetrics> {
    return this.transport.call("machines.metrics", { machineId, ...options });
  }

  stop(machineId: string): Promise<Machine> {
    return this.transport.call("machines.stop", { machineId });
  }

  start(machineId: string): Promise<Machine> {
    return this.transport.call("machines.start", { machineId });
  }

  archive(machineId: string): Promise<Machine> {
    return this.transport.call("machines.archive", { machineId });
  }

  restart(machineId: string): Promise<Machine> {
    return this.transport.call("machines.restart", { machineId });
  }

  /** `count` new machines whose homes start as this one's is now. */
  async fork(machineId: string, options: { count?: number } = {}): Promise<Machine[]> {
    const forked: ForkedMachines = await this.transport.call("machines.fork", {
      machineId,
      ...options,
    });
    return forked.machines;
  }

  /** A named copy of the machine's home; `machines.create({fromSnapshot})` starts from it. */
  snapshot(machineId: string, name: string): Promise<Snapshot> {
    return this.transport.call("machines.snapshot", { machineId, name });
  }
}

function settled(m: Machine): boolean {
  return ["ready", "failed", "archiving", "archived"].includes(m.status);
}

function ready(m: Machine): Machine {
  if (m.status === "ready") return m;
  throw new FleetError(1009, `machine ${m.id} is ${m.status}: ${m.statusReason}`, {
    data: { machineId: m.id, status: m.status, statusReason: m.statusReason },
  });
}

/**
 * A command's output as it is produced (POST /rpc/stream): an async iterable of chunks, then
 * `result`. Iterate it once; `result` alone (without iterating) reads the output and drops it.
 * Aborting it (or leaving the loop early) kills the command.
 */
export class ExecStream extends RpcStream<ExecChunk, ExecCommandResult> {
  constructor(transport: Transport, body: string, signal: AbortSignal | undefined) {
    const encoder = new TextEncoder();
    super(transport, body, signal, "execStream", (data) => {
      const chunk = JSON.parse(data) as OutputChunk;
      return { stream: chunk.stream, data: encoder.encode(chunk.data) };
    });
  }
}

/** What to watch beside the path: every directory below it too, only some kinds. */
export interface WatchOptions {
  recursive?: boolean;
  events?: Array<"create" | "write" | "remove" | "rename" | "chmod">;
  /** Aborting it ends the watch. */
  signal?: AbortSignal;
}

/**
 * A watch's changes as they happen (POST /rpc/stream): an async iterable of `FileEvent`s,
 * then `result` (why it ended). Iterate it once. Aborting it (or leaving the loop early) ends
 * the watch on the machine.
 */
export class WatchStream extends RpcStream<FileEvent, WatchEnded> {
  constructor(transport: Transport, body: string, signal: AbortSignal | undefined, path: string) {
    let told = 0;
    super(
      transport,
      body,
      signal,
      "watch",
      (data) => JSON.parse(data) as FileEvent,
      (total) => {
        const missed = total - told;
        told = Math.max(told, total);
        return missed > 0 ? { type: "overflow", path, isDir: true, dropped: missed } : undefined;
      },
    );
  }
}
