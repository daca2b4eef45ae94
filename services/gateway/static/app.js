// fleetd web console: sign-in, then Machines, Machine detail, Instances, Env vars and Access
// tokens, all through the gateway's JSON-RPC API, with machine status kept live by /events.
import { followEvents, onUnauthorized, rpc, session } from "./api.js";
import {
  busy, chip, confirmDialog, errorBox, field, fill, fmtClock, fmtTime, h, masked, mono, parseArgv,
  statusChip,
} from "./ui.js";

const root = document.getElementById("app");

// --- shared state, kept current by the event stream --------------------------------------------

const state = {
  machines: new Map(),
  instances: new Map(),
  live: "connecting",
  listeners: new Set(),
  emit(what) { for (const fn of this.listeners) fn(what); },
};

const newestFirst = (a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0);
const machineList = () => [...state.machines.values()].sort(newestFirst);
const instanceList = () => [...state.instances.values()].sort(newestFirst);
const instanceName = (id) => state.instances.get(id)?.name ?? "";

async function loadInstances() {
  const { instances } = await rpc("instances.list");
  state.instances = new Map(instances.map((i) => [i.id, i]));
  state.emit("instances");
}

async function loadMachines() {
  const { machines } = await rpc("machines.list");
  state.machines = new Map(machines.map((m) => [m.id, m]));
  state.emit("machines");
}

/** Re-read one machine after an event about it; calls for the same machine are coalesced. */
const refreshing = new Map();
async function refreshMachine(id) {
  const slot = refreshing.get(id);
  if (slot) { slot.again = true; return; }
  const mine = { again: true };
  refreshing.set(id, mine);
  try {
    while (mine.again) {
      mine.again = false;
      const machine = await rpc("machines.get", { machineId: id });
      const known = state.machines.has(id);
      state.machines.set(id, machine);
      if (!known || !state.instances.has(machine.instanceId)) await loadInstances();
      state.emit("machines");
    }
  } catch (err) {
    if (err.code !== 1003 && err.code !== 1004) console.warn("machines.get", id, err);
  } finally {
    refreshing.delete(id);
  }
}

/** Keep a machine we just created or rebuilt, without waiting for its first event. */
function remember(machine) {
  state.machines.set(machine.id, machine);
  loadInstances().catch(() => {});
  state.emit("machines");
  syncFeeds();
}

// An admin follows every machine's events on one stream. An instance token may only follow its
// own machines one by one (?machineId=), and looks for machines made elsewhere every 15 s.
const feeds = new Map();
let feedPoll = null;

function setLive(value) {
  state.live = value;
  const el = document.querySelector("[data-testid=live-status]");
  if (el) renderLive(el);
}

function onFeedEvent(event) {
  if (event?.machineId) refreshMachine(event.machineId);
}

function syncFeeds() {
  if (!session.token) return;
  if (session.role === "admin") {
    if (!feeds.has("*")) feeds.set("*", followEvents({ onEvent: onFeedEvent, onState: setLive }));
    return;
  }
  for (const m of state.machines.values()) {
    if (m.status !== "archived" && !feeds.has(m.id)) {
      feeds.set(m.id, followEvents({ machineId: m.id, onEvent: onFeedEvent, onState: setLive }));
    } else if (m.status === "archived" && feeds.has(m.id)) {
      feeds.get(m.id)();
      feeds.delete(m.id);
    }
  }
  if (!feedPoll) {
    feedPoll = setInterval(() => loadMachines().then(syncFeeds).catch(() => {}), 15000);
  }
  if (!feeds.size) setLive("live");
}

function stopFeeds() {
  for (const stop of feeds.values()) stop();
  feeds.clear();
  clearInterval(feedPoll);
  feedPoll = null;
}

// --- sign-in and sign-out ----------------------------------------------------------------------

let signInNotice = null;

function signOut(notice = null) {
  stopFeeds();
  session.end();
  booted = false;
  state.machines.clear();
  state.instances.clear();
  signInNotice = notice;
  if (location.hash !== "#/signin") location.hash = "#/signin";
  else route();
}

onUnauthorized(() => signOut("The gateway refused the token (401): it is wrong or was revoked. "
  + "Sign in again."));

function signInPage() {
  const input = h("input", {
    type: "password", autocomplete: "off", spellcheck: "false", required: true,
    testid: "signin-token", placeholder: "fleetd access token",
  });
  const status = h("div", { "aria-live": "polite" },
    signInNotice ? h("div.alert.alert-warn", { role: "status" }, signInNotice) : null);
  signInNotice = null;
  const submit = h("button.btn.btn-primary", { type: "submit", testid: "signin-submit" }, "Sign in");
  const form = h("form.signin-card", { testid: "signin-form", "aria-labelledby": "signin-title" },
    h("div.brand.brand-large", {}, h("span.brand-mark", { "aria-hidden": "true" }), "fleetd"),
    h("h1#signin-title", {}, "Sign in to the console"),
    h("p.muted", {}, "Paste an access token: the admin token that ", h("code", {}, "fleet up"),
      " printed (also in ", h("code", {}, ".fleet-data/admin-token"), "), or one made under ",
      "Access tokens. It stays in this tab only (sessionStorage)."),
    field("Access token", input),
    status,
    submit);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    await busy(submit, async () => {
      try {
        await rpc("instances.list", {}, token);
        // Only an admin may read the platform scope: that tells the two kinds of token apart.
        const role = await rpc("env.list", {}, token).then(() => "admin", () => "instance");
        session.start(token, role);
        location.hash = afterSignIn;
      } catch (err) {
        fill(status, errorBox(err, "signin-error"));
      }
    });
  });
  fill(root, h("main.signin", {}, form));
  input.focus();
}

// --- the frame: header, sidebar, page -----------------------------------------------------------

const NAV = [
  ["#/machines", "Machines", "nav-machines"],
  ["#/instances", "Instances", "nav-instances"],
  ["#/env", "Env vars", "nav-env"],
  ["#/tokens", "Access tokens", "nav-tokens"],
];

function renderLive(el) {
  const labels = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…",
    offline: "Event stream offline" };
  el.className = `live live-${state.live}`;
  el.dataset.state = state.live;
  el.textContent = labels[state.live] ?? state.live;
}

function frame(active, title, ...content) {
  const live = h("span", { testid: "live-status", role: "status", title: "Machine event stream" });
  renderLive(live);
  const nav = h("nav.sidebar", { "aria-label": "Console" },
    h("ul", {}, NAV.map(([href, label, testid]) => h("li", {},
      h("a", { href, testid, "aria-current": href === active ? "page" : null }, label)))));
  return h("div.shell", {},
    h("header.topbar", {},
      h("a.brand", { href: "#/machines" }, h("span.brand-mark", { "aria-hidden": "true" }), "fleetd"),
      h("div.topbar-right", {}, live,
        chip(session.role === "admin" ? "admin token" : "instance token", "neutral", "role"),
        h("button.btn.btn-ghost", { type: "button", testid: "signout", onclick: () => signOut() },
          "Sign out"))),
    nav,
    h("main.page", { id: "main" }, h("h1", {}, title), ...content));
}

/** The area where an action's outcome or error is reported, inline. */
function noticeArea() {
  const el = h("div.notices", { "aria-live": "polite", testid: "notices" });
  el.ok = (text) => fill(el, h("div.alert.alert-ok", { role: "status", testid: "notice" },
    text));
  el.fail = (err) => fill(el, errorBox(err));
  el.clear = () => fill(el);
  return el;
}

// --- machine actions (Machines page and Machine detail) ----------------------------------------

function machineActions(m, notices) {
  const archived = m.status === "archived";
  const current = state.instances.get(m.instanceId)?.currentMachineId === m.id;
  const act = (label, testid, run, { danger = false, enabled = !archived, title } = {}) => {
    const btn = h(`button.btn.btn-small${danger ? ".btn-danger-outline" : ""}`, {
      type: "button", testid, disabled: !enabled, title,
      "aria-label": `${label} ${m.id}`,
    }, label);
    btn.addEventListener("click", () => busy(btn, async () => {
      notices.clear();
      try { notices.ok(await run()); } catch (err) { if (err) notices.fail(err); }
    }));
    return btn;
  };
  return h("div.actions", {},
    act("Rebuild", "action-rebuild", async () => {
      if (!(await confirmDialog(`Rebuild instance ${m.instanceId}? Machine ${m.id} is archived `
        + "and a new machine is made from scratch.", "Rebuild"))) throw null;
      const fresh = await rpc("machines.rebuild", { instanceId: m.instanceId });
      remember(fresh);
      return `Rebuilding: ${m.id} archived, new machine ${fresh.id}.`;
    }, { enabled: !archived && current, title: current ? null : "Only the instance's current "
      + "machine can be rebuilt" }),
    act("Refresh env", "action-refresh-env", async () => {
      const r = await rpc("machines.refreshEnv", { instanceId: m.instanceId });
      const failed = r.failed.map((f) => `${f.machineId}: ${f.code} ${f.message}`).join("; ");
      return `.env pushed to ${r.written} of ${r.machines} running machine(s)`
        + (failed ? `; failed: ${failed}` : ".");
    }),
    act("Refresh code", "action-refresh-code", async () => {
      const r = await rpc("machines.refreshCode", { machineId: m.id });
      refreshMachine(m.id);
      return `Refresh code: ${r.message}`;
    }),
    act("Archive", "action-archive", async () => {
      if (!(await confirmDialog(`Archive machine ${m.id}? It is stopped for good.`,
        "Archive"))) throw null;
      const done = await rpc("machines.archive", { machineId: m.id });
      state.machines.set(done.id, done);
      state.emit("machines");
      return `Machine ${m.id} archived.`;
    }, { danger: true }));
}

function daemonCell(m) {
  return h("span.daemon", {},
    m.daemonVersion ? h("span", {}, m.daemonVersion) : h("span.muted", {}, "—"),
    m.daemonGitSha ? h("code.mono.muted", { title: m.daemonGitSha }, ` ${m.daemonGitSha.slice(0, 8)}`)
      : null,
    m.updateAvailable ? h("span.badge", { testid: "update-available",
      title: "The daemon runs other code than the platform: Refresh code updates it" },
    "update available") : null);
}

// --- Machines -----------------------------------------------------------------------------------

function machinesPage() {
  const notices = noticeArea();
  const tbody = h("tbody");
  const showArchived = h("input", { type: "checkbox", testid: "show-archived",
    checked: sessionStorage.getItem("fleetd.hideArchived") !== "1" });
  const instanceSelect = h("select", { testid: "create-machine-instance", required: true });
  const provider = h("select", { testid: "create-machine-provider" },
    h("option", { value: "local" }, "local"), h("option", { value: "swarm" }, "swarm"));
  const create = h("button.btn.btn-primary", { type: "submit", testid: "create-machine" },
    "Create machine");
  const form = h("form.toolbar", { "aria-label": "Create a machine" },
    field("Instance", instanceSelect), field("Provider", provider), create);

  const fillInstances = () => {
    const chosen = instanceSelect.value;
    const options = instanceList().map((i) => h("option", { value: i.id },
      `${i.name} (${i.id})`));
    fill(instanceSelect, ...(options.length ? options
      : [h("option", { value: "" }, "No instances: create one under Instances")]));
    if (chosen && state.instances.has(chosen)) instanceSelect.value = chosen;
  };

  const row = (m) => h("tr", { testid: "machine-row",
    dataset: { machineId: m.id, instanceId: m.instanceId, status: m.status } },
  h("td", {}, h("a", { href: `#/machines/${m.id}`, testid: "machine-link" }, mono(m.id))),
  h("td", {}, h("div", {}, instanceName(m.instanceId)), mono(m.instanceId)),
  h("td", {}, statusChip(m.status, "machine-status")),
  h("td.reason", { testid: "machine-reason" }, m.statusReason),
  h("td", {}, m.provider),
  h("td", {}, daemonCell(m)),
  h("td.nowrap", {}, h("time", { datetime: m.updatedAt }, fmtTime(m.updatedAt))),
  h("td", {}, machineActions(m, notices)));

  const render = () => {
    fillInstances();
    const rows = machineList().filter((m) => showArchived.checked || m.status !== "archived");
    fill(tbody, ...(rows.length ? rows.map(row) : [h("tr", {}, h("td.empty",
      { colspan: 8 }, "No machines yet. Create an instance, then a machine for it."))]));
  };
  showArchived.addEventListener("change", () => {
    sessionStorage.setItem("fleetd.hideArchived", showArchived.checked ? "0" : "1");
    render();
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(create, async () => {
      notices.clear();
      try {
        const m = await rpc("machines.create", { instanceId: instanceSelect.value,
          provider: provider.value });
        remember(m);
        notices.ok(`Machine ${m.id} created; its status follows live below.`);
      } catch (err) { notices.fail(err); }
    });
  });

  fill(root, frame("#/machines", "Machines",
    h("p.lede", {}, "Every machine, newest first. Status changes arrive from the event stream."),
    form, notices,
    h("div.table-tools", {}, h("label.check", {}, showArchived, " Show archived machines")),
    h("div.table-wrap", {}, h("table.table", { testid: "machines-table" },
      h("thead", {}, h("tr", {}, ["Machine", "Instance", "Status", "Reason", "Provider",
        "Daemon", "Updated", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
      tbody))));
  render();
  return render;
}

// --- Machine detail -----------------------------------------------------------------------------

const EVENT_DETAILS = {
  "created": (e) => `provider ${e.provider}`,
  "provisioned": (e) => `${e.provider} ${e.externalId}`,
  "daemon-status-reported": (e) => `${e.status}, daemon ${e.version}`
    + (e.gitSha ? ` (${e.gitSha.slice(0, 8)})` : ""),
  "setup-pushed": (e) => `.env ${e.envBytes} B, ${e.repoPaths.length} repo(s)`,
  "ready": () => "",
  "failed": (e) => `at ${e.stage}: ${e.reason}`,
  "archived": (e) => e.reason,
  "unresponsive": (e) => e.reason,
};
const EVENT_TONE = { ready: "ready", failed: "failed", archived: "archived",
  unresponsive: "unresponsive" };

function machineDetailPage(machineId) {
  const notices = noticeArea();
  const header = h("div.detail-head");
  const props = h("dl.props", { testid: "machine-props" });
  const timeline = h("ol.timeline", { testid: "timeline", "aria-live": "polite" });
  const envArea = h("div");
  let first = null;

  const renderMachine = () => {
    const m = state.machines.get(machineId);
    if (!m) return;
    fill(header, statusChip(m.status, "machine-status"),
      h("span.reason", { testid: "machine-reason" }, m.statusReason),
      m.updateAvailable ? h("span.badge", { testid: "update-available" }, "update available") : null,
      machineActions(m, notices));
    const prop = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
    fill(props,
      ...prop("Instance", [instanceName(m.instanceId), " ", mono(m.instanceId)]),
      ...prop("Provider", [m.provider, m.externalId ? [" ", mono(m.externalId)] : null]),
      ...prop("Daemon", daemonCell(m)),
      ...prop("Created", fmtTime(m.createdAt)),
      ...prop("Updated", fmtTime(m.updatedAt)));
  };

  const addEvent = (e, seq) => {
    if (timeline.querySelector(`[data-seq="${CSS.escape(seq)}"]`)) return;
    first ??= new Date(e.occurredAt);
    const offset = ((new Date(e.occurredAt) - first) / 1000).toFixed(2);
    const describe = EVENT_DETAILS[e.type] ?? (() => "");
    timeline.querySelector(".empty")?.remove();
    timeline.append(h("li.timeline-item", { testid: "timeline-event",
      dataset: { type: e.type, seq } },
    h("time.mono", { datetime: e.occurredAt, title: e.occurredAt }, fmtClock(e.occurredAt)),
    h("span.offset.mono", {}, `+${offset}s`),
    chip(e.type, EVENT_TONE[e.type] ?? "neutral"),
    h("span.detail", {}, describe(e))));
    refreshMachine(machineId);
  };
  timeline.append(h("li.empty.muted", {}, "Waiting for events…"));
  const stopEvents = followEvents({ machineId, onEvent: addEvent });

  // Command runner: argv straight to the daemon (machines.exec); no shell on the way.
  const cmd = h("input.mono", { testid: "exec-command", placeholder: "e.g. ls -la .fleet",
    autocomplete: "off", spellcheck: "false", required: true });
  const cwd = h("input.mono", { testid: "exec-cwd", placeholder: "home directory" });
  const timeout = h("input", { testid: "exec-timeout", type: "number", min: "1", max: "600",
    value: "30" });
  const argvPreview = h("code.mono.argv", { testid: "exec-argv" }, "[]");
  const run = h("button.btn.btn-primary", { type: "submit", testid: "exec-run" }, "Run");
  const output = h("div.exec-output", { "aria-live": "polite", testid: "exec-output" });
  const preview = () => {
    try { argvPreview.textContent = JSON.stringify(parseArgv(cmd.value)); }
    catch (err) { argvPreview.textContent = err.message; }
  };
  cmd.addEventListener("input", preview);
  const runner = h("form.runner", { "aria-label": "Run a command" },
    h("div.runner-row", {}, field("Command (argv; quotes group words, nothing is expanded)", cmd),
      field("Working directory", cwd), field("Timeout (s)", timeout), run),
    h("div.muted", {}, "argv: ", argvPreview), output);
  runner.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(run, async () => {
      let argv;
      try { argv = parseArgv(cmd.value); } catch (err) { fill(output, errorBox(err)); return; }
      if (!argv.length) return;
      const params = { machineId, command: argv, timeoutS: Number(timeout.value) || 30 };
      if (cwd.value.trim()) params.cwd = cwd.value.trim();
      fill(output, h("div.muted", {}, "Running…"));
      try {
        const r = await rpc("machines.exec", params);
        fill(output,
          h("div.exec-meta", {}, "exit code ",
            chip(String(r.exitCode), r.exitCode === 0 ? "ready" : "failed", "exec-exit-code"),
            r.timedOut ? chip("timed out", "unresponsive") : null,
            r.truncated ? chip("output truncated", "unresponsive") : null),
          h("h3", {}, "stdout"), h("pre.output", { testid: "exec-stdout" }, r.stdout),
          ...(r.stderr ? [h("h3", {}, "stderr"), h("pre.output.stderr", { testid: "exec-stderr" },
            r.stderr)] : []));
      } catch (err) { fill(output, errorBox(err, "exec-error")); }
    });
  });

  const loadEnv = async () => {
    const m = state.machines.get(machineId);
    if (!m) return;
    fill(envArea, await effectiveEnvTable(m.instanceId, false));
  };

  fill(root, frame("#/machines", "Machine",
    h("p.crumbs", {}, h("a", { href: "#/machines" }, "Machines"), " / ",
      mono(machineId, "machine-id")),
    header, notices, props,
    h("section.card", { "aria-labelledby": "tl-title" },
      h("h2#tl-title", {}, "Event timeline"),
      h("p.muted", {}, "Every event of this machine from its first, as it happens."),
      timeline),
    h("section.card", { "aria-labelledby": "run-title" },
      h("h2#run-title", {}, "Run a command"), runner),
    h("section.card", { "aria-labelledby": "env-title", testid: "machine-env" },
      h("h2#env-title", {}, "Environment (.env)"),
      h("p.muted", {}, "Built here from ", h("code", {}, "env.list"), " for the platform and this ",
        "machine's instance, merged as the setup pusher merges them (the instance value wins), ",
        "values masked. It is not read from the machine: ", h("code", {}, "cat ~/.fleet/.env"),
        " would carry every secret in clear through the command runner. Proxy and CA variables ",
        "that the platform's settings add are not listed. Changed since the machine was set up? ",
        "Refresh env pushes the current values."),
      envArea)));

  rpc("machines.get", { machineId }).then((m) => {
    state.machines.set(m.id, m);
    renderMachine();
    loadEnv();
  }, (err) => notices.fail(err));
  renderMachine();
  return { render: renderMachine, leave: stopEvents };
}

/** Platform and instance variables side by side, and which one the machine gets. */
async function effectiveEnvTable(instanceId, withActions, revealed = false, onChange = null) {
  const [p, i] = await Promise.allSettled([rpc("env.list", {}),
    instanceId ? rpc("env.list", { instanceId }) : Promise.resolve({ vars: [] })]);
  if (i.status === "rejected") return errorBox(i.reason);
  let platform = [];
  let platformNote = null;
  if (p.status === "fulfilled") platform = p.value.vars;
  else if (p.reason.code === 1003) platformNote = "Platform variables: visible to admin tokens only.";
  else return errorBox(p.reason);
  const instance = i.value.vars;
  const pmap = new Map(platform.map((v) => [v.name, v.value]));
  const imap = new Map(instance.map((v) => [v.name, v.value]));
  const names = [...new Set([...pmap.keys(), ...imap.keys()])].sort();
  const show = (v) => (v === undefined ? h("span.muted", {}, "—")
    : revealed ? h("code.mono.value", {}, v) : masked(v));
  const unset = (name, scopeId, label) => {
    const btn = h("button.btn.btn-small.btn-danger-outline", { type: "button",
      testid: `env-unset-${scopeId ? "instance" : "platform"}`, "aria-label": `Unset ${name} (${label})` },
    "Unset");
    btn.addEventListener("click", () => busy(btn, async () => {
      const params = scopeId ? { instanceId: scopeId, name } : { name };
      try { await rpc("env.unset", params); onChange?.(`Unset ${name} (${label}).`); }
      catch (err) { onChange?.(null, err); }
    }));
    return btn;
  };
  const rows = names.map((name) => {
    const inInstance = imap.has(name) && instanceId;
    const wins = inInstance ? chip("instance", "ready") : chip("platform", "busy");
    return h("tr", { testid: withActions ? "env-row" : "effective-env-row",
      dataset: { name, wins: inInstance ? "instance" : "platform" } },
    h("td", {}, h("code.mono", {}, name)),
    h("td", {}, show(pmap.get(name)), withActions && pmap.has(name) ? [" ",
      unset(name, null, "platform")] : null),
    instanceId ? h("td", {}, show(imap.get(name)), withActions && imap.has(name) ? [" ",
      unset(name, instanceId, "instance")] : null) : null,
    instanceId ? h("td", { testid: "env-wins" }, wins,
      inInstance && pmap.has(name) ? h("span.muted", {}, " overrides platform") : null) : null);
  });
  const heads = ["Name", "Platform", ...(instanceId ? ["Instance", "Machine gets"] : [])];
  return h("div", {},
    platformNote ? h("p.alert.alert-warn", {}, platformNote) : null,
    h("div.table-wrap", {}, h("table.table", { testid: withActions ? "env-table" : "effective-env" },
      h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td.empty", { colspan: heads.length },
        "No variables set."))))));
}

// --- Instances ----------------------------------------------------------------------------------

function instancesPage() {
  const notices = noticeArea();
  const tbody = h("tbody");
  const name = h("input", { testid: "instance-name", required: true, maxlength: "100",
    placeholder: "e.g. demo" });
  const create = h("button.btn.btn-primary", { type: "submit", testid: "instance-create" },
    "Create instance");
  const form = h("form.toolbar", { "aria-label": "Create an instance" },
    field("Name", name), create);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(create, async () => {
      notices.clear();
      try {
        const inst = await rpc("instances.create", { name: name.value.trim() });
        state.instances.set(inst.id, inst);
        state.emit("instances");
        name.value = "";
        notices.ok(h("span", {}, `Instance ${inst.name} created: `, mono(inst.id, "new-instance-id"),
          ". Set its env vars, then create its machine."));
      } catch (err) { notices.fail(err); }
    });
  });

  const machineButton = (inst, current) => {
    const live = current && !["failed", "archived"].includes(current.status);
    const btn = h("button.btn.btn-small", { type: "button",
      testid: live ? "instance-rebuild" : "instance-create-machine" },
    live ? "Rebuild" : "Create machine");
    btn.addEventListener("click", () => busy(btn, async () => {
      notices.clear();
      try {
        if (live && !(await confirmDialog(`Rebuild ${inst.name}? Machine ${current.id} is `
          + "archived and a new one is made.", "Rebuild"))) return;
        const m = live ? await rpc("machines.rebuild", { instanceId: inst.id })
          : await rpc("machines.create", { instanceId: inst.id });
        remember(m);
        notices.ok(h("span", {}, "Machine ", h("a", { href: `#/machines/${m.id}` }, mono(m.id)),
          ` ${live ? "rebuilding" : "created"} for ${inst.name}.`));
      } catch (err) { notices.fail(err); }
    }));
    return btn;
  };

  const render = () => {
    const rows = instanceList().map((inst) => {
      const current = inst.currentMachineId ? state.machines.get(inst.currentMachineId) : null;
      return h("tr", { testid: "instance-row", dataset: { instanceId: inst.id, name: inst.name } },
        h("td", {}, inst.name),
        h("td", {}, mono(inst.id)),
        h("td", {}, inst.currentMachineId ? [h("a", { href: `#/machines/${inst.currentMachineId}` },
          mono(inst.currentMachineId)), " ", current ? statusChip(current.status) : null]
          : h("span.muted", {}, "none")),
        h("td.nowrap", {}, fmtTime(inst.createdAt)),
        h("td", {}, h("div.actions", {}, machineButton(inst, current),
          h("a.btn.btn-small.btn-ghost", { href: `#/env/${inst.id}` }, "Env vars"))));
    });
    fill(tbody, ...(rows.length ? rows : [h("tr", {}, h("td.empty", { colspan: 5 },
      "No instances yet."))]));
  };

  fill(root, frame("#/instances", "Instances",
    h("p.lede", {}, "An instance is a named workspace: its env vars, repos and, at any time, one ",
      "current machine. Rebuild replaces the machine; the instance stays."),
    session.role === "admin" ? form : null, notices,
    h("div.table-wrap", {}, h("table.table", { testid: "instances-table" },
      h("thead", {}, h("tr", {}, ["Name", "Instance", "Current machine", "Created", "Actions"]
        .map((t) => h("th", { scope: "col" }, t)))),
      tbody))));
  render();
  return render;
}

// --- Env vars -----------------------------------------------------------------------------------

function envPage(instanceId) {
  const notices = noticeArea();
  const tableArea = h("div", { testid: "env-area" });
  let revealed = false;
  const chosen = instanceId ?? instanceList()[0]?.id ?? "";
  const instanceSelect = h("select", { testid: "env-instance" });
  const fillInstances = () => {
    const opts = instanceList().map((i) => h("option", { value: i.id }, `${i.name} (${i.id})`));
    fill(instanceSelect, ...(opts.length ? opts
      : [h("option", { value: "" }, "No instances (platform only)")]));
    instanceSelect.value = chosen && state.instances.has(chosen) ? chosen
      : (instanceList()[0]?.id ?? "");
  };
  const scope = h("select", { testid: "env-scope" },
    session.role === "admin" ? h("option", { value: "platform" }, "Platform (every instance)") : null,
    h("option", { value: "instance" }, "The instance above"));
  const name = h("input.mono", { testid: "env-name", required: true,
    pattern: "[A-Za-z_][A-Za-z0-9_]*", placeholder: "DATABASE_URL", autocomplete: "off" });
  const value = h("textarea.mono", { testid: "env-value", rows: "1", spellcheck: "false" });
  const set = h("button.btn.btn-primary", { type: "submit", testid: "env-set" }, "Set");
  const reveal = h("button.btn", { type: "button", testid: "env-reveal",
    "aria-pressed": "false" }, "Show values");

  const load = async () => {
    fill(tableArea, await effectiveEnvTable(instanceSelect.value || null, true, revealed,
      (msg, err) => { if (err) notices.fail(err); else { notices.ok(msg); load(); } }));
  };
  reveal.addEventListener("click", () => {
    revealed = !revealed;
    reveal.setAttribute("aria-pressed", String(revealed));
    reveal.textContent = revealed ? "Hide values" : "Show values";
    load();
  });
  instanceSelect.addEventListener("change", () => {
    history.replaceState(null, "", `#/env/${instanceSelect.value}`);
    load();
  });
  const form = h("form.toolbar", { "aria-label": "Set a variable" },
    field("Scope", scope), field("Name", name), field("Value", value), set);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(set, async () => {
      notices.clear();
      const params = { name: name.value, value: value.value };
      if (scope.value === "instance") params.instanceId = instanceSelect.value;
      try {
        const v = await rpc("env.set", params);
        notices.ok(`Set ${v.name} (${v.scope}). Running machines get it with Refresh env.`);
        name.value = "";
        value.value = "";
        await load();
      } catch (err) { notices.fail(err); }
    });
  });
  fillInstances();
  fill(root, frame("#/env", "Env vars",
    h("p.lede", {}, "Platform variables reach every instance's machines; an instance variable ",
      "with the same name wins. Machines get them in ", h("code", {}, "~/.fleet/.env"),
      " at setup, and again with Refresh env."),
    h("div.toolbar", {}, field("Instance", instanceSelect), reveal),
    form, notices, tableArea));
  load();
  return () => {
    if (!instanceSelect.options.length || instanceSelect.value === "") { fillInstances(); load(); }
  };
}

// --- Access tokens ------------------------------------------------------------------------------

function tokensPage() {
  const notices = noticeArea();
  const secretArea = h("div");
  const tbody = h("tbody");
  const name = h("input", { testid: "token-name", required: true, maxlength: "100",
    placeholder: "e.g. ci-runner" });
  const scope = h("select", { testid: "token-scope" });
  const fillScopes = () => {
    const was = scope.value;
    fill(scope,
      session.role === "admin" ? h("option", { value: "" }, "Admin (everything)") : null,
      ...instanceList().map((i) => h("option", { value: i.id }, `Instance ${i.name} (${i.id})`)));
    if (was !== undefined && [...scope.options].some((o) => o.value === was)) scope.value = was;
  };
  const create = h("button.btn.btn-primary", { type: "submit", testid: "token-create" },
    "Create token");
  const form = h("form.toolbar", { "aria-label": "Create an access token" },
    field("Name", name), field("Scope", scope), create);

  const load = async () => {
    try {
      const { tokens } = await rpc("tokens.list");
      tokens.sort(newestFirst);
      const rows = tokens.map((t) => {
        const revoke = h("button.btn.btn-small.btn-danger-outline", { type: "button",
          testid: "token-revoke", disabled: !!t.revokedAt, "aria-label": `Revoke ${t.name}` },
        "Revoke");
        revoke.addEventListener("click", () => busy(revoke, async () => {
          if (!(await confirmDialog(`Revoke token ${t.name} (${t.id})? Anything using it is `
            + "refused from now on.", "Revoke"))) return;
          try {
            await rpc("tokens.revoke", { id: t.id });
            notices.ok(`Token ${t.name} revoked.`);
            await load();
          } catch (err) { notices.fail(err); }
        }));
        return h("tr", { testid: "token-row", dataset: { tokenId: t.id, name: t.name } },
          h("td", {}, t.name), h("td", {}, mono(t.id)),
          h("td", {}, t.instanceId ? ["instance ", mono(t.instanceId)] : chip("admin", "neutral")),
          h("td.nowrap", {}, fmtTime(t.createdAt)),
          h("td", { testid: "token-state" }, t.revokedAt
            ? [chip("revoked", "archived"), h("span.muted", {}, ` ${fmtTime(t.revokedAt)}`)]
            : chip("active", "ready")),
          h("td", {}, revoke));
      });
      fill(tbody, ...(rows.length ? rows : [h("tr", {}, h("td.empty", { colspan: 6 },
        "No access tokens yet. The operator's admin token is not listed here."))]));
    } catch (err) { notices.fail(err); }
  };

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(create, async () => {
      notices.clear();
      const params = { name: name.value.trim() };
      if (scope.value) params.instanceId = scope.value;
      try {
        const t = await rpc("tokens.create", params);
        const secret = h("code.mono.secret", { testid: "token-secret" }, t.token);
        const copy = h("button.btn.btn-small", { type: "button", testid: "token-copy" }, "Copy");
        copy.addEventListener("click", async () => {
          try { await navigator.clipboard.writeText(t.token); copy.textContent = "Copied"; }
          catch { copy.textContent = "Select and copy it by hand"; }
        });
        fill(secretArea, h("div.alert.alert-secret", { role: "status" },
          h("strong", {}, `Token ${params.name} (${t.id}) created.`),
          " Copy the secret now: it is shown this once and never stored in clear.",
          h("div.secret-row", {}, secret, copy,
            h("button.btn.btn-small.btn-ghost", { type: "button", testid: "token-secret-dismiss",
              onclick: () => fill(secretArea) }, "Done"))));
        name.value = "";
        await load();
      } catch (err) { notices.fail(err); }
    });
  });

  fillScopes();
  fill(root, frame("#/tokens", "Access tokens",
    h("p.lede", {}, "Tokens for the API, the CLI and this console: admin (everything) or scoped ",
      "to one instance. Only a hash is stored; revoked tokens stay listed as an audit trail."),
    form, secretArea, notices,
    h("div.table-wrap", {}, h("table.table", { testid: "tokens-table" },
      h("thead", {}, h("tr", {}, ["Name", "Token", "Scope", "Created", "State", ""]
        .map((t) => h("th", { scope: "col" }, t)))),
      tbody))));
  load();
  return fillScopes;
}

// --- router -------------------------------------------------------------------------------------

const ROUTES = [
  [/^#\/machines\/(m-[0-9a-f]{16})$/, machineDetailPage],
  [/^#\/machines$/, machinesPage],
  [/^#\/instances$/, instancesPage],
  [/^#\/env(?:\/(i-[0-9a-f]{16}))?$/, envPage],
  [/^#\/tokens$/, tokensPage],
];

let current = null;
let booted = false;
let afterSignIn = "#/machines";

async function route() {
  current?.leave?.();
  current = null;
  if (!session.token) {
    if (location.hash !== "#/signin") {
      if (location.hash.length > 2) afterSignIn = location.hash;
      history.replaceState(null, "", "#/signin");
    }
    document.title = "Sign in · fleetd";
    signInPage();
    return;
  }
  if (!booted) {
    booted = true;
    try {
      await Promise.all([loadInstances(), loadMachines()]);
    } catch (err) {
      booted = false;
      if (!session.token) return; // a 401 signed out and routed already
      fill(root, h("main.signin", {}, errorBox(err)));
      return;
    }
    syncFeeds();
  }
  const found = ROUTES.map(([re, page]) => [location.hash.match(re), page]).find(([m]) => m);
  if (!found) {
    history.replaceState(null, "", "#/machines");
    return route();
  }
  const [match, page] = found;
  const made = page(...match.slice(1));
  current = typeof made === "function" ? { render: made } : made;
  document.title = `${document.querySelector("main.page h1")?.textContent ?? "Console"} · fleetd`;
}

state.listeners.add(() => current?.render?.());
window.addEventListener("hashchange", () => {
  if (location.hash === "#/signin" && session.token) {
    stopFeeds();
    session.end();
  }
  if (!session.token) booted = false;
  route();
});
route();
