import { ERROR_HEADER, FleetError } from "./errors.js";
import type { MethodName, Methods } from "./generated.js";
import { type Answer, Poster } from "./post.js";

export const DEFAULT_URL = "http://127.0.0.1:8080";
/** Tries of one call while the gateway answers a retryable error (as the Python client). */
export const MAX_TRIES = 8;
/** How long a call may keep being sent again, in all, by default (ms). */
export const DEFAULT_RETRY_DEADLINE_MS = 30_000;

export interface FleetOptions {
  /** The gateway's URL; on Node, `FLEET_URL` by default, else http://127.0.0.1:8080. */
  url?: string;
  /** An access token; on Node, `FLEET_TOKEN` by default. */
  token?: string;
  /** How long a retryable error may keep a call going, waits included (ms; default 30 s). */
  retryDeadlineMs?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
}

export interface CallOptions {
  /** Aborting it abandons the call (and what it started, for the streams). */
  signal?: AbortSignal;
  /** Give up on one request after this long (ms). */
  timeoutMs?: number;
  /**
   * The params make running the call twice harmless (an `idempotencyKey`): it is also sent
   * again when the connection broke after the request went out.
   */
  resendCut?: boolean;
}

/** Connection-level failures that mean the request never left this side. */
const NOT_SENT = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

function env(name: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return p?.env?.[name] || undefined;
}

/** The one backoff rule (base/backoff.py): `base` doubling up to `cap`, equal jitter (ms). */
export function backoffMs(attempt: number, base = 250, cap = 5000): number {
  const delay = Math.min(cap, base * 2 ** (Math.max(attempt, 1) - 1));
  return (0.5 + Math.random() / 2) * delay;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const done = () => {
      signal?.removeEventListener("abort", abort);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", abort, { once: true });
  });
}

/** A signal aborted when any of `signals` is (AbortSignal.any, which Node 18 lacks). */
export function anySignal(signals: Array<AbortSignal | undefined>): {
  signal: AbortSignal;
  dispose: () => void;
} {
  const controller = new AbortController();
  const live = signals.filter((s): s is AbortSignal => s !== undefined);
  const listeners: Array<() => void> = [];
  for (const s of live) {
    if (s.aborted) {
      controller.abort(s.reason);
      break;
    }
    const on = () => controller.abort(s.reason);
    s.addEventListener("abort", on, { once: true });
    listeners.push(() => s.removeEventListener("abort", on));
  }
  return {
    signal: controller.signal,
    dispose: () => {
      for (const f of listeners) f();
    },
  };
}

/** HTTP to one gateway: JSON-RPC calls, and the requests of the other routes. */
export class Transport {
  readonly url: string;
  readonly token: string;
  readonly retryDeadlineMs: number;
  private readonly fetchImpl: typeof fetch;
  /** Requests whose body is in memory: calls, uploads of bytes. */
  readonly poster: Poster;
  private nextId = 1;

  constructor(options: FleetOptions) {
    this.url = (options.url ?? env("FLEET_URL") ?? DEFAULT_URL).replace(/\/+$/, "");
    this.token = options.token ?? env("FLEET_TOKEN") ?? "";
    this.retryDeadlineMs = options.retryDeadlineMs ?? DEFAULT_RETRY_DEADLINE_MS;
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== "function") throw new Error("no fetch: pass options.fetch (Node 18+ has one)");
    this.fetchImpl = f.bind(globalThis);
    this.poster = new Poster(options.fetch);
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.token ? { authorization: `Bearer ${this.token}`, ...extra } : extra;
  }

  /** A request to a route of the gateway; connection failures become FleetError. */
  async fetch(path: string, init: RequestInit & { duplex?: "half" }): Promise<Response> {
    try {
      return await this.fetchImpl(this.url + path, init);
    } catch (err) {
      if (init.signal?.aborted) throw init.signal.reason;
      throw this.unreachable(err);
    }
  }

  unreachable(err: unknown): FleetError {
    // fetch's errors carry the system's code in `cause`; node:http's, in themselves.
    const e = err as { code?: string; cause?: { code?: string } };
    const code = e?.cause?.code ?? e?.code;
    const sent = !(code !== undefined && NOT_SENT.has(code));
    return new FleetError(
      0,
      `cannot reach fleetd at ${this.url} (${code ?? String(err)}); start it with \`fleet up\`, or set FLEET_URL`,
      { name: "ConnectionFailed", data: { sent }, httpStatus: 0, cause: err },
    );
  }

  /** The error of a non-2xx answer of any route. */
  async httpError(resp: Response): Promise<FleetError> {
    const body = await resp.text().catch(() => "");
    return this.answerError({
      status: resp.status,
      header: (n) => resp.headers.get(n),
      text: body,
    });
  }

  /** The error of a non-2xx answer read whole. */
  answerError(resp: Answer): FleetError {
    const body = resp.text;
    if (resp.status === 401) {
      return new FleetError(
        1001,
        `the gateway at ${this.url} refused the access token (HTTP 401); set FLEET_TOKEN or pass {token}`,
        { httpStatus: 401 },
      );
    }
    return FleetError.fromHttp(
      resp.status,
      body,
      resp.header(ERROR_HEADER),
      resp.header("retry-after"),
    );
  }

  /** The JSON-RPC request body of one call. */
  request(method: string, params: unknown): string {
    return JSON.stringify({ jsonrpc: "2.0", id: this.nextId++, method, params });
  }

  /** One call, one request: its result, or its error. */
  async callOnce<M extends MethodName>(
    method: M,
    params: Methods[M]["params"],
    options: CallOptions = {},
  ): Promise<Methods[M]["result"]> {
    const timeout =
      options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs);
    const { signal, dispose } = anySignal([options.signal, timeout]);
    try {
      let resp: Answer;
      try {
        const headers = this.headers({ "content-type": "application/json" });
        resp = await this.poster.post(
          `${this.url}/rpc`,
          this.request(method, params),
          headers,
          signal,
        );
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        throw this.unreachable(err);
      }
      if (resp.status < 200 || resp.status > 299) throw this.answerError(resp);
      const doc = JSON.parse(resp.text) as { result?: unknown; error?: unknown };
      if (doc.error !== undefined) throw FleetError.fromWire(doc.error);
      return doc.result as Methods[M]["result"];
    } catch (err) {
      if (timeout?.aborted && !options.signal?.aborted) {
        throw new FleetError(0, `${method}: no answer within ${options.timeoutMs} ms`, {
          name: "Timeout",
          httpStatus: 0,
        });
      }
      throw err;
    } finally {
      dispose();
    }
  }

  /**
   * A call, sent again after a wait while it fails with a retryable error (1501, 1502, the
   * rate limit: nothing ran), up to MAX_TRIES tries within the retry deadline; with
   * `resendCut`, also when the connection broke after the request went out.
   */
  async call<M extends MethodName>(
    method: M,
    params: Methods[M]["params"],
    options: CallOptions = {},
  ): Promise<Methods[M]["result"]> {
    const deadline = Date.now() + this.retryDeadlineMs;
    for (let tried = 1; ; tried++) {
      try {
        return await this.callOnce(method, params, options);
      } catch (err) {
        if (!(err instanceof FleetError) || !resendable(err, options) || tried >= MAX_TRIES) {
          throw err;
        }
        const wait = Math.max(err.retryAfterMs ?? 0, backoffMs(tried));
        if (Date.now() + wait > deadline) throw err;
        await sleep(wait, options.signal);
      }
    }
  }
}

function resendable(err: FleetError, options: CallOptions): boolean {
  if (err.retryable) return true;
  return options.resendCut === true && err.name === "ConnectionFailed" && err.data?.sent === true;
}
