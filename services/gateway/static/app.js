// fleetd web console: sign-in, then Machines, Machine detail, Instances, Env vars, Network,
// Access tokens and Codemode, all through the gateway's JSON-RPC API, with machine status kept live by /events.
// This module is the router: one page module per route (page-*.js).
import { onUnauthorized, resumeCookieSession, session } from "./api.js";
import { ID_PATTERNS } from "./contract.js";
import { auditPage } from "./page-audit.js";
import { codemodePage } from "./page-codemode.js";
import { envPage } from "./page-env.js";
import { hostsPage } from "./page-hosts.js";
import { instancesPage } from "./page-instances.js";
import { machineDetailPage } from "./page-machine-detail.js";
import { machinesPage } from "./page-machines.js";
import { networkPage } from "./page-network.js";
import { signInPage } from "./page-signin.js";
import { tokensPage } from "./page-tokens.js";
import { webhooksPage } from "./page-webhooks.js";
import { keepScroll, restoreScroll } from "./scroll-keep.js";
import { state, subscribe } from "./state.js";
import { loadInstances, loadMachines, ROUTE_EVENT, signOut, stopFeeds, syncFeeds } from "./sync.js";
import { errorBox, fill, h } from "./ui.js";

const root = document.getElementById("app");
const SIGN_IN = "#/signin";
const HOME = "#/machines";

/** An id pattern as a capture group inside a route's pattern. */
const id = (pattern) => `(${pattern.replace(/^\^/, "").replace(/\$$/, "")})`;

const ROUTES = [
  [new RegExp(`^#/machines/${id(ID_PATTERNS.MACHINE_ID)}$`), machineDetailPage],
  [/^#\/machines$/, machinesPage],
  [/^#\/instances$/, instancesPage],
  [new RegExp(`^#/env(?:/${id(ID_PATTERNS.INSTANCE_ID)})?$`), envPage],
  [new RegExp(`^#/network(?:/${id(ID_PATTERNS.INSTANCE_ID)})?$`), networkPage],
  [new RegExp(`^#/webhooks(?:/${id(ID_PATTERNS.INSTANCE_ID)})?$`), webhooksPage],
  [/^#\/tokens$/, tokensPage],
  [/^#\/codemode$/, codemodePage],
  [/^#\/hosts$/, hostsPage],
  [/^#\/audit$/, auditPage],
];

/** Leave the page on screen: its controller's signal tells it to stop (event streams). */
function leavePage() {
  state.page?.controller.abort();
  state.page = null;
}

/** Load machines and instances and open the event streams, once per sign-in. */
async function boot() {
  if (state.booted) return true;
  state.booted = true;
  try {
    await Promise.all([loadInstances(), loadMachines()]);
  } catch (err) {
    state.booted = false;
    if (session.signedIn) fill(root, h("main.signin", {}, errorBox(err)));
    // else a 401 signed out and routed already
    return false;
  }
  syncFeeds();
  return true;
}

async function route() {
  leavePage();
  if (!session.signedIn && location.hash !== SIGN_IN && (await resumeCookieSession())) {
    return route();
  }
  if (!session.signedIn) {
    if (location.hash !== SIGN_IN) {
      if (location.hash.length > 2) state.afterSignIn = location.hash;
      history.replaceState(null, "", SIGN_IN);
    }
    document.title = "Sign in · fleetd";
    signInPage({ root });
    return;
  }
  if (!(await boot())) return;
  const found = ROUTES.map(([re, page]) => [location.hash.match(re), page]).find(([m]) => m);
  if (!found) {
    history.replaceState(null, "", HOME);
    return route();
  }
  const [match, page] = found;
  const controller = new AbortController();
  const render = page({ root, signal: controller.signal }, ...match.slice(1));
  state.page = { render, controller };
  restoreScroll(root, controller.signal);
  document.title = `${document.querySelector("main.page h1")?.textContent ?? "Console"} · fleetd`;
}

onUnauthorized(() =>
  signOut("The gateway refused the token (401): it is wrong or was revoked. Sign in again."),
);
keepScroll();
subscribe(() => state.page?.render?.());
window.addEventListener(ROUTE_EVENT, route);
window.addEventListener("hashchange", () => {
  if (location.hash === SIGN_IN && session.signedIn) {
    stopFeeds();
    session.end();
  }
  if (!session.signedIn) state.booted = false;
  route();
});
route();
