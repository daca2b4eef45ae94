// Access tokens: create one (its secret shown once), list them, revoke one.
import { rpc, session } from "./api.js";
import { LIMITS, METHODS } from "./contract.js";
import { emptyRow, frame, table } from "./frame.js";
import { instanceList, newestFirst } from "./state.js";
import { busy, chip, confirmOrCancel, field, fill, fmtTime, h, mono, noticeArea } from "./ui.js";

// Last used: the gateway writes it at most once a minute.
const HEADS = ["Name", "Token", "Scope", "Created", "Last used", "State", ""];

/** The one-time display of a new token's secret, with Copy and Done. */
function secretNotice(area, name, created) {
  const secret = h("code.mono.secret", { testid: "token-secret" }, created.token);
  const copy = h("button.btn.btn-small", { type: "button", testid: "token-copy" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(created.token);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Select and copy it by hand";
    }
  });
  return h(
    "div.alert.alert-secret",
    { role: "status" },
    h("strong", {}, `Token ${name} (${created.id}) created.`),
    " Copy the secret now: it is shown this once and never stored in clear.",
    h(
      "div.secret-row",
      {},
      secret,
      copy,
      h(
        "button.btn.btn-small.btn-ghost",
        { type: "button", testid: "token-secret-dismiss", onclick: () => fill(area) },
        "Done",
      ),
    ),
  );
}

export function tokensPage({ root }) {
  const notices = noticeArea();
  const secretArea = h("div");
  const tbody = h("tbody");
  const name = h("input", {
    testid: "token-name",
    required: true,
    maxlength: String(LIMITS.TOKEN_NAME_MAX),
    placeholder: "e.g. ci-runner",
  });
  const scope = h("select", { testid: "token-scope" });
  const fillScopes = () => {
    const was = scope.value;
    fill(
      scope,
      session.isAdmin ? h("option", { value: "" }, "Admin (everything)") : null,
      ...instanceList().map((i) => h("option", { value: i.id }, `Instance ${i.name} (${i.id})`)),
    );
    if (was !== undefined && [...scope.options].some((o) => o.value === was)) scope.value = was;
  };
  const create = h(
    "button.btn.btn-primary",
    { type: "submit", testid: "token-create" },
    "Create token",
  );
  const form = h(
    "form.toolbar",
    { "aria-label": "Create an access token" },
    field("Name", name),
    field("Scope", scope),
    create,
  );

  const revokeButton = (t) => {
    const revoke = h(
      "button.btn.btn-small.btn-danger-outline",
      {
        type: "button",
        testid: "token-revoke",
        disabled: !!t.revokedAt,
        "aria-label": `Revoke ${t.name}`,
      },
      "Revoke",
    );
    revoke.addEventListener("click", () =>
      busy(revoke, () =>
        notices.report(async () => {
          await confirmOrCancel(
            `Revoke token ${t.name} (${t.id})? Anything using it is refused from now on.`,
            "Revoke",
          );
          await rpc(METHODS.TOKENS_REVOKE, { id: t.id });
          notices.ok(`Token ${t.name} revoked.`);
          await load();
        }),
      ),
    );
    return revoke;
  };

  const row = (t) =>
    h(
      "tr",
      { testid: "token-row", dataset: { tokenId: t.id, name: t.name } },
      h("td", {}, t.name),
      h("td", {}, mono(t.id)),
      h("td", {}, t.instanceId ? ["instance ", mono(t.instanceId)] : chip("admin", "neutral")),
      h("td.nowrap", {}, fmtTime(t.createdAt)),
      h("td.nowrap", { testid: "token-last-used" }, t.lastUsedAt ? fmtTime(t.lastUsedAt) : "never"),
      h(
        "td",
        { testid: "token-state" },
        t.revokedAt
          ? [chip("revoked", "archived"), h("span.muted", {}, ` ${fmtTime(t.revokedAt)}`)]
          : chip("active", "ready"),
      ),
      h("td", {}, revokeButton(t)),
    );

  const load = async () => {
    try {
      const { tokens } = await rpc(METHODS.TOKENS_LIST);
      const rows = tokens.sort(newestFirst).map(row);
      const empty = "No access tokens yet. The operator's admin token is not listed here.";
      fill(tbody, ...(rows.length ? rows : [emptyRow(HEADS.length, empty)]));
    } catch (err) {
      notices.fail(err);
    }
  };

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(create, () =>
      notices.report(async () => {
        const params = { name: name.value.trim() };
        if (scope.value) params.instanceId = scope.value;
        const created = await rpc(METHODS.TOKENS_CREATE, params);
        fill(secretArea, secretNotice(secretArea, params.name, created));
        name.value = "";
        await load();
      }),
    );
  });

  fillScopes();
  fill(
    root,
    frame(
      "#/tokens",
      "Access tokens",
      h(
        "p.lede",
        {},
        "Tokens for the API, the CLI and this console: admin (everything) or scoped ",
        "to one instance. Only a hash is stored; revoked tokens stay listed as an audit trail.",
      ),
      form,
      secretArea,
      notices.el,
      table("tokens-table", HEADS, tbody),
    ),
  );
  load();
  return fillScopes;
}
