// Instances: create one (admins and signed-in members), see each with its current machine, create or rebuild
// that machine.
import { newIdempotencyKey, rpc, session } from "./api.js";
import { LIMITS, METHODS, TERMINAL_STATUSES } from "./contract.js";
import { emptyRow, frame, table } from "./frame.js";
import { instanceList, state } from "./state.js";
import { addInstance, remember } from "./sync.js";
import {
  busy,
  confirmOrCancel,
  field,
  fill,
  fmtTime,
  h,
  mono,
  noticeArea,
  statusChip,
} from "./ui.js";

const HEADS = ["Name", "Instance", "Current machine", "Created", "Actions"];

export function instancesPage({ root }) {
  const notices = noticeArea();
  const tbody = h("tbody");
  const name = h("input", {
    testid: "instance-name",
    required: true,
    maxlength: String(LIMITS.INSTANCE_NAME_MAX),
    placeholder: "e.g. demo",
  });
  const create = h(
    "button.btn.btn-primary",
    { type: "submit", testid: "instance-create" },
    "Create instance",
  );
  const form = h(
    "form.toolbar",
    { "aria-label": "Create an instance" },
    field("Name", name),
    create,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(create, () =>
      notices.report(async () => {
        const inst = await rpc(METHODS.INSTANCES_CREATE, { name: name.value.trim() });
        addInstance(inst);
        name.value = "";
        return h(
          "span",
          {},
          `Instance ${inst.name} created: `,
          mono(inst.id, "new-instance-id"),
          ". Set its env vars, then create its machine.",
        );
      }),
    );
  });

  const machineButton = (inst, current) => {
    const live = current && !TERMINAL_STATUSES.includes(current.status);
    const btn = h(
      "button.btn.btn-small",
      { type: "button", testid: live ? "instance-rebuild" : "instance-create-machine" },
      live ? "Rebuild" : "Create machine",
    );
    btn.addEventListener("click", () =>
      busy(btn, () =>
        notices.report(async () => {
          if (live) {
            await confirmOrCancel(
              `Rebuild ${inst.name}? Machine ${current.id} is archived and a new one is made.`,
              "Rebuild",
            );
          }
          const params = { instanceId: inst.id, idempotencyKey: newIdempotencyKey() };
          const m = await rpc(live ? METHODS.MACHINES_REBUILD : METHODS.MACHINES_CREATE, params);
          remember(m);
          return h(
            "span",
            {},
            "Machine ",
            h("a", { href: `#/machines/${m.id}` }, mono(m.id)),
            ` ${live ? "rebuilding" : "created"} for ${inst.name}.`,
          );
        }),
      ),
    );
    return btn;
  };

  // Auto-stop: the instance's machines stop after this many seconds without activity (0: off).
  const autoStop = (inst) => {
    const secs = h("input.input-small", {
      type: "number",
      min: "0",
      step: "1",
      placeholder: "idle s",
      testid: "instance-autostop-seconds",
      "aria-label": `Auto-stop ${inst.name} after seconds idle (0: off)`,
    });
    const btn = h(
      "button.btn.btn-small",
      { type: "button", testid: "instance-autostop", title: "Stop idle machines (0: never)" },
      "Auto-stop",
    );
    btn.addEventListener("click", () =>
      busy(btn, () =>
        notices.report(async () => {
          const idleAfterS = Number.parseInt(secs.value || "0", 10);
          const r = await rpc(METHODS.INSTANCES_SET_AUTO_STOP, { instanceId: inst.id, idleAfterS });
          return r.idleAfterS
            ? `${inst.name}: idle machines stop after ${r.idleAfterS} s.`
            : `${inst.name}: auto-stop is off.`;
        }),
      ),
    );
    return h("span.autostop", {}, secs, btn);
  };

  const row = (inst) => {
    const current = inst.currentMachineId ? state.machines.get(inst.currentMachineId) : null;
    return h(
      "tr",
      { testid: "instance-row", dataset: { instanceId: inst.id, name: inst.name } },
      h("td", {}, inst.name),
      h("td", {}, mono(inst.id)),
      h(
        "td",
        {},
        inst.currentMachineId
          ? [
              h("a", { href: `#/machines/${inst.currentMachineId}` }, mono(inst.currentMachineId)),
              " ",
              current ? statusChip(current.status) : null,
            ]
          : h("span.muted", {}, "none"),
      ),
      h("td.nowrap", {}, fmtTime(inst.createdAt)),
      h(
        "td",
        {},
        h(
          "div.actions",
          {},
          machineButton(inst, current),
          h("a.btn.btn-small.btn-ghost", { href: `#/env/${inst.id}` }, "Env vars"),
          h(
            "a.btn.btn-small.btn-ghost",
            { href: `#/network/${inst.id}`, testid: "instance-network" },
            "Network",
          ),
          h(
            "a.btn.btn-small.btn-ghost",
            { href: `#/webhooks/${inst.id}`, testid: "instance-webhooks" },
            "Webhooks",
          ),
          autoStop(inst),
        ),
      ),
    );
  };

  const render = () => {
    const rows = instanceList().map(row);
    fill(tbody, ...(rows.length ? rows : [emptyRow(HEADS.length, "No instances yet.")]));
  };

  fill(
    root,
    frame(
      "#/instances",
      "Instances",
      h(
        "p.lede",
        {},
        "An instance is a named workspace: its env vars, repos and, at any time, one ",
        "current machine. Rebuild replaces the machine; the instance stays.",
      ),
      // Admins, and signed-in users (a member owns what it creates; the gateway refuses others).
      session.isAdmin || session.csrf ? form : null,
      notices.el,
      table("instances-table", HEADS, tbody),
    ),
  );
  render();
  return render;
}
