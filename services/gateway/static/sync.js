// Keeps the state's machines and instances current: loads them, re-reads a machine after each
// event about it, follows the event streams, and ends a session (sign-out).
import { endCookieSession, followEvents, RpcError, rpc, session } from "./api.js";
import { ERRORS, METHODS, STATUS } from "./contract.js";
import { emit, forgetRecords, state } from "./state.js";
import { renderLive } from "./ui.js";

/** Dispatched on window to make the router show the page for the current hash again. */
export const ROUTE_EVENT = "fleetd:route";
/** An instance token looks for machines made elsewhere this often. */
const MACHINE_POLL_MS = 15000;
/** machines.get errors that only mean the machine is gone from the caller's view. */
const GONE = new Set([ERRORS.FORBIDDEN, ERRORS.NOT_FOUND]);

export async function loadInstances() {
  const { instances } = await rpc(METHODS.INSTANCES_LIST);
  state.instances = new Map(instances.map((i) => [i.id, i]));
  emit("instances");
}

export async function loadMachines() {
  const { machines } = await rpc(METHODS.MACHINES_LIST);
  state.machines = new Map(machines.map((m) => [m.id, m]));
  emit("machines");
}

/** Re-read one machine after an event about it; calls for the same machine are coalesced. */
export async function refreshMachine(id) {
  const slot = state.refreshing.get(id);
  if (slot) {
    slot.again = true;
    return;
  }
  const mine = { again: true };
  state.refreshing.set(id, mine);
  try {
    while (mine.again) {
      mine.again = false;
      const machine = await rpc(METHODS.MACHINES_GET, { machineId: id });
      const known = state.machines.has(id);
      state.machines.set(id, machine);
      if (!known || !state.instances.has(machine.instanceId)) await loadInstances();
      emit("machines");
    }
  } catch (err) {
    if (!(err instanceof RpcError && GONE.has(err.code)))
      console.warn(METHODS.MACHINES_GET, id, err);
  } finally {
    state.refreshing.delete(id);
  }
}

/** Keep a machine just created or rebuilt, without waiting for its first event. */
export function remember(machine) {
  state.machines.set(machine.id, machine);
  loadInstances().catch(() => {});
  emit("machines");
  syncFeeds();
}

/** Record a machine as the gateway returned it (after an action on it). */
export function updateMachine(machine) {
  state.machines.set(machine.id, machine);
  emit("machines");
}

export function addInstance(instance) {
  state.instances.set(instance.id, instance);
  emit("instances");
}

function setLive(value) {
  state.live = value;
  const el = document.querySelector("[data-testid=live-status]");
  if (el) renderLive(el, state.live);
}

function onFeedEvent(event) {
  if (event?.machineId) refreshMachine(event.machineId);
}

// An admin follows every machine's events on one stream. An instance token may only follow its
// own machines one by one (?machineId=), and looks for machines made elsewhere every 15 s.
export function syncFeeds() {
  if (!session.signedIn) return;
  const { feeds } = state;
  if (session.isAdmin) {
    if (!feeds.has("*")) feeds.set("*", followEvents({ onEvent: onFeedEvent, onState: setLive }));
    return;
  }
  for (const m of state.machines.values()) {
    const archived = m.status === STATUS.ARCHIVED;
    if (!archived && !feeds.has(m.id)) {
      feeds.set(m.id, followEvents({ machineId: m.id, onEvent: onFeedEvent, onState: setLive }));
    } else if (archived && feeds.has(m.id)) {
      feeds.get(m.id)();
      feeds.delete(m.id);
    }
  }
  if (!state.feedPoll) {
    state.feedPoll = setInterval(
      () =>
        loadMachines()
          .then(syncFeeds)
          .catch(() => {}),
      MACHINE_POLL_MS,
    );
  }
  if (!feeds.size) setLive("live");
}

export function stopFeeds() {
  for (const stop of state.feeds.values()) stop();
  state.feeds.clear();
  clearInterval(state.feedPoll);
  state.feedPoll = null;
}

/** Ends the session and shows the sign-in page, saying `notice` there when given. The
 * gateway has ended a cookie session before the page says signed out. */
export async function signOut(notice = null) {
  stopFeeds();
  await endCookieSession();
  session.end();
  forgetRecords();
  state.signInNotice = notice;
  if (location.hash !== "#/signin") location.hash = "#/signin";
  else window.dispatchEvent(new Event(ROUTE_EVENT));
}
