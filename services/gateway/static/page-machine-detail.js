// Machine detail: one machine's status and actions, its event timeline as it happens, a command
// runner and the effective .env (masked).
import { followEvents, rpc } from "./api.js";
import { commandRunner } from "./command-runner.js";
import { EVENT_TYPES, METHODS } from "./contract.js";
import { desktopPanel } from "./desktop-panel.js";
import { effectiveEnvTable } from "./env-table.js";
import { frame } from "./frame.js";
import {
  codeBadge,
  daemonCell,
  machineActions,
  pausedSize,
  runtimeLabel,
  shortSha,
  wokenBy,
} from "./machine-actions.js";
import { notebook } from "./notebook.js";
import { portsPanel } from "./ports-panel.js";
import { instanceName, state } from "./state.js";
import { refreshMachine, updateMachine } from "./sync.js";
import { terminals } from "./terminal.js";
import { chip, fill, fmtBytes, fmtClock, fmtTime, h, mono, noticeArea, statusChip } from "./ui.js";
import { usageCharts } from "./usage-charts.js";

const T = EVENT_TYPES;
/** What each kind of event says, from its fields: a line (and an output event's lines). */
const EVENT_DETAILS = {
  [T.CREATED]: (e) => `provider ${e.provider}`,
  [T.PROVISIONED]: (e) => `${e.provider} ${e.externalId}`,
  [T.DAEMON_STATUS_REPORTED]: (e) => {
    const sha = e.gitSha ? ` (${shortSha(e.gitSha)})` : "";
    return `${e.status}, daemon ${e.version}${sha}`;
  },
  [T.SETUP_PUSHED]: (e) =>
    `.env ${e.envBytes} B, ${e.repoPaths.length} repo(s)` +
    (e.notCloned ?? []).map((r) => `; not cloned: ${r.path}: ${r.reason}`).join(""),
  [T.READY]: () => "",
  [T.STARTED]: (e) => `by ${e.by}: ${e.reason}`,
  [T.PAUSED]: (e) => `${fmtBytes(e.bytes)} image, in ${Math.round(e.durationMs)} ms`,
  [T.RESUME_REQUESTED]: (e) => `by ${e.by}`,
  [T.RESUMED]: (e) => `by ${e.by}, in ${Math.round(e.durationMs)} ms`,
  [T.FAILED]: (e) => `at ${e.stage}: ${e.reason}`,
  [T.ARCHIVED]: (e) => e.reason,
  [T.FILES_REMOVED]: () => "its processes have exited and its files are gone",
  [T.UNRESPONSIVE]: (e) => e.reason,
  [T.LOST]: (e) => e.reason,
  [T.LIFECYCLE_RAN]: (e) =>
    `${e.stage} \`${e.command}\` ${e.timedOut ? "timed out" : `exited ${e.exitCode}`}`,
  [T.LIFECYCLE_OUTPUT]: (e) => outputLines(e, `${e.stage} \`${e.command}\``),
  [T.ENVIRONMENT_BUILD_OUTPUT]: (e) => outputLines(e, "build log"),
  [T.EGRESS_DENIED]: (e) => {
    const port = e.port ? `:${e.port}` : "";
    const more = e.dropped ? ` (and ${e.dropped} more before it)` : "";
    return `${e.reason}: ${e.name || e.destination}${port}${more}`;
  },
  [T.SECRET_USED]: (e) => `first use of secret ${e.secret}, to ${e.host}`,
};
/** An output event's lines as printed (a batch: at most 8 KiB), under whose they are. */
function outputLines(e, whose) {
  const dropped = e.dropped ? `, ${e.dropped} line(s) dropped before these` : "";
  return [`${whose}${dropped}`, h("pre.output-lines.mono", {}, e.lines.join("\n"))];
}
const EVENT_TONE = {
  [T.READY]: "ready",
  [T.FAILED]: "failed",
  [T.ARCHIVED]: "archived",
  [T.FILES_REMOVED]: "archived",
  [T.UNRESPONSIVE]: "unresponsive",
  [T.LOST]: "lost",
  [T.EGRESS_DENIED]: "failed",
};
const MS_PER_S = 1000;

function timeline(machineId, signal) {
  const list = h("ol.timeline", { testid: "timeline", "aria-live": "polite" });
  const seen = { first: null };
  const addEvent = (e, seq) => {
    if (list.querySelector(`[data-seq="${CSS.escape(seq)}"]`)) return;
    seen.first ??= new Date(e.occurredAt);
    const offset = ((new Date(e.occurredAt) - seen.first) / MS_PER_S).toFixed(2);
    const describe = EVENT_DETAILS[e.type] ?? (() => "");
    list.querySelector(".empty")?.remove();
    list.append(
      h(
        "li.timeline-item",
        { testid: "timeline-event", dataset: { type: e.type, seq } },
        h("time.mono", { datetime: e.occurredAt, title: e.occurredAt }, fmtClock(e.occurredAt)),
        h("span.offset.mono", {}, `+${offset}s`),
        chip(e.type, EVENT_TONE[e.type] ?? "neutral"),
        h("span.detail", {}, describe(e)),
      ),
    );
    refreshMachine(machineId);
  };
  list.append(h("li.empty.muted", {}, "Waiting for events…"));
  followEvents({ machineId, onEvent: addEvent, signal });
  return list;
}

const envNote = () => [
  "Built here from ",
  h("code", {}, METHODS.ENV_LIST),
  " for the platform and this machine's instance, merged as the setup pusher merges them (the ",
  "instance value wins), values masked. It is not read from the machine: ",
  h("code", {}, "cat ~/.fleet/.env"),
  " would carry every secret in clear through the command runner. Proxy and CA variables that ",
  "the platform's settings add are not listed. Changed since the machine was set up? Refresh ",
  "env pushes the current values.",
];

const desktopNote = () => [
  "The machine's screen: a display with a browser, which agents drive through ",
  "machines.desktop.* and the MCP tool computer. Open live view shows it live (it takes your ",
  "mouse and keyboard if you may run commands in the machine).",
];

const portsNote = () => [
  "TCP ports listening on the machine's loopback or on every address. Open shows the port's ",
  "preview URL in a new tab (HTTP and WebSocket, through the machine's daemon); ",
  h("code", {}, "fleet machines forward"),
  " reaches any TCP port from your computer.",
];

const notebookNote = () => [
  "Code in the machine's own stateful kernels (",
  h("code", {}, METHODS.MACHINES_CODE_RUN),
  "): what one cell defines the next sees, until its context restarts. Output shows as it comes; ",
  "HTML results are shown in a sandboxed frame, where none of their scripts run.",
];

export function machineDetailPage({ root, signal }, machineId) {
  const notices = noticeArea();
  const header = h("div.detail-head");
  const props = h("dl.props", { testid: "machine-props" });
  const envArea = h("div");

  const renderMachine = () => {
    const m = state.machines.get(machineId);
    if (!m) return;
    fill(
      header,
      statusChip(m.status, "machine-status"),
      pausedSize(m),
      h("span.reason", { testid: "machine-reason" }, m.statusReason),
      codeBadge(m),
      machineActions(m, notices),
    );
    const prop = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
    fill(
      props,
      ...prop("Instance", [instanceName(m.instanceId), " ", mono(m.instanceId)]),
      ...prop("Provider", [m.provider, m.externalId ? [" ", mono(m.externalId)] : null]),
      ...prop("Runtime", h("span", { testid: "machine-runtime" }, runtimeLabel(m))),
      ...prop("Host", h("span", { testid: "machine-host" }, m.hostId ?? "no host took it yet")),
      ...prop("Daemon", daemonCell(m)),
      ...prop("Last woken by", wokenBy(m)),
      ...(m.setupWarning
        ? prop("Setup warning", h("span.warning", { testid: "setup-warning" }, m.setupWarning))
        : []),
      ...prop("Created", fmtTime(m.createdAt)),
      ...prop("Updated", fmtTime(m.updatedAt)),
    );
  };

  const section = (id, title, ...content) =>
    h("section.card", { "aria-labelledby": id }, h(`h2#${id}`, {}, title), ...content);
  fill(
    root,
    frame(
      "#/machines",
      "Machine",
      h(
        "p.crumbs",
        {},
        h("a", { href: "#/machines" }, "Machines"),
        " / ",
        mono(machineId, "machine-id"),
      ),
      header,
      notices.el,
      props,
      h(
        "section.card",
        { "aria-labelledby": "usage-title", testid: "machine-usage" },
        h("h2#usage-title", {}, "CPU and memory"),
        h(
          "p.muted",
          {},
          "The last hour, sampled every 5 s by its host (",
          h("code", {}, METHODS.MACHINES_METRICS),
          ").",
        ),
        usageCharts(machineId, signal),
      ),
      section(
        "tl-title",
        "Event timeline",
        h("p.muted", {}, "Every event of this machine from its first, as it happens."),
        timeline(machineId, signal),
      ),
      h(
        "section.card",
        { "aria-labelledby": "term-title", testid: "machine-terminal" },
        h("h2#term-title", {}, "Terminal"),
        h(
          "p.muted",
          {},
          "Shells on the machine. They keep running when you leave or reload: their tabs stay, ",
          "and a tab shows what happened meanwhile.",
        ),
        ...terminals(machineId, signal),
      ),
      h(
        "section.card",
        { "aria-labelledby": "nb-title", testid: "machine-notebook" },
        h("h2#nb-title", {}, "Notebook"),
        h("p.muted", {}, notebookNote()),
        notebook(machineId, signal),
      ),
      h(
        "section.card",
        { "aria-labelledby": "desktop-title", testid: "machine-desktop" },
        h("h2#desktop-title", {}, "Desktop"),
        h("p.muted", {}, desktopNote()),
        desktopPanel(machineId, signal),
      ),
      section("run-title", "Run a command", commandRunner(machineId)),
      section("ports-title", "Ports", h("p.muted", {}, portsNote()), portsPanel(machineId)),
      h(
        "section.card",
        { "aria-labelledby": "env-title", testid: "machine-env" },
        h("h2#env-title", {}, "Environment (.env)"),
        h("p.muted", {}, envNote()),
        envArea,
      ),
    ),
  );

  rpc(METHODS.MACHINES_GET, { machineId }).then(
    async (m) => {
      updateMachine(m);
      fill(envArea, await effectiveEnvTable(m.instanceId, false));
    },
    (err) => notices.fail(err),
  );
  renderMachine();
  return renderMachine;
}
