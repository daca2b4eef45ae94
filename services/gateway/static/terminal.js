// The Machine page's terminals: a tab per session of the machine (sessions.list), a new one
// with sessions.open, each shown in xterm.js (vendored, see vendor/xterm/README.md) and joined
// to its attach WebSocket. Sessions live on the machine, so a reload reattaches: the scrollback
// comes first, then live output. The terminal follows its box's size: a resize message on the
// socket, which the gateway passes on the session's own stream, in order with the typing.
import { rpc, session } from "./api.js";
import { METHODS } from "./contract.js";
import { errorBox, fill, h } from "./ui.js";
import { FitAddon } from "./vendor/xterm/addon-fit.js";
import { Terminal } from "./vendor/xterm/xterm.js";

/** Output waiting in xterm's parser past this is dropped (and said so) until it drains. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 128 * 1024;
const ACTIVE_KEY = (machineId) => `fleetd.terminal.${machineId}`;
const CLOSE_ABORTED = 4000;
/** Typing kept while a terminal's socket opens; past it, keys are dropped until it is open. */
const EARLY_MAX = 64 * 1024;

/**
 * xterm.js writes its dynamic rules (cell size, colours) into <style> elements, which the
 * console's CSP (style-src 'self') refuses: the browser logs each refusal as an error. So a
 * <style> that xterm.js asks the document for is an inert element (hidden by app.css), whose text
 * is applied as a constructed style sheet (CSSOM, which the CSP allows). xterm.js reads nothing
 * back from it (it sets textContent, it removes it), and the console makes no <style> of its own
 * (the CSP would refuse it), so nothing else changes.
 */
const INERT_STYLE = "xterm-style";
const createElement = document.createElement.bind(document);
document.createElement = (tag, options) =>
  createElement(String(tag).toLowerCase() === "style" ? INERT_STYLE : tag, options);
/**
 * A cell in a 24-bit colour gets it through setAttribute("style", ...) on its <span>, which the
 * CSP refuses too; the same declarations set through CSSOM are allowed. The console's own spans
 * get no style attribute (ui.js h() is given none).
 */
const setAttribute = Element.prototype.setAttribute;
HTMLSpanElement.prototype.setAttribute = function setSpanAttribute(name, value) {
  if (String(name).toLowerCase() === "style") this.style.cssText = String(value);
  else setAttribute.call(this, name, value);
};

function mirrorStyles(root) {
  const sheets = new Map();
  const sync = () => {
    for (const el of root.querySelectorAll(INERT_STYLE)) {
      let sheet = sheets.get(el);
      if (!sheet) {
        sheet = new CSSStyleSheet();
        sheets.set(el, sheet);
        document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
      }
      sheet.replaceSync(el.textContent);
    }
  };
  const observer = new MutationObserver(sync);
  observer.observe(root, { subtree: true, childList: true, characterData: true });
  return () => {
    observer.disconnect();
    const gone = new Set(sheets.values());
    document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => !gone.has(s));
  };
}

/** A session's attach WebSocket path (contracts/gateway/sessions.py ATTACH_PATH). */
const attachPath = (machineId, sessionId) =>
  `/machines/${encodeURIComponent(machineId)}/sessions/${encodeURIComponent(sessionId)}/attach`;

/** One session shown in `box`: its socket, its terminal. Returns a function that detaches. */
async function attach(machineId, info, box, onEnd) {
  const term = new Terminal({ convertEol: false, cursorBlink: true, scrollback: 5000 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  const unmirror = mirrorStyles(box);
  term.open(box);
  fit.fit();
  // What is typed before the socket is open waits for it (in order, up to EARLY_MAX bytes):
  // a user who types as the terminal appears loses nothing.
  let ws = null;
  const early = { chunks: [], bytes: 0 };
  const send = (bytes) => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(bytes);
    else if ((!ws || ws.readyState === WebSocket.CONNECTING) && early.bytes < EARLY_MAX) {
      early.chunks.push(bytes);
      early.bytes += bytes.length;
    }
  };
  const encoder = new TextEncoder();
  term.onData((data) => send(encoder.encode(data)));
  term.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
  const { ticket } = await rpc(METHODS.EVENTS_TICKET);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const path = attachPath(machineId, info.sessionId);
  const url = `${scheme}://${location.host}${path}?${new URLSearchParams({ ticket })}`;
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const flow = { pending: 0, dropping: 0 };
  const note = (text) => term.write(`\r\n\x1b[2m[${text}]\x1b[0m\r\n`);
  const sendSize = () => {
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
    }
  };
  ws.onopen = () => {
    sendSize();
    for (const chunk of early.chunks.splice(0)) ws.send(chunk);
  };
  ws.onmessage = (msg) => {
    if (typeof msg.data !== "string") {
      const bytes = new Uint8Array(msg.data);
      if (flow.pending > HIGH_WATER || (flow.dropping && flow.pending > LOW_WATER)) {
        flow.dropping += bytes.length; // the page cannot keep up: drop, never hoard
        return;
      }
      if (flow.dropping) note(`${flow.dropping} bytes of output dropped`);
      flow.dropping = 0;
      flow.pending += bytes.length;
      term.write(bytes, () => {
        flow.pending -= bytes.length;
      });
      return;
    }
    const control = JSON.parse(msg.data);
    if (control.type === "exit") note(`exited with code ${control.code}`);
    else if (control.type === "dropped") note(`${control.bytes} bytes of output dropped`);
    else if (control.type === "error") note(control.message);
  };
  ws.onclose = (ev) => {
    if (ev.code === CLOSE_ABORTED) note(`session lost: ${ev.reason}`);
    onEnd(ev.code);
  };
  term.onResize(sendSize);
  const sizer = new ResizeObserver(() => fit.fit());
  sizer.observe(box);
  term.focus();
  return () => {
    sizer.disconnect();
    ws.onclose = null;
    ws.close();
    term.dispose();
    unmirror();
  };
}

/** The Terminal card's content for machine `machineId`; stops with `signal`. */
export function terminals(machineId, signal) {
  const tabs = h("div.term-tabs", { role: "tablist", testid: "terminal-tabs" });
  const box = h("div.term-box", { testid: "terminal" });
  const problems = h("div");
  const view = { detach: null, active: sessionStorage.getItem(ACTIVE_KEY(machineId)) };

  // `reveal`: the user asked for this terminal (a new one, a tab): it is scrolled into view,
  // since xterm.js draws nothing while it is out of view and a terminal just below the fold
  // would stay an empty box.
  const show = async (info, reveal = false) => {
    view.detach?.();
    view.detach = null;
    fill(box);
    fill(problems);
    view.active = info.sessionId;
    sessionStorage.setItem(ACTIVE_KEY(machineId), info.sessionId);
    for (const tab of tabs.querySelectorAll("[role=tab]")) {
      tab.setAttribute("aria-selected", String(tab.dataset.session === info.sessionId));
    }
    try {
      view.detach = await attach(machineId, info, box, () => refresh().catch(() => {}));
      if (reveal) box.scrollIntoView({ block: "nearest" });
    } catch (err) {
      fill(problems, errorBox(err, "terminal-error"));
    }
  };

  const tab = (info) =>
    h(
      "button.btn.btn-small.term-tab",
      {
        type: "button",
        role: "tab",
        testid: "terminal-tab",
        dataset: { session: info.sessionId },
        onclick: () => show(info, true),
      },
      `${info.name} ${info.running ? "" : `(exit ${info.exitCode})`}`.trim(),
    );

  const refresh = async (select = null, reveal = false) => {
    const { sessions } = await rpc(METHODS.SESSIONS_LIST, { machineId });
    fill(tabs, ...sessions.map(tab), newButton);
    const pick =
      sessions.find((s) => s.sessionId === (select ?? view.active)) ??
      sessions.find((s) => s.running);
    if (pick && !(view.detach && view.active === pick.sessionId)) await show(pick, reveal);
  };

  const newButton = h(
    "button.btn.btn-small.term-new",
    {
      type: "button",
      testid: "terminal-new",
      onclick: async () => {
        try {
          const opened = await rpc(METHODS.SESSIONS_OPEN, { machineId, cols: 80, rows: 24 });
          await refresh(opened.sessionId, true);
        } catch (err) {
          fill(problems, errorBox(err, "terminal-error"));
        }
      },
    },
    "New terminal",
  );

  signal?.addEventListener("abort", () => view.detach?.());
  const unavailable = (err) =>
    fill(problems, h("p.muted", { testid: "terminal-unavailable" }, `No terminals now: ${err}`));
  if (session.signedIn) refresh().catch(unavailable);
  return [tabs, problems, box];
}
