// Sign-in: paste an access token; it is checked against the gateway before it is kept.
import { ROLE, rpc, session, signInConfigured, whoIs } from "./api.js";
import { METHODS } from "./contract.js";
import { state } from "./state.js";
import { busy, errorBox, field, fill, h } from "./ui.js";

export function signInPage({ root }) {
  const input = h("input", {
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    testid: "signin-token",
    placeholder: "fleetd access token",
  });
  const status = h(
    "div",
    { "aria-live": "polite" },
    state.signInNotice ? h("div.alert.alert-warn", { role: "status" }, state.signInNotice) : null,
  );
  state.signInNotice = null;
  const submit = h(
    "button.btn.btn-primary",
    { type: "submit", testid: "signin-submit" },
    "Sign in",
  );
  const form = h(
    "form.signin-card",
    { testid: "signin-form", "aria-labelledby": "signin-title" },
    h("div.brand.brand-large", {}, h("span.brand-mark", { "aria-hidden": "true" }), "fleetd"),
    h("h1#signin-title", {}, "Sign in to the console"),
    h(
      "p.muted",
      {},
      "Paste an access token: the admin token that ",
      h("code", {}, "./run up"),
      " printed (also in ",
      h("code", {}, ".fleet-data/admin-token"),
      "), or one made under ",
      "Access tokens. It stays in this tab only (sessionStorage).",
    ),
    field("Access token", input),
    status,
    submit,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    await busy(submit, async () => {
      try {
        await rpc(METHODS.INSTANCES_LIST, {}, token);
        // Only an admin may read the platform scope: that tells an admin's token apart; an
        // auditor's is one whose user the gateway names as one.
        const role = await rpc(METHODS.ENV_LIST, {}, token).then(
          () => ROLE.ADMIN,
          async () => ((await whoIs(token))?.role === "auditor" ? ROLE.AUDITOR : ROLE.INSTANCE),
        );
        session.start(token, role);
        location.hash = state.afterSignIn;
      } catch (err) {
        fill(status, errorBox(err, "signin-error"));
      }
    });
  });
  fill(root, h("main.signin", {}, form));
  input.focus();
  signInConfigured().then((yes) => {
    if (!yes) return;
    // A plain link: the gateway's /auth/login redirects to the identity provider, and its
    // callback back to the console with a session cookie.
    const provider = h(
      "a.btn.btn-primary",
      { href: "/auth/login", testid: "signin-provider" },
      "Sign in with your identity provider",
    );
    form.insertBefore(h("p", {}, provider), form.children[3]);
  });
}
