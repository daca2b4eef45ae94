"""The setup pusher: a daemon reported ready -> push the .env and clone the repos through it.

Idempotent: a redelivered report rewrites the same .env and skips repos already cloned (recorded
in Redis, and recognised on the machine if a crash came between the clone and the record).
"""

from __future__ import annotations

import msgspec
import structlog

from contracts import validation
from contracts.consumers import Durable
from contracts.daemon_rpc import ExecCommandParams
from contracts.events import DaemonStatusReported, SetupPushed
from contracts.ids import derived_event_id
from contracts.machine_files import ASKPASS_FILE
from contracts.models import GitCredentials, Machine, Repo
from contracts.status import MachineStatus as S
from services.common.consumer import Permanent, Retry
from services.common.crypto import SecretBox
from services.common.daemon_client import MachineClient
from services.common.machine_config import load_instance_config, push_config
from services.common.settings import Settings
from services.common.stage import Stage
from services.common.subscriptions import subscriber

log = structlog.get_logger(__name__)

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0"}  # never wait for a password nobody will type
ASKPASS_PATH = "~/" + ASKPASS_FILE
ASKPASS_SCRIPT = """#!/bin/sh
# Written by fleetd. Answers git's credential prompts from this git process's environment;
# no secret is ever written here.
case "$1" in
  Username*) printf '%s\\n' "$FLEET_GIT_USERNAME" ;;
  *) printf '%s\\n' "$FLEET_GIT_PASSWORD" ;;
esac
"""


def _boot_budget(settings: Settings) -> float:
    """A ready report may wait on a provisioner that is restarting: as long as a machine may
    take to boot at all."""
    return settings.boot_timeout_s


class SetupPusher(Stage):
    stage = "setup"

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

    async def _git_env(self, mc: MachineClient, instance_id: str, repo: Repo) -> dict[str, str]:
        """git's environment for this repo: with credentials, an askpass script (holding no
        secret) that answers git's prompts from variables set on this one git process."""
        if not repo.has_credentials:
            return dict(_GIT_ENV)
        sealed = await self.store.repo_secret(instance_id, repo.path)
        if sealed is None:
            return dict(_GIT_ENV)
        creds = msgspec.json.decode(SecretBox(self.settings.secret_key).decrypt(sealed),
                                    type=GitCredentials)  # fmt: skip
        askpass = await mc.write_file(ASKPASS_PATH, ASKPASS_SCRIPT, 0o700)
        return {**_GIT_ENV, "GIT_ASKPASS": askpass.path, "FLEET_GIT_USERNAME": creds.username,
                "FLEET_GIT_PASSWORD": creds.token}  # fmt: skip

    async def clone(self, mc: MachineClient, repo: Repo, env: dict[str, str]) -> None:
        try:  # again: the repo may have been added before today's rules
            validation.check_repo_url(repo.url)
            validation.check_branch(repo.branch)
            validation.check_checkout_path(repo.path)
        except ValueError as exc:
            reason = f"repo {repo.path} is refused: {exc}; remove it, then add it again"
            raise Permanent(reason) from None
        # A crash between a clone and its record in Redis must not clone again: look first.
        if await self._is_checkout_of(mc, repo):
            log.info("setup.repo_already_cloned", path=repo.path)
            return
        # `credential.helper=` empties the helper list: nothing may store the token on disk.
        argv = ["git", "-c", "credential.helper=", "clone", "--branch", repo.branch,
                "--single-branch", "--", repo.url, repo.path]  # fmt: skip
        result = await mc.exec(
            ExecCommandParams(command=argv, timeout_s=self.settings.clone_timeout_s, env=env)
        )
        if result.exit_code == 0:
            log.info("setup.repo_cloned", path=repo.path, branch=repo.branch)
            return
        if result.timed_out:
            raise Permanent(
                f"git clone {repo.url} timed out after {self.settings.clone_timeout_s:g}s"
            )
        raise Permanent(f"git clone {repo.url} failed: {result.stderr.strip()}")

    async def _is_checkout_of(self, mc: MachineClient, repo: Repo) -> bool:
        """True if ``repo.path`` is the root of a finished checkout of ``repo.url``: its own
        .git (not a parent's), a HEAD that resolves (a clone in flight has none yet), and the
        same origin."""
        head = await mc.run(
            "git", "-C", repo.path, "rev-parse", "--git-dir", "--verify", "-q", "HEAD"
        )
        if head.exit_code != 0 or head.stdout.split("\n", 1)[0] != ".git":
            return False
        origin = await mc.run("git", "-C", repo.path, "config", "--get", "remote.origin.url")
        return origin.exit_code == 0 and origin.stdout.strip() == repo.url
