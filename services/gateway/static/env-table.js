// Platform and instance variables side by side, and which one a machine gets: on the Env vars
// page (with Unset buttons) and the Machine detail page (read only).
import { RpcError, rpc } from "./api.js";
import { ENV_SCOPES_BY_PRECEDENCE, ERRORS, METHODS } from "./contract.js";
import { emptyRow, table } from "./frame.js";
import { busy, chip, errorBox, h, masked } from "./ui.js";

const WINS_TONE = { instance: "ready", platform: "busy" };

/**
 * The scope whose value of `name` a machine's .env gets: the last one in
 * ENV_SCOPES_BY_PRECEDENCE that sets it (contract.js; a unit test checks that base.dotenv's
 * merge_env, which writes the .env, agrees). `byScope` maps a scope to its Map name -> value.
 */
export function winningScope(name, byScope) {
  return ENV_SCOPES_BY_PRECEDENCE.findLast((scope) => byScope[scope]?.has(name)) ?? null;
}

/** The variables of the platform scope and of `instanceId` (null: the platform only). */
async function readScopes(instanceId) {
  const [p, i] = await Promise.allSettled([
    rpc(METHODS.ENV_LIST, {}),
    instanceId ? rpc(METHODS.ENV_LIST, { instanceId }) : Promise.resolve({ vars: [] }),
  ]);
  if (i.status === "rejected") throw i.reason;
  let platform = [];
  let platformHidden = false;
  if (p.status === "fulfilled") platform = p.value.vars;
  else if (p.reason instanceof RpcError && p.reason.code === ERRORS.FORBIDDEN)
    platformHidden = true;
  else throw p.reason;
  const toMap = (vars) => new Map(vars.map((v) => [v.name, v.value]));
  return { platform: toMap(platform), instance: toMap(i.value.vars), platformHidden };
}

/**
 * The table for `instanceId`. With `withActions`, Unset buttons report through
 * `onChange(message)` or `onChange(null, error)`; values are masked unless `revealed`.
 */
export async function effectiveEnvTable(
  instanceId,
  withActions,
  revealed = false,
  onChange = null,
) {
  let scopes;
  try {
    scopes = await readScopes(instanceId);
  } catch (err) {
    return errorBox(err);
  }
  const { platform: pmap, instance: imap } = scopes;
  const names = [...new Set([...pmap.keys(), ...imap.keys()])].sort();
  const show = (v) =>
    v === undefined ? h("span.muted", {}, "—") : revealed ? h("code.mono.value", {}, v) : masked(v);
  const unset = (name, scopeId, label) => {
    const btn = h(
      "button.btn.btn-small.btn-danger-outline",
      {
        type: "button",
        testid: `env-unset-${scopeId ? "instance" : "platform"}`,
        "aria-label": `Unset ${name} (${label})`,
      },
      "Unset",
    );
    btn.addEventListener("click", () =>
      busy(btn, async () => {
        const params = scopeId ? { instanceId: scopeId, name } : { name };
        try {
          await rpc(METHODS.ENV_UNSET, params);
          onChange?.(`Unset ${name} (${label}).`);
        } catch (err) {
          onChange?.(null, err);
        }
      }),
    );
    return btn;
  };
  const cell = (map, name, scopeId, label) =>
    h(
      "td",
      {},
      show(map.get(name)),
      withActions && map.has(name) ? [" ", unset(name, scopeId, label)] : null,
    );
  const rows = names.map((name) => {
    const wins = winningScope(name, { platform: pmap, instance: imap });
    return h(
      "tr",
      { testid: withActions ? "env-row" : "effective-env-row", dataset: { name, wins } },
      h("td", {}, h("code.mono", {}, name)),
      cell(pmap, name, null, "platform"),
      instanceId ? cell(imap, name, instanceId, "instance") : null,
      instanceId
        ? h(
            "td",
            { testid: "env-wins" },
            chip(wins, WINS_TONE[wins] ?? "neutral"),
            wins !== "platform" && pmap.has(name)
              ? h("span.muted", {}, " overrides platform")
              : null,
          )
        : null,
    );
  });
  const heads = ["Name", "Platform", ...(instanceId ? ["Instance", "Machine gets"] : [])];
  return h(
    "div",
    {},
    scopes.platformHidden
      ? h("p.alert.alert-warn", {}, "Platform variables: visible to admin tokens only.")
      : null,
    table(
      withActions ? "env-table" : "effective-env",
      heads,
      h("tbody", {}, rows.length ? rows : emptyRow(heads.length, "No variables set.")),
    ),
  );
}
