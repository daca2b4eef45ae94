import { CODE_BY_STATUS, ERRORS } from "./generated.js";

/** The header an HTTP error answer carries its JSON-RPC error object in (a refused WebSocket). */
export const ERROR_HEADER = "x-fleet-error";

/** The JSON-RPC error object of the wire. */
export interface WireError {
  code: number;
  message: string;
  data?: unknown;
}

type Entry = { name: string; httpStatus: number; retryable: boolean };

function entry(code: number): Entry | undefined {
  return (ERRORS as Record<string, Entry>)[String(code)];
}

/**
 * Every failure of the SDK: `code` and `name` are the contract's (contracts/errors.py), `data`
 * the error's details as the gateway sent them, `httpStatus` the status the kind stands for
 * and `retryable` whether the same call may be sent again after a wait (nothing ran).
 *
 * The gateway unreachable (or the connection broken before its answer) is `code` 0, `name`
 * `"ConnectionFailed"`: no contract error, as no gateway answered.
 */
export class FleetError extends Error {
  readonly code: number;
  override readonly name: string;
  readonly data: Record<string, unknown> | undefined;
  readonly httpStatus: number;
  readonly retryable: boolean;

  constructor(
    code: number,
    message: string,
    options: {
      data?: unknown;
      httpStatus?: number;
      name?: string;
      cause?: unknown;
      retryable?: boolean;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const known = entry(code);
    this.code = code;
    this.name = options.name ?? known?.name ?? "FleetError";
    this.data = isRecord(options.data) ? options.data : undefined;
    this.httpStatus = options.httpStatus ?? known?.httpStatus ?? 500;
    this.retryable = options.retryable ?? known?.retryable ?? false;
  }

  /** How long to wait before sending the call again, when the error says (ms). */
  get retryAfterMs(): number | undefined {
    const ms = this.data?.retryAfterMs;
    if (typeof ms === "number") return ms;
    const s = this.data?.retryAfterS;
    return typeof s === "number" ? s * 1000 : undefined;
  }

  /** The error of a JSON-RPC error object. */
  static fromWire(err: unknown): FleetError {
    if (!isRecord(err) || typeof err.code !== "number") {
      return new FleetError(-32603, `an unreadable error: ${JSON.stringify(err)?.slice(0, 200)}`);
    }
    const message = typeof err.message === "string" ? err.message : "unknown error";
    return new FleetError(err.code, message, { data: err.data });
  }

  /**
   * The error of an HTTP error answer: its JSON-RPC error object (the body's, else the
   * header's); without one, the kind its status stands for. `Retry-After` (seconds) becomes
   * `data.retryAfterMs` where the error has no wait of its own.
   */
  static fromHttp(
    status: number,
    body: string,
    header?: string | null,
    retryAfter?: string | null,
  ): FleetError {
    let found: FleetError | undefined;
    for (const raw of [body, header ?? ""]) {
      const doc = parse(raw);
      const err = isRecord(doc) && "error" in doc ? doc.error : doc;
      if (isRecord(err) && typeof err.code === "number") {
        found = FleetError.fromWire(err);
        break;
      }
    }
    if (found === undefined) {
      // A bare 502 may come from a proxy after the gateway ran the call: never resent.
      found = new FleetError(
        CODE_BY_STATUS[status] ?? -32603,
        `the gateway answered HTTP ${status}`,
        {
          data: { status },
          httpStatus: status,
          retryable: status === 503 || status === 429,
        },
      );
    }
    const seconds = retryAfter ? Number(retryAfter) : Number.NaN;
    if (found.retryAfterMs === undefined && Number.isFinite(seconds)) {
      return new FleetError(found.code, found.message, {
        data: { ...found.data, retryAfterMs: seconds * 1000 },
        httpStatus: found.httpStatus,
        retryable: found.retryable,
      });
    }
    return found;
  }
}

function parse(raw: string): unknown {
  if (!raw) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

export function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}
