// The Machine detail page's Notebook: cells of code run in the machine's stateful kernels
// (machines.code.run, streamed over POST /rpc/stream: each cell's output shows as the kernel
// sends it), in a context the picker chooses. What the machine answers is untrusted: text goes
// in as text nodes, images as data: URLs of their own type, HTML only into an iframe with
// sandbox="" (no scripts, an origin of its own) through srcdoc, never into this page.
import { RpcError, rpc } from "./api.js";
import { ERRORS, METHODS } from "./contract.js";
import { rpcStream } from "./rpc-stream.js";
import { busy, chip, errorBox, fill, h } from "./ui.js";

/** A cell's timeout when it runs (s): as the method's default. */
const TIMEOUT_S = 300;
/** A cell's textarea grows with its code between these many lines. */
const MIN_ROWS = 3;
const MAX_ROWS = 20;
/** The picker's value for "the machine's default context for the language". */
const DEFAULT_CONTEXT = "";
/** Raster images shown as <img>, by MIME type (SVG too: an <img> runs none of its scripts). */
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
/** IPython colours its tracebacks: the codes are dropped, the text kept. */
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, "g");

export const stripAnsi = (text) => String(text).replace(ANSI, "");

/** One MIME bundle as an element: its richest type the console shows safely. */
export function bundleView(bundle) {
  const image = IMAGE_TYPES.find((t) => typeof bundle[t] === "string");
  if (image) {
    return h("img.nb-image", {
      testid: "notebook-image",
      alt: bundle["text/plain"] ?? image,
      src: `data:${image};base64,${bundle[image]}`,
    });
  }
  if (typeof bundle["image/svg+xml"] === "string") {
    const src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(bundle["image/svg+xml"])}`;
    return h("img.nb-image", { testid: "notebook-image", alt: "SVG image", src });
  }
  if (typeof bundle["text/html"] === "string") {
    const frame = h("iframe.nb-html", { testid: "notebook-html", sandbox: "", title: "HTML" });
    frame.srcdoc = bundle["text/html"]; // a property: the frame's document, never this page's
    return frame;
  }
  if (typeof bundle["text/plain"] === "string") {
    return h("pre.nb-text", { testid: "notebook-text" }, bundle["text/plain"]);
  }
  if (bundle["application/json"] !== undefined) {
    return h(
      "pre.nb-text",
      { testid: "notebook-text" },
      JSON.stringify(bundle["application/json"], null, 2),
    );
  }
  const types = Object.keys(bundle).filter((k) => k.includes("/"));
  return h("div.muted", {}, `[a result of ${types.join(", ") || "no type"}]`);
}

function errorView(error) {
  return h(
    "div.nb-error",
    { testid: "notebook-error", role: "alert" },
    h("strong", { testid: "notebook-error-name" }, error.name),
    ": ",
    h("span", { testid: "notebook-error-value" }, error.value),
    error.traceback?.length
      ? h(
          "pre.nb-traceback",
          { testid: "notebook-traceback" },
          stripAnsi(error.traceback.join("\n")),
        )
      : null,
  );
}

/** A cell's output area, filled part by part as they come (a CodeRunPart each). */
function liveOutput(el) {
  let stream = null; // the <pre> the last chunk went to, while chunks of one stream follow
  const part = (p) => {
    if (p.kind === "stdout" || p.kind === "stderr") {
      if (stream?.dataset.stream !== p.kind) {
        stream = h(`pre.nb-stream.nb-${p.kind}`, { testid: `notebook-${p.kind}` });
        stream.dataset.stream = p.kind;
        el.append(stream);
      }
      stream.append(p.text ?? "");
      return;
    }
    stream = null;
    if (p.kind === "result" && p.result) el.append(bundleView(p.result));
    else if (p.kind === "error" && p.error) el.append(errorView(p.error));
  };
  return part;
}

/** The answer's whole output: stdout, stderr, the results in order, the error. */
function answerView(r) {
  return [
    r.stdout.length
      ? h("pre.nb-stream.nb-stdout", { testid: "notebook-stdout" }, r.stdout.join(""))
      : null,
    r.stderr.length
      ? h("pre.nb-stream.nb-stderr", { testid: "notebook-stderr" }, r.stderr.join(""))
      : null,
    ...r.results.map(bundleView),
    r.error ? errorView(r.error) : null,
    r.truncated ? chip("output truncated", "unresponsive", "notebook-truncated") : null,
  ];
}

/** machines.code.run, streamed; plainly where the gateway cannot stream it. Leaving the page
 *  (`signal`) closes the stream; the kernel's run goes on to its end or its timeout. */
async function runCode(params, onPart, signal) {
  try {
    return await rpcStream(METHODS.MACHINES_CODE_RUN, params, onPart, signal);
  } catch (err) {
    if (!(err instanceof RpcError) || err.code !== ERRORS.METHOD_NOT_FOUND) throw err;
    return rpc(METHODS.MACHINES_CODE_RUN, params);
  }
}

/** The context picker: the machine's contexts, a new one of a language, restart, delete. */
function contextPicker(machineId, notices) {
  const select = h("select", { testid: "notebook-context", "aria-label": "Context" });
  const language = h("select", { testid: "notebook-language", "aria-label": "Language" });
  const picker = { select, language, chosen: () => select.value || null };
  picker.refresh = async (keep = select.value) => {
    const list = await rpc(METHODS.MACHINES_CODE_LIST_CONTEXTS, { machineId });
    const named = list.contexts.map((c) =>
      h("option", { value: c.id }, `${c.id} (${c.language}, ${c.cwd})`),
    );
    fill(select, h("option", { value: DEFAULT_CONTEXT }, "default (python)"), ...named);
    select.value = list.contexts.some((c) => c.id === keep) ? keep : DEFAULT_CONTEXT;
    const was = language.value || "python";
    fill(language, ...list.languages.map((l) => h("option", { value: l }, l)));
    language.value = list.languages.includes(was) ? was : (list.languages[0] ?? "");
  };
  const act = (label, testid, fn, tone = "") =>
    h(
      `button.btn.btn-small${tone}`,
      { type: "button", testid, onclick: (e) => busy(e.currentTarget, () => notices.report(fn)) },
      label,
    );
  picker.el = h(
    "div.nb-contexts",
    { testid: "notebook-contexts" },
    select,
    act("Refresh", "notebook-context-refresh", () => picker.refresh()),
    language,
    ...contextActions(machineId, picker, act),
  );
  return picker;
}

/** The picker's buttons on the machine's contexts: new, interrupt, restart, delete. */
function contextActions(machineId, picker, act) {
  const ref = () => {
    if (!picker.select.value) {
      throw new Error("choose a context (the default one is made by its first run)");
    }
    return { machineId, contextId: picker.select.value };
  };
  return [
    act("New context", "notebook-context-new", async () => {
      const language = picker.language.value;
      const made = await rpc(METHODS.MACHINES_CODE_CREATE_CONTEXT, { machineId, language });
      await picker.refresh(made.id);
      return `context ${made.id} (${made.language}) started`;
    }),
    act("Interrupt", "notebook-context-interrupt", async () => {
      const r = await rpc(METHODS.MACHINES_CODE_INTERRUPT, ref());
      return r.interrupted ? `interrupted ${r.id}` : `nothing was running in ${r.id}`;
    }),
    act("Restart", "notebook-context-restart", async () => {
      const r = await rpc(METHODS.MACHINES_CODE_RESTART_CONTEXT, ref());
      return `context ${r.id} restarted: its state is cleared`;
    }),
    act(
      "Delete",
      "notebook-context-delete",
      async () => {
        const r = await rpc(METHODS.MACHINES_CODE_DELETE_CONTEXT, ref());
        await picker.refresh(DEFAULT_CONTEXT);
        return `context ${r.id} deleted`;
      },
      ".btn-danger-outline",
    ),
  ];
}

/** One cell's elements: its prompt count, code, Run button and output. */
function cellView() {
  const ui = {
    code: h("textarea.nb-code.mono", {
      testid: "notebook-code",
      rows: String(MIN_ROWS),
      spellcheck: "false",
      placeholder: "Python (Shift+Enter runs the cell)",
      "aria-label": "Code",
    }),
    count: h("span.nb-count.mono", { testid: "notebook-count" }, "[ ]"),
    output: h("div.nb-output", { testid: "notebook-output", "aria-live": "polite" }),
    run: h("button.btn.btn-primary.btn-small", { type: "button", testid: "notebook-run" }, "Run"),
  };
  ui.cell = h(
    "li.nb-cell",
    { testid: "notebook-cell" },
    h("div.nb-in", {}, ui.count, ui.code, ui.run),
    ui.output,
  );
  // As tall as its code (an attribute: the CSP allows no inline style).
  ui.code.addEventListener("input", () => {
    ui.code.rows = Math.min(MAX_ROWS, Math.max(MIN_ROWS, ui.code.value.split("\n").length));
  });
  return ui;
}

/** Runs a cell's code in the picker's context, its output shown as it comes, then the answer. */
async function runCell(ui, { machineId, picker, signal }) {
  const params = { machineId, code: ui.code.value, timeoutS: TIMEOUT_S };
  const chosen = picker.chosen();
  if (chosen) params.contextId = chosen;
  ui.count.textContent = "[*]";
  ui.cell.dataset.state = "running";
  fill(ui.output);
  try {
    const r = await runCode(params, liveOutput(ui.output), signal);
    fill(ui.output, ...answerView(r));
    ui.count.textContent = `[${r.executionCount ?? " "}]`;
    ui.cell.dataset.state = r.error ? "error" : "done";
  } catch (err) {
    fill(ui.output, errorBox(err, "notebook-run-error"));
    ui.count.textContent = "[!]";
    ui.cell.dataset.state = "failed";
  }
}

/** The notebook's notices: an action's outcome or error, with test ids of their own. */
function notebookNotices() {
  const el = h("div", { "aria-live": "polite" });
  const fail = (err) => fill(el, errorBox(err, "notebook-notice-error"));
  const report = async (fn) => {
    fill(el);
    try {
      const said = await fn();
      if (said) fill(el, h("div.alert.alert-ok", { role: "status" }, said));
    } catch (err) {
      fail(err);
    }
  };
  return { el, fail, report };
}

/** The Notebook panel of machine `machineId`, for as long as the page's `signal` lasts. */
export function notebook(machineId, signal) {
  const notices = notebookNotices();
  const picker = contextPicker(machineId, notices);
  const cells = h("ol.nb-cells", { testid: "notebook-cells" });
  const addCell = (focus = true) => {
    const ui = cellView();
    // The last cell, run, opens the next (as Jupyter's Shift+Enter does).
    const go = () =>
      busy(ui.run, async () => {
        if (!ui.code.value.trim()) return;
        await runCell(ui, { machineId, picker, signal });
        if (ui.cell === cells.lastElementChild) addCell();
      });
    ui.run.addEventListener("click", go);
    ui.code.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && e.shiftKey) {
        e.preventDefault();
        go();
      }
    });
    cells.append(ui.cell);
    if (focus) ui.code.focus();
  };
  const add = h(
    "button.btn.btn-small",
    { type: "button", testid: "notebook-add", onclick: () => addCell() },
    "+ Cell",
  );
  addCell(false);
  picker.refresh().catch(notices.fail);
  return h("div.nb", { testid: "notebook" }, picker.el, notices.el, cells, add);
}
