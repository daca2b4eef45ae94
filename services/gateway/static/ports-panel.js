// The Machine detail page's Ports panel: the TCP ports listening in the machine
// (machines.ports), with the labels its environment gives them, then the ports its
// environment forwards that nothing listens on yet, each with an Open button for its
// preview URL. Open asks
// machines.previewTicket for a single-use ticket and opens the preview in a new tab with it:
// the gateway swaps the ticket for a cookie scoped to that port and drops it from the URL,
// so the token never travels in a URL, and `noopener` keeps the console's tab (its
// sessionStorage and its window) out of the preview's reach.
import { rpc } from "./api.js";
import { METHODS, PORTS } from "./contract.js";
import { emptyRow, table } from "./frame.js";
import { busy, errorBox, fill, h, mono } from "./ui.js";

const HEADS = ["Port", "Label", "Family", "Address", ""];

async function openPreview(machineId, port) {
  const t = await rpc(METHODS.MACHINES_PREVIEW_TICKET, { machineId, port });
  const url = `${t.url}?${PORTS.TICKET_PARAM}=${encodeURIComponent(t.ticket)}`;
  window.open(url, "_blank", "noopener,noreferrer");
}

function portRow(machineId, p, notices) {
  const open = h("button.btn.btn-small", { type: "button", testid: "port-open" }, "Open");
  open.addEventListener("click", () =>
    busy(open, () => openPreview(machineId, p.port)).catch((err) =>
      fill(notices, errorBox(err, "ports-error")),
    ),
  );
  return h(
    "tr",
    { testid: "port-row", dataset: { port: String(p.port) } },
    h("td", {}, mono(String(p.port))),
    h("td", { testid: "port-label" }, p.label || ""),
    h("td", {}, p.family || "—"),
    h("td", {}, p.address ? mono(p.address) : "not listening yet"),
    h("td", {}, open),
  );
}

/** The panel for machine `machineId`: loaded now, again on Refresh. */
export function portsPanel(machineId) {
  const notices = h("div");
  const tbody = h("tbody", { testid: "ports-body" }, emptyRow(HEADS.length, "Loading…"));
  const refresh = h("button.btn", { type: "button", testid: "ports-refresh" }, "Refresh");
  const load = () =>
    busy(refresh, async () => {
      fill(notices);
      try {
        const { ports, forwarded = [] } = await rpc(METHODS.MACHINES_PORTS, { machineId });
        const idle = forwarded.filter((f) => !f.listening);
        const rows = [...ports, ...idle];
        fill(
          tbody,
          rows.length
            ? rows.map((p) => portRow(machineId, p, notices))
            : emptyRow(HEADS.length, "Nothing listens on the machine's loopback."),
        );
      } catch (err) {
        fill(tbody, emptyRow(HEADS.length, "—"));
        fill(notices, errorBox(err, "ports-error"));
      }
    });
  refresh.addEventListener("click", load);
  load();
  return h(
    "div",
    {},
    h("div.table-tools", {}, refresh),
    notices,
    table("ports-table", HEADS, tbody),
  );
}
