"""git checkouts on a machine: the clone at setup, and the reconciling of a running machine's
checkouts when its instance's repos change (``config.repos-changed``).

Reconciling never deletes anything: an added repo is cloned; a changed branch is fetched and
checked out only over a clean work tree (a dirty one is reported and left untouched); a removed
repo's checkout stays where it is and is reported. ``machine.repos-reconciled`` says what was
done. Idempotent: a repeat finds the checkouts as the last run left them and does nothing.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec
import structlog

from contracts import validation
from contracts.bus.consumers import Durable
from contracts.bus.events import RepoConflict, ReposChanged, ReposReconciled
from contracts.daemon.machine_files import ASKPASS_FILE
from contracts.daemon.rpc import (
    EXIT_CLONE_UNFINISHED,
    EXIT_NOT_FOUND,
    MAX_EXEC_TIMEOUT_S,
    ExecCommandParams,
    ExecCommandResult,
    GitCloneParams,
)
from contracts.errors import InvalidParams
from contracts.ids import derived_event_id
from contracts.models import GitCredentials, Machine, Repo
from contracts.status import REFRESHABLE
from controlplane.calls.daemon_client import MachineClient
from controlplane.events.consumer import Permanent, Retry
from controlplane.events.subscriptions import subscriber
from controlplane.machines.failures import fail_machine
from controlplane.machines.machine_config import (
    fan_out,
    git_env,
    load_instance_config,
    proxied_repo,
)
from controlplane.policy import policy_refusal, remote_host
from controlplane.security.crypto import SecretBox
from environments.hook import machine_config, run_lifecycle
from environments.lifecycle_commands import ON_UPDATE, LifecycleFailed
from services.setup_pusher.live_env import ConfigStage, log_give_up

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

#: What a repo's path on a machine holds: a finished checkout of the repo, an unfinished one
#: (a clone still running, or one cut off), or neither.
CheckoutState = Literal["finished", "unfinished", "none"]
#: ``tool.gitClone``'s check_only exit codes, as states.
_RUNTIME_STATES: dict[int, CheckoutState] = {0: "finished", EXIT_CLONE_UNFINISHED: "unfinished"}
#: How soon a setup that found an unfinished clone looks again.
UNFINISHED_CLONE_RETRY_S = 5.0
#: How far a machine's clock may be from the platform's when a clone's age is read.
CLOCK_SKEW_S = 60.0
#: The age of a ready report past which no unfinished clone is waited for, whatever its files
#: say (a machine that keeps touching its .git/config would be waited for without end): the
#: daemon's longest command. A wait bounded by the clone's own age, not by the stage's budget.
UNFINISHED_CLONE_WAIT_CAP_S = MAX_EXEC_TIMEOUT_S


class Checkouts(ConfigStage):
    """``config.repos-changed``: every affected running machine's checkouts reconciled; and
    the clone a setup asks for."""

    @subscriber(ReposChanged, durable=Durable.SETUP_PUSHER_REPOS, give_up=log_give_up)
    async def on_repos_changed(self, event: ReposChanged) -> None:
        if event.instance_id is None:
            return  # repos belong to instances; nothing platform-wide to reconcile
        iid, cause = event.instance_id, event.event_id
        await self.coalescer.run(f"repos:{iid}", lambda: self.reconcile_instance(iid, cause))

    async def reconcile_instance(self, instance_id: str, cause: str) -> None:
        machines = [m for m in await self.store.list_machines(instance_id)
                    if m.status in REFRESHABLE]  # fmt: skip

        async def one(m: Machine) -> None:
            await self.bus.publish(await self.reconcile(m, cause))

        for f in await fan_out(machines, one):
            log.warning("setup.reconcile_failed", machine_id=f.machine_id, error=f.message)

    async def reconcile(self, machine: Machine, cause: str) -> ReposReconciled:
        mc = self.daemons.machine(machine.id)
        repos = await self.store.list_repos(machine.instance_id)
        done = await self.store.cloned_paths(machine.id)
        out = ReposReconciled(event_id=derived_event_id(cause, f"repos-reconciled/{machine.id}"),
                              machine_id=machine.id, cloned=[], switched=[], unchanged=[],
                              conflicts=[], left_in_place=[])  # fmt: skip
        for repo in repos:
            env = await self.git_env(mc, machine, repo)
            try:
                state = await checkout_state(mc, repo, self.settings.clone_timeout_s)
                if state != "finished":
                    await self.clone(mc, repo, env, state, instance_id=machine.instance_id)
                    await self.store.mark_cloned(machine.id, repo.path)
                    out.cloned.append(repo.path)
                elif await self._switch_branch(mc, repo, env):
                    out.switched.append(repo.path)
                else:
                    out.unchanged.append(repo.path)
            except (Permanent, Retry) as exc:  # reported; the other repos still reconciled
                out.conflicts.append(RepoConflict(path=repo.path, reason=str(exc)))
        wanted = {r.path for r in repos}
        out.left_in_place.extend(sorted(done - wanted))
        await self._warn(machine.id, wanted, out)
        if out.cloned or out.switched:
            await self._content_updated(machine, mc, cause)
        log.info("setup.repos_reconciled", machine_id=machine.id, cloned=out.cloned,
                 switched=out.switched, conflicts=len(out.conflicts),
                 left_in_place=out.left_in_place)  # fmt: skip
        return out

    async def _warn(self, machine_id: str, wanted: set[str], out: ReposReconciled) -> None:
        """The machine's repo warnings as this reconcile found them: each conflict's, and none
        for a repo now in place or no longer wanted."""
        known = await self.store.repo_warnings.of(machine_id)
        reasons: dict[str, str | None] = {p: None for p in known if p not in wanted}
        reasons |= {p: None for p in (*out.cloned, *out.switched, *out.unchanged) if p in known}
        reasons |= {c.path: c.reason for c in out.conflicts}
        await self.store.repo_warnings.note(machine_id, reasons)

    async def _content_updated(self, machine: Machine, mc: MachineClient, cause: str) -> None:
        """New content in the repos: a devcontainer's updateContentCommand runs again."""
        instance = await load_instance_config(self.store, self.settings, machine.instance_id)
        cfg = await machine_config(self.store, instance, machine)
        try:
            await run_lifecycle(self.store, self.bus, machine, mc, cfg, ON_UPDATE,
                                cause_event_id=f"{cause}/{machine.id}")  # fmt: skip
        except LifecycleFailed as exc:
            await fail_machine(self.store, self.bus, machine.id, stage=exc.stage,
                               reason=exc.reason,
                               cause_event_id=f"{cause}/{machine.id}")  # fmt: skip

    async def _switch_branch(self, mc: MachineClient, repo: Repo, env: dict[str, str]) -> bool:
        """Check ``repo.branch`` out if it is not; False if it already is. Permanent (a
        conflict to report) over a dirty work tree or when the fetch fails."""
        head = await mc.run("git", "-C", repo.path, "rev-parse", "--abbrev-ref", "HEAD")
        if head.exit_code == EXIT_NOT_FOUND and not head.stdout:  # the image has no git
            head = await runtime_check(mc, repo, self.settings.clone_timeout_s)
            if head.stdout.strip() != repo.branch:
                raise Permanent(f"the machine's image has no git: {repo.branch} not checked "
                                "out (a branch switch needs git)")  # fmt: skip
        if head.exit_code == 0 and head.stdout.strip() == repo.branch:
            return False
        dirty = await mc.run("git", "-C", repo.path, "status", "--porcelain")
        if dirty.exit_code != 0 or dirty.stdout.strip():
            raise Permanent(f"work tree has uncommitted changes; {repo.branch} not checked out")
        # The clone was --single-branch: the remote learns the new branch (once), then fetch it.
        ref = f"+refs/heads/{repo.branch}:refs/remotes/origin/{repo.branch}"
        refs = await mc.run("git", "-C", repo.path, "config", "--get-all", "remote.origin.fetch")
        if ref not in refs.stdout.splitlines():
            await self._git(mc, env, "config", "--add", "remote.origin.fetch", ref,
                            path=repo.path, what="config")  # fmt: skip
        await self._git(mc, env, "fetch", "origin", ref, path=repo.path, what="fetch")
        local = await mc.run("git", "-C", repo.path, "rev-parse", "--verify", "-q",
                             f"refs/heads/{repo.branch}")  # fmt: skip
        # An existing local branch is checked out as it is: never reset over a user's commits.
        args = ["checkout", repo.branch] if local.exit_code == 0 else [
            "checkout", "-b", repo.branch, "--track", f"origin/{repo.branch}"]  # fmt: skip
        await self._git(mc, env, *args, path=repo.path, what="checkout")
        log.info("setup.repo_switched", path=repo.path, branch=repo.branch)
        return True

    async def _git(self, mc: MachineClient, env: dict[str, str], *args: str, path: str,
                   what: str) -> None:  # fmt: skip
        argv = ["git", "-c", "credential.helper=", "-C", path, *args]
        result = await mc.exec(
            ExecCommandParams(command=argv, timeout_s=self.settings.clone_timeout_s, env=env)
        )
        if result.exit_code != 0:
            raise Permanent(f"git {what} failed: {result.stderr.strip() or result.exit_code}")

    async def git_env(self, mc: MachineClient, machine: Machine, repo: Repo) -> dict[str, str]:
        """git's environment for this repo: with credentials, an askpass script (holding no
        secret) that answers git's prompts from variables set on this one git process; none
        for a repo over HTTPS on a machine the egress proxy serves (it adds them on the way
        out: the machine never holds them)."""
        gvisor = machine.runtime == "gvisor"
        door = await self.store.hosts.proxy_url(machine.host_id) if gvisor else ""
        if proxied_repo(repo) and (door or not gvisor):
            return {**_GIT_ENV, **git_env(self.settings, door)}
        if not repo.has_credentials:
            return dict(_GIT_ENV)
        sealed = await self.store.repo_secret(machine.instance_id, repo.path)
        if sealed is None:
            return dict(_GIT_ENV)
        creds = msgspec.json.decode(SecretBox(self.settings.secret_key).decrypt(sealed),
                                    type=GitCredentials)  # fmt: skip
        askpass = await mc.write_file(ASKPASS_PATH, ASKPASS_SCRIPT, 0o700)
        return {**_GIT_ENV, "GIT_ASKPASS": askpass.path, "FLEET_GIT_USERNAME": creds.username,
                "FLEET_GIT_PASSWORD": creds.token}  # fmt: skip

    async def clone(self, mc: MachineClient, repo: Repo, env: dict[str, str],
                    state: CheckoutState | None = None, *, instance_id: str) -> None:  # fmt: skip
        """Clone ``repo`` unless its path holds it already (``state``, if the caller has just
        looked); Permanent if it fails, saying why (``instance_id``'s network policy, when it
        refuses the repo's host)."""
        try:  # again: the repo may have been added before today's rules
            validation.check_repo_url(repo.url)
            validation.check_branch(repo.branch)
            validation.check_checkout_path(repo.path)
        except ValueError as exc:
            reason = f"repo {repo.path} is refused: {exc}; remove it, then add it again"
            raise Permanent(reason) from None
        # A crash between a clone and its record in Redis must not clone again: look first.
        # A crash during one leaves it running on the machine (the daemon's command outlives
        # its caller): wait for it rather than clone over it.
        if state is None:
            state = await checkout_state(mc, repo, self.settings.clone_timeout_s)
        if state == "finished":
            log.info("setup.repo_already_cloned", path=repo.path)
            return
        if state == "unfinished":
            raise await self._unfinished(mc, repo)
        # `credential.helper=` empties the helper list: nothing may store the token on disk.
        argv = ["git", "-c", "credential.helper=", "clone", "--branch", repo.branch,
                "--single-branch", "--", repo.url, repo.path]  # fmt: skip
        result = await mc.exec(
            ExecCommandParams(command=argv, timeout_s=self.settings.clone_timeout_s, env=env)
        )
        if result.exit_code == EXIT_NOT_FOUND and not result.stdout:  # the image has no git
            result = await self._clone_with_runtime(mc, repo, env)
        if result.exit_code == 0:
            log.info("setup.repo_cloned", path=repo.path, branch=repo.branch)
            return
        if result.timed_out:
            raise Permanent(
                f"git clone {repo.url} timed out after {self.settings.clone_timeout_s:g}s"
            )
        said = result.stderr.strip()
        refused = await self._policy_refusal(instance_id, repo.url)
        why = f"{refused}; git said: {said}" if refused else said
        raise Permanent(f"git clone {repo.url} failed: {why}")

    async def _policy_refusal(self, instance_id: str, url: str) -> str | None:
        """Whether the instance's network policy refuses the host of ``url`` (git says only
        that it could not resolve it, connect or tunnel), in words that say how to allow it."""
        at = remote_host(url)
        if at is None:
            return None
        policy = await self.store.instance_settings.egress(instance_id)
        return policy_refusal(instance_id, policy, *at)

    async def _clone_with_runtime(self, mc: MachineClient, repo: Repo,
                                  env: dict[str, str]) -> ExecCommandResult:  # fmt: skip
        """The clone done by the daemon's own runtime (daemon/gitclone.py), with the same
        credentials: an image without git gets its repos too."""
        log.info("setup.repo_clone_without_git", path=repo.path)
        return await mc.git_clone(GitCloneParams(
            url=repo.url, branch=repo.branch, path=repo.path,
            timeout_s=self.settings.clone_timeout_s, username=env.get("FLEET_GIT_USERNAME"),
            password=env.get("FLEET_GIT_PASSWORD"),
        ))  # fmt: skip

    async def _unfinished(self, mc: MachineClient, repo: Repo) -> Retry | Permanent:
        """An unfinished clone at ``repo.path``: waited for while it may still be running,
        else one cut off. git writes .git/config as it begins, and the daemon ends a command
        at its timeout: a clone whose config is older than that is no longer running."""
        age_s = time.time() - (await mc.stat(f"{repo.path}/.git/config")).mtime
        if -CLOCK_SKEW_S < age_s < self.settings.clone_timeout_s + CLOCK_SKEW_S:
            return Retry(f"a clone of {repo.url} into {repo.path} is still running",
                         delay_s=UNFINISHED_CLONE_RETRY_S,
                         budget_s=UNFINISHED_CLONE_WAIT_CAP_S)  # fmt: skip
        return Permanent(f"{repo.path} holds a clone of {repo.url} that was cut off before it "
                         "finished: remove the directory to clone it again")  # fmt: skip


async def checkout_state(mc: MachineClient, repo: Repo, timeout_s: float) -> CheckoutState:
    """What ``repo.path`` holds: a finished checkout of ``repo.url`` (its own .git, not a
    parent's; the same origin; a HEAD that resolves and an index, which a clone writes last,
    after the work tree), an unfinished one (the same origin, no index yet), or neither (a
    user's orphan branch has an index and no HEAD: never taken for a clone)."""
    head = await mc.run("git", "-C", repo.path, "rev-parse", "--git-dir", "--verify", "-q", "HEAD")
    if head.exit_code == EXIT_NOT_FOUND and not head.stdout:  # the image has no git
        return _RUNTIME_STATES.get((await runtime_check(mc, repo, timeout_s)).exit_code, "none")
    if head.exit_code not in (0, 1) or head.stdout.split("\n", 1)[0] != ".git":
        return "none"  # 1: HEAD does not resolve; anything else: not git's answer
    origin = await mc.run("git", "-C", repo.path, "config", "--get", "remote.origin.url")
    if origin.exit_code != 0 or origin.stdout.strip() != repo.url:
        return "none"
    index = f"{repo.path}/.git/index"
    try:
        indexed = index not in (await mc.health(files=[index])).missing
    except InvalidParams:  # a daemon from before health's files: HEAD alone tells
        indexed = head.exit_code == 0
    if not indexed:
        return "unfinished"
    return "finished" if head.exit_code == 0 else "none"


async def runtime_check(mc: MachineClient, repo: Repo, timeout_s: float) -> ExecCommandResult:
    """Whether ``repo.path`` is a checkout of the repo, asked of the daemon's runtime (an image
    with no git): exit 0 and its branch on stdout if it is; EXIT_CLONE_UNFINISHED if it is an
    unfinished one."""
    return await mc.git_clone(GitCloneParams(url=repo.url, branch=repo.branch, path=repo.path,
                                             check_only=True, timeout_s=timeout_s))  # fmt: skip
