// The gateway's two endpoints as the console uses them: JSON-RPC 2.0 at POST /rpc (Bearer token)
// and machine events as server-sent events at GET /events. EventSource cannot set headers, and a
// token in a URL leaks into logs and history, so each stream opens with a single-use ticket from
// events.ticket. The token lives in sessionStorage: gone when the tab closes. Signed in with the
// identity provider instead, the browser holds an HttpOnly session cookie and the console only its
// CSRF token, which every request sends (the gateway refuses a cookie's POST without it).
import { ERROR_HTTP_STATUS, ERRORS, METHODS } from "./contract.js";
import { state } from "./state.js";

const TOKEN_KEY = "fleetd.token";
const ROLE_KEY = "fleetd.role";
const CSRF_KEY = "fleetd.csrf";
/** A closed event stream is tried again after this long (the first time sooner). */
const REOPEN_FIRST_MS = 250;
const REOPEN_MS = 3000;

/** What the caller may do: everything; look at every instance and read the audit log (a
 * platform auditor); or what its instances allow. */
export const ROLE = Object.freeze({ ADMIN: "admin", AUDITOR: "auditor", INSTANCE: "instance" });

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  },
  /** The session cookie's CSRF token, when signed in with the identity provider. */
  get csrf() {
    return sessionStorage.getItem(CSRF_KEY) || "";
  },
  get signedIn() {
    return Boolean(this.token || this.csrf);
  },
  /** ROLE.ADMIN (every instance and the platform scope) or ROLE.INSTANCE (one instance). */
  get role() {
    return sessionStorage.getItem(ROLE_KEY) || ROLE.INSTANCE;
  },
  get isAdmin() {
    return this.role === ROLE.ADMIN;
  },
  /** Admins and auditors read the audit log (the gateway decides: audit_log.may_read). */
  get mayReadAudit() {
    return this.role === ROLE.ADMIN || this.role === ROLE.AUDITOR;
  },
  start(token, role) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(ROLE_KEY, role);
  },
  startCookie(csrf, role) {
    sessionStorage.setItem(CSRF_KEY, csrf);
    sessionStorage.setItem(ROLE_KEY, role);
  },
  end() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ROLE_KEY);
    sessionStorage.removeItem(CSRF_KEY);
  },
  /** The headers that say who calls: the bearer token, or the cookie's CSRF token. */
  headers(token = this.token) {
    return token ? { Authorization: `Bearer ${token}` } : { "X-CSRF-Token": this.csrf };
  },
};

/** A session cookie of the identity provider's sign-in, if this browser has one: the console
 * then keeps its CSRF token. False when there is none (or sign-in is not configured). */
export async function resumeCookieSession() {
  // Only the identity provider's sign-in makes a session cookie: without one configured there is
  // no session to ask /auth/me about (it would answer 401, an error the browser logs).
  if (!(await signInConfigured())) return false;
  // The gateway sets this marker (no secret) beside the session's HttpOnly cookie: without it
  // the browser holds no session, and /auth/me would answer 401.
  if (!document.cookie.split("; ").includes("fleet_signed_in=1")) return false;
  let resp;
  try {
    resp = await fetch("/auth/me");
  } catch {
    return false;
  }
  if (!resp.ok) return false;
  const me = await resp.json();
  if (!me.csrfToken) return false;
  session.startCookie(me.csrfToken, roleOf(me));
  return true;
}

/** The console's ROLE for GET /auth/me's answer. */
export function roleOf(me) {
  if (me?.role === "admin") return ROLE.ADMIN;
  return me?.role === "auditor" ? ROLE.AUDITOR : ROLE.INSTANCE;
}

/** GET /auth/me for a bearer token: `{id, email, role}`, or null when it is refused. */
export async function whoIs(token) {
  try {
    const resp = await fetch("/auth/me", { headers: { Authorization: `Bearer ${token}` } });
    return resp.ok ? await resp.json() : null;
  } catch {
    return null;
  }
}

/** Whether the gateway signs in with an identity provider (FLEET_OIDC_ISSUER): asked once per
 *  load of the page (the gateway's settings do not change under it); a failure is asked again. */
let oidcConfigured = null;
export function signInConfigured() {
  oidcConfigured ??= fetch("/auth/config")
    .then(async (resp) => resp.ok && (await resp.json()).oidc === true)
    .catch(() => {
      oidcConfigured = null;
      return false;
    });
  return oidcConfigured;
}

/** Ends a cookie session server-side (a token has nothing to end there). */
export async function endCookieSession() {
  if (!session.csrf) return;
  try {
    await fetch("/auth/logout", { method: "POST", headers: session.headers() });
  } catch {
    // the gateway is away: the cookie expires by itself
  }
}

/**
 * A machines.create or machines.rebuild idempotencyKey: one per click, so a call whose answer was
 * lost and that is sent again answers the same machine (a rebuild is not done twice). getRandomValues, not randomUUID: that one exists only in
 * secure contexts (a console served over plain http to another host has none).
 */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The code of an RpcError raised in the browser: the gateway gave no answer at all. */
export const NO_ANSWER = 0;

/** A JSON-RPC error: `code` and `message` as the gateway sent them (see contract.js ERRORS). */
export class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = "RpcError";
    this.code = code;
    this.data = data;
  }
  toString() {
    return `${this.code}: ${this.message}`;
  }
}

/** Called when the gateway answers 401: the token is missing, wrong or revoked. */
export function onUnauthorized(fn) {
  state.onUnauthorized = fn;
}

/** Calls `method` (a METHODS value) and resolves to its result; rejects with an RpcError. */
export async function rpc(method, params = {}, token = session.token) {
  let resp;
  try {
    resp = await fetch("/rpc", {
      method: "POST",
      headers: { ...session.headers(token), "Content-Type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: state.nextRpcId++, method, params }),
    });
  } catch (exc) {
    throw new RpcError(NO_ANSWER, `cannot reach the gateway (${exc.message})`);
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // not JSON: reported below
  }
  if (resp.status === ERROR_HTTP_STATUS.UNAUTHORIZED) {
    const err = body?.error ?? {
      code: ERRORS.UNAUTHORIZED,
      message: "missing or invalid bearer token",
    };
    if (token === session.token && session.signedIn) state.onUnauthorized();
    throw new RpcError(err.code, err.message, err.data);
  }
  if (body === null) throw new RpcError(resp.status, `HTTP ${resp.status} ${resp.statusText}`);
  if (body.error) throw new RpcError(body.error.code, body.error.message, body.error.data);
  return body.result;
}

/**
 * Follow machine events: all of them (from now on), or one machine's from its first event.
 * A ticket is good for one connection, so EventSource's own reconnect (same URL) cannot work:
 * on any error the stream is closed and reopened with a fresh ticket after the last event seen
 * (asking for the ticket checks the token: a 401 signs out). Stops when `signal` aborts, or
 * when the returned function is called.
 */
export function followEvents({ machineId = null, onEvent, onState = () => {}, signal = null }) {
  const stream = { source: null, lastId: null, stopped: false, retry: null, failures: 0 };

  const reopenLater = () => {
    if (stream.stopped || !session.signedIn) return;
    const delay = stream.failures++ === 0 ? REOPEN_FIRST_MS : REOPEN_MS;
    stream.retry = setTimeout(open, delay);
  };

  const open = async () => {
    let ticket;
    try {
      ticket = (await rpc(METHODS.EVENTS_TICKET)).ticket;
    } catch {
      onState("offline"); // a 401 already signed out
      reopenLater();
      return;
    }
    if (stream.stopped) return;
    const query = new URLSearchParams({ ticket });
    if (machineId) query.set("machineId", machineId);
    if (stream.lastId) query.set("since", stream.lastId);
    const source = new EventSource(`/events?${query}`);
    stream.source = source;
    source.onopen = () => {
      stream.failures = 0;
      onState("live");
    };
    source.onmessage = (msg) => {
      stream.lastId = msg.lastEventId || stream.lastId;
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return;
      }
      onEvent(event, msg.lastEventId);
    };
    source.onerror = () => {
      source.close();
      if (stream.stopped) return;
      onState("reconnecting");
      reopenLater();
    };
  };

  const stop = () => {
    stream.stopped = true;
    clearTimeout(stream.retry);
    stream.source?.close();
  };
  if (signal?.aborted) return stop;
  signal?.addEventListener("abort", stop, { once: true });
  open();
  return stop;
}
