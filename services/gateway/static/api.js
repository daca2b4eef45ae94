// The gateway's two endpoints as the console uses them: JSON-RPC 2.0 at POST /rpc (Bearer token)
// and machine events as server-sent events at GET /events (the token in ?token=, because
// EventSource cannot set headers). The token lives in sessionStorage: gone when the tab closes.

const TOKEN_KEY = "fleetd.token";
const ROLE_KEY = "fleetd.role";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY) || ""; },
  /** "admin" (every instance and the platform scope) or "instance" (one instance). */
  get role() { return sessionStorage.getItem(ROLE_KEY) || "instance"; },
  start(token, role) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(ROLE_KEY, role);
  },
  end() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ROLE_KEY);
  },
};

/** A JSON-RPC error: ``code`` and ``message`` as the gateway sent them (0: no answer at all). */
export class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.code = code;
    this.data = data;
  }
  toString() { return `${this.code}: ${this.message}`; }
}

let unauthorized = () => {};
/** Called when the gateway answers 401: the token is missing, wrong or revoked. */
export function onUnauthorized(fn) { unauthorized = fn; }

let nextId = 1;

export async function rpc(method, params = {}, token = session.token) {
  let resp;
  try {
    resp = await fetch("/rpc", {
      method: "POST",
      headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
    });
  } catch (exc) {
    throw new RpcError(0, `cannot reach the gateway (${exc.message})`);
  }
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON: reported below */ }
  if (resp.status === 401) {
    const err = body?.error ?? { code: 1001, message: "missing or invalid bearer token" };
    if (token === session.token) unauthorized();
    throw new RpcError(err.code, err.message, err.data);
  }
  if (body === null) throw new RpcError(resp.status, `HTTP ${resp.status} ${resp.statusText}`);
  if (body.error) throw new RpcError(body.error.code, body.error.message, body.error.data);
  return body.result;
}

/**
 * Follow machine events: all of them (from now on), or one machine's from its first event.
 * EventSource reconnects by itself with Last-Event-ID; when the server refuses the stream
 * (EventSource gives up), the token is checked (401 signs out) and the stream reopened after
 * the last event seen. Returns a function that stops it.
 */
export function followEvents({ machineId = null, onEvent, onState = () => {} }) {
  let source = null;
  let lastId = null;
  let stopped = false;
  let retry = null;

  const open = () => {
    const query = new URLSearchParams({ token: session.token });
    if (machineId) query.set("machineId", machineId);
    if (lastId) query.set("since", lastId);
    source = new EventSource(`/events?${query}`);
    source.onopen = () => onState("live");
    source.onmessage = (msg) => {
      lastId = msg.lastEventId || lastId;
      let event;
      try { event = JSON.parse(msg.data); } catch { return; }
      onEvent(event, msg.lastEventId);
    };
    source.onerror = async () => {
      if (stopped) return;
      if (source.readyState !== EventSource.CLOSED) { onState("reconnecting"); return; }
      onState("offline");
      try { await rpc("instances.list"); } catch { /* a 401 already signed out */ }
      if (!stopped && session.token) retry = setTimeout(open, 3000);
    };
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(retry);
    source?.close();
  };
}
