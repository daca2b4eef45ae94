// Generated from fleetd's OpenRPC and AsyncAPI documents by
// `python -m codegen`: do not edit. The SDK's tests fail when it is stale.

// --- schemas of the OpenRPC document ---

/**
 * An access token's record. The secret itself is shown once, at creation, and stored only
 * as a hash.
 */
export interface AccessToken {
  id: string;
  name: string;
  instanceId?: string | null;
  createdAt: string;
  revokedAt?: string | null;
  scopes?: Array<string>;
  instanceIds?: Array<string> | null;
  userId?: string | null;
  expiresAt?: string | null;
  lastUsedAt?: string | null;
}

export interface ActResult {
  done: number;
  x: number;
  y: number;
  screenshot?: Screenshot | null;
}

/** repos.add's answer: the repo as stored, and whether the platform could check it. */
export interface AddedRepo {
  url: string;
  branch: string;
  path: string;
  hasCredentials?: boolean;
  warning?: string | null;
}

export interface AuditEntries {
  entries: Array<AuditEntry>;
}

/** One audited action. */
export interface AuditEntry {
  id: string;
  actor: string;
  tokenId?: string | null;
  method: string;
  instanceId?: string | null;
  machineId?: string | null;
  params?: Record<string, unknown>;
  ok: boolean;
  result?: unknown;
  errorCode?: number | null;
  error?: string | null;
  clientAddress?: string | null;
  userAgent?: string | null;
  at?: string;
}

export interface AutoStop {
  instanceId: string;
  idleAfterS: number;
  action?: "pause" | "stop" | null;
}

export interface BridgeInfo {
  name: string;
  kind: "mcp" | "openapi";
  url: string;
  hasAuthorization: boolean;
}

export interface BridgeList {
  bridges: Array<BridgeInfo>;
}

export interface BridgeRemoved {
  removed: boolean;
}

export interface Cancelled {
  cancelled: boolean;
}

export interface Click {
  type: "click";
  x?: number | null;
  y?: number | null;
  button?: "left" | "middle" | "right";
  count?: number;
}

export interface CodeContext {
  id: string;
  language: string;
  cwd: string;
}

export interface CodeContextList {
  contexts: Array<CodeContext>;
  languages: Array<string>;
}

/**
 * An exception the code raised (or its timeout): Jupyter's ``ename``, ``evalue`` and
 * ``traceback``.
 */
export interface CodeError {
  name: string;
  value: string;
  traceback: Array<string>;
}

export interface CodeRunResult {
  executionCount: number | null;
  results: Array<Record<string, unknown>>;
  stdout: Array<string>;
  stderr: Array<string>;
  error: CodeError | null;
  contextId: string;
  truncated?: boolean;
}

export interface ContextDeleted {
  id: string;
  deleted: boolean;
}

export interface ContextInterrupted {
  id: string;
  interrupted: boolean;
}

export interface CreatedToken {
  id: string;
  token: string;
}

export interface CreatedWebhook {
  id: string;
  instanceId: string | null;
  url: string;
  events: Array<string>;
  description: string;
  createdAt: string;
  disabled?: boolean;
  disabledReason?: string | null;
  failingSince?: string | null;
  previousSecretUntil?: string | null;
  secret: string;
}

export interface CronJob {
  name: string;
  schedule: string;
  command: Array<string>;
  cwd?: string | null;
  timeoutS?: number;
}

export interface CronListResult {
  jobs: Array<CronJob>;
}

export interface CronSetResult {
  jobs: Array<CronJob>;
  machines: number;
  failed: Array<RefreshFailure>;
}

export interface DaemonLogResult {
  lines: Array<string>;
}

export interface Deliveries {
  webhookId: string;
  attempts: Array<DeliveryAttempt>;
  pending: number;
  dropped?: number;
}

/** One attempt to deliver one event. */
export interface DeliveryAttempt {
  eventId: string;
  type: string;
  machineId: string | null;
  attempt: number;
  at: string;
  status: number | null;
  durationMs: number;
  error: string | null;
  outcome: "delivered" | "failed" | "retrying";
  nextAttemptAt?: string | null;
}

export interface DesktopInfo {
  running: boolean;
  width: number;
  height: number;
  dpi: number;
  display?: string | null;
  browser?: boolean;
  viewPort?: number | null;
  viewOnlyPort?: number | null;
}

/**
 * The live view (noVNC) on the machine's preview: open ``<url>?fleet_ticket=<ticket>``
 * in a browser, as a preview ticket is opened.
 */
export interface DesktopView {
  ticket: string;
  url: string;
  expiresInS: number;
  viewOnly: boolean;
}

export interface DevcontainerSource {
  repo: string;
  path?: string | null;
}

export interface DirEntry {
  name: string;
  kind: "dir" | "file" | "other" | "symlink";
  size: number;
  mode: number;
  mtime: number;
  target?: string | null;
  owner?: string | null;
  group?: string | null;
  permissions?: string | null;
}

export interface DockerfileSource {
  repo: string;
  path?: string;
  context?: string;
}

/** The left button pressed at (x, y), the mouse moved to (toX, toY), the button let go. */
export interface Drag {
  type: "drag";
  x: number;
  y: number;
  toX: number;
  toY: number;
}

/** The host as ``hosts.list`` shows it after the drain, and what ``rebuild`` moved. */
export interface DrainResult {
  hostId: string;
  capacity?: number | null;
  running: number;
  stopped: number;
  lastHeartbeat: string;
  state: HostState;
  memoryLow?: boolean;
  rebuilt?: Array<Rebuilt>;
  notRebuilt?: Array<RefreshFailure>;
}

/** Where an instance's machines may connect. The default one allows everything. */
export interface EgressPolicy {
  default?: "allow" | "deny";
  allow?: Array<string>;
  deny?: Array<string>;
}

export interface EnvListResult {
  vars: Array<EnvVar>;
}

export interface EnvVar {
  name: string;
  value: string;
  scope: "instance" | "platform";
}

/** Exactly one of its fields. */
export interface Environment {
  image?: string | null;
  dockerfile?: DockerfileSource | null;
  devcontainer?: DevcontainerSource | null;
}

export interface EnvironmentBuild {
  id: string;
  image: string;
  imageId: string;
  size: number;
  lastUsed: number;
  machines?: Array<string>;
  instances?: Array<string>;
}

export interface EnvironmentBuilt {
  instanceId: string;
  environment: string;
  id: string;
  imageId: string;
}

export interface EnvironmentDeleted {
  id: string;
  image: string;
}

export interface EnvironmentList {
  hostId: string;
  environments: Array<EnvironmentBuild>;
}

export interface EventsTicketResult {
  ticket: string;
  expiresInS: number;
}

export interface ExecCommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut?: boolean;
  truncated?: boolean;
}

export interface ForkedMachines {
  machines: Array<Machine>;
}

/**
 * A port the machine's environment forwards (devcontainer.json ``forwardPorts``): it has
 * a preview URL (machines.previewTicket) whether or not anything listens on it yet.
 */
export interface ForwardedPort {
  port: number;
  label?: string | null;
  protocol?: string | null;
  listening: boolean;
}

export interface HostInfo {
  hostId: string;
  capacity?: number | null;
  running: number;
  stopped: number;
  lastHeartbeat: string;
  state: HostState;
  memoryLow?: boolean;
}

export interface HostList {
  hosts: Array<HostInfo>;
}

/** A host's state in ``hosts.list`` (contracts/gateway/hosts.py). */
export type HostState = "active" | "draining" | "lost";

export interface Instance {
  id: string;
  name: string;
  createdAt: string;
  currentMachineId?: string | null;
}

export interface InstanceEnvironment {
  instanceId: string;
  environment?: Environment | null;
}

/** The limits the instance's next machine gets, and which of them are its own. */
export interface InstanceLimits {
  instanceId: string;
  memoryMb: number;
  cpus: number;
  pids: number;
  maxRunningMachines?: number | null;
  own: Array<string>;
}

export interface InstanceList {
  instances: Array<Instance>;
}

export interface InstanceRuntime {
  instanceId: string;
  runtime: "gvisor" | "namespaces" | null;
  effective: "gvisor" | "namespaces";
}

export interface Key {
  type: "key";
  keys: string;
  holdMs?: number;
}

export interface ListDirResult {
  path: string;
  entries: Array<DirEntry>;
  truncated?: boolean;
  nextAfter?: string | null;
}

export interface ListeningPort {
  port: number;
  address: string;
  family: "ipv4" | "ipv6";
  label?: string | null;
  protocol?: string | null;
}

export interface Machine {
  id: string;
  instanceId: string;
  provider: "docker" | "local" | "swarm";
  externalId?: string | null;
  status: MachineStatus;
  statusReason: string;
  daemonVersion?: string | null;
  daemonGitSha?: string | null;
  updateAvailable?: boolean;
  codeStatus?: "ahead" | "behind" | "current" | "diverged" | "unknown";
  hostId?: string | null;
  environment?: string | null;
  environmentImage?: string | null;
  runtime?: "gvisor" | "namespaces";
  runtimePlatform?: "kvm" | "ptrace" | "systrap" | null;
  pausedBytes?: number | null;
  wokenBy?: WakeBy | null;
  setupWarning?: string | null;
  createdAt: string;
  updatedAt: string;
  metrics?: MachineSample | null;
}

export interface MachineList {
  machines: Array<Machine>;
}

export interface MachineMetrics {
  machineId: string;
  stepS: number;
  samples: Array<MachineSample>;
}

/**
 * What a machine used over one interval, as its host measured it (docs/monitoring.md):
 * a field is None where its runtime does not tell it.
 */
export interface MachineSample {
  at: number;
  stepS: number;
  cpuCores?: number | null;
  memoryBytes?: number | null;
  memoryLimitBytes?: number | null;
  diskBytes?: number | null;
  diskLimitBytes?: number | null;
  netInBytes?: number | null;
  netOutBytes?: number | null;
}

export type MachineStatus = "archived" | "archiving" | "booting" | "created" | "failed" | "lost" | "paused" | "pausing" | "probing" | "provisioning" | "ready" | "resuming" | "setting-up" | "stopped" | "stopping" | "unresponsive";

export interface MakeDirResult {
  path: string;
  entry: DirEntry;
  created: boolean;
}

export interface McpBridge {
  kind: "mcp";
  name: string;
  url: string;
  authorization?: string | null;
}

export interface Member {
  userId: string;
  email: string;
  role: "developer" | "owner" | "viewer";
}

export interface MemberList {
  members: Array<Member>;
}

export interface Move {
  type: "move";
  x: number;
  y: number;
}

export interface MoveResult {
  path: string;
  entry: DirEntry;
}

export interface NetworkPolicyResult {
  instanceId: string;
  egress: EgressPolicy;
  machines?: number;
  failed?: Array<RefreshFailure>;
}

export interface OpenApiBridge {
  kind: "openapi";
  name: string;
  specUrl: string;
  baseUrl: string;
  authorization?: string | null;
}

export interface Opened {
  url: string;
}

export interface OpenedSession {
  sessionId: string;
  name: string;
  command: Array<string>;
  cwd: string;
  cols: number;
  rows: number;
  pid: number;
  startedAt: number;
  running: boolean;
  exitCode?: number | null;
  attached?: number;
  outputBytes?: number;
  commandTruncated?: boolean;
  pty?: boolean;
  machineId: string;
  attachPath: string;
}

export interface PortList {
  ports: Array<ListeningPort>;
  forwarded?: Array<ForwardedPort>;
}

/** A mouse button held down (``down: true``) or let go where the mouse is. */
export interface Press {
  type: "press";
  button?: "left" | "middle" | "right";
  down: boolean;
}

export interface PreviewTicket {
  ticket: string;
  url: string;
  expiresInS: number;
}

export interface ProcessInfo {
  pid: number;
  tag: string | null;
  command: Array<string>;
  cwd: string;
  restart: "always" | "never" | "on-env-change";
  state: "exited" | "lost" | "running";
  exitCode?: number | null;
  restarts?: number;
  startedAt: number;
  logPath: string;
}

export interface ProcessList {
  processes: Array<ProcessInfo>;
}

export interface ProcessLogs {
  pid: number;
  tag: string | null;
  lines: Array<string>;
}

export interface ReadFileResult {
  path: string;
  content: string;
  encoding: "base64" | "utf-8";
  size: number;
  mode: number;
}

export interface Rebuilt {
  machineId: string;
  replacedBy: string;
}

export interface RefreshCodeResult {
  restarting: boolean;
  fromGitSha: string | null;
  toGitSha: string | null;
  machineId: string;
  message: string;
}

export interface RefreshEnvResult {
  machines: number;
  written: number;
  failed: Array<RefreshFailure>;
}

export interface RefreshFailure {
  machineId: string;
  code: number;
  message: string;
}

export interface RemoveFileResult {
  path: string;
  removed: boolean;
}

export interface Removed {
  removed: boolean;
}

export interface Repo {
  url: string;
  branch: string;
  path: string;
  hasCredentials?: boolean;
}

export interface RepoList {
  repos: Array<Repo>;
}

export interface Revoked {
  revoked: boolean;
}

export interface RotatedSecret {
  webhookId: string;
  secret: string;
  previousSecretUntil: string;
}

export interface RunList {
  runs: Array<RunRecord>;
}

export interface RunRecord {
  runId: string;
  status: "cancelled" | "error" | "ok" | "running" | "timeout";
  instanceId?: string | null;
  machineId?: string | null;
  tokenId: string;
  startedAt: string;
  durationMs?: number | null;
  result?: unknown;
  error?: string | null;
  logs?: Array<string>;
}

export interface RunResult {
  runId: string;
  status: "cancelled" | "error" | "ok" | "timeout";
  result?: unknown;
  error?: string | null;
  logs?: Array<string>;
}

export interface Screenshot {
  image: string;
  format: "jpeg" | "png";
  width: number;
  height: number;
  screenWidth: number;
  screenHeight: number;
}

export interface ScreenshotParams {
  format?: "jpeg" | "png";
  scale?: number;
}

/**
 * The wheel turned where (x, y) is (or the mouse is): ``dy`` notches down (negative: up),
 * ``dx`` right (negative: left).
 */
export interface Scroll {
  type: "scroll";
  x?: number | null;
  y?: number | null;
  dx?: number;
  dy?: number;
}

export interface SecretDeleted {
  deleted: boolean;
}

/** A secret as anyone may see it: never its value. */
export interface SecretInfo {
  name: string;
  hosts: Array<string>;
  header: string;
  format: string;
  uses?: number;
  lastUsedAt?: string | null;
}

export interface SecretList {
  secrets: Array<SecretInfo>;
}

export interface SessionClosed {
  closed: boolean;
}

export interface SessionInfo {
  sessionId: string;
  name: string;
  command: Array<string>;
  cwd: string;
  cols: number;
  rows: number;
  pid: number;
  startedAt: number;
  running: boolean;
  exitCode?: number | null;
  attached?: number;
  outputBytes?: number;
  commandTruncated?: boolean;
  pty?: boolean;
}

export interface SessionList {
  sessions: Array<SessionInfo>;
}

export interface SessionSignaled {
  signaled: boolean;
}

export interface SessionWritten {
  written: number;
}

/** A named, read-only state of a machine's home; kept until deleted (no expiry). */
export interface Snapshot {
  id: string;
  name: string;
  instanceId: string;
  machineId: string;
  createdAt: string;
  how: "copy" | "cow";
  pauseMs: number;
  memory?: boolean;
}

export interface SnapshotDeleted {
  deleted: boolean;
}

export interface SnapshotList {
  snapshots: Array<Snapshot>;
}

export interface SshKeysResult {
  keys: Array<string>;
  machines: number;
  failed: Array<RefreshFailure>;
}

/** The entry at ``path`` itself (a link is described, not followed). */
export interface StatResult {
  name: string;
  kind: "dir" | "file" | "other" | "symlink";
  size: number;
  mode: number;
  mtime: number;
  target?: string | null;
  owner?: string | null;
  group?: string | null;
  permissions?: string | null;
  path: string;
}

export interface Stubs {
  stubs: Record<string, string>;
}

export interface TokenList {
  tokens: Array<AccessToken>;
}

export interface Type {
  type: "type";
  text: string;
}

export interface User {
  id: string;
  email: string;
  name?: string;
  role?: "admin" | "auditor" | "member";
  disabled?: boolean;
  createdAt: string;
  subject?: string | null;
  roleFromGroups?: boolean;
}

export interface UserList {
  users: Array<User>;
}

export interface Wait {
  type: "wait";
  ms: number;
}

/**
 * What brought a machine back (``by`` of ``machine.started``, ``machine.resume-requested``
 * and ``machine.resumed``): a request to, or a call that needed the machine while it was
 * paused or stopped (wake on access, ``FLEET_WAKE_ON_ACCESS``: docs/stop-start.md).
 */
export type WakeBy = "codemode" | "exec" | "files" | "preview" | "process" | "request" | "terminal" | "tunnel";

/** The last event of a watch: why it ended. */
export interface WatchEnded {
  reason: "archived" | "cut" | "paused" | "removed" | "restarted" | "stopped";
  message: string;
  path: string;
  events: number;
}

/** An endpoint, as anyone who manages it sees it: never its secret. */
export interface Webhook {
  id: string;
  instanceId: string | null;
  url: string;
  events: Array<string>;
  description: string;
  createdAt: string;
  disabled?: boolean;
  disabledReason?: string | null;
  failingSince?: string | null;
  previousSecretUntil?: string | null;
}

export interface WebhookDeleted {
  deleted: boolean;
}

export interface WebhookList {
  webhooks: Array<Webhook>;
}

export interface WebhookTestSent {
  eventId: string;
}

export interface WriteFileResult {
  path: string;
  bytesWritten: number;
}

// --- methods: params and result of each ---

/** `instances.create`'s params. */
export interface InstancesCreateParams {
  name: string;
}

/** `instances.get`'s params. */
export interface InstancesGetParams {
  instanceId: string;
}

/** `instances.list`'s params. */
export type InstancesListParams = Record<string, never>;

/** `env.set`'s params. */
export interface EnvSetParams {
  name: string;
  value: string;
  instanceId?: string | null;
}

/** `env.unset`'s params. */
export interface EnvUnsetParams {
  name: string;
  instanceId?: string | null;
}

/** `env.list`'s params. */
export interface EnvListParams {
  instanceId?: string | null;
}

/** `repos.add`'s params. */
export interface ReposAddParams {
  instanceId: string;
  url: string;
  branch: string;
  path: string;
  token?: string | null;
  username?: string;
}

/** `repos.remove`'s params. */
export interface ReposRemoveParams {
  instanceId: string;
  path: string;
}

/** `repos.list`'s params. */
export interface ReposListParams {
  instanceId: string;
}

/** `machines.create`'s params. */
export interface MachinesCreateParams {
  instanceId: string;
  provider?: "docker" | "local" | "swarm" | null;
  idempotencyKey?: string | null;
  fromSnapshot?: string | null;
  runtime?: "gvisor" | "namespaces" | null;
}

/** `machines.get`'s params. */
export interface MachinesGetParams {
  machineId: string;
}

/** `machines.list`'s params. */
export interface MachinesListParams {
  instanceId?: string | null;
}

/** `machines.archive`'s params. */
export interface MachinesArchiveParams {
  machineId: string;
}

/** `machines.rebuild`'s params. */
export interface MachinesRebuildParams {
  instanceId: string;
  idempotencyKey?: string | null;
}

/** `machines.exec`'s params. */
export interface MachinesExecParams {
  command: Array<string>;
  machineId: string;
  timeoutS?: number;
  cwd?: string | null;
  env?: Record<string, string> | null;
  user?: "root" | null;
}

/** `machines.writeFile`'s params. */
export interface MachinesWriteFileParams {
  path: string;
  content: string;
  machineId: string;
  mode?: number;
}

/** `machines.refreshEnv`'s params. */
export interface MachinesRefreshEnvParams {
  instanceId?: string | null;
}

/** `machines.refreshCode`'s params. */
export interface MachinesRefreshCodeParams {
  machineId: string;
}

/** `machines.process.start`'s params. */
export interface MachinesProcessStartParams {
  command: Array<string>;
  machineId: string;
  cwd?: string | null;
  env?: Record<string, string> | null;
  tag?: string | null;
  restart?: "always" | "never" | "on-env-change";
}

/** `machines.process.list`'s params. */
export interface MachinesProcessListParams {
  machineId: string;
}

/** `machines.process.kill`'s params. */
export interface MachinesProcessKillParams {
  machineId: string;
  pid?: number | null;
  tag?: string | null;
}

/** `machines.process.logs`'s params. */
export interface MachinesProcessLogsParams {
  machineId: string;
  pid?: number | null;
  tag?: string | null;
  tail?: number;
}

/** `cron.set`'s params. */
export interface CronSetParams {
  instanceId: string;
  jobs: Array<CronJob>;
}

/** `cron.list`'s params. */
export interface CronListParams {
  instanceId: string;
}

/** `tokens.create`'s params. */
export interface TokensCreateParams {
  name: string;
  instanceId?: string | null;
  instanceIds?: Array<string> | null;
  scopes?: Array<"admin" | "env:read" | "env:write" | "files:read" | "files:write" | "machines:exec" | "machines:read" | "ports"> | null;
  expiresInS?: number | null;
  user?: string | null;
}

/** `tokens.list`'s params. */
export type TokensListParams = Record<string, never>;

/** `tokens.revoke`'s params. */
export interface TokensRevokeParams {
  id: string;
}

/** `rpc.discover`'s params. */
export type RpcDiscoverParams = Record<string, never>;

export type RpcDiscoverResult = Record<string, unknown>;

/** `events.ticket`'s params. */
export type EventsTicketParams = Record<string, never>;

/** `machines.execStream`'s params. */
export interface MachinesExecStreamParams {
  command: Array<string>;
  machineId: string;
  timeoutS?: number;
  cwd?: string | null;
  env?: Record<string, string> | null;
}

/** `machines.daemonLog`'s params. */
export interface MachinesDaemonLogParams {
  machineId: string;
  lines?: number;
}

/** `machines.restart`'s params. */
export interface MachinesRestartParams {
  machineId: string;
}

/** `machines.ports`'s params. */
export interface MachinesPortsParams {
  machineId: string;
}

/** `machines.previewTicket`'s params. */
export interface MachinesPreviewTicketParams {
  machineId: string;
  port: number;
}

/** `instances.setSshKeys`'s params. */
export interface InstancesSetSshKeysParams {
  instanceId: string;
  keys: Array<string>;
}

/** `instances.setLimits`'s params. */
export interface InstancesSetLimitsParams {
  instanceId: string;
  memoryMb?: number | null;
  cpus?: number | null;
  pids?: number | null;
  maxRunningMachines?: number | null;
}

/** `instances.getLimits`'s params. */
export interface InstancesGetLimitsParams {
  instanceId: string;
}

/** `instances.setNetworkPolicy`'s params. */
export interface InstancesSetNetworkPolicyParams {
  instanceId: string;
  egress: EgressPolicy;
}

/** `instances.getNetworkPolicy`'s params. */
export interface InstancesGetNetworkPolicyParams {
  instanceId: string;
}

/** `hosts.list`'s params. */
export type HostsListParams = Record<string, never>;

/** `hosts.drain`'s params. */
export interface HostsDrainParams {
  hostId: string;
  draining?: boolean;
  rebuild?: boolean;
}

/** `machines.stop`'s params. */
export interface MachinesStopParams {
  machineId: string;
}

/** `machines.start`'s params. */
export interface MachinesStartParams {
  machineId: string;
}

/** `machines.pause`'s params. */
export interface MachinesPauseParams {
  machineId: string;
}

/** `machines.resume`'s params. */
export interface MachinesResumeParams {
  machineId: string;
}

/** `instances.setAutoStop`'s params. */
export interface InstancesSetAutoStopParams {
  instanceId: string;
  idleAfterS: number;
  action?: "pause" | "stop" | null;
}

/** `instances.getAutoStop`'s params. */
export interface InstancesGetAutoStopParams {
  instanceId: string;
}

/** `instances.setRuntime`'s params. */
export interface InstancesSetRuntimeParams {
  instanceId: string;
  runtime: "gvisor" | "namespaces" | null;
}

/** `instances.getRuntime`'s params. */
export interface InstancesGetRuntimeParams {
  instanceId: string;
}

/** `machines.fork`'s params. */
export interface MachinesForkParams {
  machineId: string;
  count?: number;
  memory?: boolean;
}

/** `machines.snapshot`'s params. */
export interface MachinesSnapshotParams {
  machineId: string;
  name: string;
  memory?: boolean;
}

/** `snapshots.list`'s params. */
export interface SnapshotsListParams {
  instanceId: string;
}

/** `snapshots.delete`'s params. */
export interface SnapshotsDeleteParams {
  snapshotId: string;
}

/** `codemode.run`'s params. */
export interface CodemodeRunParams {
  code: string;
  machineId?: string | null;
  instanceId?: string | null;
  timeoutS?: number;
}

/** `codemode.cancel`'s params. */
export interface CodemodeCancelParams {
  runId: string;
}

/** `codemode.list`'s params. */
export interface CodemodeListParams {
  instanceId?: string | null;
  limit?: number;
}

/** `codemode.describe`'s params. */
export interface CodemodeDescribeParams {
  providers?: Array<string> | null;
  machineId?: string | null;
  instanceId?: string | null;
}

/** `codemode.bridges.set`'s params. */
export interface CodemodeBridgesSetParams {
  instanceId: string;
  openapi?: OpenApiBridge | null;
  mcp?: McpBridge | null;
}

/** `codemode.bridges.list`'s params. */
export interface CodemodeBridgesListParams {
  instanceId: string;
}

/** `codemode.bridges.remove`'s params. */
export interface CodemodeBridgesRemoveParams {
  instanceId: string;
  name: string;
}

/** `sessions.open`'s params. */
export interface SessionsOpenParams {
  machineId: string;
  command?: Array<string> | null;
  cwd?: string | null;
  cols?: number;
  rows?: number;
  name?: string | null;
  env?: Record<string, string> | null;
  pty?: boolean;
  stdin?: boolean;
  timeoutS?: number | null;
}

/** `sessions.list`'s params. */
export interface SessionsListParams {
  machineId: string;
}

/** `sessions.resize`'s params. */
export interface SessionsResizeParams {
  machineId: string;
  sessionId: string;
  cols: number;
  rows: number;
}

/** `sessions.signal`'s params. */
export interface SessionsSignalParams {
  sessionId: string;
  signal: number;
  machineId: string;
}

/** `sessions.write`'s params. */
export interface SessionsWriteParams {
  sessionId: string;
  data: string;
  machineId: string;
  eof?: boolean;
}

/** `sessions.close`'s params. */
export interface SessionsCloseParams {
  machineId: string;
  sessionId: string;
}

/** `machines.readFile`'s params. */
export interface MachinesReadFileParams {
  path: string;
  machineId: string;
  encoding?: "base64" | "utf-8";
}

/** `machines.listDir`'s params. */
export interface MachinesListDirParams {
  machineId: string;
  path?: string;
  limit?: number;
  after?: string | null;
  depth?: number;
}

/** `machines.stat`'s params. */
export interface MachinesStatParams {
  path: string;
  machineId: string;
}

/** `machines.removeFile`'s params. */
export interface MachinesRemoveFileParams {
  path: string;
  machineId: string;
  recursive?: boolean;
}

/** `machines.makeDir`'s params. */
export interface MachinesMakeDirParams {
  path: string;
  machineId: string;
  parents?: boolean;
}

/** `machines.move`'s params. */
export interface MachinesMoveParams {
  source: string;
  destination: string;
  machineId: string;
}

/** `machines.watch`'s params. */
export interface MachinesWatchParams {
  path: string;
  machineId: string;
  recursive?: boolean;
  events?: Array<"chmod" | "create" | "remove" | "rename" | "write"> | null;
}

/** `instances.setEnvironment`'s params. */
export interface InstancesSetEnvironmentParams {
  instanceId: string;
  environment: Environment | null;
}

/** `instances.getEnvironment`'s params. */
export interface InstancesGetEnvironmentParams {
  instanceId: string;
}

/** `environments.list`'s params. */
export interface EnvironmentsListParams {
  hostId?: string | null;
}

/** `environments.build`'s params. */
export interface EnvironmentsBuildParams {
  instanceId: string;
  hostId?: string | null;
}

/** `environments.delete`'s params. */
export interface EnvironmentsDeleteParams {
  environmentId: string;
  hostId?: string | null;
}

/** `audit.list`'s params. */
export interface AuditListParams {
  actor?: string | null;
  instanceId?: string | null;
  machineId?: string | null;
  method?: string | null;
  since?: string | null;
  limit?: number;
}

/** `users.create`'s params. */
export interface UsersCreateParams {
  email: string;
  name?: string;
  role?: "admin" | "auditor" | "member";
}

/** `users.list`'s params. */
export type UsersListParams = Record<string, never>;

/** `users.setRole`'s params. */
export interface UsersSetRoleParams {
  user: string;
  role: "admin" | "auditor" | "member";
}

/** `users.disable`'s params. */
export interface UsersDisableParams {
  user: string;
}

/** `users.enable`'s params. */
export interface UsersEnableParams {
  user: string;
}

/** `instances.setMember`'s params. */
export interface InstancesSetMemberParams {
  instanceId: string;
  user: string;
  role: "developer" | "owner" | "viewer" | "none";
}

/** `instances.members`'s params. */
export interface InstancesMembersParams {
  instanceId: string;
}

/** `machines.code.run`'s params. */
export interface MachinesCodeRunParams {
  code: string;
  machineId: string;
  language?: string | null;
  contextId?: string | null;
  timeoutS?: number;
  env?: Record<string, string> | null;
}

/** `machines.code.createContext`'s params. */
export interface MachinesCodeCreateContextParams {
  machineId: string;
  language?: string;
  cwd?: string | null;
}

/** `machines.code.listContexts`'s params. */
export interface MachinesCodeListContextsParams {
  machineId: string;
}

/** `machines.code.restartContext`'s params. */
export interface MachinesCodeRestartContextParams {
  contextId: string;
  machineId: string;
}

/** `machines.code.deleteContext`'s params. */
export interface MachinesCodeDeleteContextParams {
  contextId: string;
  machineId: string;
}

/** `machines.code.interrupt`'s params. */
export interface MachinesCodeInterruptParams {
  contextId: string;
  machineId: string;
}

/** `machines.desktop.start`'s params. */
export interface MachinesDesktopStartParams {
  machineId: string;
  width?: number;
  height?: number;
  dpi?: number;
}

/** `machines.desktop.stop`'s params. */
export interface MachinesDesktopStopParams {
  machineId: string;
}

/** `machines.desktop.get`'s params. */
export interface MachinesDesktopGetParams {
  machineId: string;
}

/** `machines.desktop.screenshot`'s params. */
export interface MachinesDesktopScreenshotParams {
  machineId: string;
  format?: "jpeg" | "png";
  scale?: number;
}

/** `machines.desktop.act`'s params. */
export interface MachinesDesktopActParams {
  actions: Array<Move | Click | Press | Drag | Scroll | Type | Key | Wait>;
  machineId: string;
  screenshot?: ScreenshotParams | null;
}

/** `machines.desktop.open`'s params. */
export interface MachinesDesktopOpenParams {
  url: string;
  machineId: string;
}

/** `machines.desktop.view`'s params. */
export interface MachinesDesktopViewParams {
  machineId: string;
}

/** `secrets.set`'s params. */
export interface SecretsSetParams {
  instanceId: string;
  name: string;
  value: string;
  hosts: Array<string>;
  header?: string;
  format?: string;
}

/** `secrets.list`'s params. */
export interface SecretsListParams {
  instanceId: string;
}

/** `secrets.delete`'s params. */
export interface SecretsDeleteParams {
  instanceId: string;
  name: string;
}

/** `webhooks.create`'s params. */
export interface WebhooksCreateParams {
  url: string;
  events: Array<string>;
  instanceId?: string | null;
  description?: string;
}

/** `webhooks.list`'s params. */
export interface WebhooksListParams {
  instanceId?: string | null;
}

/** `webhooks.delete`'s params. */
export interface WebhooksDeleteParams {
  webhookId: string;
}

/** `webhooks.rotateSecret`'s params. */
export interface WebhooksRotateSecretParams {
  webhookId: string;
}

/** `webhooks.test`'s params. */
export interface WebhooksTestParams {
  webhookId: string;
}

/** `webhooks.deliveries`'s params. */
export interface WebhooksDeliveriesParams {
  webhookId: string;
  limit?: number;
}

/** `machines.metrics`'s params. */
export interface MachinesMetricsParams {
  machineId: string;
  since?: number | null;
  step?: number | null;
}

/** Every method of the gateway: its params and its result. */
export interface Methods {
  /**
   * Create an instance.
   *
   * Errors: the protocol errors only.
   */
  "instances.create": { params: InstancesCreateParams; result: Instance };
  /**
   * One instance.
   *
   * Errors: 1004, 1003.
   */
  "instances.get": { params: InstancesGetParams; result: Instance };
  /**
   * Every instance the caller may see.
   *
   * Errors: the protocol errors only.
   */
  "instances.list": { params: InstancesListParams; result: InstanceList };
  /**
   * Set a platform or instance env var.
   *
   * Errors: 1004, 1003.
   */
  "env.set": { params: EnvSetParams; result: EnvVar };
  /**
   * Remove an env var.
   *
   * Errors: 1004, 1003.
   */
  "env.unset": { params: EnvUnsetParams; result: Removed };
  /**
   * Env vars of one scope.
   *
   * Errors: 1004, 1003.
   */
  "env.list": { params: EnvListParams; result: EnvListResult };
  /**
   * Add (or replace) a repo checkout, once git on the platform has seen the repo and branch.
   *
   * Errors: 1004, 1003, 1630, 1631.
   */
  "repos.add": { params: ReposAddParams; result: AddedRepo };
  /**
   * Remove a repo by path.
   *
   * Errors: 1004, 1003.
   */
  "repos.remove": { params: ReposRemoveParams; result: Removed };
  /**
   * An instance's repos.
   *
   * Errors: 1004, 1003.
   */
  "repos.list": { params: ReposListParams; result: RepoList };
  /**
   * Create the instance's machine.
   *
   * Errors: 1004, 1003, 1009, 1041, 1022, 1601.
   */
  "machines.create": { params: MachinesCreateParams; result: Machine };
  /**
   * One machine.
   *
   * Errors: 1004, 1003.
   */
  "machines.get": { params: MachinesGetParams; result: Machine };
  /**
   * Machines, newest first.
   *
   * Errors: 1004, 1003.
   */
  "machines.list": { params: MachinesListParams; result: MachineList };
  /**
   * Stop a machine for good.
   *
   * Errors: 1004, 1003.
   */
  "machines.archive": { params: MachinesArchiveParams; result: Machine };
  /**
   * Archive current machine, make a new one.
   *
   * Errors: 1004, 1003, 1009, 1041, 1022, 1601.
   */
  "machines.rebuild": { params: MachinesRebuildParams; result: Machine };
  /**
   * Run argv on a machine, as its user (or as root: gvisor machines only).
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1049, 1601, 1505.
   */
  "machines.exec": { params: MachinesExecParams; result: ExecCommandResult };
  /**
   * Write a file.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1049.
   */
  "machines.writeFile": { params: MachinesWriteFileParams; result: WriteFileResult };
  /**
   * Rebuild the .env and push it to every running machine (of one instance).
   *
   * Errors: 1004, 1003.
   */
  "machines.refreshEnv": { params: MachinesRefreshEnvParams; result: RefreshEnvResult };
  /**
   * Put the platform's code on the machine and restart its daemon with it.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1049, 1601, 1600.
   */
  "machines.refreshCode": { params: MachinesRefreshCodeParams; result: RefreshCodeResult };
  /**
   * Start a background process on a machine.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1049.
   */
  "machines.process.start": { params: MachinesProcessStartParams; result: ProcessInfo };
  /**
   * A machine's background processes.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1049.
   */
  "machines.process.list": { params: MachinesProcessListParams; result: ProcessList };
  /**
   * Stop a background process.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1049.
   */
  "machines.process.kill": { params: MachinesProcessKillParams; result: ProcessInfo };
  /**
   * The last lines of a background process's output.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1049.
   */
  "machines.process.logs": { params: MachinesProcessLogsParams; result: ProcessLogs };
  /**
   * Replace an instance's cron table and push it to its running machines.
   *
   * Errors: 1004, 1003.
   */
  "cron.set": { params: CronSetParams; result: CronSetResult };
  /**
   * An instance's cron table.
   *
   * Errors: 1004, 1003.
   */
  "cron.list": { params: CronListParams; result: CronListResult };
  /**
   * Create an access token.
   *
   * Errors: 1004, 1003.
   */
  "tokens.create": { params: TokensCreateParams; result: CreatedToken };
  /**
   * Access tokens the caller may see.
   *
   * Errors: 1004, 1003.
   */
  "tokens.list": { params: TokensListParams; result: TokenList };
  /**
   * Revoke an access token.
   *
   * Errors: 1004, 1003.
   */
  "tokens.revoke": { params: TokensRevokeParams; result: Revoked };
  /**
   * This API as an OpenRPC document.
   *
   * Errors: the protocol errors only.
   */
  "rpc.discover": { params: RpcDiscoverParams; result: RpcDiscoverResult };
  /**
   * A short-lived, single-use ticket for GET /events?ticket=..., acting as this token (for clients such as EventSource that cannot send an Authorization header).
   *
   * Errors: the protocol errors only.
   */
  "events.ticket": { params: EventsTicketParams; result: EventsTicketResult };
  /**
   * Run argv on a machine; POSTed to /rpc/stream, its output streams as it is produced.
   *
   * Errors: 1004, 1003, -32602, 1040, 1502, 1504, 1700.
   */
  "machines.execStream": { params: MachinesExecStreamParams; result: ExecCommandResult };
  /**
   * The last lines of the machine's daemon log.
   *
   * Errors: 1004, 1003, -32602, 1040, 1502, 1504, 1700, 1601.
   */
  "machines.daemonLog": { params: MachinesDaemonLogParams; result: DaemonLogResult };
  /**
   * Restart a machine's daemon in place (its processes keep running).
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1601.
   */
  "machines.restart": { params: MachinesRestartParams; result: Machine };
  /**
   * The TCP ports that listen in the machine (each can be opened as a preview URL), with the labels its environment gives them, and the ports its environment forwards.
   *
   * Errors: 1004, 1003, 1502, 1504, -32602, 1700, 1601.
   */
  "machines.ports": { params: MachinesPortsParams; result: PortList };
  /**
   * A single-use ticket that opens a port's preview URL in a browser (it becomes a cookie scoped to that preview, so no token ever goes into a URL).
   *
   * Errors: 1004, 1003, -32602.
   */
  "machines.previewTicket": { params: MachinesPreviewTicketParams; result: PreviewTicket };
  /**
   * Replace an instance's SSH public keys: its machines' ~/.ssh/authorized_keys, written at setup and pushed now to its running machines.
   *
   * Errors: 1004, 1003, -32602.
   */
  "instances.setSshKeys": { params: InstancesSetSshKeysParams; result: SshKeysResult };
  /**
   * Set the memory, CPU and pids limits of the instance's machines (omitted: the platform's default); raising one above the default needs the admin token.
   *
   * Errors: 1004, 1003, -32602.
   */
  "instances.setLimits": { params: InstancesSetLimitsParams; result: InstanceLimits };
  /**
   * The limits the instance's machines get.
   *
   * Errors: 1004, 1003.
   */
  "instances.getLimits": { params: InstancesGetLimitsParams; result: InstanceLimits };
  /**
   * Set where the instance's machines may connect (egress: default allow|deny, allow and deny lists of domains, *.wildcards, addresses and CIDRs with optional :PORT or :LOW-HIGH; deny wins). Applied to its running machines before the answer.
   *
   * Errors: 1004, 1003, -32602.
   */
  "instances.setNetworkPolicy": { params: InstancesSetNetworkPolicyParams; result: NetworkPolicyResult };
  /**
   * Where the instance's machines may connect.
   *
   * Errors: 1004, 1003.
   */
  "instances.getNetworkPolicy": { params: InstancesGetNetworkPolicyParams; result: NetworkPolicyResult };
  /**
   * Every host that announced itself (admin only): capacity, running and stopped machines, last heartbeat, state (lost: no heartbeat for FLEET_HOST_LOST_AFTER_S).
   *
   * Errors: 1003.
   */
  "hosts.list": { params: HostsListParams; result: HostList };
  /**
   * Stop (or, with draining false, resume) new placements on a host (admin only): its provisioner takes no machine.created; its machines keep running, unless rebuild is set: then each is rebuilt now, onto other hosts.
   *
   * Errors: 1004, 1003.
   */
  "hosts.drain": { params: HostsDrainParams; result: DrainResult };
  /**
   * Stop a machine: its processes end, its home stays (a stopped one: no change).
   *
   * Errors: 1004, 1003, 1009.
   */
  "machines.stop": { params: MachinesStopParams; result: Machine };
  /**
   * Start a stopped machine again: the same machine, its home and background processes (a running one: no change). A failed one too: what is left of it is ended, then it is started; NeverStarted if its provider never made it (rebuild it). Conflict once archived. Refused with HostFull while its host has no room; Unavailable (retry) while other starts on its host hold its place for over 5 s.
   *
   * Errors: 1004, 1003, 1009, 1042, 1041, 1048, 1501.
   */
  "machines.start": { params: MachinesStartParams; result: Machine };
  /**
   * Pause a ready gvisor machine: its memory, processes and filesystem changes go to disk, its sandbox ends and its host memory is freed (status pausing, then paused; a paused one: no change). NotSupported on a namespaces machine; Conflict unless it is ready.
   *
   * Errors: 1004, 1003, 1009, 1601.
   */
  "machines.pause": { params: MachinesPauseParams; result: Machine };
  /**
   * Resume a paused machine: its processes go on where they were, with the same PIDs (status resuming, then ready; a ready one: no change). Conflict unless it is paused; refused as machines.start is (RunningMachinesLimit, HostFull), and it stays paused.
   *
   * Errors: 1004, 1003, 1009, 1041, 1048, 1501.
   */
  "machines.resume": { params: MachinesResumeParams; result: Machine };
  /**
   * Stop or pause the instance's machines after idleAfterS seconds without gateway activity (0: off). action: pause or stop; absent, a gvisor machine is paused and a namespaces one stopped. A namespaces machine is always stopped: it cannot keep its memory.
   *
   * Errors: 1004, 1003.
   */
  "instances.setAutoStop": { params: InstancesSetAutoStopParams; result: AutoStop };
  /**
   * The instance's auto-stop setting (0: off).
   *
   * Errors: 1004, 1003.
   */
  "instances.getAutoStop": { params: InstancesGetAutoStopParams; result: AutoStop };
  /**
   * Set the runtime of the instance's next machines (namespaces or gvisor; null: the platform's). Machines it has keep theirs. NotSupported if the platform's provider cannot run it.
   *
   * Errors: 1004, 1003, 1601.
   */
  "instances.setRuntime": { params: InstancesSetRuntimeParams; result: InstanceRuntime };
  /**
   * The instance's runtime setting, and the runtime its next machine gets.
   *
   * Errors: 1004, 1003.
   */
  "instances.getRuntime": { params: InstancesGetRuntimeParams; result: InstanceRuntime };
  /**
   * New machines of the same instance, each with the machine's home as of one instant (running or stopped; it keeps running), each made ready as a created one.
   *
   * Errors: 1004, 1003, 1009, 1601, 1041.
   */
  "machines.fork": { params: MachinesForkParams; result: ForkedMachines };
  /**
   * A named, read-only state of the machine's home (running or stopped), kept until deleted; machines.create with fromSnapshot starts a machine of the instance with it.
   *
   * Errors: 1004, 1003, 1009, 1601, 1060.
   */
  "machines.snapshot": { params: MachinesSnapshotParams; result: Snapshot };
  /**
   * An instance's snapshots.
   *
   * Errors: 1004, 1003.
   */
  "snapshots.list": { params: SnapshotsListParams; result: SnapshotList };
  /**
   * Delete a snapshot; machines made from it keep their homes. Refused (Conflict, naming it) while a machine is being made from it: until that machine is ready, failed or archived.
   *
   * Errors: 1004, 1003, 1009.
   */
  "snapshots.delete": { params: SnapshotsDeleteParams; result: SnapshotDeleted };
  /**
   * Run Python in a sandbox against the tools.
   *
   * Errors: 1004, 1003, -32602, 1503.
   */
  "codemode.run": { params: CodemodeRunParams; result: RunResult };
  /**
   * Cancel a running run.
   *
   * Errors: 1004, 1003.
   */
  "codemode.cancel": { params: CodemodeCancelParams; result: Cancelled };
  /**
   * Kept run records, newest first.
   *
   * Errors: 1004, 1003.
   */
  "codemode.list": { params: CodemodeListParams; result: RunList };
  /**
   * Python stubs of the run's providers.
   *
   * Errors: 1004, 1003, -32602, 1503.
   */
  "codemode.describe": { params: CodemodeDescribeParams; result: Stubs };
  /**
   * Add or replace a bridge.
   *
   * Errors: 1004, 1003.
   */
  "codemode.bridges.set": { params: CodemodeBridgesSetParams; result: BridgeInfo };
  /**
   * An instance's bridges.
   *
   * Errors: 1004, 1003.
   */
  "codemode.bridges.list": { params: CodemodeBridgesListParams; result: BridgeList };
  /**
   * Remove a bridge.
   *
   * Errors: 1004, 1003.
   */
  "codemode.bridges.remove": { params: CodemodeBridgesRemoveParams; result: BridgeRemoved };
  /**
   * Start a session (default: the login shell) on a machine's pseudo-terminal, or on pipes with pty false; attach to it with a WebSocket at /machines/{machineId}/sessions/{sessionId}/attach.
   *
   * Errors: 1004, 1003, -32602, 1502, 1504, 1700, 1049, 1046, 1029.
   */
  "sessions.open": { params: SessionsOpenParams; result: OpenedSession };
  /**
   * A machine's sessions.
   *
   * Errors: 1004, 1003, -32602, 1502, 1504.
   */
  "sessions.list": { params: SessionsListParams; result: SessionList };
  /**
   * Set a session's terminal size.
   *
   * Errors: 1004, 1003, -32602, 1502, 1504.
   */
  "sessions.resize": { params: SessionsResizeParams; result: SessionInfo };
  /**
   * Send a signal (9: SIGKILL, 15: SIGTERM, 2: SIGINT, ...) to a session's process group.
   *
   * Errors: 1004, 1003, -32602, 1502, 1504.
   */
  "sessions.signal": { params: SessionsSignalParams; result: SessionSignaled };
  /**
   * Write bytes (base64) to a session's input; eof true then closes a pipe session's stdin.
   *
   * Errors: 1004, 1003, -32602, 1502, 1504.
   */
  "sessions.write": { params: SessionsWriteParams; result: SessionWritten };
  /**
   * Hang up a session and forget it; attached clients get its exit code.
   *
   * Errors: 1004, 1003, -32602, 1502, 1504.
   */
  "sessions.close": { params: SessionsCloseParams; result: SessionClosed };
  /**
   * Read a file of the machine's home that fits in one message (text, or base64); a bigger one answers FileTooLarge: download it with GET /machines/{machineId}/files/{path}.
   *
   * Errors: 1004, 1003, 1009, 1502, 1504, -32602, 1700, 1051, 1052, 1049, 1050, 1053.
   */
  "machines.readFile": { params: MachinesReadFileParams; result: ReadFileResult };
  /**
   * The entries of a directory of the machine's home, sorted by name (depth > 1: its subdirectories' too, each after its directory, named by its path from the directory).
   *
   * Errors: 1004, 1003, 1009, 1502, 1504, -32602, 1700, 1051, 1052, 1049.
   */
  "machines.listDir": { params: MachinesListDirParams; result: ListDirResult };
  /**
   * What is at a path of the machine's home (a link is described, not followed).
   *
   * Errors: 1004, 1003, 1009, 1502, 1504, -32602, 1700, 1051, 1052, 1049.
   */
  "machines.stat": { params: MachinesStatParams; result: StatResult };
  /**
   * Remove a file, link or empty directory of the machine's home (recursive: a whole tree).
   *
   * Errors: 1004, 1003, 1009, 1502, 1504, -32602, 1700, 1051, 1052, 1049.
   */
  "machines.removeFile": { params: MachinesRemoveFileParams; result: RemoveFileResult };
  /**
   * Make a directory of the machine's home, and those on the way unless parents is false; a directory there already answers created: false, anything else there WrongFileKind.
   *
   * Errors: 1004, 1003, 1009, 1502, 1504, -32602, 1700, 1051, 1052, 1049.
   */
  "machines.makeDir": { params: MachinesMakeDirParams; result: MakeDirResult };
  /**
   * Move (rename) a file, link or directory of the machine's home as rename(2) does: into an existing directory only, replacing a file there (or an empty directory, by a directory); never a directory into itself.
   *
   * Errors: 1004, 1003, 1009, 1502, 1504, -32602, 1700, 1051, 1052, 1049.
   */
  "machines.move": { params: MachinesMoveParams; result: MoveResult };
  /**
   * Watch a path of the machine's home: POSTed to /rpc/stream, each change (create, write, remove, rename, chmod) streams as the machine's kernel reports it, until the watch ends (its client leaves, its machine pauses or stops); the result says why it ended.
   *
   * Errors: 1004, 1003, 1009, 1502, 1504, -32602, 1700, 1051, 1052, 1049, 1046.
   */
  "machines.watch": { params: MachinesWatchParams; result: WatchEnded };
  /**
   * Set the environment the instance's machines are made from (null: auto-detection); machines created or rebuilt from then on get it. A devcontainer.json the platform's host can fetch is checked now: refused properties are EnvironmentRefused.
   *
   * Errors: 1004, 1003, -32602, 1620, 1621.
   */
  "instances.setEnvironment": { params: InstancesSetEnvironmentParams; result: InstanceEnvironment };
  /**
   * The environment the instance's machines are made from (null: auto-detection).
   *
   * Errors: 1004, 1003.
   */
  "instances.getEnvironment": { params: InstancesGetEnvironmentParams; result: InstanceEnvironment };
  /**
   * The cached environment builds of a host's Docker engine, least recently used first.
   *
   * Errors: -32602, 1505, 1600.
   */
  "environments.list": { params: EnvironmentsListParams; result: EnvironmentList };
  /**
   * Build the instance's environment now (or find its build in the cache); answers when done.
   *
   * Errors: 1004, -32602, 1620, 1621, 1623, 1622, 1610, 1611, 1029, 1505, 1600.
   */
  "environments.build": { params: EnvironmentsBuildParams; result: EnvironmentBuilt };
  /**
   * Remove a cached build; refused with EnvironmentInUse while a machine runs it.
   *
   * Errors: 1004, -32602, 1629, 1505, 1600.
   */
  "environments.delete": { params: EnvironmentsDeleteParams; result: EnvironmentDeleted };
  /**
   * Audit entries, newest first, filtered by actor, instance, machine, method and time (admins only).
   *
   * Errors: 1003, -32602.
   */
  "audit.list": { params: AuditListParams; result: AuditEntries };
  /**
   * Create a user (admins).
   *
   * Errors: 1009, 1003.
   */
  "users.create": { params: UsersCreateParams; result: User };
  /**
   * Every user (admins).
   *
   * Errors: 1003.
   */
  "users.list": { params: UsersListParams; result: UserList };
  /**
   * Set a user's platform role (admins).
   *
   * Errors: 1004, 1003.
   */
  "users.setRole": { params: UsersSetRoleParams; result: User };
  /**
   * Disable a user: their sessions and tokens stop working at once (admins).
   *
   * Errors: 1004, 1003.
   */
  "users.disable": { params: UsersDisableParams; result: User };
  /**
   * Enable a disabled user again: they can sign in, and their unexpired tokens work again (their sessions ended with the disable) (admins).
   *
   * Errors: 1004, 1003.
   */
  "users.enable": { params: UsersEnableParams; result: User };
  /**
   * Give a user a role on an instance (owner, developer, viewer; none removes them).
   *
   * Errors: 1004, 1003.
   */
  "instances.setMember": { params: InstancesSetMemberParams; result: MemberList };
  /**
   * An instance's members and roles.
   *
   * Errors: 1004, 1003.
   */
  "instances.members": { params: InstancesMembersParams; result: MemberList };
  /**
   * Run code in a stateful kernel of the machine (its default context for the language, or contextId): the results as MIME bundles, stdout, stderr and the error, once it is done.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1701, 1702, 1703, 1049.
   */
  "machines.code.run": { params: MachinesCodeRunParams; result: CodeRunResult };
  /**
   * Start a kernel of a language (default python) in a working directory: a new context.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1701, 1703, 1049.
   */
  "machines.code.createContext": { params: MachinesCodeCreateContextParams; result: CodeContext };
  /**
   * The machine's code contexts, and the languages it has a kernel for.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700.
   */
  "machines.code.listContexts": { params: MachinesCodeListContextsParams; result: CodeContextList };
  /**
   * Restart a context's kernel: its state is cleared.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700.
   */
  "machines.code.restartContext": { params: MachinesCodeRestartContextParams; result: CodeContext };
  /**
   * Shut a context's kernel down and forget the context.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700.
   */
  "machines.code.deleteContext": { params: MachinesCodeDeleteContextParams; result: ContextDeleted };
  /**
   * Interrupt what runs in a context (SIGINT, as Jupyter does); its state is kept.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700.
   */
  "machines.code.interrupt": { params: MachinesCodeInterruptParams; result: ContextInterrupted };
  /**
   * Start the machine's display (an X server, a window manager, the live view) if it does not run; one display per machine, its size the first start's.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1710.
   */
  "machines.desktop.start": { params: MachinesDesktopStartParams; result: DesktopInfo };
  /**
   * Stop the machine's display and every program of it (its browser included).
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700.
   */
  "machines.desktop.stop": { params: MachinesDesktopStopParams; result: DesktopInfo };
  /**
   * Whether the machine's display runs, and its size.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700.
   */
  "machines.desktop.get": { params: MachinesDesktopGetParams; result: DesktopInfo };
  /**
   * The machine's screen as it is now: a PNG or JPEG, base64, scaled down to at most the machine's FLEET_DESKTOP_MAX_PIXELS.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1711.
   */
  "machines.desktop.screenshot": { params: MachinesDesktopScreenshotParams; result: Screenshot };
  /**
   * Mouse and keyboard actions on the machine's screen, in order (move, click, press, drag, scroll, type, key, wait); a screenshot after the last, once the screen settled, when asked. An action off the screen refuses the whole call before any runs.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1711, 1710.
   */
  "machines.desktop.act": { params: MachinesDesktopActParams; result: ActResult };
  /**
   * The display's browser at a URL (http, https, file or about:blank): a new tab of the running browser, or the browser started.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1711, 1710.
   */
  "machines.desktop.open": { params: MachinesDesktopOpenParams; result: Opened };
  /**
   * A single-use ticket that opens the machine's live view (noVNC, on the machine's preview) in a browser: it takes input if the caller may exec, else it only shows.
   *
   * Errors: 1004, 1003, 1009, 1040, 1502, 1504, -32602, 1700, 1711, 1710.
   */
  "machines.desktop.view": { params: MachinesDesktopViewParams; result: DesktopView };
  /**
   * Add or replace a secret the egress proxy adds to requests to its hosts.
   *
   * Errors: 1004, 1003, -32602.
   */
  "secrets.set": { params: SecretsSetParams; result: SecretInfo };
  /**
   * An instance's secrets: names, hosts, header and format, never values.
   *
   * Errors: 1004, 1003.
   */
  "secrets.list": { params: SecretsListParams; result: SecretList };
  /**
   * Delete a secret: it stops at once.
   *
   * Errors: 1004, 1003.
   */
  "secrets.delete": { params: SecretsDeleteParams; result: SecretDeleted };
  /**
   * Add an endpoint that machine events are POSTed to (Standard Webhooks); its signing secret is answered this once.
   *
   * Errors: 1004, 1003, -32602.
   */
  "webhooks.create": { params: WebhooksCreateParams; result: CreatedWebhook };
  /**
   * An instance's webhook endpoints (or the platform's): never their secrets.
   *
   * Errors: 1004, 1003.
   */
  "webhooks.list": { params: WebhooksListParams; result: WebhookList };
  /**
   * Delete a webhook endpoint: nothing more is sent to it, its queue included.
   *
   * Errors: 1004, 1003.
   */
  "webhooks.delete": { params: WebhooksDeleteParams; result: WebhookDeleted };
  /**
   * A new signing secret for an endpoint, answered this once; the old one signs beside it for 24 hours.
   *
   * Errors: 1004, 1003.
   */
  "webhooks.rotateSecret": { params: WebhooksRotateSecretParams; result: RotatedSecret };
  /**
   * Send a webhook.test event to an endpoint (its attempts show in webhooks.deliveries).
   *
   * Errors: 1004, 1003, 1029.
   */
  "webhooks.test": { params: WebhooksTestParams; result: WebhookTestSent };
  /**
   * An endpoint's last delivery attempts (status, duration, error, next attempt) and how many events wait.
   *
   * Errors: 1004, 1003.
   */
  "webhooks.deliveries": { params: WebhooksDeliveriesParams; result: Deliveries };
  /**
   * A machine's CPU, memory, disk and network, sample by sample (every 5 s for the last hour, a minute each for the last day), oldest first.
   *
   * Errors: 1004, 1003.
   */
  "machines.metrics": { params: MachinesMetricsParams; result: MachineMetrics };
}

/** A method's name. */
export type MethodName = keyof Methods;

/** Every method of the OpenRPC document, in its order. */
export const METHOD_NAMES = [
  "instances.create",
  "instances.get",
  "instances.list",
  "env.set",
  "env.unset",
  "env.list",
  "repos.add",
  "repos.remove",
  "repos.list",
  "machines.create",
  "machines.get",
  "machines.list",
  "machines.archive",
  "machines.rebuild",
  "machines.exec",
  "machines.writeFile",
  "machines.refreshEnv",
  "machines.refreshCode",
  "machines.process.start",
  "machines.process.list",
  "machines.process.kill",
  "machines.process.logs",
  "cron.set",
  "cron.list",
  "tokens.create",
  "tokens.list",
  "tokens.revoke",
  "rpc.discover",
  "events.ticket",
  "machines.execStream",
  "machines.daemonLog",
  "machines.restart",
  "machines.ports",
  "machines.previewTicket",
  "instances.setSshKeys",
  "instances.setLimits",
  "instances.getLimits",
  "instances.setNetworkPolicy",
  "instances.getNetworkPolicy",
  "hosts.list",
  "hosts.drain",
  "machines.stop",
  "machines.start",
  "machines.pause",
  "machines.resume",
  "instances.setAutoStop",
  "instances.getAutoStop",
  "instances.setRuntime",
  "instances.getRuntime",
  "machines.fork",
  "machines.snapshot",
  "snapshots.list",
  "snapshots.delete",
  "codemode.run",
  "codemode.cancel",
  "codemode.list",
  "codemode.describe",
  "codemode.bridges.set",
  "codemode.bridges.list",
  "codemode.bridges.remove",
  "sessions.open",
  "sessions.list",
  "sessions.resize",
  "sessions.signal",
  "sessions.write",
  "sessions.close",
  "machines.readFile",
  "machines.listDir",
  "machines.stat",
  "machines.removeFile",
  "machines.makeDir",
  "machines.move",
  "machines.watch",
  "instances.setEnvironment",
  "instances.getEnvironment",
  "environments.list",
  "environments.build",
  "environments.delete",
  "audit.list",
  "users.create",
  "users.list",
  "users.setRole",
  "users.disable",
  "users.enable",
  "instances.setMember",
  "instances.members",
  "machines.code.run",
  "machines.code.createContext",
  "machines.code.listContexts",
  "machines.code.restartContext",
  "machines.code.deleteContext",
  "machines.code.interrupt",
  "machines.desktop.start",
  "machines.desktop.stop",
  "machines.desktop.get",
  "machines.desktop.screenshot",
  "machines.desktop.act",
  "machines.desktop.open",
  "machines.desktop.view",
  "secrets.set",
  "secrets.list",
  "secrets.delete",
  "webhooks.create",
  "webhooks.list",
  "webhooks.delete",
  "webhooks.rotateSecret",
  "webhooks.test",
  "webhooks.deliveries",
  "machines.metrics",
] as const satisfies readonly MethodName[];

// --- events: what GET /events streams, discriminated by `type` ---

export interface DaemonStatusReported {
  type: "daemon-status-reported";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  status: "ready" | "stopping";
  version: string;
  gitSha?: string | null;
  bootId: string;
}

/** A changed env reached a running machine's .env (its size and sha256 as written). */
export interface EnvPushed {
  type: "env-pushed";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  envPath: string;
  envBytes: number;
  envSha256: string;
}

/**
 * Lines of the build log of the machine's environment, while it builds. Machines that
 * share one build each get its lines (one joining late starts with its last lines).
 */
export interface EnvironmentBuildOutput {
  type: "environment-build-output";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  lines: Array<string>;
  dropped?: number;
}

/** How a machine's home was made from another's: a fork's, or a snapshot's. */
export interface HomeCopy {
  source: string;
  how: "copy" | "cow";
  pauseMs: number;
  tookMs: number;
}

/**
 * Lines a devcontainer lifecycle command printed (stdout and stderr, as read), while it
 * runs; its ``lifecycle-ran`` comes after the last of them.
 */
export interface LifecycleOutput {
  type: "lifecycle-output";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  stage: string;
  command: string;
  lines: Array<string>;
  dropped?: number;
}

/**
 * One devcontainer lifecycle command ended in the machine (environments/lifecycle_commands.py):
 * a non-zero exit code fails the machine at a stage named ``stage``.
 */
export interface LifecycleRan {
  type: "lifecycle-ran";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  stage: string;
  command: string;
  exitCode: number;
  timedOut?: boolean;
  output: string;
}

/**
 * The machine is archiving (its status says so already): the provisioner revokes its
 * access, ends its processes and removes its files.
 */
export interface MachineArchived {
  type: "archived";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  reason: string;
}

export interface MachineCreated {
  type: "created";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  instanceId: string;
  provider: string;
  forkOf?: string | null;
  fromSnapshot?: string | null;
  memoryImage?: string | null;
}

/**
 * The machine's instance's network policy refused something it tried: a name (DNS: its
 * resolver answered NXDOMAIN, or REFUSED for an answer pointing at a loopback, link-local
 * or platform address) or a connection. At most a few per machine per window: ``dropped``
 * says how many refusals since the last event were not sent as one.
 */
export interface MachineEgressDenied {
  type: "egress-denied";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  destination: string;
  port?: number;
  name?: string;
  reason: string;
  dropped?: number;
}

export interface MachineFailed {
  type: "failed";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  stage: string;
  reason: string;
}

/**
 * An archiving machine's processes have exited and its files are gone: its status is
 * ``archived`` now.
 */
export interface MachineFilesRemoved {
  type: "files-removed";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  reason: string;
}

/**
 * The machine's host missed its heartbeats for ``FLEET_HOST_LOST_AFTER_S``: the machine
 * is out of reach until its host comes back (its heartbeats make it ready again), or is
 * replaced by ``machines.rebuild`` on a live host.
 */
export interface MachineLost {
  type: "lost";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  hostId: string;
  reason: string;
}

/**
 * A pause refused before the machine's sandbox was touched (a TCP connection of its own
 * that the checkpoint cannot keep): it runs on, its status ``ready`` again.
 */
export interface MachinePauseRefused {
  type: "pause-refused";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  reason: string;
}

/**
 * The machine is pausing (its status says so already): the provisioner writes its memory
 * and processes to disk and ends its sandbox.
 */
export interface MachinePauseRequested {
  type: "pause-requested";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  reason: string;
  by?: PauseBy;
}

/** A pausing machine is on disk and its sandbox gone: its status is ``paused`` now. */
export interface MachinePaused {
  type: "paused";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  bytes: number;
  durationMs: number;
  by?: PauseBy;
}

/**
 * Every process of a stopping machine has exited (its container too): its status is
 * ``stopped`` now, and nothing of it runs.
 */
export interface MachineProcessesEnded {
  type: "processes-ended";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  reason: string;
}

export interface MachineProvisioned {
  type: "provisioned";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  provider: string;
  externalId: string;
  homeCopy?: HomeCopy | null;
}

export interface MachineReady {
  type: "ready";
  eventId: string;
  occurredAt?: string;
  machineId: string;
}

/** The machine is resuming (its status says so already): the provisioner restores it. */
export interface MachineResumeRequested {
  type: "resume-requested";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  by: WakeByEvent;
}

/**
 * A resuming machine's sandbox is restored, its processes where they were, and its daemon
 * answers: its status is ``ready`` now.
 */
export interface MachineResumed {
  type: "resumed";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  durationMs: number;
  by: WakeByEvent;
}

/**
 * The machine's first request that the egress proxy sent on with one of its instance's
 * secrets added (later ones are only counted: ``secrets.list``). Never the value.
 */
export interface MachineSecretUsed {
  type: "secret-used";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  secret: string;
  host: string;
}

/**
 * A stopped (or failed) machine is booting again: the provisioner starts the same machine
 * (same id, same home); the pipeline then runs from its daemon's ready report as after a
 * create.
 */
export interface MachineStarted {
  type: "started";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  reason: string;
  by?: WakeByEvent;
}

/**
 * The machine is stopping (its status says so already): the provisioner ends its
 * processes (or its container) and keeps its home. Also the first step of a failed machine's
 * start (its ``machine.started`` follows at once).
 */
export interface MachineStopped {
  type: "stopped";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  reason: string;
}

export interface MachineUnresponsive {
  type: "unresponsive";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  lastHeartbeatAt: string | null;
  reason: string;
}

/** What asked for a pause (``by`` of ``machine.pause-requested`` and ``machine.paused``). */
export type PauseBy = "idle" | "memory-pressure" | "request";

/** A repo that did not reach a machine (its checkout path), and why. */
export interface RepoConflict {
  path: string;
  reason: string;
}

/**
 * What reconciling a running machine's checkouts with its instance's repos did. Nothing
 * is ever deleted: a removed repo's checkout stays and is listed in ``left_in_place``.
 */
export interface ReposReconciled {
  type: "repos-reconciled";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  cloned: Array<string>;
  switched: Array<string>;
  unchanged: Array<string>;
  conflicts: Array<RepoConflict>;
  leftInPlace: Array<string>;
}

export interface SetupPushed {
  type: "setup-pushed";
  eventId: string;
  occurredAt?: string;
  machineId: string;
  envPath: string;
  envBytes: number;
  repoPaths: Array<string>;
  notCloned?: Array<RepoConflict>;
}

/**
 * What brought a machine back (``by`` of ``machine.started``, ``machine.resume-requested``
 * and ``machine.resumed``): a request to, or a call that needed the machine while it was
 * paused or stopped (wake on access, ``FLEET_WAKE_ON_ACCESS``: docs/stop-start.md).
 */
export type WakeByEvent = "codemode" | "exec" | "files" | "preview" | "process" | "request" | "terminal" | "tunnel";

// --- the HTTP routes beside /rpc ---

/** A text frame the gateway could not take (the socket stays open). */
export interface BadControl {
  type: "error";
  message: string;
}

/**
 * One part of a streamed run, as the kernel sends it: a ``stdout`` or ``stderr`` chunk
 * (``text``), a ``result`` (a MIME bundle) or the ``error``. The parts are what the answer
 * holds, in the order they came (``seq`` from 0), within the same cap: a part the answer
 * leaves out is not sent either. A timeout's ``TimeoutError`` comes as a last error part.
 */
export interface CodeRunPart {
  seq: number;
  kind: "error" | "result" | "stderr" | "stdout";
  text?: string | null;
  result?: Record<string, unknown> | null;
  error?: CodeError | null;
}

/** Bytes of output this client missed (it was too slow; the others were not held up). */
export interface Dropped {
  type: "dropped";
  bytes: number;
}

export interface Exited {
  type: "exit";
  code: number | null;
}

/** One change, as its machine's kernel reported it (one line of a watch's stream). */
export interface FileEvent {
  type: "chmod" | "create" | "overflow" | "remove" | "rename" | "write";
  path: string;
  isDir?: boolean;
  dropped?: number;
}

/**
 * One piece of a streamed command's output (core NATS: not stored; the final result
 * still carries the whole capped output).
 */
export interface OutputChunk {
  seq: number;
  stream: "stderr" | "stdout";
  data: string;
}

export interface Resize {
  type: "resize";
  cols: number;
  rows: number;
}

export interface Uploaded {
  path: string;
  size: number;
  sha256: string;
  mode: number;
}

/** A terminal's control message from the gateway (a text frame). */
export type ServerControl = Dropped | Exited | BadControl;

/** The paths and names of the routes (contracts/). */
export const ROUTES = {
  rpcStream: "/rpc/stream",
  sseOutput: "output",
  sseResult: "result",
  sseDropped: "dropped",
  sseOverflow: "overflow",
  sseCaughtUp: "caught-up",
  sseError: "error",
  filesPrefix: "/machines/",
  attachPath: "/machines/{machineId}/sessions/{sessionId}/attach",
  closeAborted: 4000,
} as const;

/** A machine event as GET /events streams it: switch on `type`. */
export type FleetEvent =
  | MachineCreated
  | MachineProvisioned
  | DaemonStatusReported
  | SetupPushed
  | MachineReady
  | MachineFailed
  | MachineArchived
  | MachineFilesRemoved
  | MachineUnresponsive
  | EnvPushed
  | ReposReconciled
  | MachineStopped
  | MachineProcessesEnded
  | MachineStarted
  | MachinePauseRequested
  | MachinePaused
  | MachinePauseRefused
  | MachineResumeRequested
  | MachineResumed
  | MachineLost
  | MachineEgressDenied
  | LifecycleRan
  | LifecycleOutput
  | EnvironmentBuildOutput
  | MachineSecretUsed;

/** Every event `type`. */
export type EventType = FleetEvent["type"];

// --- errors: every code, its name, HTTP status, and whether it may be resent ---

/** Each error code of the contract (contracts/errors.py). */
export const ERRORS = {
  "-32700": { name: "ParseError", httpStatus: 400, retryable: false },
  "-32600": { name: "InvalidRequest", httpStatus: 400, retryable: false },
  "-32601": { name: "MethodNotFound", httpStatus: 404, retryable: false },
  "-32602": { name: "InvalidParams", httpStatus: 400, retryable: false },
  "-32603": { name: "InternalError", httpStatus: 500, retryable: false },
  "1001": { name: "Unauthorized", httpStatus: 401, retryable: false },
  "1003": { name: "Forbidden", httpStatus: 403, retryable: false },
  "1004": { name: "NotFound", httpStatus: 404, retryable: false },
  "1009": { name: "Conflict", httpStatus: 409, retryable: false },
  "1022": { name: "IdempotencyKeyReused", httpStatus: 409, retryable: false },
  "1040": { name: "MachineStopped", httpStatus: 409, retryable: false },
  "1042": { name: "NeverStarted", httpStatus: 409, retryable: false },
  "1041": { name: "RunningMachinesLimit", httpStatus: 409, retryable: false },
  "1060": { name: "SnapshotLimit", httpStatus: 409, retryable: false },
  "1061": { name: "DiskLimit", httpStatus: 409, retryable: false },
  "1048": { name: "HostFull", httpStatus: 409, retryable: false },
  "1013": { name: "PayloadTooLarge", httpStatus: 413, retryable: false },
  "1029": { name: "RateLimited", httpStatus: 429, retryable: true },
  "1045": { name: "StreamAborted", httpStatus: 502, retryable: false },
  "1046": { name: "TooManyStreams", httpStatus: 429, retryable: false },
  "1049": { name: "BadPath", httpStatus: 400, retryable: false },
  "1050": { name: "FileTooLarge", httpStatus: 413, retryable: false },
  "1051": { name: "FileNotFound", httpStatus: 404, retryable: false },
  "1052": { name: "WrongFileKind", httpStatus: 409, retryable: false },
  "1053": { name: "NotText", httpStatus: 422, retryable: false },
  "1054": { name: "TransferAborted", httpStatus: 502, retryable: false },
  "1101": { name: "RequestExpired", httpStatus: 502, retryable: false },
  "1102": { name: "RequestReplayed", httpStatus: 502, retryable: false },
  "1103": { name: "ReplyForged", httpStatus: 502, retryable: false },
  "1501": { name: "Unavailable", httpStatus: 503, retryable: true },
  "1502": { name: "DaemonUnavailable", httpStatus: 502, retryable: true },
  "1505": { name: "HostUnavailable", httpStatus: 502, retryable: false },
  "1504": { name: "DaemonTimeout", httpStatus: 504, retryable: false },
  "1503": { name: "CodemodeUnavailable", httpStatus: 503, retryable: false },
  "1600": { name: "ProviderError", httpStatus: 500, retryable: false },
  "1601": { name: "NotSupported", httpStatus: 501, retryable: false },
  "1610": { name: "ImageNotFound", httpStatus: 404, retryable: false },
  "1611": { name: "ImageRefused", httpStatus: 403, retryable: false },
  "1700": { name: "ToolError", httpStatus: 500, retryable: false },
  "1701": { name: "LanguageUnavailable", httpStatus: 422, retryable: false },
  "1702": { name: "KernelDied", httpStatus: 502, retryable: false },
  "1703": { name: "CodeContextsLimit", httpStatus: 409, retryable: false },
  "1710": { name: "DesktopUnavailable", httpStatus: 422, retryable: false },
  "1711": { name: "DesktopNotRunning", httpStatus: 409, retryable: false },
  "1055": { name: "PortUnreachable", httpStatus: 502, retryable: false },
  "1056": { name: "BadUpstream", httpStatus: 502, retryable: false },
  "1080": { name: "IdTokenRejected", httpStatus: 401, retryable: false },
  "1081": { name: "SignInStateRejected", httpStatus: 400, retryable: false },
  "1082": { name: "CsrfRejected", httpStatus: 403, retryable: false },
  "1620": { name: "EnvironmentRefused", httpStatus: 422, retryable: false },
  "1621": { name: "EnvironmentInvalid", httpStatus: 422, retryable: false },
  "1622": { name: "BuildFailed", httpStatus: 422, retryable: false },
  "1623": { name: "FeatureUnavailable", httpStatus: 502, retryable: false },
  "1624": { name: "HostRequirementsExceeded", httpStatus: 422, retryable: false },
  "1628": { name: "BuildLimitExceeded", httpStatus: 422, retryable: false },
  "1629": { name: "EnvironmentInUse", httpStatus: 409, retryable: false },
  "1630": { name: "RepoNotFound", httpStatus: 422, retryable: false },
  "1631": { name: "BranchNotFound", httpStatus: 422, retryable: false },
} as const;

/** The code an HTTP status stands for when an answer carries no error object. */
export const CODE_BY_STATUS: Readonly<Record<number, number>> = {
  400: -32602,
  401: 1001,
  403: 1003,
  404: 1004,
  409: 1009,
  413: 1013,
  429: 1029,
  500: -32603,
  501: 1601,
  502: 1502,
  503: 1501,
  504: 1504,
};

/** An error code of the contract. */
export type ErrorCode = keyof typeof ERRORS;
/** An error name of the contract. */
export type ErrorName = (typeof ERRORS)[ErrorCode]["name"];
