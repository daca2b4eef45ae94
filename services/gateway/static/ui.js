// Small DOM helpers. Everything a user or a machine wrote (names, values, reasons, output) goes
// into the page as text nodes, never as HTML.
import { ERRORS, STATUS } from "./contract.js";

/** h("tag.class", {attr: value, onclick: fn, dataset: {...}}, ...children) */
export function h(spec, attrs = {}, ...children) {
  const [head, ...classes] = spec.split(".");
  const [tag, id] = head.split("#");
  const el = document.createElement(tag || "div");
  if (id) el.id = id;
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "testid") el.dataset.testid = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Replaces an element's children; nulls and falses are skipped, arrays flattened. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export const mono = (text, testid) => h("code.mono", { testid, title: text }, text);

/** An HTML pattern attribute is anchored already: the contract's pattern without ^ and $. */
export const unanchored = (pattern) => pattern.replace(/^\^/, "").replace(/\$$/, "");

/** Statuses of a machine on its way somewhere (ready, or its files gone): one "busy" colour. */
const BUILDING = new Set([
  STATUS.CREATED,
  STATUS.PROVISIONING,
  STATUS.BOOTING,
  STATUS.SETTING_UP,
  STATUS.PROBING,
  STATUS.ARCHIVING,
]);

/** A coloured status chip: ready green, failed red, unresponsive amber, archived grey. */
export function statusChip(status, testid = "status") {
  const tone = BUILDING.has(status) ? "busy" : status;
  return h(`span.chip.chip-${tone}`, { testid, dataset: { status } }, status);
}

export const chip = (text, tone = "neutral", testid) =>
  h(`span.chip.chip-${tone}`, { testid }, text);

/** A value hidden but for its length. */
export function masked(value) {
  return h(
    "span.masked",
    { title: `${value.length} characters, hidden` },
    "••••••••",
    h("span.muted", {}, ` ${value.length} ch`),
  );
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

/** A size in bytes as a person reads it: 312 MiB, 1.5 GiB. */
export function fmtBytes(n) {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 || n >= 10 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

export function fmtClock(iso) {
  const d = new Date(iso);
  const ms = String(d.getMilliseconds()).padStart(3, "0");
  return `${d.toLocaleTimeString(undefined, { hour12: false })}.${ms}`;
}

export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h(
    "div.field",
    {},
    h("label", { for: id }, label),
    control,
    hint ? h("small.hint", {}, hint) : null,
  );
}

/** The argv of a shell-like command line: whitespace separates, '…' is literal, "…" honours
 *  \" \\ \$ \`, a backslash outside quotes escapes one character. No expansion of any kind:
 *  the daemon runs argv directly, never through a shell. */
export function parseArgv(line) {
  const argv = [];
  let cur = "";
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error("unterminated ' quote");
      cur += line.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === "\\" && '"\\$`'.includes(line[j + 1] ?? "")) j++;
        cur += line[j];
      }
      if (j >= line.length) throw new Error('unterminated " quote');
      i = j;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) argv.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) argv.push(cur);
  return argv;
}

/** An inline error box for a failed call: the JSON-RPC code and message. A machine whose
 * daemon does not serve (DAEMON_UNAVAILABLE: failed, stopped, still booting) gets one calm line:
 * every panel of its page asks its daemon, and an alarm in each said nothing more. */
export function errorBox(err, testid = "error") {
  const code = err?.code ?? "";
  if (code === ERRORS.DAEMON_UNAVAILABLE) {
    return h(
      "p.muted",
      { role: "status", testid },
      `Not running: no daemon serves this machine now (${code}). It answers once the machine runs.`,
    );
  }
  return h(
    "div.alert.alert-error",
    { role: "alert", testid },
    code !== "" ? h("strong", {}, `Error ${code}`) : null,
    code !== "" ? " " : null,
    err?.message ?? String(err),
  );
}

/** Thrown to end an action the user called off (a declined confirmation): not a failure. */
export class Cancelled extends Error {
  constructor(what = "cancelled") {
    super(what);
    this.name = "Cancelled";
  }
}

/** Resolves when the user confirms; rejects with Cancelled when they do not. */
export async function confirmOrCancel(message, action = "Confirm") {
  if (!(await confirmDialog(message, action))) throw new Cancelled(`${action} cancelled`);
}

/** The area where an action's outcome or error is reported, inline. */
export function noticeArea() {
  const el = h("div.notices", { "aria-live": "polite", testid: "notices" });
  return {
    el,
    ok: (text) => fill(el, h("div.alert.alert-ok", { role: "status", testid: "notice" }, text)),
    fail: (err) => fill(el, errorBox(err)),
    clear: () => fill(el),
    /** Runs an action: its result (a message) or its error is reported; Cancelled is not. */
    async report(action) {
      this.clear();
      try {
        const message = await action();
        if (message) this.ok(message);
      } catch (err) {
        if (!(err instanceof Cancelled)) this.fail(err);
      }
    },
  };
}

const LIVE_LABELS = {
  live: "Live",
  connecting: "Connecting…",
  reconnecting: "Reconnecting…",
  offline: "Event stream offline",
};

/** Shows the event stream's state ("live", "connecting", ...) in `el`. */
export function renderLive(el, live) {
  el.className = `live live-${live}`;
  el.dataset.state = live;
  el.textContent = LIVE_LABELS[live] ?? live;
}

/** A confirmation in a modal <dialog>; resolves true when the user confirms. */
export function confirmDialog(message, action = "Confirm") {
  return new Promise((resolve) => {
    const ok = h(
      "button.btn.btn-danger",
      { type: "submit", value: "ok", testid: "confirm-ok" },
      action,
    );
    const dialog = h(
      "dialog.dialog",
      { testid: "confirm-dialog", "aria-label": action },
      h(
        "form",
        { method: "dialog" },
        h("p", {}, message),
        h(
          "div.actions",
          {},
          h("button.btn", { type: "submit", value: "cancel", testid: "confirm-cancel" }, "Cancel"),
          ok,
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    ok.focus();
  });
}

/** Runs ``fn`` with the button disabled and a busy marker; errors go to ``onError``. */
export async function busy(button, fn) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}
