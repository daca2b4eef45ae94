"""The setup pusher: a daemon reported ready -> push the .env and clone the repos through it.

Idempotent: a redelivered report rewrites the same .env and skips repos already cloned (recorded
in Redis, and recognised on the machine if a crash came between the clone and the record).
"""

from __future__ import annotations

import math
from typing import NoReturn

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.retry import Backoff, retry
from contracts.bus.consumers import Durable
from contracts.bus.events import DaemonStatusReported, RepoConflict, SetupPushed, now
from contracts.daemon import rpc as d
from contracts.daemon.files import STAT
from contracts.errors import DaemonTimeout, DaemonUnavailable, NotFound
from contracts.ids import derived_event_id
from contracts.models import Machine, Repo
from contracts.status import NOT_PROVISIONED, SET_UP, MachineStatus as S
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, MachineClient, MachineKeys
from controlplane.events.coalesce import Coalescer
from controlplane.events.consumer import Permanent, Retry
from controlplane.events.subscriptions import subscriber
from controlplane.machines.machine_config import (
    InstanceConfig,
    instance_config,
    push_config,
    with_secrets,
)
from controlplane.process.stage import Stage
from controlplane.settings import Settings
from controlplane.store import F_DAEMON_GIT_SHA, F_DAEMON_VERSION, F_EXTERNAL_ID, Store
from environments.hook import machine_config, run_lifecycle
from environments.lifecycle_commands import ON_CREATE, ON_START, LifecycleFailed
from services.setup_pusher.checkouts import ASKPASS_PATH, ASKPASS_SCRIPT, Checkouts
from services.setup_pusher.live_env import LiveEnv
from services.setup_pusher.sshd import start_sshd

__all__ = ["ASKPASS_PATH", "ASKPASS_SCRIPT", "SetupPusher", "setup_pusher"]

log = structlog.get_logger(__name__)


#: How long a daemon that reported ready may not be there before it counts as gone.
GONE_AFTER_S = 3.0
#: How long a report whose daemon was not there waits before it is tried again.
GONE_RETRY_S = 5.0
_GONE_BACKOFF = Backoff(base=0.1, cap=1.0)
#: The status reason of a machine whose daemon went away during its setup.
DAEMON_GONE = "its daemon went away during setup: waiting for it to report ready again"


#: How long a ready report that came before its machine's provisioning was recorded waits:
#: tens of milliseconds while its provisioner may still be finishing (``_BOOKKEEPING_WINDOW_S``
#: of the report's age), the consumer's usual deferral after (a provisioner that is down).
_BOOKKEEPING_S = 0.05
_BOOKKEEPING_WINDOW_S = 5.0
_EARLY_REPORT_S = 0.5


def _early_report_delay_s(event: DaemonStatusReported) -> float:
    young = (now() - event.occurred_at).total_seconds() < _BOOKKEEPING_WINDOW_S
    return _BOOKKEEPING_S if young else _EARLY_REPORT_S


def setup_pusher(*, store: Store, bus: Bus, daemons: DaemonClient, settings: Settings,
                 keys: MachineKeys | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> SetupPusher:  # fmt: skip
    """Every part of the setup pusher, made once: the live env and the checkouts share one
    debounce of configuration events (a burst of sets is one push per machine)."""
    coalescer = Coalescer(settings.config_debounce_s, settings.config_debounce_max_s)
    return SetupPusher(
        live_env=LiveEnv(coalescer, store=store, bus=bus, daemons=daemons, settings=settings,
                         keys=keys, clock=clock),
        checkouts=Checkouts(coalescer, store=store, bus=bus, daemons=daemons,
                            settings=settings, keys=keys, clock=clock),
        store=store, bus=bus, daemons=daemons, settings=settings, keys=keys, clock=clock,
    )  # fmt: skip


class SetupPusher(Stage):
    """``machine.daemon-status-reported`` (ready): the machine's .env, sshd, repos and
    lifecycle commands pushed, then ``machine.setup-pushed``. Its two other handler groups
    (``handlers``): the live env, and the checkouts it clones with."""

    stage = "setup"
    daemon_methods = (d.WRITE_FILE, d.EXEC_COMMAND, d.GIT_CLONE, d.HEALTH, STAT)

    def __init__(self, *, live_env: LiveEnv, checkouts: Checkouts, store: Store, bus: Bus,
                 daemons: DaemonClient, settings: Settings, keys: MachineKeys | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        super().__init__(store=store, bus=bus, daemons=daemons, settings=settings, keys=keys,
                         clock=clock)  # fmt: skip
        self.live_env = live_env
        self.checkouts = checkouts

    @property
    def handlers(self) -> tuple[object, ...]:
        """Its handler groups, whose consumers ``enter_subscriptions`` starts."""
        return (self, self.live_env, self.checkouts)

    @subscriber(DaemonStatusReported, durable=Durable.SETUP_PUSHER)
    async def on_status(self, event: DaemonStatusReported) -> None:
        if event.status != "ready":
            return
        # One round trip: record the build the daemon reported, and move to setting-up if the
        # machine is booting (or setting up: a redelivery) with its external id recorded.
        build = {F_DAEMON_VERSION: event.version, F_DAEMON_GIT_SHA: event.git_sha or ""}
        step = await self.store.stages.advance(
            event.machine_id, S.SETTING_UP, "pushing .env and repos", require=F_EXTERNAL_ID,
            always=build,
        )  # fmt: skip
        machine, previous = step.machine, step.transition.previous
        if machine is None:
            raise NotFound(f"machine {event.machine_id} not found")
        if previous in NOT_PROVISIONED:
            # The daemon was quicker than the provisioner's bookkeeping (a fork's wakes the
            # moment it is restored, while its provisioner still finishes): try again as soon
            # as that is done, for as long as the machine is on its way (the platform's stop
            # in between is not the machine's time: a failed or archived machine ends the wait).
            raise Retry(f"machine is still {machine.status.value}",
                        delay_s=_early_report_delay_s(event), budget_s=math.inf)  # fmt: skip
        if not step.transition.accepted:
            log.info("setup.skipped", status=machine.status.value, external_id=machine.external_id)
            if previous in SET_UP:  # a set-up machine's daemon started anew (`fleet up`)
                await self._env_again(machine, event)
            return
        if self.keys is not None:
            self.keys.prime(machine.id, step.sealed_token)
        try:
            # A moment's absence is a NATS cluster still spreading the daemon's subscription.
            pushed = await retry(lambda: self.push(machine, cause_event_id=event.event_id),
                                 on=DaemonUnavailable, backoff=_GONE_BACKOFF,
                                 budget_s=GONE_AFTER_S, clip=True, clock=self.clock)  # fmt: skip
        except LifecycleFailed as exc:  # the machine fails at the stage named for the command
            await self.fail(event, exc.reason, exc.stage)
            return
        except DaemonUnavailable as exc:
            await self._daemon_gone(machine, exc)
        await self.bus.publish(pushed)

    async def _env_again(self, machine: Machine, event: DaemonStatusReported) -> None:
        """Its .env written again for its new daemon (its home's path may have changed); a
        daemon gone again meanwhile gets it from its successor's report."""
        try:
            await self.live_env.push_env_again(machine, cause=event.event_id)
        except (DaemonUnavailable, DaemonTimeout) as exc:
            log.warning("setup.env_again_failed", machine_id=machine.id, error=exc.message)

    async def _daemon_gone(self, machine: Machine, exc: DaemonUnavailable) -> NoReturn:
        """The daemon that reported ready is not there (the platform stopped during the setup
        and the daemon was started anew, or it crashed and its supervisor starts it again: the
        new one reports in its turn; or NATS restarted, and it reconnects): back to booting,
        where the boot watchdog judges it (services/prober/boot_watch.py), and the report is
        tried again later, for a daemon that comes back without reporting again. It ends when
        the machine is set up by another report, or fails."""
        t = await self.store.transition(machine.id, S.BOOTING, DAEMON_GONE)
        log.warning("setup.daemon_gone", machine_id=machine.id, moved=t.moved, error=exc.message)
        raise Retry("its daemon is not there: tried again later", delay_s=GONE_RETRY_S,
                    budget_s=math.inf)  # fmt: skip

    async def push(self, machine: Machine, *, cause_event_id: str) -> SetupPushed:
        mc = self.daemons.machine(machine.id)
        inputs = await self.store.stages.setup_inputs(machine.instance_id, machine.id)
        cfg = instance_config(self.settings, inputs.platform_env, inputs.instance_env, inputs.cron,
                              inputs.ssh_keys)  # fmt: skip
        cfg = await with_secrets(self.store, self.settings, cfg, machine.instance_id)
        cfg = await machine_config(self.store, cfg, machine)
        env_path, env_bytes = await self.push_env(mc, cfg)
        # Debug: machine.setup-pushed says the same, and a line per machine costs at scale.
        log.debug("setup.env_written", path=env_path, bytes=env_bytes)
        await start_sshd(mc, machine)
        missing = [r for r in inputs.repos if r.path not in inputs.cloned]
        not_cloned = await self.clone_missing(machine, mc, missing)
        # A setup follows every start: postStartCommand each time, the rest once per machine.
        await run_lifecycle(self.store, self.bus, machine, mc, cfg, ON_CREATE + ON_START,
                            cause_event_id=cause_event_id)  # fmt: skip
        return SetupPushed(
            event_id=derived_event_id(cause_event_id, "setup-pushed"),
            machine_id=machine.id,
            env_path=env_path,
            env_bytes=env_bytes,
            repo_paths=[r.path for r in inputs.repos if r.path not in not_cloned],
            not_cloned=[RepoConflict(path=p, reason=why) for p, why in not_cloned.items()],
        )

    async def clone_missing(
        self, machine: Machine, mc: MachineClient, repos: list[Repo]
    ) -> dict[str, str]:
        """Each repo cloned. One whose clone fails fails no setup: the machine goes on without
        it, as a running machine does when a repo added to it cannot reach it (``reconcile``),
        and the failure is the repo's warning on the machine until a later setup or change
        puts it in place. A machine whose repo could not be cloned still serves its user, who
        can see why, fix it (the URL, a token, the network policy) and have it cloned without
        losing the machine. The repos not cloned (by path), and why."""
        if not repos:  # most setups: every repo cloned already, or none; no read of warnings
            return {}
        known = await self.store.repo_warnings.of(machine.id)
        outcome: dict[str, str | None] = {}
        try:
            for repo in repos:
                try:
                    env = await self.checkouts.git_env(mc, machine, repo)
                    await self.checkouts.clone(mc, repo, env, instance_id=machine.instance_id)
                except Permanent as exc:
                    outcome[repo.path] = str(exc)
                    log.warning("setup.repo_not_cloned", machine_id=machine.id,
                                path=repo.path, reason=str(exc))  # fmt: skip
                    continue
                await self.store.mark_cloned(machine.id, repo.path)
                outcome[repo.path] = None
        finally:
            await self.store.repo_warnings.note(
                machine.id, {p: why for p, why in outcome.items() if why or p in known}
            )
        return {p: why for p, why in outcome.items() if why}

    async def push_env(self, mc: MachineClient, cfg: InstanceConfig) -> tuple[str, int]:
        """Write the CA bundle (if configured), the .env, the cron table and the SSH keys;
        returns the .env's path and size."""
        try:
            return await push_config(mc, cfg, self.settings)
        except ValueError as exc:  # a value stored before the .env rules: no retry can help
            raise Permanent(f"cannot write the .env: {exc}") from None
