// What the Machines page and the Machine detail page share: a machine's action buttons and its
// daemon cell.
import { newIdempotencyKey, rpc } from "./api.js";
import {
  CODE_STATUS,
  METHODS,
  RUNTIME,
  STARTABLE_STATUSES,
  STATUS,
  STOPPABLE_STATUSES,
} from "./contract.js";
import { state } from "./state.js";
import { refreshMachine, remember, updateMachine } from "./sync.js";
import { busy, confirmOrCancel, fmtBytes, h } from "./ui.js";

/** A git SHA is shown this short (the full one in its tooltip). */
const SHORT_SHA = 8;

export const shortSha = (sha) => sha.slice(0, SHORT_SHA);

const STOPPABLE = new Set(STOPPABLE_STATUSES);
const STARTABLE = new Set(STARTABLE_STATUSES);

/** Stop or Start, as the machine's status allows; its status then follows live. */
function stopStartAction(m, act) {
  // A failed machine its provider made is started again in its own home (what is left of it
  // ended first); one it never made has no home: Rebuild is its way back.
  const startable = m.status === STATUS.FAILED && Boolean(m.externalId);
  if (STARTABLE.has(m.status) && (m.status !== STATUS.FAILED || startable)) {
    return act(
      "Start",
      "action-start",
      async () => {
        updateMachine(await rpc(METHODS.MACHINES_START, { machineId: m.id }));
        return `Machine ${m.id} is starting: the same machine, its home and processes.`;
      },
      startable
        ? { title: "Start the failed machine again in its own home, without a rebuild" }
        : {},
    );
  }
  return act(
    "Stop",
    "action-stop",
    async () => {
      updateMachine(await rpc(METHODS.MACHINES_STOP, { machineId: m.id }));
      return `Machine ${m.id} is being stopped: its processes end, its home stays. Start brings it back.`;
    },
    {
      enabled: STOPPABLE.has(m.status),
      title: "Stop the machine: no process or memory until Start; its home is kept",
    },
  );
}

/** Pause or Resume a gvisor machine (docs/stop-start.md): its memory and processes are kept. */
function pauseResumeAction(m, act) {
  if (m.status === STATUS.PAUSED || m.status === STATUS.RESUMING) {
    return act(
      "Resume",
      "action-resume",
      async () => {
        updateMachine(await rpc(METHODS.MACHINES_RESUME, { machineId: m.id }));
        return `Machine ${m.id} is resuming: its processes go on where they were.`;
      },
      {
        enabled: m.status === STATUS.PAUSED,
        title: "Restore the machine's memory and processes where they were",
      },
    );
  }
  const gvisor = m.runtime === RUNTIME.GVISOR;
  return act(
    "Pause",
    "action-pause",
    async () => {
      updateMachine(await rpc(METHODS.MACHINES_PAUSE, { machineId: m.id }));
      return `Machine ${m.id} is pausing: its memory and processes go to disk. Resume brings them back.`;
    },
    {
      enabled: gvisor && m.status === STATUS.READY,
      title: gvisor
        ? "Pause the machine with its memory and processes (Resume goes on where it was)"
        : "Only gvisor machines keep their memory through a pause: Stop this one instead",
    },
  );
}

/** "paused · 312 MiB" beside a paused machine's status: the size of its memory image. */
export function pausedSize(m) {
  if (m.status !== STATUS.PAUSED || m.pausedBytes == null) return null;
  return h(
    "span.muted",
    { testid: "paused-size", title: "The size of its memory image on disk" },
    ` ${fmtBytes(m.pausedBytes)}`,
  );
}

/** What each `by` of a wake (contracts.bus.events.WakeBy) was, in words. */
const WOKEN_BY = {
  request: "a request (Start or Resume)",
  exec: "a command",
  files: "a file call",
  terminal: "a terminal",
  tunnel: "a port's tunnel",
  preview: "a preview",
  process: "a process call",
  codemode: "a codemode run",
};

/** What asked for the machine's last resume or start (`wokenBy`), in words. */
export function wokenBy(m) {
  const said =
    m.wokenBy == null ? "nothing since it was created" : (WOKEN_BY[m.wokenBy] ?? m.wokenBy);
  return h("span", { testid: "woken-by", dataset: { by: m.wokenBy ?? "" } }, said);
}

/** A machine's runtime as said: `namespaces`, or `gvisor (systrap)` with its platform. */
export function runtimeLabel(m) {
  return m.runtimePlatform ? `${m.runtime} (${m.runtimePlatform})` : m.runtime;
}

/** The machine whose row's menu of actions is open: a row made again (a live update) keeps it. */
let openMenu = null;

/** Stop or Start as a button, the other actions in a menu: a row of the Machines page. */
function actionMenu(m, buttons) {
  const [common, ...rest] = buttons;
  const menu = h(
    "details.menu",
    { testid: "action-menu", open: openMenu === m.id },
    h("summary.btn.btn-small", { "aria-label": `More actions for ${m.id}` }, "More"),
    h("div.menu-items", {}, rest),
  );
  menu.addEventListener("toggle", () => {
    if (menu.open) openMenu = m.id;
    else if (openMenu === m.id) openMenu = null;
  });
  // The action's outcome shows in the page's notices; the menu closes behind it.
  for (const btn of rest) btn.addEventListener("click", () => menu.removeAttribute("open"));
  return h("div.actions.row-actions", {}, common, menu);
}

/** Stop/Start, Pause/Resume, Fork, Rebuild, Refresh env, Refresh code, Restart daemon and
 *  Archive for machine `m`, as buttons or (`compact`) Stop/Start and a menu of the rest;
 *  outcomes go to `notices`. */
export function machineActions(m, notices, { compact = false } = {}) {
  // Archiving is archived already for every action: only its files are still going.
  const archived = m.status === STATUS.ARCHIVED || m.status === STATUS.ARCHIVING;
  const stopped = m.status === STATUS.STOPPED || m.status === STATUS.STOPPING;
  const current = state.instances.get(m.instanceId)?.currentMachineId === m.id;
  const act = (label, testid, run, { danger = false, enabled = !archived, title } = {}) => {
    const btn = h(
      `button.btn.btn-small${danger ? ".btn-danger-outline" : ""}`,
      { type: "button", testid, disabled: !enabled, title, "aria-label": `${label} ${m.id}` },
      label,
    );
    btn.addEventListener("click", () => busy(btn, () => notices.report(run)));
    return btn;
  };
  const buttons = [
    stopStartAction(m, act),
    pauseResumeAction(m, act),
    act(
      "Fork",
      "action-fork",
      async () => {
        const r = await rpc(METHODS.MACHINES_FORK, { machineId: m.id, count: 1 });
        for (const fork of r.machines) remember(fork);
        return `Forked ${m.id}: new machine ${r.machines.map((f) => f.id).join(", ")} with its home as of now; ${m.id} keeps running.`;
      },
      {
        enabled: STOPPABLE.has(m.status) || stopped,
        title:
          "A new machine of the instance with this machine's home as of now (it keeps running)",
      },
    ),
    act(
      "Rebuild",
      "action-rebuild",
      async () => {
        await confirmOrCancel(
          `Rebuild instance ${m.instanceId}? Machine ${m.id} is archived ` +
            "and a new machine is made from scratch.",
          "Rebuild",
        );
        const fresh = await rpc(METHODS.MACHINES_REBUILD, {
          instanceId: m.instanceId,
          idempotencyKey: newIdempotencyKey(),
        });
        remember(fresh);
        return `Rebuilding: ${m.id} archived, new machine ${fresh.id}.`;
      },
      {
        enabled: !archived && current,
        title: current ? null : "Only the instance's current machine can be rebuilt",
      },
    ),
    act("Refresh env", "action-refresh-env", async () => {
      const r = await rpc(METHODS.MACHINES_REFRESH_ENV, { instanceId: m.instanceId });
      const failed = r.failed.map((f) => `${f.machineId}: ${f.code} ${f.message}`).join("; ");
      return (
        `.env pushed to ${r.written} of ${r.machines} running machine(s)` +
        (failed ? `; failed: ${failed}` : ".")
      );
    }),
    act(
      "Refresh code",
      "action-refresh-code",
      async () => {
        const r = await rpc(METHODS.MACHINES_REFRESH_CODE, { machineId: m.id });
        refreshMachine(m.id);
        return `Refresh code: ${r.message}`;
      },
      { enabled: !archived && !stopped },
    ),
    // Not Refresh code: the same code, a new daemon process (a stuck daemon); processes stay.
    act(
      "Restart daemon",
      "action-restart",
      async () => {
        updateMachine(await rpc(METHODS.MACHINES_RESTART, { machineId: m.id }));
        return `Machine ${m.id}: its daemon restarts; its processes keep running.`;
      },
      {
        enabled: !archived && !stopped,
        title: "Restart the machine's daemon in place (same code; processes keep running)",
      },
    ),
    act(
      "Archive",
      "action-archive",
      async () => {
        await confirmOrCancel(`Archive machine ${m.id}? It is stopped for good.`, "Archive");
        updateMachine(await rpc(METHODS.MACHINES_ARCHIVE, { machineId: m.id }));
        return `Machine ${m.id} is being archived: its processes end, then its files are removed.`;
      },
      { danger: true },
    ),
  ];
  return compact ? actionMenu(m, buttons) : h("div.actions", {}, buttons);
}

/** The badge for each code status worth a word (current and unknown say nothing). */
const CODE_BADGES = {
  [CODE_STATUS.BEHIND]: {
    testid: "update-available",
    text: "update available",
    title: "The daemon runs older code than the platform: Refresh code updates it",
  },
  [CODE_STATUS.AHEAD]: {
    testid: "code-ahead",
    text: "ahead",
    title: "The daemon runs newer code than the platform (its commit descends from the platform's)",
  },
  [CODE_STATUS.DIVERGED]: {
    testid: "code-diverged",
    text: "diverged",
    title: "The daemon runs code from another branch than the platform's",
  },
};

/** A badge saying how the daemon's code relates to the platform's, or null. */
export function codeBadge(m) {
  // Behind on a failed or archived machine is no update to offer (updateAvailable is false).
  if (m.codeStatus === CODE_STATUS.BEHIND && !m.updateAvailable) return null;
  const badge = CODE_BADGES[m.codeStatus];
  return badge ? h("span.badge", { testid: badge.testid, title: badge.title }, badge.text) : null;
}

/** The daemon's version and git SHA, and its code badge. */
export function daemonCell(m) {
  return h(
    "span.daemon",
    {},
    m.daemonVersion ? h("span", {}, m.daemonVersion) : h("span.muted", {}, "—"),
    m.daemonGitSha
      ? h("code.mono.muted", { title: m.daemonGitSha }, ` ${shortSha(m.daemonGitSha)}`)
      : null,
    codeBadge(m),
  );
}
