// The console's one mutable state, in one object: what the gateway said (instances and
// machines), the event streams that keep it current, and where the router is. Pages read it
// and subscribe to changes; no other module keeps state in variables of its own.

export const state = {
  /** Machines and instances by id, as last read from the gateway. */
  machines: new Map(),
  instances: new Map(),
  /** Machines and instances are loaded for this sign-in (and the event streams open). */
  booted: false,
  /** The event stream: "connecting", "live", "reconnecting" or "offline". */
  live: "connecting",
  /** Open event streams, by machine id ("*": every machine's), each a function that stops it. */
  feeds: new Map(),
  /** An instance token's poll for machines made elsewhere (a setInterval id), or null. */
  feedPoll: null,
  /** machines.get calls in flight, by machine id: `again` when an event arrived meanwhile. */
  refreshing: new Map(),
  /** Where to go once signed in: the page that was asked for before. */
  afterSignIn: "#/machines",
  /** Said once on the sign-in page: why the console signed out. */
  signInNotice: null,
  /** The page on screen: {render, controller}; the controller aborts when it is left. */
  page: null,
  /** The next JSON-RPC request id. */
  nextRpcId: 1,
  /** What a 401 from the gateway does (the app signs out). */
  onUnauthorized: () => {},
  /** Called with what changed ("machines", "instances") after every change. */
  listeners: new Set(),
};

export function subscribe(fn) {
  state.listeners.add(fn);
  return () => state.listeners.delete(fn);
}

export function emit(what) {
  for (const fn of state.listeners) fn(what);
}

/** Forget the gateway's records (on sign-out): the next sign-in loads them again. */
export function forgetRecords() {
  state.machines.clear();
  state.instances.clear();
  state.booted = false;
}

export const newestFirst = (a, b) =>
  a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0;
export const machineList = () => [...state.machines.values()].sort(newestFirst);
export const instanceList = () => [...state.instances.values()].sort(newestFirst);
export const instanceName = (id) => state.instances.get(id)?.name ?? "";
