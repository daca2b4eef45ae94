// Audit log (admins and auditors): who did what, newest first, filtered by actor, instance, machine, method
// and time. Params and results are shown as the gateway recorded them: secrets redacted.
import { rpc } from "./api.js";
import { METHODS } from "./contract.js";
import { emptyRow, frame, table } from "./frame.js";
import { busy, chip, field, fill, fmtTime, h, mono, noticeArea } from "./ui.js";

const HEADS = ["Time", "Actor", "Method", "Instance", "Machine", "Outcome", "From", "Params"];
const FILTERS = [
  ["actor", "Actor", "token or user id"],
  ["instanceId", "Instance", "i-…"],
  ["machineId", "Machine", "m-…"],
  ["method", "Method", "e.g. machines.exec"],
];
const AGES = [
  ["", "any time"],
  ["3600", "last hour"],
  ["86400", "last day"],
  ["604800", "last week"],
];

export function auditPage({ root }) {
  const notices = noticeArea();
  const tbody = h("tbody");
  const inputs = Object.fromEntries(
    FILTERS.map(([key, , placeholder]) => [
      key,
      h("input", { testid: `audit-filter-${key}`, placeholder, maxlength: "256" }),
    ]),
  );
  const since = h(
    "select",
    { testid: "audit-since" },
    ...AGES.map(([value, label]) => h("option", { value }, label)),
  );
  const apply = h("button.btn.btn-primary", { type: "submit", testid: "audit-apply" }, "Filter");
  const form = h(
    "form.toolbar",
    { "aria-label": "Filter the audit log" },
    ...FILTERS.map(([key, label]) => field(label, inputs[key])),
    field("Since", since),
    apply,
  );

  const row = (e) =>
    h(
      "tr",
      { testid: "audit-row", dataset: { method: e.method, ok: String(e.ok) } },
      h("td.nowrap", {}, fmtTime(e.at)),
      h("td", {}, mono(e.actor)),
      h("td", { testid: "audit-method" }, mono(e.method)),
      h("td", {}, e.instanceId ? mono(e.instanceId) : "—"),
      h("td", {}, e.machineId ? mono(e.machineId) : "—"),
      h(
        "td",
        { testid: "audit-outcome" },
        e.ok ? chip("ok", "ready") : chip(`error ${e.errorCode}`, "failed"),
      ),
      h("td", {}, e.clientAddress ?? "—"),
      // One line, cut at the cell's edge (never mid-word across lines); the whole JSON on hover.
      h(
        "td",
        {},
        h(
          "code.audit-params",
          { title: JSON.stringify(e.params, null, 2) },
          JSON.stringify(e.params),
        ),
      ),
    );

  const params = () => {
    const p = { limit: 200 };
    for (const [key] of FILTERS) {
      const value = inputs[key].value.trim();
      if (value) p[key] = value;
    }
    if (since.value) p.since = new Date(Date.now() - Number(since.value) * 1000).toISOString();
    return p;
  };

  const load = async () => {
    try {
      const { entries } = await rpc(METHODS.AUDIT_LIST, params());
      const empty = "No entry matches.";
      fill(tbody, ...(entries.length ? entries.map(row) : [emptyRow(HEADS.length, empty)]));
    } catch (err) {
      notices.fail(err);
    }
  };

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(apply, load);
  });

  fill(
    root,
    frame(
      "#/audit",
      "Audit log",
      h(
        "p.lede",
        {},
        "Every call that changed something, every terminal, file transfer, tunnel and preview ",
        "ticket, newest first. Secrets in params and results are redacted.",
      ),
      form,
      notices.el,
      table("audit-table", HEADS, tbody),
    ),
  );
  load();
}
