// Generated from contracts/ by `python -m codegen` (codegen/jsmodule.py): do not edit.
// tests/unit/test_console_contract.py fails when this file is stale.

/** The gateway's JSON-RPC methods (contracts.gateway.rpc.GATEWAY_METHODS). */
export const METHODS = Object.freeze({
  INSTANCES_CREATE: "instances.create",
  INSTANCES_GET: "instances.get",
  INSTANCES_LIST: "instances.list",
  ENV_SET: "env.set",
  ENV_UNSET: "env.unset",
  ENV_LIST: "env.list",
  REPOS_ADD: "repos.add",
  REPOS_REMOVE: "repos.remove",
  REPOS_LIST: "repos.list",
  MACHINES_CREATE: "machines.create",
  MACHINES_GET: "machines.get",
  MACHINES_LIST: "machines.list",
  MACHINES_ARCHIVE: "machines.archive",
  MACHINES_REBUILD: "machines.rebuild",
  MACHINES_EXEC: "machines.exec",
  MACHINES_WRITE_FILE: "machines.writeFile",
  MACHINES_REFRESH_ENV: "machines.refreshEnv",
  MACHINES_REFRESH_CODE: "machines.refreshCode",
  MACHINES_PROCESS_START: "machines.process.start",
  MACHINES_PROCESS_LIST: "machines.process.list",
  MACHINES_PROCESS_KILL: "machines.process.kill",
  MACHINES_PROCESS_LOGS: "machines.process.logs",
  CRON_SET: "cron.set",
  CRON_LIST: "cron.list",
  TOKENS_CREATE: "tokens.create",
  TOKENS_LIST: "tokens.list",
  TOKENS_REVOKE: "tokens.revoke",
  RPC_DISCOVER: "rpc.discover",
  EVENTS_TICKET: "events.ticket",
  MACHINES_EXEC_STREAM: "machines.execStream",
  MACHINES_DAEMON_LOG: "machines.daemonLog",
  MACHINES_RESTART: "machines.restart",
  MACHINES_PORTS: "machines.ports",
  MACHINES_PREVIEW_TICKET: "machines.previewTicket",
  INSTANCES_SET_SSH_KEYS: "instances.setSshKeys",
  INSTANCES_SET_LIMITS: "instances.setLimits",
  INSTANCES_GET_LIMITS: "instances.getLimits",
  INSTANCES_SET_NETWORK_POLICY: "instances.setNetworkPolicy",
  INSTANCES_GET_NETWORK_POLICY: "instances.getNetworkPolicy",
  HOSTS_LIST: "hosts.list",
  HOSTS_DRAIN: "hosts.drain",
  MACHINES_STOP: "machines.stop",
  MACHINES_START: "machines.start",
  MACHINES_PAUSE: "machines.pause",
  MACHINES_RESUME: "machines.resume",
  INSTANCES_SET_AUTO_STOP: "instances.setAutoStop",
  INSTANCES_GET_AUTO_STOP: "instances.getAutoStop",
  INSTANCES_SET_RUNTIME: "instances.setRuntime",
  INSTANCES_GET_RUNTIME: "instances.getRuntime",
  MACHINES_FORK: "machines.fork",
  MACHINES_SNAPSHOT: "machines.snapshot",
  SNAPSHOTS_LIST: "snapshots.list",
  SNAPSHOTS_DELETE: "snapshots.delete",
  CODEMODE_RUN: "codemode.run",
  CODEMODE_CANCEL: "codemode.cancel",
  CODEMODE_LIST: "codemode.list",
  CODEMODE_DESCRIBE: "codemode.describe",
  CODEMODE_BRIDGES_SET: "codemode.bridges.set",
  CODEMODE_BRIDGES_LIST: "codemode.bridges.list",
  CODEMODE_BRIDGES_REMOVE: "codemode.bridges.remove",
  SESSIONS_OPEN: "sessions.open",
  SESSIONS_LIST: "sessions.list",
  SESSIONS_RESIZE: "sessions.resize",
  SESSIONS_SIGNAL: "sessions.signal",
  SESSIONS_WRITE: "sessions.write",
  SESSIONS_CLOSE: "sessions.close",
  MACHINES_READ_FILE: "machines.readFile",
  MACHINES_LIST_DIR: "machines.listDir",
  MACHINES_STAT: "machines.stat",
  MACHINES_REMOVE_FILE: "machines.removeFile",
  MACHINES_MAKE_DIR: "machines.makeDir",
  MACHINES_MOVE: "machines.move",
  MACHINES_WATCH: "machines.watch",
  INSTANCES_SET_ENVIRONMENT: "instances.setEnvironment",
  INSTANCES_GET_ENVIRONMENT: "instances.getEnvironment",
  ENVIRONMENTS_LIST: "environments.list",
  ENVIRONMENTS_BUILD: "environments.build",
  ENVIRONMENTS_DELETE: "environments.delete",
  AUDIT_LIST: "audit.list",
  USERS_CREATE: "users.create",
  USERS_LIST: "users.list",
  USERS_SET_ROLE: "users.setRole",
  USERS_DISABLE: "users.disable",
  USERS_ENABLE: "users.enable",
  INSTANCES_SET_MEMBER: "instances.setMember",
  INSTANCES_MEMBERS: "instances.members",
  MACHINES_CODE_RUN: "machines.code.run",
  MACHINES_CODE_CREATE_CONTEXT: "machines.code.createContext",
  MACHINES_CODE_LIST_CONTEXTS: "machines.code.listContexts",
  MACHINES_CODE_RESTART_CONTEXT: "machines.code.restartContext",
  MACHINES_CODE_DELETE_CONTEXT: "machines.code.deleteContext",
  MACHINES_CODE_INTERRUPT: "machines.code.interrupt",
  MACHINES_DESKTOP_START: "machines.desktop.start",
  MACHINES_DESKTOP_STOP: "machines.desktop.stop",
  MACHINES_DESKTOP_GET: "machines.desktop.get",
  MACHINES_DESKTOP_SCREENSHOT: "machines.desktop.screenshot",
  MACHINES_DESKTOP_ACT: "machines.desktop.act",
  MACHINES_DESKTOP_OPEN: "machines.desktop.open",
  MACHINES_DESKTOP_VIEW: "machines.desktop.view",
  SECRETS_SET: "secrets.set",
  SECRETS_LIST: "secrets.list",
  SECRETS_DELETE: "secrets.delete",
  WEBHOOKS_CREATE: "webhooks.create",
  WEBHOOKS_LIST: "webhooks.list",
  WEBHOOKS_DELETE: "webhooks.delete",
  WEBHOOKS_ROTATE_SECRET: "webhooks.rotateSecret",
  WEBHOOKS_TEST: "webhooks.test",
  WEBHOOKS_DELIVERIES: "webhooks.deliveries",
  MACHINES_METRICS: "machines.metrics",
});

/** JSON-RPC error codes, by exception class (contracts.errors.ERRORS). */
export const ERRORS = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  UNAUTHORIZED: 1001,
  FORBIDDEN: 1003,
  NOT_FOUND: 1004,
  CONFLICT: 1009,
  IDEMPOTENCY_KEY_REUSED: 1022,
  MACHINE_STOPPED: 1040,
  NEVER_STARTED: 1042,
  RUNNING_MACHINES_LIMIT: 1041,
  SNAPSHOT_LIMIT: 1060,
  DISK_LIMIT: 1061,
  HOST_FULL: 1048,
  PAYLOAD_TOO_LARGE: 1013,
  RATE_LIMITED: 1029,
  STREAM_ABORTED: 1045,
  TOO_MANY_STREAMS: 1046,
  BAD_PATH: 1049,
  FILE_TOO_LARGE: 1050,
  FILE_NOT_FOUND: 1051,
  WRONG_FILE_KIND: 1052,
  NOT_TEXT: 1053,
  TRANSFER_ABORTED: 1054,
  REQUEST_EXPIRED: 1101,
  REQUEST_REPLAYED: 1102,
  REPLY_FORGED: 1103,
  UNAVAILABLE: 1501,
  DAEMON_UNAVAILABLE: 1502,
  HOST_UNAVAILABLE: 1505,
  DAEMON_TIMEOUT: 1504,
  CODEMODE_UNAVAILABLE: 1503,
  PROVIDER_ERROR: 1600,
  NOT_SUPPORTED: 1601,
  IMAGE_NOT_FOUND: 1610,
  IMAGE_REFUSED: 1611,
  TOOL_ERROR: 1700,
  LANGUAGE_UNAVAILABLE: 1701,
  KERNEL_DIED: 1702,
  CODE_CONTEXTS_LIMIT: 1703,
  DESKTOP_UNAVAILABLE: 1710,
  DESKTOP_NOT_RUNNING: 1711,
  PORT_UNREACHABLE: 1055,
  BAD_UPSTREAM: 1056,
  ID_TOKEN_REJECTED: 1080,
  SIGN_IN_STATE_REJECTED: 1081,
  CSRF_REJECTED: 1082,
  ENVIRONMENT_REFUSED: 1620,
  ENVIRONMENT_INVALID: 1621,
  BUILD_FAILED: 1622,
  FEATURE_UNAVAILABLE: 1623,
  HOST_REQUIREMENTS_EXCEEDED: 1624,
  BUILD_LIMIT_EXCEEDED: 1628,
  ENVIRONMENT_IN_USE: 1629,
  REPO_NOT_FOUND: 1630,
  BRANCH_NOT_FOUND: 1631,
});

/** The HTTP status of each error kind (FleetError.http_status). */
export const ERROR_HTTP_STATUS = Object.freeze({
  PARSE_ERROR: 400,
  INVALID_REQUEST: 400,
  METHOD_NOT_FOUND: 404,
  INVALID_PARAMS: 400,
  INTERNAL_ERROR: 500,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  IDEMPOTENCY_KEY_REUSED: 409,
  MACHINE_STOPPED: 409,
  NEVER_STARTED: 409,
  RUNNING_MACHINES_LIMIT: 409,
  SNAPSHOT_LIMIT: 409,
  DISK_LIMIT: 409,
  HOST_FULL: 409,
  PAYLOAD_TOO_LARGE: 413,
  RATE_LIMITED: 429,
  STREAM_ABORTED: 502,
  TOO_MANY_STREAMS: 429,
  BAD_PATH: 400,
  FILE_TOO_LARGE: 413,
  FILE_NOT_FOUND: 404,
  WRONG_FILE_KIND: 409,
  NOT_TEXT: 422,
  TRANSFER_ABORTED: 502,
  REQUEST_EXPIRED: 502,
  REQUEST_REPLAYED: 502,
  REPLY_FORGED: 502,
  UNAVAILABLE: 503,
  DAEMON_UNAVAILABLE: 502,
  HOST_UNAVAILABLE: 502,
  DAEMON_TIMEOUT: 504,
  CODEMODE_UNAVAILABLE: 503,
  PROVIDER_ERROR: 500,
  NOT_SUPPORTED: 501,
  IMAGE_NOT_FOUND: 404,
  IMAGE_REFUSED: 403,
  TOOL_ERROR: 500,
  LANGUAGE_UNAVAILABLE: 422,
  KERNEL_DIED: 502,
  CODE_CONTEXTS_LIMIT: 409,
  DESKTOP_UNAVAILABLE: 422,
  DESKTOP_NOT_RUNNING: 409,
  PORT_UNREACHABLE: 502,
  BAD_UPSTREAM: 502,
  ID_TOKEN_REJECTED: 401,
  SIGN_IN_STATE_REJECTED: 400,
  CSRF_REJECTED: 403,
  ENVIRONMENT_REFUSED: 422,
  ENVIRONMENT_INVALID: 422,
  BUILD_FAILED: 422,
  FEATURE_UNAVAILABLE: 502,
  HOST_REQUIREMENTS_EXCEEDED: 422,
  BUILD_LIMIT_EXCEEDED: 422,
  ENVIRONMENT_IN_USE: 409,
  REPO_NOT_FOUND: 422,
  BRANCH_NOT_FOUND: 422,
});

/** Id formats (contracts.ids), anchored: new RegExp(ID_PATTERNS.MACHINE_ID). */
export const ID_PATTERNS = Object.freeze({
  INSTANCE_ID: "^i-[0-9a-f]{16}$",
  MACHINE_ID: "^m-[0-9a-f]{16}$",
  SNAPSHOT_ID: "^s-[0-9a-f]{16}$",
  USER_ID: "^u-[0-9a-f]{16}$",
  WEBHOOK_ID: "^w-[0-9a-f]{16}$",
});

/** Every id is exactly this long (contracts.ids.ID_LENGTH). */
export const ID_LENGTH = 18;

/** Input limits of the gateway's params (from their msgspec constraints). */
export const LIMITS = Object.freeze({
  INSTANCE_NAME_MAX: 100,
  TOKEN_NAME_MAX: 100,
});

/** An env var name (contracts.validation.ENV_NAME_PATTERN), anchored. */
export const ENV_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$";

/** Machine statuses (contracts.status.MachineStatus). */
export const STATUS = Object.freeze({
  CREATED: "created",
  PROVISIONING: "provisioning",
  BOOTING: "booting",
  SETTING_UP: "setting-up",
  PROBING: "probing",
  READY: "ready",
  FAILED: "failed",
  UNRESPONSIVE: "unresponsive",
  ARCHIVING: "archiving",
  ARCHIVED: "archived",
  STOPPING: "stopping",
  STOPPED: "stopped",
  LOST: "lost",
  PAUSING: "pausing",
  PAUSED: "paused",
  RESUMING: "resuming",
});

/** Statuses nothing but archiving moves a machine from (contracts.status.TERMINAL). */
export const TERMINAL_STATUSES = Object.freeze(["failed", "archiving", "archived"]);

/** Statuses a machine can be stopped from (contracts.status.STOPPABLE). */
export const STOPPABLE_STATUSES = Object.freeze([
  "booting",
  "setting-up",
  "probing",
  "ready",
  "unresponsive",
  "lost",
]);

/** Statuses machines.start starts from, a failed one only with an externalId (contracts.status.STARTABLE). */
export const STARTABLE_STATUSES = Object.freeze(["failed", "stopping", "stopped"]);

/** Machine providers (contracts.models.ProviderName). */
export const PROVIDERS = Object.freeze(["local", "docker", "swarm"]);

/** Machine runtimes (contracts.models.Runtime). */
export const RUNTIME = Object.freeze({
  NAMESPACES: "namespaces",
  GVISOR: "gvisor",
});

/** How a daemon's code relates to the platform's (contracts.models.CodeStatus). */
export const CODE_STATUS = Object.freeze({
  CURRENT: "current",
  BEHIND: "behind",
  AHEAD: "ahead",
  DIVERGED: "diverged",
  UNKNOWN: "unknown",
});

/** Machine event types, the `type` of each event (contracts.bus.subjects.EventKind). */
export const EVENT_TYPES = Object.freeze({
  CREATED: "created",
  PROVISIONED: "provisioned",
  DAEMON_STATUS_REPORTED: "daemon-status-reported",
  SETUP_PUSHED: "setup-pushed",
  READY: "ready",
  FAILED: "failed",
  ARCHIVED: "archived",
  FILES_REMOVED: "files-removed",
  UNRESPONSIVE: "unresponsive",
  ENV_PUSHED: "env-pushed",
  REPOS_RECONCILED: "repos-reconciled",
  STOPPED: "stopped",
  PROCESSES_ENDED: "processes-ended",
  STARTED: "started",
  PAUSE_REQUESTED: "pause-requested",
  PAUSED: "paused",
  PAUSE_REFUSED: "pause-refused",
  RESUME_REQUESTED: "resume-requested",
  RESUMED: "resumed",
  LOST: "lost",
  EGRESS_DENIED: "egress-denied",
  LIFECYCLE_RAN: "lifecycle-ran",
  LIFECYCLE_OUTPUT: "lifecycle-output",
  ENVIRONMENT_BUILD_OUTPUT: "environment-build-output",
  SECRET_USED: "secret-used",
});

/** Streamed answers (contracts.gateway.live): POST PATH, SSE events OUTPUT then RESULT. */
export const STREAMING = Object.freeze({
  PATH: "/rpc/stream",
  OUTPUT: "output",
  RESULT: "result",
});

/** Preview URLs (contracts.ports): TICKET_PARAM carries a machines.previewTicket. */
export const PORTS = Object.freeze({
  TICKET_PARAM: "fleet_ticket",
});

/**
 * Codemode (contracts.gateway.codemode): POST PATH with codemode.run's params streams
 * the run's events (SSE, `event:` the event's type), then END with the result.
 */
export const CODEMODE = Object.freeze({
  PATH: "/codemode/run",
  END: "end",
  DEFAULT_TIMEOUT_S: 30,
  MAX_TIMEOUT_S: 300,
  MAX_CODE_BYTES: 262144,
});

/** Codemode run event types, the `type` of each event
 * (contracts.gateway.codemode.RunEvent). */
export const CODEMODE_EVENTS = Object.freeze({
  STARTED: "started",
  LOG: "log",
  TOOL_CALL: "toolCall",
  TOOL_RESULT: "toolResult",
  RESULT: "result",
  ERROR: "error",
  CANCELLED: "cancelled",
});

/**
 * Env var scopes, lowest precedence first: a machine's .env gets the value of the
 * last scope that sets a name, as base.dotenv.merge_env merges them (a test
 * checks).
 */
export const ENV_SCOPES_BY_PRECEDENCE = Object.freeze(["platform", "instance"]);
