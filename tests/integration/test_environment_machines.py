"""Machines of ``{devcontainer}`` and ``{dockerfile}`` environments through every service, on
both providers, a real engine and a real git server: ``instances.setEnvironment``, then
``machines.create``. The repo's environment is built FROM the machine image of this engine
(Debian with git, which the machine needs to clone the repo; no registry here), once per
content: each test marks its build with a unique value so that no other run's build is
cached, and removes the builds it made.

The devcontainer test makes two machines at once, one per instance, of one environment: one
build, one ready machine (checked end to end) and one whose postCreateCommand fails (its
instance sets the variable the command's gate reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiodocker
import pytest

from contracts.bus.events import (
    EnvironmentBuildOutput,
    Event,
    LifecycleOutput,
    LifecycleRan,
    kind_of,
)
from contracts.bus.subjects import EventKind
from contracts.gateway.environments import DevcontainerSource, DockerfileSource, Environment
from contracts.status import MachineStatus
from controlplane.settings import Settings
from environments import build as env_build, cache
from fleet.client import FleetClient
from tests.conftest import git
from tests.docker_env import (
    docker_gateway,
    docker_image,
    nats_server,
    remove_containers,
    remove_stacks_under,
)
from tests.environments import out, read_until
from tests.gitcmd import repo_with
from tests.gitserver import GitHttpServer
from tests.stop_checks import host_pids_running, unique_sleep
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")
PROVIDERS = ["local", "docker"]
REPO_PATH = "src/app"
LOG = "/home/fleet/lifecycle.log"
#: What the image lets any user write (its mode 1777): a local machine runs as a uid of its own.
SHARED = "/usr/local/share/lifecycle"

DOCKERFILE = """FROM {base}
ARG MARK
USER 0
RUN mkdir -p {shared} && chmod 1777 {shared} && echo "$MARK" > /etc/fleet-test-mark \\
 && echo 'dev:x:1234:2345::/home/dev:/bin/sh' >> /etc/passwd && echo 'devs:x:2345:' >> /etc/group
ENV FROM_IMAGE=image LAYER=image
USER 1000:1000
"""
# As a project writes it: comments and trailing commas (the spec's JSON).
DEVCONTAINER = """{{
  // FROM the machine image of this engine: there is no registry here
  "build": {{"dockerfile": "Dockerfile", "args": {{"MARK": "{mark}",}},}},
  "features": {{"./greeter": {{"greeting": "hello from a feature",}},}},
  "remoteUser": "dev",
  "containerEnv": {{"PLAT_OVER": "container", "LAYER": "container",}},
  "remoteEnv": {{
    "LAYER": "remote",
    "SEEN": "${{containerEnv:FROM_IMAGE}}+${{containerEnv:LAYER}}",
    "INST_OVER": "remote",
  }},
  "onCreateCommand": "echo onCreate >> {log} && echo a && sleep 1.2 && echo b",
  "updateContentCommand": ["sh", "-c", "echo updateContent >> {log}"],
  "postCreateCommand": {{
    "log": "echo postCreate >> {log} && env > $HOME/lifecycle.env",
    "outside": "echo made by postCreate > {shared}/made",
    "gate": "[ -z \\"$FAIL_WITH\\" ] || {{ echo at the gate; echo shut >&2; exit $FAIL_WITH; }}",
  }},
  "postStartCommand": "echo postStart >> {log}",
  "postAttachCommand": "echo postAttach >> {log}",
  "forwardPorts": [8123, "localhost:9000",],
  "portsAttributes": {{
    "8123": {{"label": "web", "protocol": "http"}},
    "9000-9001": {{"label": "api"}},
  }},
}}
"""
FEATURE = {
    "id": "greeter",
    "options": {"greeting": {"type": "string", "default": "hi"}},
    "containerEnv": {"GREETER_HOME": "/usr/local/share/greeter"},
    "onCreateCommand": f"echo feature-onCreate >> {LOG}",
    "postStartCommand": f"echo feature-postStart >> {LOG}",
}
INSTALL = """#!/bin/sh
set -e
mkdir -p /usr/local/share/greeter
echo "$GREETING for $_REMOTE_USER" > /usr/local/share/greeter/greeting
"""


@pytest.fixture
async def git_served(tmp_path: Path, docker_gateway: str) -> AsyncIterator[GitHttpServer]:
    """Repos over HTTP with no credentials (an environment's build checks its repo out on the
    host, with none), where both kinds of machine reach it: the machines' network gateway."""
    root = tmp_path / "served"
    root.mkdir()
    async with GitHttpServer(root, None, None, host=docker_gateway) as server:
        yield server


@pytest.fixture
async def own_builds(settings: Settings, tmp_path: Path) -> AsyncIterator[None]:
    """The builds this test's stack made (its cache's record) are removed at its end, after
    its containers (an image a container uses cannot be)."""
    yield
    await remove_stacks_under(tmp_path)
    used = cache.from_settings(settings).used_file
    tags = list(json.loads(used.read_text())) if used.is_file() else []
    async with aiodocker.Docker() as docker:
        for tag in tags:
            await docker.images.delete(tag)


def serve_repo(server: GitHttpServer, tmp_path: Path, files: dict[str, str]) -> str:
    """A repo of ``files`` committed on ``main`` and served; its URL."""
    work = repo_with(tmp_path, files, "the project's environment")
    git("clone", "-q", "--bare", str(work), str(server.root / "app.git"))
    return server.url("app.git")


def counting_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each build this process runs from then on (a cache hit or a shared one is none)."""
    builds: list[str] = []
    real = env_build._build

    async def counted(*args: Any, **kw: Any) -> str:
        builds.append(str(args[3]))  # its content hash
        return await real(*args, **kw)

    monkeypatch.setattr(env_build, "_build", counted)
    return builds


async def instance_of(stack: FleetClient, name: str, url: str, env: Environment,
                      **variables: str) -> str:  # fmt: skip
    inst = await stack.create_instance(name)
    await stack.add_repo(inst.id, url=url, branch="main", path=REPO_PATH)
    for key, value in variables.items():
        await stack.set_env(key, value, instance_id=inst.id)
    await stack.set_environment(inst.id, env)
    return inst.id


async def settled(stack: FleetClient, mid: str) -> Any:
    return await stack.wait_for(mid, ("ready", "failed"), timeout_s=240)


async def stop_start(stack: FleetClient, mid: str) -> None:
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=60)
    await stack.start_machine(mid)
    done = await settled(stack, mid)
    assert done.status is MachineStatus.READY, done.status_reason


def dotenv(text: str) -> dict[str, str]:
    return {k: v.strip("'") for k, _, v in (line.partition("=") for line in text.splitlines())
            if not k.startswith("#") and v}  # fmt: skip


@pytest.mark.timeout(600)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_devcontainer_machine(
    provider: str, own_builds: None, stack: FleetClient, settings: Settings,
    docker_image: tuple[str, str],
    git_served: GitHttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    mark = uuid.uuid4().hex
    url = serve_repo(git_served, tmp_path, {
        ".devcontainer/Dockerfile": DOCKERFILE.format(base=docker_image[1], shared=SHARED),
        ".devcontainer/devcontainer.json": DEVCONTAINER.format(mark=mark, log=LOG,
                                                               shared=SHARED),
        ".devcontainer/greeter/devcontainer-feature.json": json.dumps(FEATURE),
        ".devcontainer/greeter/install.sh": INSTALL,
    })  # fmt: skip
    env = Environment(devcontainer=DevcontainerSource(repo=url))
    await stack.set_env("PLAT_OVER", "platform")
    await stack.set_env("PLAIN_PLAT", "platform")
    good = await instance_of(stack, "dev", url, env, INST_OVER="instance")
    bad = await instance_of(stack, "dev-gate", url, env, FAIL_WITH="3")
    builds = counting_builds(monkeypatch)

    made = await asyncio.gather(*(stack.create_machine(i, provider)  # type: ignore[arg-type]
                                  for i in (good, bad)))  # fmt: skip
    ok, failed = [await settled(stack, m.id) for m in made]
    assert len(builds) == 1, builds  # one environment, one build, for both machines
    assert ok.status is MachineStatus.READY, ok.status_reason
    assert ok.environment == f"devcontainer {REPO_PATH}:(found)"  # the spec's places
    assert ok.environment_image == failed.environment_image
    await fails_at_post_create(failed)
    mid = ok.id
    await lifecycle_output_streamed(stack, mid)

    # The local feature, installed at build with its option.
    assert await out(stack, mid, "cat", "/usr/local/share/greeter/greeting") == (
        "hello from a feature for dev\n"
    )
    assert (await out(stack, mid, "cat", "/etc/fleet-test-mark")).strip() == mark
    await variables_in_their_order(stack, mid)
    await ports_with_their_labels(stack, mid)

    once = ["feature-onCreate", "onCreate", "updateContent", "postCreate"]
    started = ["feature-postStart", "postStart"]
    assert (await out(stack, mid, "cat", LOG)).split() == once + started
    await stop_start(stack, mid)
    assert (await out(stack, mid, "cat", LOG)).split() == once + started * 2
    # What postCreateCommand wrote outside the home is still there.
    assert await out(stack, mid, "cat", f"{SHARED}/made") == "made by postCreate\n"

    uid = await acts_as_its_user(stack, mid, tmp_path, provider)
    # On the host: the machine's own uid (a local machine's image's user is that uid in its
    # user namespace only; a docker machine's image's user was renumbered to it).
    own = settings.data_path / "machines" / mid / "uid"
    assert host_uid(await sleeping(stack, mid)) == (
        int(own.read_text()) if provider == "local" else uid
    )
    terminal = ["sh", "-c", "echo in-a-terminal as $(id -un) $(id -u); sleep 30"]
    opened = await stack.open_session(mid, terminal)
    assert (await out(stack, mid, "cat", LOG)).split() == [*once, *started * 2, "postAttach"]
    ws = await stack.attach_session(mid, opened.session_id)
    said = f"in-a-terminal as dev {uid}".encode()
    assert said in await read_until(ws, said)
    await stack.close_session(mid, opened.session_id)


async def lifecycle_output_streamed(stack: FleetClient, mid: str) -> None:
    """onCreateCommand's output as lifecycle-output events, "a" in one stored while it slept,
    "b" in the next, both before its lifecycle-ran."""
    events = await stored_events(stack, mid)
    command = f"echo onCreate >> {LOG} && echo a && sleep 1.2 && echo b"
    ran = next(e for e in events if isinstance(e, LifecycleRan) and e.command == command)
    said = [e for e in events if isinstance(e, LifecycleOutput) and e.command == command]
    assert [(e.stage, e.lines) for e in said] == [("onCreateCommand", ["a"]),
                                                  ("onCreateCommand", ["b"])], said  # fmt: skip
    assert events.index(said[-1]) < events.index(ran)
    assert (ran.occurred_at - said[0].occurred_at).total_seconds() >= 1.0, (said[0], ran)


async def sleeping(stack: FleetClient, mid: str) -> int:
    """The host pid of a background process started in the machine."""
    unique = unique_sleep()
    await stack.start_process(mid, unique, tag="sleeper")
    await wait_until(lambda: bool(host_pids_running(unique)), timeout=30)
    return host_pids_running(unique)[0]


def host_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


async def acts_as_its_user(stack: FleetClient, mid: str, tmp_path: Path, provider: str) -> int:
    """remoteUser: commands, and the files the machine is given, are the image's ``dev``
    (group ``devs``), not the provider's default user; its uid: on ``local`` the image's (1234,
    group 2345, in the machine's user namespace), on ``docker`` a host uid of the machine's own
    that the image's ``dev`` and ``devs`` were renumbered to (providers/docker/users.py)."""
    who = (await out(stack, mid, "sh", "-c", "id -u; id -g; whoami; id -gn")).split()
    uid, gid = (1234, 2345) if provider == "local" else (int(who[0]), int(who[0]))
    assert uid != 1000
    assert who == [str(uid), str(gid), "dev", "devs"]
    (tmp_path / "up.txt").write_text("uploaded\n")
    await stack.upload(mid, tmp_path / "up.txt", "up.txt")
    owner = await out(stack, mid, "stat", "-c", "%u:%g %U", "up.txt", "lifecycle.log", ".")
    assert owner.splitlines() == [f"{uid}:{gid} dev"] * 3
    return uid


async def fails_at_post_create(machine: Any) -> None:
    """The gate's failure: the stage named for the command, the command, its exit code and
    its last lines."""
    assert machine.status is MachineStatus.FAILED
    reason = machine.status_reason
    assert reason.startswith("postCreateCommand failed: postCreateCommand `gate: [ -z "), reason
    assert "exited 3:\nat the gate\nshut" in reason, reason


async def variables_in_their_order(stack: FleetClient, mid: str) -> None:
    """Platform < containerEnv < remoteEnv < instance, in the .env and in what the lifecycle
    commands ran with (the image's ENV under all of them)."""
    written = dotenv(await out(stack, mid, "cat", ".fleet/.env"))
    want = {"PLAIN_PLAT": "platform", "PLAT_OVER": "container", "LAYER": "remote",
            "SEEN": "image+container", "INST_OVER": "instance"}  # fmt: skip
    assert {k: written.get(k) for k in want} == want, written
    seen = dotenv(await out(stack, mid, "cat", "lifecycle.env"))
    assert {k: seen.get(k) for k in want} == want, seen
    assert seen.get("FROM_IMAGE") == "image"
    assert seen.get("GREETER_HOME") == "/usr/local/share/greeter"  # the feature's ENV


async def ports_with_their_labels(stack: FleetClient, mid: str) -> None:
    """forwardPorts in the file's order with their labels, listening or not yet."""
    argv = ["python3", "-m", "http.server", "8123", "--bind", "127.0.0.1"]
    await stack.start_process(mid, argv, tag="web")

    async def listening() -> bool:
        return any(p.port == 8123 for p in (await stack.machine_ports(mid)).ports)

    await wait_until(listening, timeout=30)
    got = await stack.machine_ports(mid)
    web = next(p for p in got.ports if p.port == 8123)
    assert (web.label, web.protocol) == ("web", "http")
    fwd = [(f.port, f.label, f.protocol, f.listening) for f in got.forwarded]
    assert fwd == [(8123, "web", "http", True), (9000, "api", None, False)]


@pytest.mark.timeout(400)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_dockerfile_machine(
    provider: str, own_builds: None, stack: FleetClient, docker_image: tuple[str, str],
    git_served: GitHttpServer, tmp_path: Path,
) -> None:  # fmt: skip
    mark = uuid.uuid4().hex
    url = serve_repo(git_served, tmp_path, {
        "Dockerfile": DOCKERFILE.format(base=docker_image[1], shared=SHARED).replace(
            'echo "$MARK"', f"echo {mark}"),
    })  # fmt: skip
    env = Environment(dockerfile=DockerfileSource(repo=REPO_PATH))
    inst = await stack.create_instance("dockerfile")
    await stack.add_repo(inst.id, url=url, branch="main", path=REPO_PATH)
    await stack.set_environment(inst.id, env)
    m = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await settled(stack, m.id)
    assert done.status is MachineStatus.READY, done.status_reason
    assert done.environment == f"dockerfile {REPO_PATH}:Dockerfile (context .)"
    assert (await out(stack, m.id, "cat", "/etc/fleet-test-mark")).strip() == mark
    assert "the project's environment" in await out(stack, m.id, "git", "-C", REPO_PATH, "log")
    # No lifecycle in a Dockerfile environment; its variables are the image's.
    assert (await stack.exec(m.id, ["test", "-e", LOG])).exit_code == 1
    await build_log_streamed(stack, m.id, mark)


async def stored_events(stack: FleetClient, mid: str) -> list[Event]:
    """The machine's events as stored, in stream order."""
    async with contextlib.aclosing(stack.events(mid, follow=False)) as events:
        return [event async for _, event in events]


async def build_log_streamed(stack: FleetClient, mid: str, mark: str) -> None:
    """The build's log as environment-build-output events, all stored before the machine was
    provisioned (its container runs the image the build made)."""
    events = await stored_events(stack, mid)
    kinds = [kind_of(e) for e in events]
    logged = [i for i, e in enumerate(events) if isinstance(e, EnvironmentBuildOutput)]
    assert logged, kinds
    assert logged[-1] < kinds.index(EventKind.PROVISIONED), kinds
    lines = [line for i in logged for line in cast(EnvironmentBuildOutput, events[i]).lines]
    assert any(mark in line for line in lines), lines  # the RUN step that writes the mark
