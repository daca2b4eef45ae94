// Secrets on the Env vars page: an instance's credentials, which the platform's egress proxy
// adds to its machines' requests on the way out. Shown: name, hosts, header, uses, last use;
// never a value (the gateway never answers one). Set (the value typed in a password field,
// cleared once sent) and delete: the gateway lets an owner of the instance or an admin.
import { rpc } from "./api.js";
import { ENV_NAME_PATTERN, METHODS } from "./contract.js";
import { emptyRow, table } from "./frame.js";
import {
  busy,
  confirmOrCancel,
  field,
  fill,
  fmtTime,
  h,
  mono,
  noticeArea,
  unanchored,
} from "./ui.js";

/** A field's hosts: separated by spaces, commas or lines. */
const hostsOf = (text) => text.split(/[\s,]+/).filter(Boolean);

/** The section for the instance `instanceId()` names; `load()` reads its secrets again. */
export function secretsSection(instanceId) {
  const notices = noticeArea();
  const area = h("div", { testid: "secrets-area" });
  const input = (testid, attrs) =>
    h("input.mono", { testid, autocomplete: "off", spellcheck: "false", ...attrs });
  const name = input("secret-name", {
    required: true,
    pattern: unanchored(ENV_NAME_PATTERN),
    placeholder: "OPENAI_API_KEY",
  });
  const value = input("secret-value", {
    type: "password",
    required: true,
    autocomplete: "new-password",
  });
  const hosts = input("secret-hosts", {
    required: true,
    placeholder: "api.openai.com *.openai.com",
  });
  const header = input("secret-header", { placeholder: "Authorization" });
  const format = input("secret-format", { placeholder: "Bearer {value}" });
  const set = h("button.btn.btn-primary", { type: "submit", testid: "secret-set" }, "Set secret");

  const remove = (s) => {
    const btn = h(
      "button.btn.btn-small.btn-danger-outline",
      { type: "button", testid: "secret-delete", "aria-label": `Delete ${s.name}` },
      "Delete",
    );
    btn.addEventListener("click", () =>
      busy(btn, () =>
        notices.report(async () => {
          await confirmOrCancel(
            `Delete the secret ${s.name}? Machines stop getting it at once.`,
            "Delete",
          );
          const { deleted } = await rpc(METHODS.SECRETS_DELETE, {
            instanceId: instanceId(),
            name: s.name,
          });
          await load();
          return deleted ? `Deleted ${s.name}.` : `${s.name} was already gone.`;
        }),
      ),
    );
    return btn;
  };
  const row = (s) =>
    h(
      "tr",
      { testid: "secret-row", dataset: { name: s.name } },
      h("td", {}, mono(s.name)),
      h(
        "td",
        { testid: "secret-hosts-cell" },
        s.hosts.map((x) => [mono(x), " "]),
      ),
      h("td", {}, mono(`${s.header}: ${s.format}`)),
      h("td", { testid: "secret-uses" }, String(s.uses)),
      h("td", { testid: "secret-last-used" }, s.lastUsedAt ? fmtTime(s.lastUsedAt) : "never"),
      h("td", {}, remove(s)),
    );
  const load = async () => {
    fill(area);
    if (!instanceId()) {
      fill(area, h("p.muted", {}, "Secrets belong to an instance: create one first."));
      return;
    }
    await notices.report(async () => {
      const { secrets } = await rpc(METHODS.SECRETS_LIST, { instanceId: instanceId() });
      const heads = ["Name", "Hosts", "Sent as", "Uses", "Last used", ""];
      const body = secrets.length ? secrets.map(row) : emptyRow(heads.length, "No secrets set.");
      fill(area, table("secrets-table", heads, h("tbody", {}, body)));
    });
  };
  const form = h(
    "form.toolbar",
    { "aria-label": "Set a secret" },
    field("Name", name),
    field("Value", value),
    field("Hosts", hosts, "names, *.domain or addresses, :PORT optional"),
    field("Header", header),
    field("Format", format),
    set,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(set, () =>
      notices.report(async () => {
        const params = {
          instanceId: instanceId(),
          name: name.value,
          value: value.value,
          hosts: hostsOf(hosts.value),
        };
        if (header.value) params.header = header.value;
        if (format.value) params.format = format.value;
        value.value = ""; // sent once, never kept in the page
        const s = await rpc(METHODS.SECRETS_SET, params);
        name.value = "";
        await load();
        return `Set ${s.name}: added to requests to ${s.hosts.join(", ")}; machines see only fleet-secret-${s.name}.`;
      }),
    );
  });
  const el = h(
    "section",
    { testid: "secrets-section", "aria-label": "Secrets" },
    h("h2", {}, "Secrets"),
    h(
      "p.lede",
      {},
      "Credentials the platform adds to the instance's HTTPS requests on the way out, as a ",
      "header, for the hosts named. A machine's ",
      h("code", {}, ".env"),
      " holds only a placeholder; no value is ever shown again.",
    ),
    form,
    notices.el,
    area,
  );
  return { el, load };
}
