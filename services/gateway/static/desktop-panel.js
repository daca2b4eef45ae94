// The Machine detail page's Desktop panel: the machine's screen (machines.desktop.screenshot,
// refreshed every second while the display runs and the page is open), Start and Stop, and
// Open live view: machines.desktop.view's single-use ticket opens noVNC on the machine's
// preview in a new tab, as the Ports panel's Open does (the ticket becomes a cookie scoped to
// that preview; `noopener` keeps the console's window out of the page's reach). The live view
// takes input when the caller may exec in the machine, else it only shows.
import { rpc } from "./api.js";
import { METHODS, PORTS } from "./contract.js";
import { busy, errorBox, fill, h } from "./ui.js";

const REFRESH_MS = 1000;

async function openView(machineId) {
  const v = await rpc(METHODS.MACHINES_DESKTOP_VIEW, { machineId });
  const url = `${v.url}&${PORTS.TICKET_PARAM}=${encodeURIComponent(v.ticket)}`;
  window.open(url, "_blank", "noopener,noreferrer");
}

/** The panel for machine `machineId`; its refreshes end when `signal` aborts. */
export function desktopPanel(machineId, signal) {
  const notices = h("div");
  const status = h("p.muted", { testid: "desktop-status" }, "Loading…");
  const screen = h("img.desktop-screen", { testid: "desktop-screen", alt: "The machine's screen" });
  screen.style.display = "none";
  const start = h("button.btn", { type: "button", testid: "desktop-start" }, "Start");
  const stop = h("button.btn", { type: "button", testid: "desktop-stop" }, "Stop");
  const view = h("button.btn", { type: "button", testid: "desktop-view" }, "Open live view");
  let timer = 0;

  const shown = (info) => {
    // (style, not `hidden`: a .btn's display would win over the attribute)
    start.style.display = info.running ? "none" : "";
    for (const e of [stop, view, screen]) e.style.display = info.running ? "" : "none";
    fill(status, info.running ? `${info.width}×${info.height} display` : "No display runs.");
    clearTimeout(timer);
    if (info.running) refresh();
  };
  const refresh = async () => {
    if (signal?.aborted) return;
    try {
      const shot = await rpc(METHODS.MACHINES_DESKTOP_SCREENSHOT, { machineId, scale: 0.5 });
      screen.src = `data:image/${shot.format};base64,${shot.image}`;
      timer = setTimeout(refresh, REFRESH_MS);
    } catch (err) {
      fill(notices, errorBox(err, "desktop-error"));
    }
  };
  const act = (button, method) =>
    busy(button, async () => {
      fill(notices);
      try {
        shown(await rpc(method, { machineId }));
      } catch (err) {
        fill(notices, errorBox(err, "desktop-error"));
      }
    });
  start.addEventListener("click", () => act(start, METHODS.MACHINES_DESKTOP_START));
  stop.addEventListener("click", () => act(stop, METHODS.MACHINES_DESKTOP_STOP));
  view.addEventListener("click", () =>
    busy(view, () => openView(machineId)).catch((err) =>
      fill(notices, errorBox(err, "desktop-error")),
    ),
  );
  signal?.addEventListener("abort", () => clearTimeout(timer));
  rpc(METHODS.MACHINES_DESKTOP_GET, { machineId }).then(shown, (err) =>
    fill(notices, errorBox(err, "desktop-error")),
  );
  return h("div", {}, h("div.table-tools", {}, start, view, stop), status, notices, screen);
}
