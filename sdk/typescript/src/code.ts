import type { CodeError, CodeRunPart, CodeRunResult, MachinesCodeRunParams } from "./generated.js";
import { RpcStream } from "./rpc_stream.js";
import type { Transport } from "./transport.js";

/** A code run's default time limit in its kernel (s), as the daemon's. */
export const DEFAULT_CODE_TIMEOUT_S = 300;
/** Past a run's own limit: a kernel's start (60 s), an interrupt's grace (10 s), the network. */
const CODE_MARGIN_MS = 85_000;

/** A Jupyter MIME bundle: `text/plain`, `image/png` (base64), `text/html`, ... and `isMain`. */
export type MimeBundle = Record<string, unknown>;

export interface CodeRunOptions {
  /** The kernel's language (default `python`, or the context's). */
  language?: string;
  /** The context to run in (default: the machine's default context for the language). */
  contextId?: string;
  /** Past it the kernel is interrupted; the answer's error is a `TimeoutError` (s). */
  timeoutS?: number;
  /** Variables set for this run only. */
  env?: Record<string, string>;
  /** Each chunk of stdout as the kernel sends it (the run streams when a callback is given). */
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
  /** Each result (a MIME bundle) as it is displayed. */
  onResult?: (result: MimeBundle) => void;
  /** The code's exception (or its timeout), as it is raised. */
  onError?: (error: CodeError) => void;
  /** Aborting it interrupts the run (the run streams when it is given); the state is kept. */
  signal?: AbortSignal;
}

/**
 * A code run's parts as the kernel sends them (POST /rpc/stream): an async iterable of
 * `CodeRunPart`s (`kind` `stdout`, `stderr`, `result` or `error`), then `result`, the answer
 * `machines.code.run` gives. Aborting it (or leaving the loop early) interrupts the run; its
 * context keeps its state.
 */
export class CodeRunStream extends RpcStream<CodeRunPart, CodeRunResult> {
  constructor(transport: Transport, body: string, signal: AbortSignal | undefined) {
    super(transport, body, signal, "codeRun", (data) => JSON.parse(data) as CodeRunPart);
  }
}

function params(machineId: string, code: string, options: CodeRunOptions): MachinesCodeRunParams {
  const { language, contextId, env } = options;
  return {
    machineId,
    code,
    timeoutS: options.timeoutS ?? DEFAULT_CODE_TIMEOUT_S,
    ...(language === undefined ? {} : { language }),
    ...(contextId === undefined ? {} : { contextId }),
    ...(env === undefined ? {} : { env }),
  };
}

export function codeRunStream(
  transport: Transport,
  machineId: string,
  code: string,
  options: CodeRunOptions = {},
): CodeRunStream {
  const body = transport.request("machines.code.run", params(machineId, code, options));
  return new CodeRunStream(transport, body, options.signal);
}

export async function codeRun(
  transport: Transport,
  machineId: string,
  code: string,
  options: CodeRunOptions = {},
): Promise<CodeRunResult> {
  const { onStdout, onStderr, onResult, onError, signal } = options;
  if (!(onStdout || onStderr || onResult || onError || signal)) {
    const p = params(machineId, code, options);
    return transport.call("machines.code.run", p, {
      timeoutMs: (p.timeoutS ?? DEFAULT_CODE_TIMEOUT_S) * 1000 + CODE_MARGIN_MS,
      ...(signal ? { signal } : {}),
    });
  }
  const stream = codeRunStream(transport, machineId, code, options);
  for await (const part of stream) {
    if (part.kind === "stdout") onStdout?.(part.text ?? "");
    else if (part.kind === "stderr") onStderr?.(part.text ?? "");
    else if (part.kind === "result" && part.result) onResult?.(part.result);
    else if (part.kind === "error" && part.error) onError?.(part.error);
  }
  return stream.result;
}
