// Machines: every machine, newest first, statuses kept live by the event stream; create one.
import { newIdempotencyKey, rpc } from "./api.js";
import { METHODS, PROVIDERS, STATUS } from "./contract.js";
import { emptyRow, frame, table } from "./frame.js";
import { daemonCell, machineActions, pausedSize, runtimeLabel } from "./machine-actions.js";
import { instanceList, instanceName, machineList, state } from "./state.js";
import { remember } from "./sync.js";
import { busy, field, fill, fmtTime, h, mono, noticeArea, statusChip } from "./ui.js";

const SHOW_ARCHIVED_KEY = "fleetd.showArchived";
const HEADS = [
  "Machine",
  "Instance",
  "Status",
  "Reason",
  "Runtime",
  "Daemon",
  "Updated",
  "Actions",
];

export function machinesPage({ root }) {
  const notices = noticeArea();
  const tbody = h("tbody");
  const showArchived = h("input", {
    type: "checkbox",
    testid: "show-archived",
    // Archived machines are history: shown when asked for.
    checked: sessionStorage.getItem(SHOW_ARCHIVED_KEY) === "1",
  });
  const instanceSelect = h("select", { testid: "create-machine-instance", required: true });
  const provider = h(
    "select",
    { testid: "create-machine-provider" },
    PROVIDERS.map((p) => h("option", { value: p }, p)),
  );
  const create = h(
    "button.btn.btn-primary",
    { type: "submit", testid: "create-machine" },
    "Create machine",
  );
  const form = h(
    "form.toolbar",
    { "aria-label": "Create a machine" },
    field("Instance", instanceSelect),
    field("Provider", provider),
    create,
  );

  const fillInstances = () => {
    const chosen = instanceSelect.value;
    const options = instanceList().map((i) => h("option", { value: i.id }, `${i.name} (${i.id})`));
    fill(
      instanceSelect,
      ...(options.length
        ? options
        : [h("option", { value: "" }, "No instances: create one under Instances")]),
    );
    if (chosen && state.instances.has(chosen)) instanceSelect.value = chosen;
  };

  const row = (m) =>
    h(
      "tr",
      {
        testid: "machine-row",
        dataset: { machineId: m.id, instanceId: m.instanceId, status: m.status },
      },
      h("td", {}, h("a", { href: `#/machines/${m.id}`, testid: "machine-link" }, mono(m.id))),
      h("td", {}, h("div", {}, instanceName(m.instanceId)), mono(m.instanceId)),
      h("td", {}, statusChip(m.status, "machine-status"), pausedSize(m)),
      h(
        "td.reason",
        { testid: "machine-reason" },
        m.statusReason ? h("div.clamp", { title: m.statusReason }, m.statusReason) : null,
      ),
      // The runtime over its provider, and a date over its time: the table fits 1280 px.
      h(
        "td",
        {},
        h("div.nowrap", { testid: "machine-runtime" }, runtimeLabel(m)),
        h("div.muted", { testid: "machine-provider", title: "provider" }, m.provider),
      ),
      h("td", {}, daemonCell(m)),
      h("td", {}, h("time", { datetime: m.updatedAt }, fmtTime(m.updatedAt))),
      h("td", {}, machineActions(m, notices, { compact: true })),
    );

  const render = () => {
    fillInstances();
    const all = machineList();
    const rows = all.filter(
      (m) =>
        showArchived.checked || (m.status !== STATUS.ARCHIVED && m.status !== STATUS.ARCHIVING),
    );
    const empty = all.length
      ? `No machines but ${all.length} archived: Show archived lists them.`
      : "No machines yet. Create an instance, then a machine for it.";
    fill(tbody, ...(rows.length ? rows.map(row) : [emptyRow(HEADS.length, empty)]));
  };
  showArchived.addEventListener("change", () => {
    sessionStorage.setItem(SHOW_ARCHIVED_KEY, showArchived.checked ? "1" : "0");
    render();
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(create, () =>
      notices.report(async () => {
        const m = await rpc(METHODS.MACHINES_CREATE, {
          instanceId: instanceSelect.value,
          provider: provider.value,
          idempotencyKey: newIdempotencyKey(),
        });
        remember(m);
        return `Machine ${m.id} created; its status follows live below.`;
      }),
    );
  });

  fill(
    root,
    frame(
      "#/machines",
      "Machines",
      h("p.lede", {}, "Every machine, newest first. Status changes arrive from the event stream."),
      form,
      notices.el,
      h("div.table-tools", {}, h("label.check", {}, showArchived, " Show archived")),
      table("machines-table", HEADS, tbody),
    ),
  );
  render();
  return render;
}
