"""The setup pusher's rules: a daemon's ready report -> .env (0600), repos cloned once."""

from __future__ import annotations

import math
import time
from datetime import timedelta

import msgspec
import pytest

from base.dotenv import parse_env_file
from contracts.bus.consumers import Durable
from contracts.bus.events import DaemonStatusReported, EnvPushed, MachineFailed, SetupPushed, now
from contracts.bus.subjects import EventKind as K
from contracts.daemon.rpc import ExecCommandParams
from contracts.errors import NotFound
from contracts.gateway.secrets import MACHINE_PROXY_URL
from contracts.ids import new_event_id
from contracts.models import GitCredentials, Machine, Repo
from contracts.status import MachineStatus as S
from controlplane.events.consumer import Retry
from services.setup_pusher.checkouts import CLOCK_SKEW_S, UNFINISHED_CLONE_WAIT_CAP_S
from services.setup_pusher.service import ASKPASS_SCRIPT
from tests.fakes.daemons import Checkout, FakeFile
from tests.fast.conftest import World

URL = "https://git.example.com/org/app.git"


def report(machine_id: str, status: str = "ready", age_s: float = 0.0) -> DaemonStatusReported:
    return DaemonStatusReported(event_id=new_event_id(), machine_id=machine_id,
                                status=status, version="0.2.0", git_sha="b" * 40,  # type: ignore[arg-type]
                                boot_id=new_event_id(),
                                occurred_at=now() - timedelta(seconds=age_s))  # fmt: skip


async def booting(world: World, *, repos: list[Repo] | None = None) -> Machine:
    """A machine whose provisioner is done and whose daemon is up, before its report."""
    inst = await world.instance()
    for repo in repos or []:
        await world.store.add_repo(inst.id, repo)
    machine = await world.store.create_machine(inst.id, "local")
    await world.store.transition(machine.id, S.PROVISIONING, "starting")
    await world.store.transition(machine.id, S.BOOTING, "booting", external_id="local:1")
    world.daemons.boot(machine.id)
    return await world.machine(machine.id)


async def not_cloned(world: World, machine_id: str) -> str:
    """Why the machine's one repo was not cloned: it is ready without it, warned (a repo that
    does not reach a machine fails no setup: tests/fast/test_repo_failures.py)."""
    machine = await world.machine(machine_id)
    assert machine.status is S.READY, machine.status_reason
    (skipped,) = world.bus.one(SetupPushed, machine_id).not_cloned
    assert machine.setup_warning == f"repo {skipped.path}: {skipped.reason}"
    return skipped.reason


async def test_only_a_ready_report_starts_setup(world: World) -> None:
    machine = await booting(world)
    await world.bus.publish(report(machine.id, "stopping"))
    await world.bus.settle()
    assert world.daemons.calls == []
    assert (await world.machine(machine.id)).status is S.BOOTING


async def test_ready_pushes_the_env_0600_and_announces_setup(world: World) -> None:
    machine = await booting(world)
    await world.bus.publish(report(machine.id))
    await world.bus.settle()

    m = world.daemons[machine.id]
    env = m.file("~/.fleet/.env")
    assert env.mode == 0o600
    assert m.file("~/.fleet/cron.json").mode == 0o600
    pushed = world.bus.one(SetupPushed, machine.id)
    assert (pushed.env_path, pushed.env_bytes) == (m.path("~/.fleet/.env"), len(env.content))
    after = await world.machine(machine.id)
    assert (after.daemon_version, after.daemon_git_sha) == ("0.2.0", "b" * 40)


async def test_instance_vars_win_over_platform_vars_which_win_over_proxy_vars(
    world: World,
) -> None:
    world.setup.settings = msgspec.structs.replace(world.settings, egress_proxy="http://proxy:3128")
    machine = await booting(world)
    await world.store.set_env(None, "HTTP_PROXY", "http://platform-proxy")
    await world.store.set_env(None, "SHARED", "platform")
    await world.store.set_env(None, "ONLY_PLATFORM", "p")
    await world.store.set_env(machine.instance_id, "SHARED", "instance")
    await world.bus.publish(report(machine.id))
    await world.bus.settle()

    lines = world.daemons[machine.id].file("~/.fleet/.env").content.splitlines()
    assert "SHARED='instance'" in lines
    assert "SHARED='platform'" not in lines
    assert "ONLY_PLATFORM='p'" in lines
    assert "HTTP_PROXY='http://platform-proxy'" in lines
    assert "HTTPS_PROXY='http://proxy:3128'" in lines


async def test_a_report_before_the_provisioner_is_done_is_retried_until_it_is(
    world: World,
) -> None:
    inst = await world.instance()
    machine = await world.store.create_machine(inst.id, "local")
    await world.store.transition(machine.id, S.PROVISIONING, "starting")
    world.daemons.boot(machine.id)
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert world.bus.outcomes(Durable.SETUP_PUSHER)[-1] == "deferred"
    assert world.daemons.calls == []

    await world.store.transition(machine.id, S.BOOTING, "booting", external_id="local:1")
    await world.bus.settle()
    assert world.bus.outcomes(Durable.SETUP_PUSHER)[-1] == "ok"
    assert (await world.machine(machine.id)).status is S.READY


async def test_a_report_waits_while_its_machine_is_provisioning_however_old(
    world: World,
) -> None:
    """The report's age is no deadline (the platform may have stopped between it and the
    provisioner's record): it waits while the machine is on its way, and ends with it."""
    inst = await world.instance()
    machine = await world.store.create_machine(inst.id, "local")
    await world.store.transition(machine.id, S.PROVISIONING, "starting")
    await world.bus.publish(report(machine.id, age_s=10 * world.settings.boot_timeout_s))
    await world.bus.settle()
    assert world.bus.outcomes(Durable.SETUP_PUSHER)[-1] == "deferred"
    assert world.bus.of(MachineFailed) == []
    await world.store.transition(machine.id, S.FAILED, "provision failed: elsewhere")
    await world.bus.settle()
    assert world.bus.outcomes(Durable.SETUP_PUSHER)[-1] == "ok"  # skipped: nothing to set up
    assert world.daemons.calls == []


async def test_a_young_report_before_the_provisioner_is_done_is_tried_again_in_50_ms(
    world: World,
) -> None:
    """A fork's daemon reports the moment it is restored, while its provisioner still
    finishes: tried again within tens of milliseconds; an old one (a provisioner that is down)
    at the consumer's usual pace."""
    inst = await world.instance()
    machine = await world.store.create_machine(inst.id, "local")
    await world.store.transition(machine.id, S.PROVISIONING, "starting")
    with pytest.raises(Retry) as young:
        await world.setup.on_status(report(machine.id))
    with pytest.raises(Retry) as old:
        await world.setup.on_status(report(machine.id, age_s=60))
    assert (young.value.delay_s, old.value.delay_s) == (0.05, 0.5)
    assert young.value.budget_s == old.value.budget_s == math.inf


async def test_a_report_for_a_machine_past_setup_is_skipped(world: World) -> None:
    machine = await booting(world)
    await world.store.transition(machine.id, S.FAILED, "boot failed: too slow")
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert world.daemons.calls == []
    assert (await world.machine(machine.id)).status is S.FAILED


async def test_repos_are_cloned_once_with_git_safe_argv(world: World) -> None:
    repo = Repo(url=URL, branch="dev", path="src/app")
    machine = await booting(world, repos=[repo])
    first = report(machine.id)
    await world.bus.publish(first)
    await world.bus.settle()

    m = world.daemons[machine.id]
    assert m.ran("clone") == [["git", "-c", "credential.helper=", "clone", "--branch", "dev",
                               "--single-branch", "--", URL, "src/app"]]  # fmt: skip
    [clone] = [c for c in m.commands if "clone" in c.command]
    assert clone.timeout_s == world.settings.clone_timeout_s
    assert clone.env == {"GIT_TERMINAL_PROMPT": "0"}
    assert await world.store.cloned_paths(machine.id) == {"src/app"}
    assert world.bus.one(SetupPushed, machine.id).repo_paths == ["src/app"]

    # Another boot's report once the machine is past setup: skipped, nothing runs.
    commands = len(m.commands)
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert len(m.commands) == commands


async def test_a_redelivery_after_a_crash_mid_setup_rewrites_the_env_but_clones_nothing(
    world: World,
) -> None:
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    world.bus.fail_publish(SetupPushed)  # crashed after the clone, before announcing it
    await world.bus.publish(report(machine.id))
    await world.bus.settle()

    assert world.bus.outcomes(Durable.SETUP_PUSHER) == ["error", "ok"]
    m = world.daemons[machine.id]
    assert len(m.ran("clone")) == 1
    # .env, cron, container.env: twice
    assert len(world.daemons.calls_of("tool.writeFile", machine.id)) == 6
    assert len(world.bus.of(SetupPushed, machine.id)) == 1
    assert (await world.machine(machine.id)).status is S.READY


async def test_an_existing_checkout_of_the_same_remote_is_not_cloned_again(world: World) -> None:
    repo = Repo(url=URL, branch="main", path="src/app")
    machine = await booting(world, repos=[repo])
    # Cloned before a crash, but never recorded in Redis.
    clone = ExecCommandParams(command=["git", "clone", "--branch", "main", "--", URL, "src/app"])
    await world.daemons[machine.id].exec_command(clone, None)
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    m = world.daemons[machine.id]
    assert len(m.ran("clone")) == 1  # only the one above
    assert m.ran("rev-parse", "--git-dir", "--verify", "-q", "HEAD")
    assert await world.store.cloned_paths(machine.id) == {"src/app"}
    assert (await world.machine(machine.id)).status is S.READY


async def test_a_clone_still_running_after_a_crash_is_waited_for_not_cloned_over(
    world: World,
) -> None:
    """A setup pusher killed mid-clone leaves the clone running on the machine; its redelivered
    push finds a repository of the repo with no index yet, waits (past the stage's own budget:
    the clone's age bounds the wait), and takes the finished checkout as its own."""
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    m = world.daemons[machine.id]
    m.checkouts[m.path("src/app")] = Checkout(url=URL, branch="main", finished=False)
    await world.bus.publish(report(machine.id, age_s=world.settings.boot_timeout_s + 1))
    await world.bus.settle()
    assert world.bus.outcomes(Durable.SETUP_PUSHER) == ["deferred"]
    assert m.ran("clone") == []
    assert (await world.machine(machine.id)).status is S.SETTING_UP

    m.checkouts[m.path("src/app")].finished = True
    await world.bus.settle()
    assert world.bus.outcomes(Durable.SETUP_PUSHER)[-1] == "ok"
    assert m.ran("clone") == []
    assert await world.store.cloned_paths(machine.id) == {"src/app"}
    assert (await world.machine(machine.id)).status is S.READY


async def test_a_daemon_from_before_healths_files_has_its_checkout_found_by_head_alone(
    world: World,
) -> None:
    """It answers -32602 to health's files: a checkout whose HEAD resolves is finished."""
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    m = world.daemons[machine.id]
    m.health_without_files = True
    m.checkouts[m.path("src/app")] = Checkout(url=URL, branch="main")
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert m.ran("clone") == []
    assert await world.store.cloned_paths(machine.id) == {"src/app"}


async def test_a_clone_cut_off_before_it_finished_is_named_and_left_alone(world: World) -> None:
    """Older than a clone may run (the daemon ends it at clone_timeout_s): no longer running."""
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    m = world.daemons[machine.id]
    began = time.time() - world.settings.clone_timeout_s - CLOCK_SKEW_S - 1
    m.checkouts[m.path("src/app")] = Checkout(url=URL, branch="main", finished=False,
                                              began=began)  # fmt: skip
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert await not_cloned(world, machine.id) == (
        f"src/app holds a clone of {URL} that was cut off before it finished: remove the "
        "directory to clone it again"
    )
    assert m.ran("clone") == []


async def test_a_machine_cannot_keep_its_setup_waiting_on_a_clone_without_end(
    world: World,
) -> None:
    """The machine owns its files: a .git/config dated ahead of the platform's clock is no
    clone that is running (the repo is not cloned, named); one it keeps fresh is waited for up
    to the cap, then the machine fails naming the wait."""
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    m = world.daemons[machine.id]
    ahead = time.time() + CLOCK_SKEW_S + 60
    m.checkouts[m.path("src/app")] = Checkout(url=URL, branch="main", finished=False,
                                              began=ahead)  # fmt: skip
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert "that was cut off before it finished" in await not_cloned(world, machine.id)

    other = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    o = world.daemons[other.id]
    o.checkouts[o.path("src/app")] = Checkout(url=URL, branch="main", finished=False)
    await world.bus.publish(report(other.id, age_s=UNFINISHED_CLONE_WAIT_CAP_S + 1))
    await world.bus.settle()
    assert world.bus.one(MachineFailed, other.id).reason == (
        f"gave up waiting after 3601s: a clone of {URL} into src/app is still running"
    )
    assert o.ran("clone") == []


async def test_a_users_orphan_branch_is_not_taken_for_an_unfinished_clone(world: World) -> None:
    """An index and no HEAD (``git checkout --orphan``): neither a checkout nor a clone to
    wait for; git's own refusal to clone over it is the repo's warning, as for any other tree."""
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    m = world.daemons[machine.id]
    m.checkouts[m.path("src/app")] = Checkout(url=URL, branch="main")
    m.on_exec(["rev-parse", "--git-dir", "--verify", "-q", "HEAD"], exit_code=1, stdout=".git\n")
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert await not_cloned(world, machine.id) == (
        f"git clone {URL} failed: fatal: destination path 'src/app' already exists"
    )


async def test_an_image_with_no_git_waits_for_an_unfinished_clone_too(world: World) -> None:
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    m = world.daemons[machine.id]
    m.on_exec(["git"], exit_code=127, stderr="git: not found")
    m.checkouts[m.path("src/app")] = Checkout(url=URL, branch="main", finished=False)
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert world.bus.outcomes(Durable.SETUP_PUSHER) == ["deferred"]

    m.checkouts[m.path("src/app")].finished = True
    m.files[m.path("src/app/.git/HEAD")] = FakeFile("ref: refs/heads/main\n", 0o644)
    await world.bus.settle()
    assert [c for c in m.git_clones if not c.check_only] == []
    assert await world.store.cloned_paths(machine.id) == {"src/app"}
    assert (await world.machine(machine.id)).status is S.READY


async def test_an_image_with_no_git_gets_its_repos_from_the_daemons_runtime(
    world: World,
) -> None:
    """``git`` is not found on the machine (its image has none): the daemon's own runtime
    clones the repo (tool.gitClone), and the machine is ready (the prober looks for the
    checkout's .git/HEAD instead of asking git)."""
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    m = world.daemons[machine.id]
    m.on_exec(["git"], exit_code=127, stderr="git: not found")
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    cloned = [(c.url, c.branch, c.path) for c in m.git_clones if not c.check_only]
    assert cloned == [(URL, "main", "src/app")]
    assert await world.store.cloned_paths(machine.id) == {"src/app"}
    assert (await world.machine(machine.id)).status is S.READY


async def test_a_checkout_of_another_remote_is_not_taken_for_ours(world: World) -> None:
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    m = world.daemons[machine.id]
    m.on_exec(["config", "--get", "remote.origin.url"], stdout="https://elsewhere/x.git\n")
    m.on_exec(["rev-parse", "--git-dir"], stdout=".git\nabc\n")
    m.on_exec(["clone"], exit_code=128, stderr="fatal: destination path 'src/app' already exists")
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    exists = "fatal: destination path 'src/app' already exists"
    assert await not_cloned(world, machine.id) == f"git clone {URL} failed: {exists}"


async def test_a_failed_clone_is_not_retried_and_fails_no_setup(world: World) -> None:
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    world.daemons[machine.id].on_exec(["clone"], exit_code=128,
                                      stderr="fatal: repository not found\n")  # fmt: skip
    await world.bus.publish(report(machine.id))
    await world.bus.settle()

    assert world.bus.outcomes(Durable.SETUP_PUSHER) == ["ok"]  # not retried
    assert len(world.daemons[machine.id].ran("clone")) == 1
    reason = f"git clone {URL} failed: fatal: repository not found"
    assert await not_cloned(world, machine.id) == reason
    assert K.FAILED not in world.bus.kinds(machine.id)


async def test_a_repo_known_broken_does_not_fail_the_next_start(world: World) -> None:
    """A repo that failed to reach the machine before (its warning) is tried again at the next
    setup; failing again, the machine starts without it, warned; the other repos are cloned."""
    broken = Repo(url=URL, branch="nope", path="src/app")
    good = Repo(url=URL.replace("app", "lib"), branch="main", path="src/lib")
    machine = await booting(world, repos=[broken, good])
    assert await world.store.repo_warnings.note(machine.id, {"src/app": "git clone failed"})
    world.daemons[machine.id].on_exec(["clone", "--branch", "nope"], exit_code=128,
                                      stderr="fatal: Remote branch nope not found\n")  # fmt: skip
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    # The probe looks for the repos in place, not for the one skipped.
    assert world.bus.one(SetupPushed, machine.id).repo_paths == ["src/lib"]
    after = await world.machine(machine.id)
    assert after.status is S.READY
    assert after.setup_warning == (
        f"repo src/app: git clone {URL} failed: fatal: Remote branch nope not found"
    )
    assert await world.store.cloned_paths(machine.id) == {"src/lib"}


async def test_a_known_broken_repo_that_clones_at_last_loses_its_warning(world: World) -> None:
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    await world.store.repo_warnings.note(machine.id, {"src/app": "git clone failed"})
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert world.bus.one(SetupPushed, machine.id)
    assert (await world.machine(machine.id)).setup_warning is None


async def test_a_warning_never_makes_a_record_of_a_machine_that_is_gone(world: World) -> None:
    assert not await world.store.repo_warnings.note("m-" + "0" * 16, {"src/app": "why"})
    with pytest.raises(NotFound):
        await world.store.get_machine("m-" + "0" * 16)


async def test_a_clone_that_times_out_says_so(world: World) -> None:
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    world.daemons[machine.id].on_exec(["clone"], exit_code=-9, timed_out=True)
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert await not_cloned(world, machine.id) == f"git clone {URL} timed out after 300s"


async def test_a_daemon_that_does_not_answer_is_retried_then_fails_at_setup(world: World) -> None:
    """One that is gone altogether sends its machine back to booting instead (its successor
    reports in its turn): tests/fast/test_boot_deadline.py."""
    machine = await booting(world)
    world.daemons[machine.id].mode = "timeout"
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert world.bus.outcomes(Durable.SETUP_PUSHER) == ["error", "error", "gave_up"]
    failed = world.bus.one(MachineFailed, machine.id)
    assert failed.reason.startswith("DaemonTimeout: machine ")


async def test_git_credentials_go_through_askpass_never_argv(world: World) -> None:
    """Over plain HTTP (no proxy adds them there), the token reaches git's environment only."""
    secret = "ghp_s3cret-token"
    url = URL.replace("https://", "http://")
    machine = await booting(world, repos=[Repo(url=url, branch="main", path="src/app",
                                               has_credentials=True)])  # fmt: skip
    creds = GitCredentials(username="bot", token=secret)
    sealed = world.box.encrypt(msgspec.json.encode(creds).decode())
    await world.store.set_repo_secret(machine.instance_id, "src/app", sealed)
    await world.bus.publish(report(machine.id))
    await world.bus.settle()

    m = world.daemons[machine.id]
    askpass = m.file("~/.fleet/git-askpass")
    assert (askpass.content, askpass.mode) == (ASKPASS_SCRIPT, 0o700)
    assert secret not in askpass.content
    [clone] = [c for c in m.commands if "clone" in c.command]
    assert all(secret not in word for word in clone.command)
    assert clone.env == {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": m.path("~/.fleet/git-askpass"),
                         "FLEET_GIT_USERNAME": "bot", "FLEET_GIT_PASSWORD": secret}  # fmt: skip
    assert all(secret not in f.content for f in m.files.values())


async def test_a_private_repo_over_https_is_cloned_with_no_token_in_the_machine(
    world: World,
) -> None:
    """The egress proxy adds its credentials on the way out (services/provisioner/
    secrets_proxy.py): the clone gets no token, and the machine goes out through the proxy,
    trusting its instance's CA."""
    secret = "ghp_s3cret-token"
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app",
                                               has_credentials=True)])  # fmt: skip
    creds = GitCredentials(username="bot", token=secret)
    sealed = world.box.encrypt(msgspec.json.encode(creds).decode())
    await world.store.set_repo_secret(machine.instance_id, "src/app", sealed)
    await world.bus.publish(report(machine.id))
    await world.bus.settle()

    m = world.daemons[machine.id]
    [clone] = [c for c in m.commands if "clone" in c.command]
    git_env = clone.env or {}
    assert git_env["HTTPS_PROXY"] == MACHINE_PROXY_URL
    assert git_env["GIT_CONFIG_VALUE_0"] == "~/.fleet/ca.pem"
    assert "GIT_ASKPASS" not in git_env
    env = parse_env_file(m.file("~/.fleet/.env").content)
    assert env["HTTPS_PROXY"] == MACHINE_PROXY_URL
    assert env["GIT_SSL_CAINFO"] == m.path("~/.fleet/ca.pem")
    ca = await world.store.secrets.ca(machine.instance_id)
    assert ca is not None
    assert ca.cert_pem in m.file("~/.fleet/ca.pem").content
    assert all(secret not in f.content for f in m.files.values())
    assert all(secret not in " ".join(c.command) + str(c.env) for c in m.commands)


async def test_values_and_repos_stored_before_todays_rules_are_refused_by_name(
    world: World,
) -> None:
    """Stored before the .env and repo rules, refused when pushed (not retried): a repo is
    not cloned (named), a value fails the setup."""
    bad_repo = Repo(url="ssh://%2DoProxyCommand=x/r", branch="main", path="src/app")
    machine = await booting(world, repos=[bad_repo])
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert world.bus.outcomes(Durable.SETUP_PUSHER) == ["ok"]
    assert "repo src/app is refused" in await not_cloned(world, machine.id)
    assert world.daemons.calls_of("tool.execCommand", machine.id) == []

    second = await booting(world)
    await world.store.set_env(second.instance_id, "HOSTILE", "it's $(id)")
    await world.bus.publish(report(second.id))
    await world.bus.settle()
    failed = await world.machine(second.id)
    assert failed.status is S.FAILED
    assert "cannot write the .env: HOSTILE:" in failed.status_reason


async def test_a_set_up_machines_new_daemon_gets_its_env_written_again(world: World) -> None:
    """A ready machine's daemon started anew (`fleet up` stopped and started again): its home
    may be at another path than the one its .env named (a machine from the warm pool ran in its
    slot's), so its new daemon's report writes the .env and CA bundle again; the machine is not
    set up again."""
    machine = await world.ready_machine()
    await world.store.transition(machine.id, S.UNRESPONSIVE, "its daemon was started again")
    m = world.daemons[machine.id]
    env = next(p for p in m.files if p.endswith("/.fleet/.env"))
    del m.files[env]
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert env in m.files
    assert world.bus.of(EnvPushed, machine.id)
    assert (await world.machine(machine.id)).status is S.UNRESPONSIVE  # its beat makes it ready
