"""The setup pusher: a daemon reported ready -> push the .env and clone the repos through it.

Idempotent: a redelivered report rewrites the same .env and skips repos already cloned (recorded
in Redis, and recognised on the machine if a crash came between the clone and the record).
"""

from __future__ import annotations

import structlog

from contracts import daemon_rpc as d
from contracts.consumers import Durable
from contracts.daemon_files import STAT
from contracts.errors import NotFound
from contracts.events import DaemonStatusReported, SetupPushed
from contracts.ids import derived_event_id
from contracts.models import Machine, Repo
from contracts.status import MachineStatus as S
from controlplane.consumer import Permanent, Retry
from controlplane.daemon_client import MachineClient
from controlplane.machine_config import (
    InstanceConfig,
    for_machine,
    instance_config,
    push_config,
    with_secrets,
)
from controlplane.settings import Settings
from controlplane.store_keys import F_DAEMON_GIT_SHA, F_DAEMON_VERSION, F_EXTERNAL_ID
from controlplane.subscriptions import subscriber
from environments.hook import run_lifecycle, with_project_env
from environments.lifecycle_commands import ON_CREATE, ON_START, LifecycleFailed, MachineLifecycle
from providers.gvisor_gateway import gvisor_proxy_url
from services.setup_pusher.checkouts import ASKPASS_PATH, ASKPASS_SCRIPT, Checkouts
from services.setup_pusher.sshd import start_sshd

__all__ = ["ASKPASS_PATH", "ASKPASS_SCRIPT", "SetupPusher"]

log = structlog.get_logger(__name__)


def _boot_budget(settings: Settings) -> float:
    """A ready report may wait on a provisioner that is restarting: as long as a machine may
    take to boot at all."""
    return settings.boot_timeout_s


#: How long a ready report that came before its machine's provisioning was recorded waits.
_BOOKKEEPING_S = 0.05


class SetupPusher(Checkouts):
    stage = "setup"
    daemon_methods = (d.WRITE_FILE, d.EXEC_COMMAND, d.GIT_CLONE, d.HEALTH, STAT)

    @subscriber(DaemonStatusReported, durable=Durable.SETUP_PUSHER, retry_budget=_boot_budget)
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
        if previous in (S.CREATED, S.PROVISIONING):
            # The daemon was quicker than the provisioner's bookkeeping (a fork's wakes the
            # moment it is restored, while its provisioner still finishes): try again as soon
            # as that is done, in tens of milliseconds.
            raise Retry(f"machine is still {machine.status.value}", delay_s=_BOOKKEEPING_S)
        if not step.transition.accepted:
            log.info("setup.skipped", status=machine.status.value, external_id=machine.external_id)
            return
        if self.keys is not None:
            self.keys.prime(machine.id, step.sealed_token)
        try:
            pushed = await self.push(machine, cause_event_id=event.event_id)
        except LifecycleFailed as exc:  # the machine fails at the stage named for the command
            await self.fail(event, exc.reason, exc.stage)
            return
        await self.bus.publish(pushed)

    async def push(self, machine: Machine, *, cause_event_id: str) -> SetupPushed:
        mc = self.daemons.machine(machine.id)
        inputs = await self.store.stages.setup_inputs(machine.instance_id, machine.id)
        cfg = instance_config(self.settings, inputs.platform_env, inputs.instance_env, inputs.cron,
                              inputs.ssh_keys)  # fmt: skip
        cfg = await with_secrets(self.store, self.settings, cfg, machine.instance_id)
        cfg = for_machine(cfg, machine, gvisor_proxy_url(self.settings))
        cfg = with_project_env(cfg, await self.store.lifecycles.load(machine.id, MachineLifecycle))
        env_path, env_bytes = await self.push_env(mc, cfg)
        # Debug: machine.setup-pushed says the same, and a line per machine costs at scale.
        log.debug("setup.env_written", path=env_path, bytes=env_bytes)
        await start_sshd(mc, machine)
        missing = [r for r in inputs.repos if r.path not in inputs.cloned]
        skipped = await self.clone_missing(machine, mc, missing)
        # A setup follows every start: postStartCommand each time, the rest once per machine.
        await run_lifecycle(self.store, self.bus, machine, mc, cfg, ON_CREATE + ON_START,
                            cause_event_id=cause_event_id)  # fmt: skip
        return SetupPushed(
            event_id=derived_event_id(cause_event_id, "setup-pushed"),
            machine_id=machine.id,
            env_path=env_path,
            env_bytes=env_bytes,
            repo_paths=[r.path for r in inputs.repos if r.path not in skipped],
        )

    async def clone_missing(
        self, machine: Machine, mc: MachineClient, repos: list[Repo]
    ) -> set[str]:
        """Each repo cloned; the first whose clone fails fails the setup, unless it had already
        failed to reach this machine (a warning on it): then the machine starts without it,
        the warning kept, rather than fail again for what its user was told of. Either way
        the failure is recorded as the repo's warning. The paths of the repos skipped."""
        if not repos:  # most setups: every repo cloned already, or none; no read of warnings
            return set()
        known = await self.store.repo_warnings.of(machine.id)
        outcome: dict[str, str | None] = {}
        try:
            for repo in repos:
                try:
                    await self.clone(mc, repo, await self._git_env(mc, machine, repo))
                except Permanent as exc:
                    outcome[repo.path] = str(exc)  # known from now on: the next start goes on
                    if repo.path not in known:
                        raise
                    log.warning("setup.repo_skipped", machine_id=machine.id, path=repo.path,
                                reason=str(exc))  # fmt: skip
                    continue
                await self.store.mark_cloned(machine.id, repo.path)
                outcome[repo.path] = None
        finally:
            await self.store.repo_warnings.note(
                machine.id, {p: why for p, why in outcome.items() if why or p in known}
            )
        return {p for p, why in outcome.items() if why}

    async def push_env(self, mc: MachineClient, cfg: InstanceConfig) -> tuple[str, int]:
        """Write the CA bundle (if configured), the .env, the cron table and the SSH keys;
        returns the .env's path and size."""
        try:
            return await push_config(mc, cfg, self.settings)
        except ValueError as exc:  # a value stored before the .env rules: no retry can help
            raise Permanent(f"cannot write the .env: {exc}") from None
