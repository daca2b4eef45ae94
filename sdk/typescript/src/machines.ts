import { FleetError } from "./errors.js";
import { EventStream } from "./events.js";
import {
  type ExecCommandResult,
  type ForkedMachines,
  type Machine,
  type MachinesCreateParams,
  type OutputChunk,
  ROUTES,
  type Snapshot,
} from "./generated.js";
import { sseEvents } from "./sse.js";
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
 */
export class ExecStream implements AsyncIterable<ExecChunk> {
  private readonly controller = new AbortController();
  private readonly settled: Promise<ExecCommandResult>;
  private resolve!: (r: ExecCommandResult) => void;
  private reject!: (e: unknown) => void;
  private iterating = false;

  constructor(
    private readonly transport: Transport,
    private readonly body: string,
    signal: AbortSignal | undefined,
  ) {
    this.settled = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.settled.catch(() => undefined); // awaited or not, never an unhandled rejection
    if (signal?.aborted) this.controller.abort(signal.reason);
    signal?.addEventListener("abort", () => this.controller.abort(signal.reason), { once: true });
  }

  /** The command's result (exit code, capped output) once it ended. */
  get result(): Promise<ExecCommandResult> {
    if (!this.iterating) {
      void (async () => {
        for await (const _ of this) {
          // drained: the output is in the result too
        }
      })().catch(() => undefined);
    }
    return this.settled;
  }

  /** Kill the command (as aborting the signal does). */
  abort(): void {
    this.controller.abort(
      new FleetError(0, "execStream aborted", { name: "Aborted", httpStatus: 0 }),
    );
  }

  [Symbol.asyncIterator](): AsyncIterator<ExecChunk> {
    if (this.iterating) throw new Error("an ExecStream is iterated once");
    this.iterating = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<ExecChunk> {
    const encoder = new TextEncoder();
    let done = false;
    try {
      const resp = await this.transport.fetch(ROUTES.rpcStream, {
        method: "POST",
        headers: this.transport.headers({ "content-type": "application/json" }),
        body: this.body,
        signal: this.controller.signal,
      });
      const type = resp.headers.get("content-type") ?? "";
      if (!type.startsWith("text/event-stream") || resp.body === null) {
        if (!resp.ok) throw await this.transport.httpError(resp);
        const doc = (await resp.json()) as { error?: unknown };
        throw FleetError.fromWire(doc.error);
      }
      for await (const message of sseEvents(resp.body)) {
        if (message.event === ROUTES.sseOutput) {
          const chunk = JSON.parse(message.data) as OutputChunk;
          yield { stream: chunk.stream, data: encoder.encode(chunk.data) };
        } else if (message.event === ROUTES.sseResult) {
          const doc = JSON.parse(message.data) as { result?: ExecCommandResult; error?: unknown };
          if (doc.error !== undefined) throw FleetError.fromWire(doc.error);
          done = true;
          this.resolve(doc.result as ExecCommandResult);
          return;
        }
      }
      throw new FleetError(1045, "the stream ended without a result", { name: "StreamAborted" });
    } catch (err) {
      const reason = this.controller.signal.aborted ? this.controller.signal.reason : err;
      this.reject(reason);
      throw reason;
    } finally {
      if (!done) {
        // Left early (break, abort): closing the response kills the command on the machine.
        this.controller.abort();
        this.reject(
          new FleetError(0, "execStream closed before its result", {
            name: "Aborted",
            httpStatus: 0,
          }),
        );
      }
    }
  }
}
