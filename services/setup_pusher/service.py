"""The setup pusher: a daemon reported ready -> push the .env and clone the repos through it.

Idempotent: a redelivered report rewrites the same .env and skips repos already cloned (recorded
in Redis, and recognised on the machine if a crash came between the clone and the record).
"""

from __future__ import annotations

import structlog

from contracts import daemon_rpc as d
from contracts.consumers import Durable
from contracts.events import DaemonStatusReported, SetupPushed
from contracts.ids import derived_event_id
from contracts.models import Machine
from contracts.status import MachineStatus as S
from services.common.consumer import Permanent, Retry
from services.common.daemon_client import MachineClient
from services.common.machine_config import load_instance_config, push_config
from services.common.settings import Settings
from services.common.subscriptions import subscriber
from services.setup_pusher.checkouts import ASKPASS_PATH, ASKPASS_SCRIPT, Checkouts

__all__ = ["ASKPASS_PATH", "ASKPASS_SCRIPT", "SetupPusher"]

log = structlog.get_logger(__name__)


def _boot_budget(settings: Settings) -> float:
    """A ready report may wait on a provisioner that is restarting: as long as a machine may
    take to boot at all."""
    return settings.boot_timeout_s


class SetupPusher(Checkouts):
    stage = "setup"
    daemon_methods = (d.WRITE_FILE, d.EXEC_COMMAND)

    @subscriber(DaemonStatusReported, durable=Durable.SETUP_PUSHER, retry_budget=_boot_budget)
    async def on_status(self, event: DaemonStatusReported) -> None:
        if event.status != "ready":
            return
        machine = await self.store.get_machine(event.machine_id)
        if (machine.daemon_version, machine.daemon_git_sha or None) != (
            event.version,
            event.git_sha,
        ):
            await self.store.set_daemon_build(machine.id, event.version, event.git_sha)
        if machine.status in (S.CREATED, S.PROVISIONING):
            # The daemon was quicker than the provisioner's bookkeeping: try again shortly.
            raise Retry(f"machine is still {machine.status.value}")
        if not machine.external_id or machine.status not in (S.BOOTING, S.SETTING_UP):
            log.info("setup.skipped", status=machine.status.value, external_id=machine.external_id)
            return
        await self.store.transition(machine.id, S.SETTING_UP, "pushing .env and repos")
        pushed = await self.push(machine, cause_event_id=event.event_id)
        await self.bus.publish(pushed)

    async def push(self, machine: Machine, *, cause_event_id: str) -> SetupPushed:
        mc = self.daemons.machine(machine.id)
        env_path, env_bytes = await self.push_env(mc, machine.instance_id)
        log.info("setup.env_written", path=env_path, bytes=env_bytes)
        repos = await self.store.list_repos(machine.instance_id)
        done = await self.store.cloned_paths(machine.id)
        for repo in repos:
            if repo.path not in done:
                await self.clone(mc, repo, await self._git_env(mc, machine.instance_id, repo))
                await self.store.mark_cloned(machine.id, repo.path)
        return SetupPushed(
            event_id=derived_event_id(cause_event_id, "setup-pushed"),
            machine_id=machine.id,
            env_path=env_path,
            env_bytes=env_bytes,
            repo_paths=[r.path for r in repos],
        )

    async def push_env(self, mc: MachineClient, instance_id: str) -> tuple[str, int]:
        """Write the CA bundle (if configured), the .env and the cron table; returns the .env's
        path and size."""
        cfg = await load_instance_config(self.store, self.settings, instance_id)
        try:
            return await push_config(mc, cfg, self.settings)
        except ValueError as exc:  # a value stored before the .env rules: no retry can help
            raise Permanent(f"cannot write the .env: {exc}") from None
