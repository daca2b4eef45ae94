// Hosts (admin): each host's provisioner with its capacity, machines, last heartbeat and
// state; drain one (it takes no new machines) or undo that.
import { rpc } from "./api.js";
import { METHODS } from "./contract.js";
import { emptyRow, frame, table } from "./frame.js";
import { busy, chip, fill, fmtTime, h, mono, noticeArea } from "./ui.js";

const HEADS = ["Host", "State", "Capacity", "Running", "Stopped", "Last heartbeat", ""];
const TONES = { active: "ready", draining: "stopped", lost: "failed" };

export function hostsPage({ root }) {
  const notices = noticeArea();
  const tbody = h("tbody");

  const drainButton = (host) => {
    const draining = host.state === "draining";
    const button = h(
      "button.btn.btn-small",
      { type: "button", testid: "host-drain", "aria-label": `Drain ${host.hostId}` },
      draining ? "Undrain" : "Drain",
    );
    button.addEventListener("click", () =>
      busy(button, () =>
        notices.report(async () => {
          await rpc(METHODS.HOSTS_DRAIN, { hostId: host.hostId, draining: !draining });
          notices.ok(`Host ${host.hostId} ${draining ? "takes new machines again" : "drained"}.`);
          await load();
        }),
      ),
    );
    return button;
  };

  const row = (host) =>
    h(
      "tr",
      { testid: "host-row", dataset: { hostId: host.hostId, state: host.state } },
      h("td", {}, mono(host.hostId)),
      h(
        "td",
        { testid: "host-state" },
        chip(host.state, TONES[host.state] ?? "neutral"),
        host.memoryLow ? chip("memory low", "unresponsive", "host-memory-low") : null,
      ),
      h("td", {}, host.capacity ?? "unlimited"),
      h("td", { testid: "host-running" }, String(host.running)),
      h("td", {}, String(host.stopped)),
      h("td.nowrap", {}, fmtTime(host.lastHeartbeat)),
      h("td", {}, host.state === "lost" ? null : drainButton(host)),
    );

  const load = async () => {
    try {
      const { hosts } = await rpc(METHODS.HOSTS_LIST);
      const empty = "No host has announced itself: no provisioner is running.";
      fill(tbody, ...(hosts.length ? hosts.map(row) : [emptyRow(HEADS.length, empty)]));
    } catch (err) {
      notices.fail(err);
    }
  };

  fill(
    root,
    frame(
      "#/hosts",
      "Hosts",
      h(
        "p.lede",
        {},
        "Each host runs a provisioner: it takes new machines while it has room. A drained ",
        "host takes none; a lost one has not sent a heartbeat for a while.",
      ),
      notices.el,
      table("hosts-table", HEADS, tbody),
    ),
  );
  load();
}
