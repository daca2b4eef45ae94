export {
  type CodeRunOptions,
  CodeRunStream,
  DEFAULT_CODE_TIMEOUT_S,
  type MimeBundle,
} from "./code.js";
export { FleetError, type WireError } from "./errors.js";
export { DEFAULT_RESUME_DEADLINE_MS, EventStream, type EventsOptions } from "./events.js";
export { type FileData, type FileDownload, Files, type WriteOptions } from "./files.js";
export { Env, Fleet, Instances, Ports, Repos } from "./fleet.js";
export * from "./generated.js";
export {
  type CreateMachine,
  DEFAULT_EXEC_TIMEOUT_S,
  type ExecChunk,
  type ExecOptions,
  ExecStream,
  Machines,
  type WatchOptions,
  WatchStream,
} from "./machines.js";
export { RpcStream } from "./rpc_stream.js";
export { type OpenTerminal, Terminal, Terminals } from "./terminals.js";
export { type CallOptions, DEFAULT_URL, type FleetOptions } from "./transport.js";
export { Webhooks } from "./webhooks.js";
