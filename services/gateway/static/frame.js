// The frame around every page once signed in: the header (token kind, event stream, sign-out),
// the sidebar and the page's title.
import { ROLE, session } from "./api.js";
import { state } from "./state.js";
import { signOut } from "./sync.js";
import { chip, h, renderLive } from "./ui.js";

const NAV = [
  ["#/machines", "Machines", "nav-machines"],
  ["#/instances", "Instances", "nav-instances"],
  ["#/env", "Env vars", "nav-env"],
  ["#/network", "Network", "nav-network"],
  ["#/tokens", "Access tokens", "nav-tokens"],
  ["#/codemode", "Codemode", "nav-codemode"],
  ["#/hosts", "Hosts", "nav-hosts", { admin: true }],
  // Who may read the audit log: admins and auditors (the gateway checks it: audit_log.may_read).
  ["#/audit", "Audit log", "nav-audit", { audit: true }],
];

export function frame(active, title, ...content) {
  const live = h("span", { testid: "live-status", role: "status", title: "Machine event stream" });
  renderLive(live, state.live);
  const nav = h(
    "nav.sidebar",
    { "aria-label": "Console" },
    h(
      "ul",
      {},
      NAV.filter(([, , , only]) => shown(only)).map(([href, label, testid]) =>
        h(
          "li",
          {},
          h("a", { href, testid, "aria-current": href === active ? "page" : null }, label),
        ),
      ),
    ),
  );
  return h(
    "div.shell",
    {},
    h(
      "header.topbar",
      {},
      h(
        "a.brand",
        { href: "#/machines" },
        h("span.brand-mark", { "aria-hidden": "true" }),
        "fleetd",
      ),
      h(
        "div.topbar-right",
        {},
        live,
        chip(roleLabel(), "neutral", "role"),
        h(
          "button.btn.btn-ghost",
          { type: "button", testid: "signout", onclick: () => signOut() },
          "Sign out",
        ),
      ),
    ),
    nav,
    h("main.page", { id: "main" }, h("h1", {}, title), ...content),
  );
}

/** One row across `columns` columns saying that a table is empty. */
export function emptyRow(columns, text) {
  return h("tr", {}, h("td.empty", { colspan: columns }, text));
}

/** A table with a header row of `heads` and the body `tbody`. */
export function table(testid, heads, tbody) {
  return h(
    "div.table-wrap",
    {},
    h(
      "table.table",
      { testid },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          heads.map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      tbody,
    ),
  );
}

/** Whether the signed-in caller gets a page the sidebar marks `only`. */
function shown(only) {
  if (only?.admin) return session.isAdmin;
  return !only?.audit || session.mayReadAudit;
}

/** Who is signed in: a user (by the identity provider) or a kind of token. */
function roleLabel() {
  const auditor = session.role === ROLE.AUDITOR;
  if (session.csrf) return session.isAdmin ? "admin" : auditor ? "auditor" : "member";
  if (auditor) return "auditor's token";
  return session.isAdmin ? "admin token" : "instance token";
}
