// Network: where one instance's machines may connect (its egress policy): see it, and set the
// default, the allow list and the deny list. The gateway checks every entry; a bad one comes
// back as its -32602 error, which names the entry.
import { rpc } from "./api.js";
import { METHODS } from "./contract.js";
import { frame } from "./frame.js";
import { instanceList, state } from "./state.js";
import { busy, chip, field, fill, h, mono, noticeArea } from "./ui.js";

const DEFAULTS = [
  ["allow", "Allow (only the deny list is refused)"],
  ["deny", "Deny (only the allow list is reached)"],
];

/** A textarea's entries: one a line, blank lines and surrounding spaces dropped. */
const entries = (text) =>
  text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);

/** One list of the policy as shown: its entries, or a word saying it is empty. */
function entryList(testid, list) {
  if (!list.length) return h("p.muted", { testid }, "none");
  return h(
    "ul.entries",
    { testid },
    list.map((e) => h("li", {}, mono(e))),
  );
}

/** The policy as the gateway holds it, and what the last change reached. */
function currentPolicy(result) {
  const e = result.egress;
  const reached = result.machines
    ? `Applied to ${result.machines - result.failed.length} of ${result.machines} running machine(s).`
    : null;
  return h(
    "div",
    {},
    h(
      "p",
      {},
      "Default: ",
      chip(e.default, e.default === "deny" ? "failed" : "ready", "network-default"),
    ),
    h("h3", {}, "Allow"),
    entryList("network-allow-list", e.allow),
    h("h3", {}, "Deny"),
    entryList("network-deny-list", e.deny),
    reached ? h("p.muted", { testid: "network-applied" }, reached) : null,
    result.failed.map((f) =>
      h("p.muted", { testid: "network-failed" }, `${f.machineId}: ${f.message}`),
    ),
  );
}

export function networkPage({ root }, instanceId) {
  const notices = noticeArea();
  const current = h("section.card", { testid: "network-current", "aria-label": "Policy" });
  const instanceSelect = h("select", { testid: "network-instance" });
  const chosen = instanceId ?? instanceList()[0]?.id ?? "";
  const fillInstances = () => {
    const opts = instanceList().map((i) => h("option", { value: i.id }, `${i.name} (${i.id})`));
    fill(instanceSelect, ...(opts.length ? opts : [h("option", { value: "" }, "No instances")]));
    instanceSelect.value =
      chosen && state.instances.has(chosen) ? chosen : (instanceList()[0]?.id ?? "");
  };
  const fallback = h(
    "select",
    { testid: "network-default-select" },
    DEFAULTS.map(([value, label]) => h("option", { value }, label)),
  );
  const area = (testid, placeholder) =>
    h("textarea.mono", { testid, rows: "6", spellcheck: "false", placeholder });
  const allow = area("network-allow", "pypi.org\n*.github.com:443\n10.1.2.0/24:8000-8100");
  const deny = area("network-deny", "169.254.169.254\n[2001:db8::/32]:25");
  const save = h("button.btn.btn-primary", { type: "submit", testid: "network-save" }, "Save");

  /** The form shows ``result``'s policy, the card too. */
  const show = (result) => {
    fallback.value = result.egress.default;
    allow.value = result.egress.allow.join("\n");
    deny.value = result.egress.deny.join("\n");
    fill(current, h("h2", {}, "Current policy"), currentPolicy(result));
  };
  const load = async () => {
    notices.clear();
    fill(current);
    if (!instanceSelect.value) return;
    await notices.report(async () => {
      show(await rpc(METHODS.INSTANCES_GET_NETWORK_POLICY, { instanceId: instanceSelect.value }));
    });
  };
  instanceSelect.addEventListener("change", () => {
    history.replaceState(null, "", `#/network/${instanceSelect.value}`);
    load();
  });
  const form = h(
    "form.card.policy-form",
    { "aria-label": "Set the network policy" },
    h("h2", {}, "Change it"),
    field("Default", fallback),
    h(
      "div.policy-lists",
      {},
      field(
        "Allow",
        allow,
        "One entry a line: a domain, *.domain, address or CIDR, :PORT or :LOW-HIGH",
      ),
      field("Deny", deny, "Deny wins over allow. NATS stays open whatever the lists say."),
    ),
    save,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(save, () =>
      notices.report(async () => {
        const egress = {
          default: fallback.value,
          allow: entries(allow.value),
          deny: entries(deny.value),
        };
        const params = { instanceId: instanceSelect.value, egress };
        const result = await rpc(METHODS.INSTANCES_SET_NETWORK_POLICY, params);
        show(result);
        return `Saved the network policy of ${state.instances.get(result.instanceId)?.name ?? result.instanceId}.`;
      }),
    );
  });
  fillInstances();
  fill(
    root,
    frame(
      "#/network",
      "Network",
      h(
        "p.lede",
        {},
        "Where an instance's machines may connect, enforced by the kernel in each machine's ",
        "own network namespace. A change reaches its running machines before it is saved; a ",
        "refusal shows on the machine's timeline as ",
        h("code", {}, "egress-denied"),
        ".",
      ),
      h("div.toolbar", {}, field("Instance", instanceSelect)),
      current,
      form,
      notices.el,
    ),
  );
  load();
  return () => {
    if (!instanceSelect.options.length || instanceSelect.value === "") {
      fillInstances();
      load();
    }
  };
}
