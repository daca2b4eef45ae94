// Codemode: write Python, run it in the sandbox against `fleet` (and `machine`), watch its
// events live, see the result; cancel a run; read the providers' stubs.
import { rpc } from "./api.js";
import { streamRun } from "./codemode-stream.js";
import { CODEMODE, CODEMODE_EVENTS as EV, METHODS, STATUS } from "./contract.js";
import { frame } from "./frame.js";
import { machineList } from "./state.js";
import { busy, chip, errorBox, field, fill, h, mono, noticeArea } from "./ui.js";

const EXAMPLE = [
  "instances = await fleet.instances.list()",
  'print("instances:", len(instances["instances"]))',
  '{"instances": [i["name"] for i in instances["instances"]]}',
].join("\n");

/** A run's status as a chip colour. */
const TONES = { ok: "ready", error: "failed", timeout: "unresponsive", cancelled: "archived" };

const ms = (n) => `${Math.round(n)} ms`;

/** One line of the event log: what the event says, as text. */
function describeEvent(e) {
  switch (e.type) {
    case EV.STARTED:
      return `started ${e.runId}; providers: ${e.providers.join(", ")}`;
    case EV.LOG:
      return `[${e.stream}] ${e.line}`;
    case EV.TOOL_CALL:
      return `call #${e.callId} ${e.provider}.${e.path}`;
    case EV.TOOL_RESULT:
      return e.ok
        ? `#${e.callId} ok in ${ms(e.durationMs)}`
        : `#${e.callId} error ${e.code}: ${e.message ?? ""} (${ms(e.durationMs)})`;
    case EV.RESULT:
      return `result in ${ms(e.durationMs)}`;
    case EV.ERROR:
      return `${e.status}: ${e.error}`;
    case EV.CANCELLED:
      return `cancelled after ${ms(e.durationMs)}`;
    default:
      return JSON.stringify(e);
  }
}

function eventRow(e) {
  const failed = (e.type === EV.TOOL_RESULT && !e.ok) || e.type === EV.ERROR;
  return h(
    "li",
    { testid: "codemode-event", dataset: { type: e.type, seq: String(e.seq) } },
    h("span.muted.cm-seq", {}, String(e.seq)),
    chip(e.type, failed ? "failed" : "neutral"),
    h("span.cm-text", {}, describeEvent(e)),
  );
}

/** The result card of a finished run. */
function resultCard(r) {
  const value = r.result === undefined || r.result === null ? "null" : r.result;
  return h(
    "div.card.cm-result",
    { testid: "codemode-result", dataset: { runId: r.runId } },
    h(
      "div.exec-meta",
      {},
      chip(r.status, TONES[r.status] ?? "neutral", "codemode-status"),
      " ",
      mono(r.runId, "codemode-run-id"),
    ),
    r.error ? h("pre.output.stderr", { testid: "codemode-error" }, r.error) : null,
    h("h3", {}, "Result"),
    h("pre.output", { testid: "codemode-value" }, JSON.stringify(value, null, 2)),
    h("h3", {}, `Logs (${r.logs.length})`),
    h("pre.output", { testid: "codemode-logs" }, r.logs.join("\n")),
  );
}

/** The stubs viewer: codemode.describe for the run's scope, one provider at a time. */
function stubsViewer(scope, notices) {
  const load = h("button.btn", { type: "button", testid: "codemode-describe" }, "Load stubs");
  const pick = h("select", { testid: "codemode-stubs-provider", hidden: true });
  const text = h("pre.output.cm-stubs", { testid: "codemode-stubs", hidden: true });
  let stubs = {};
  const show = () => {
    text.textContent = stubs[pick.value] ?? "";
  };
  pick.addEventListener("change", show);
  load.addEventListener("click", () =>
    busy(load, () =>
      notices.report(async () => {
        stubs = (await rpc(METHODS.CODEMODE_DESCRIBE, scope())).stubs;
        fill(pick, ...Object.keys(stubs).map((name) => h("option", { value: name }, name)));
        pick.hidden = false;
        text.hidden = false;
        show();
      }),
    ),
  );
  return h(
    "section.card",
    { "aria-label": "Stubs" },
    h("h2", {}, "Stubs"),
    h("p.muted", {}, "Type stubs (.pyi) of what a run gets: hand them to an agent."),
    h("div.toolbar", {}, load, pick),
    text,
  );
}

function machineOptions(select) {
  const was = select.value;
  const ready = machineList().filter((m) => m.status === STATUS.READY);
  fill(
    select,
    h("option", { value: "" }, "none (fleet only)"),
    ...ready.map((m) => h("option", { value: m.id }, m.id)),
  );
  if ([...select.options].some((o) => o.value === was)) select.value = was;
}

/** The form's controls, and how to read its params from them. */
function controls() {
  const code = h("textarea.mono.cm-code", {
    testid: "codemode-code",
    rows: "12",
    spellcheck: "false",
    maxlength: String(CODEMODE.MAX_CODE_BYTES),
    required: true,
  });
  code.value = EXAMPLE;
  const machine = h("select", { testid: "codemode-machine" });
  const timeout = h("input", {
    testid: "codemode-timeout",
    type: "number",
    min: "1",
    max: String(CODEMODE.MAX_TIMEOUT_S),
    value: String(CODEMODE.DEFAULT_TIMEOUT_S),
  });
  const scope = () => (machine.value ? { machineId: machine.value } : {});
  const params = () => ({
    code: code.value,
    timeoutS: Number(timeout.value) || CODEMODE.DEFAULT_TIMEOUT_S,
    ...scope(),
  });
  return { code, machine, timeout, scope, params };
}

export function codemodePage({ root, signal }) {
  const notices = noticeArea();
  const c = controls();
  const run = h("button.btn.btn-primary", { type: "submit", testid: "codemode-run" }, "Run");
  const cancel = h(
    "button.btn.btn-danger-outline",
    { type: "button", testid: "codemode-cancel", disabled: true },
    "Cancel",
  );
  const log = h("ol.cm-events", { testid: "codemode-events", "aria-live": "polite" });
  const result = h("div", { testid: "codemode-result-area" });
  let runId = null;

  cancel.addEventListener("click", () =>
    notices.report(async () => {
      if (!runId) return;
      const { cancelled } = await rpc(METHODS.CODEMODE_CANCEL, { runId });
      if (!cancelled) notices.ok("The run had already ended.");
    }),
  );
  const onEvent = (e) => {
    runId = e.runId;
    cancel.disabled = false;
    log.append(eventRow(e));
  };
  const form = h(
    "form.cm-form",
    { "aria-label": "Run code" },
    field("Code (Python; top-level await; the last expression is the result)", c.code),
    h(
      "div.runner-row",
      {},
      field("Machine", c.machine),
      field("Timeout (s)", c.timeout),
      run,
      cancel,
    ),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(run, async () => {
      fill(log);
      fill(result, h("div.muted", { testid: "codemode-running" }, "Running…"));
      try {
        fill(result, resultCard(await streamRun(c.params(), onEvent, signal)));
      } catch (err) {
        if (!signal.aborted) fill(result, errorBox(err, "codemode-failed"));
      } finally {
        runId = null;
        cancel.disabled = true;
      }
    });
  });

  machineOptions(c.machine);
  fill(
    root,
    frame(
      "#/codemode",
      "Codemode",
      h(
        "p.lede",
        {},
        "Python in a sandbox with ",
        h("code", {}, "fleet"),
        " (every method your token may call) and, with a machine, ",
        h("code", {}, "machine"),
        ". The same runs are offered to agents over MCP at /mcp.",
      ),
      notices.el,
      h("section.card", { "aria-label": "Run" }, form),
      h("section.card", { "aria-label": "Events" }, h("h2", {}, "Events"), log),
      result,
      stubsViewer(c.scope, notices),
    ),
  );
  return () => machineOptions(c.machine);
}
