// Env vars: the platform's and one instance's variables, which one wins; set and unset them.
import { rpc, session } from "./api.js";
import { ENV_NAME_PATTERN, METHODS } from "./contract.js";
import { secretsSection } from "./env-secrets.js";
import { effectiveEnvTable } from "./env-table.js";
import { frame } from "./frame.js";
import { instanceList, state } from "./state.js";
import { busy, field, fill, h, noticeArea, unanchored } from "./ui.js";

export function envPage({ root }, instanceId) {
  const notices = noticeArea();
  const tableArea = h("div", { testid: "env-area" });
  const view = { revealed: false };
  const chosen = instanceId ?? instanceList()[0]?.id ?? "";
  const instanceSelect = h("select", { testid: "env-instance" });
  const secrets = secretsSection(() => instanceSelect.value);
  const fillInstances = () => {
    const opts = instanceList().map((i) => h("option", { value: i.id }, `${i.name} (${i.id})`));
    fill(
      instanceSelect,
      ...(opts.length ? opts : [h("option", { value: "" }, "No instances (platform only)")]),
    );
    instanceSelect.value =
      chosen && state.instances.has(chosen) ? chosen : (instanceList()[0]?.id ?? "");
  };
  const scope = h(
    "select",
    { testid: "env-scope" },
    session.isAdmin ? h("option", { value: "platform" }, "Platform (every instance)") : null,
    h("option", { value: "instance" }, "The instance above"),
  );
  const name = h("input.mono", {
    testid: "env-name",
    required: true,
    pattern: unanchored(ENV_NAME_PATTERN),
    placeholder: "DATABASE_URL",
    autocomplete: "off",
  });
  const value = h("textarea.mono", { testid: "env-value", rows: "1", spellcheck: "false" });
  const set = h("button.btn.btn-primary", { type: "submit", testid: "env-set" }, "Set");
  const reveal = h(
    "button.btn",
    { type: "button", testid: "env-reveal", "aria-pressed": "false" },
    "Show values",
  );

  const load = async () => {
    const onChange = (msg, err) => {
      if (err) notices.fail(err);
      else {
        notices.ok(msg);
        load();
      }
    };
    fill(
      tableArea,
      await effectiveEnvTable(instanceSelect.value || null, true, view.revealed, onChange),
    );
  };
  reveal.addEventListener("click", () => {
    view.revealed = !view.revealed;
    reveal.setAttribute("aria-pressed", String(view.revealed));
    reveal.textContent = view.revealed ? "Hide values" : "Show values";
    load();
  });
  instanceSelect.addEventListener("change", () => {
    history.replaceState(null, "", `#/env/${instanceSelect.value}`);
    load();
    secrets.load();
  });
  const form = h(
    "form.toolbar",
    { "aria-label": "Set a variable" },
    field("Scope", scope),
    field("Name", name),
    field("Value", value),
    set,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(set, () =>
      notices.report(async () => {
        const params = { name: name.value, value: value.value };
        if (scope.value === "instance") params.instanceId = instanceSelect.value;
        const v = await rpc(METHODS.ENV_SET, params);
        notices.ok(`Set ${v.name} (${v.scope}). Running machines get it with Refresh env.`);
        name.value = "";
        value.value = "";
        await load();
      }),
    );
  });
  fillInstances();
  fill(
    root,
    frame(
      "#/env",
      "Env vars",
      h(
        "p.lede",
        {},
        "Platform variables reach every instance's machines; an instance variable ",
        "with the same name wins. Machines get them in ",
        h("code", {}, "~/.fleet/.env"),
        " at setup, and again with Refresh env.",
      ),
      h("div.toolbar", {}, field("Instance", instanceSelect), reveal),
      form,
      notices.el,
      tableArea,
      secrets.el,
    ),
  );
  load();
  secrets.load();
  return () => {
    if (!instanceSelect.options.length || instanceSelect.value === "") {
      fillInstances();
      load();
      secrets.load();
    }
  };
}
