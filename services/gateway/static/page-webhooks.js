// Webhooks of one instance: the endpoints its machine events are POSTed to (Standard Webhooks),
// each with its last delivery attempts and their status. Add one (its secret is shown once,
// here, and never again), send it a test event, or delete it: the gateway lets an owner of
// the instance or an admin.
import { rpc } from "./api.js";
import { METHODS } from "./contract.js";
import { emptyRow, frame, table } from "./frame.js";
import { instanceList, state } from "./state.js";
import { busy, chip, confirmOrCancel, field, fill, fmtTime, h, mono, noticeArea } from "./ui.js";

const ATTEMPT_HEADS = ["When", "Event", "Machine", "Try", "Status", "Took", "Outcome", "Next try"];
const TONES = { delivered: "ready", retrying: "unresponsive", failed: "failed" };

/** An endpoint's state: disabled (and why), failing since, or ok. */
function endpointState(hook) {
  if (hook.disabled) return chip(`disabled: ${hook.disabledReason}`, "failed", "webhook-state");
  if (hook.failingSince) {
    return chip(`failing since ${fmtTime(hook.failingSince)}`, "unresponsive", "webhook-state");
  }
  return chip("ok", "ready", "webhook-state");
}

/** One attempt as a row: its outcome as a chip, the HTTP status or the error. */
function attemptRow(a) {
  return h(
    "tr",
    { testid: "delivery-row", dataset: { outcome: a.outcome, eventId: a.eventId } },
    h("td.nowrap", {}, fmtTime(a.at)),
    h("td", {}, mono(a.type)),
    h(
      "td",
      {},
      a.machineId ? h("a", { href: `#/machines/${a.machineId}` }, mono(a.machineId)) : "–",
    ),
    h("td", {}, String(a.attempt)),
    h(
      "td",
      { testid: "delivery-status", title: a.error ?? "" },
      a.status ? String(a.status) : (a.error ?? "–"),
    ),
    h("td", {}, `${Math.round(a.durationMs)} ms`),
    h("td", {}, chip(a.outcome, TONES[a.outcome] ?? "neutral", "delivery-outcome")),
    h("td.nowrap", {}, a.nextAttemptAt ? fmtTime(a.nextAttemptAt) : ""),
  );
}

export function webhooksPage({ root }, instanceId) {
  const notices = noticeArea();
  const area = h("div", { testid: "webhooks-area" });
  const instanceSelect = h("select", { testid: "webhooks-instance" });
  const chosen = instanceId ?? instanceList()[0]?.id ?? "";
  const opts = instanceList().map((i) => h("option", { value: i.id }, `${i.name} (${i.id})`));
  fill(instanceSelect, ...(opts.length ? opts : [h("option", { value: "" }, "No instances")]));
  instanceSelect.value =
    chosen && state.instances.has(chosen) ? chosen : (instanceList()[0]?.id ?? "");
  const url = h("input.mono", {
    testid: "webhook-url",
    type: "url",
    required: true,
    placeholder: "https://hooks.example.com/fleet",
  });
  const events = h("input.mono", { testid: "webhook-events", placeholder: "* (every type)" });
  const add = h("button.btn.btn-primary", { type: "submit", testid: "webhook-create" }, "Add");

  const action = (label, testid, run) => {
    const btn = h("button.btn.btn-small", { type: "button", testid }, label);
    btn.addEventListener("click", () => busy(btn, () => notices.report(run)));
    return btn;
  };
  const endpoint = async (hook) => {
    const { attempts, pending } = await rpc(METHODS.WEBHOOKS_DELIVERIES, {
      webhookId: hook.id,
      limit: 20,
    });
    const rows = attempts.length
      ? attempts.map(attemptRow)
      : emptyRow(ATTEMPT_HEADS.length, "No delivery yet.");
    return h(
      "section.card",
      { testid: "webhook", dataset: { webhookId: hook.id } },
      h("h3", {}, mono(hook.url), " ", endpointState(hook)),
      h(
        "p.muted",
        {},
        mono(hook.id),
        ` · ${hook.events.join(", ")} · ${pending} waiting`,
        hook.description ? ` · ${hook.description}` : "",
      ),
      h(
        "div.actions",
        {},
        action("Send test", "webhook-test", async () => {
          await rpc(METHODS.WEBHOOKS_TEST, { webhookId: hook.id });
          await load();
          return "Test event queued: its attempt shows below in a moment.";
        }),
        action("Refresh", "webhook-refresh", async () => {
          await load();
        }),
        action("Delete", "webhook-delete", async () => {
          await confirmOrCancel(
            `Delete the webhook to ${hook.url}? What waits for it goes too.`,
            "Delete",
          );
          await rpc(METHODS.WEBHOOKS_DELETE, { webhookId: hook.id });
          await load();
          return "Deleted.";
        }),
      ),
      table("deliveries-table", ATTEMPT_HEADS, h("tbody", {}, rows)),
    );
  };
  const load = async () => {
    fill(area);
    if (!instanceSelect.value) {
      fill(area, h("p.muted", {}, "Webhooks belong to an instance: create one first."));
      return;
    }
    const { webhooks } = await rpc(METHODS.WEBHOOKS_LIST, { instanceId: instanceSelect.value });
    const cards = await Promise.all(webhooks.map(endpoint));
    fill(area, ...(cards.length ? cards : [h("p.muted", {}, "No webhooks.")]));
  };
  instanceSelect.addEventListener("change", () => {
    history.replaceState(null, "", `#/webhooks/${instanceSelect.value}`);
    notices.report(load);
  });
  const form = h(
    "form.toolbar",
    { "aria-label": "Add a webhook" },
    field("URL", url),
    field("Events", events, "machine.created machine.ready …, or * (every type)"),
    add,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(add, () =>
      notices.report(async () => {
        const types = events.value.split(/[\s,]+/).filter(Boolean);
        const made = await rpc(METHODS.WEBHOOKS_CREATE, {
          instanceId: instanceSelect.value,
          url: url.value,
          events: types.length ? types : ["*"],
        });
        url.value = "";
        await load();
        return h(
          "span",
          {},
          `Added ${made.id}. Its signing secret, shown this once: `,
          mono(made.secret, "webhook-secret"),
        );
      }),
    );
  });
  fill(
    root,
    frame(
      "#/instances",
      "Webhooks",
      h(
        "p.lede",
        {},
        "Endpoints the instance's machine events are POSTed to as they happen, signed (",
        h("code", {}, "webhook-signature"),
        "), in order per machine, retried for a day. Each shows its last attempts.",
      ),
      h("div.toolbar", {}, field("Instance", instanceSelect)),
      form,
      notices.el,
      area,
    ),
  );
  notices.report(load);
}
