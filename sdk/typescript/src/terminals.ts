import { ERROR_HEADER, FleetError } from "./errors.js";
import { type OpenedSession, ROUTES, type ServerControl } from "./generated.js";
import type { Transport } from "./transport.js";

export interface OpenTerminal {
  cols?: number;
  rows?: number;
  /** argv to run (default: the machine's login shell). */
  command?: string[];
  cwd?: string;
  name?: string;
  env?: Record<string, string>;
}

/** The part of a WebSocket both the standard one and the `ws` package have. */
interface Socket {
  binaryType: string;
  readyState: number;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: never) => void): void;
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === "string";
}

/**
 * A WebSocket to the gateway: on Node the `ws` package (bundled), which sends the token as a
 * header; elsewhere the runtime's own, authenticated by a single-use ticket (events.ticket).
 */
async function connect(transport: Transport, path: string): Promise<Socket> {
  const base = transport.url.replace(/^http/, "ws");
  if (isNode()) {
    const { WebSocket } = await import("ws");
    return await opened(
      new WebSocket(base + path, {
        headers: transport.headers(),
        maxPayload: 8 * 1024 * 1024,
      }) as Socket,
      (ws) =>
        new Promise((resolve) => {
          (ws as unknown as import("ws").WebSocket).once("unexpected-response", (_req, res) => {
            const header = res.headers[ERROR_HEADER];
            resolve(
              FleetError.fromHttp(
                res.statusCode ?? 500,
                "",
                typeof header === "string" ? header : null,
              ),
            );
          });
        }),
    );
  }
  const { ticket } = await transport.call("events.ticket", {});
  const sep = path.includes("?") ? "&" : "?";
  const Ctor = (globalThis as unknown as { WebSocket: new (url: string) => Socket }).WebSocket;
  return await opened(
    new Ctor(`${base}${path}${sep}ticket=${encodeURIComponent(ticket)}`),
    () => new Promise(() => undefined),
  );
}

async function opened(ws: Socket, refused: (ws: Socket) => Promise<FleetError>): Promise<Socket> {
  ws.binaryType = "arraybuffer";
  return await new Promise<Socket>((resolve, reject) => {
    void refused(ws).then(reject);
    ws.addEventListener("open", () => resolve(ws));
    ws.addEventListener("error", (e: { message?: string }) =>
      reject(
        new FleetError(0, `the terminal's WebSocket failed: ${e.message ?? "error"}`, {
          name: "ConnectionFailed",
          httpStatus: 0,
        }),
      ),
    );
  });
}

/**
 * A terminal on a machine: `write` keystrokes, `resize`, iterate its output (bytes), `close`.
 * The iteration ends when its command exits (`exitCode`) or the terminal is closed.
 */
export class Terminal implements AsyncIterable<Uint8Array> {
  /** The command's exit code once it exited (null: killed by a signal). */
  exitCode: number | null | undefined;
  private readonly queue: Uint8Array[] = [];
  private waiting: (() => void) | undefined;
  private ended = false;
  private failure: FleetError | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly socket: Socket,
    readonly session: OpenedSession,
  ) {
    socket.addEventListener("message", (event: { data: unknown }) => this.onMessage(event.data));
    socket.addEventListener("close", (event: { code: number; reason: string }) => {
      if (event.code === ROUTES.closeAborted) {
        this.failure = new FleetError(1045, `the terminal's session was lost: ${event.reason}`);
      }
      this.finish();
    });
  }

  get sessionId(): string {
    return this.session.sessionId;
  }

  write(data: string | Uint8Array): void {
    this.socket.send(typeof data === "string" ? new TextEncoder().encode(data) : data);
  }

  resize(cols: number, rows: number): void {
    this.socket.send(JSON.stringify({ type: "resize", cols, rows }));
  }

  /** End the terminal: its session is closed on the machine, and the socket. */
  async close(): Promise<void> {
    try {
      await this.transport.call("sessions.close", {
        machineId: this.session.machineId,
        sessionId: this.session.sessionId,
      });
    } finally {
      this.socket.close(1000);
      this.finish();
    }
  }

  /** Leave the session running on the machine; only this socket closes. */
  detach(): void {
    this.socket.close(1000);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      const next = this.queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.ended) {
        if (this.failure) throw this.failure;
        return;
      }
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
      });
    }
  }

  private onMessage(data: unknown): void {
    if (typeof data === "string") {
      const control = JSON.parse(data) as ServerControl;
      if (control.type === "exit") this.exitCode = control.code;
      return;
    }
    if (data instanceof ArrayBuffer) this.queue.push(new Uint8Array(data));
    else if (ArrayBuffer.isView(data))
      this.queue.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.wake();
  }

  private finish(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }
}

/** `fleet.terminals`: interactive terminals on a machine (sessions.open, then its WebSocket). */
export class Terminals {
  constructor(private readonly transport: Transport) {}

  async open(machineId: string, options: OpenTerminal = {}): Promise<Terminal> {
    const session = await this.transport.call("sessions.open", { machineId, ...options });
    const socket = await connect(this.transport, session.attachPath);
    return new Terminal(this.transport, socket, session);
  }
}
