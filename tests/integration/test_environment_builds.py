"""Environment builds on the real Docker engine (environments/build.py): a Dockerfile FROM a
local busybox image (no registry here), one build per content hash shared by concurrent calls,
the cache across calls and its eviction, a failed build's log tail, a local feature installed,
an unreachable OCI feature refused fast. Each test builds under a repository of its own and
removes what it made."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiodocker
import pytest

from contracts.errors import BuildFailed, FeatureUnavailable
from contracts.models import Repo
from environments import build as b, build_network, cache
from environments.machine_environment import build_for_machine
from environments.shared_builds import SharedBuilds
from environments.sources import checkout
from tests.docker_env import docker_image
from tests.environments import busybox_image, docker, shared, store

__all__ = ["docker", "docker_image", "shared", "store"]  # fixtures, imported for their tests

WS = "/home/fleet/src/app"


async def _cat(docker: aiodocker.Docker, image: str, path: str) -> str:
    container = await docker.containers.run({"Image": image, "Cmd": ["cat", path]})
    try:
        await container.wait(timeout=30)
        return "".join(await container.log(stdout=True, stderr=True))
    finally:
        await container.delete(force=True)


async def test_dockerfile_built_once_per_content_shared_and_cached(
    docker: aiodocker.Docker, store: cache.BuildCache, shared: SharedBuilds, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    base = await busybox_image(docker)
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "hello.txt").write_text("hello from the context\n")
    (repo / "Dockerfile").write_text(f"FROM {base}\nCOPY hello.txt /opt/hello.txt\n")
    builds = []
    real = b._run_build

    async def counted(*args: object, **kw: object) -> str:
        builds.append(1)
        return await real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(b, "_run_build", counted)
    logs: tuple[list[str], list[str]] = ([], [])
    source = b.DockerfileSource(path="Dockerfile", context="app")
    one, two = await asyncio.gather(*(
        b.ensure_environment(docker, source, repo, store=store, builds=shared, say=log.append,
                             workspace=WS)
        for log in logs
    ))  # fmt: skip
    assert len(builds) == 1
    assert one == two
    assert one.image.startswith("sha256:")
    assert one.devcontainer is None
    assert any("COPY hello.txt" in line for line in logs[0])
    assert await _cat(docker, one.image, "/opt/hello.txt") == "hello from the context\n"

    again: list[str] = []
    assert await b.ensure_environment(docker, source, repo, store=store, builds=shared,
                                      say=again.append, workspace=WS) == one  # fmt: skip
    assert len(builds) == 1
    assert "cached" in again[0]

    (repo / "app" / "hello.txt").write_text("changed\n")  # new content: a new build
    changed = await b.ensure_environment(docker, source, repo, store=store, builds=shared,
                                         say=again.append, workspace=WS)  # fmt: skip
    assert len(builds) == 2
    assert changed.build_id != one.build_id
    tags = [e["tag"] for e in await cache.entries(docker, store)]
    assert len(tags) == 2
    evicted = await cache.evict(docker, cache.BuildCache(**{**store.__dict__, "max_bytes": 1}),
                                keep=tags[1])  # fmt: skip
    assert evicted == [tags[0]]


async def test_failed_build_carries_the_log_tail(
    docker: aiodocker.Docker, store: cache.BuildCache, shared: SharedBuilds, tmp_path: Path
) -> None:
    base = await busybox_image(docker)
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nRUN echo about to fail && exit 3\n")
    said: list[str] = []
    with pytest.raises(BuildFailed) as err:
        await b.ensure_environment(docker, b.DockerfileSource(), tmp_path, store=store,
                                   builds=shared, say=said.append, workspace=WS)  # fmt: skip
    assert "about to fail" in err.value.message
    assert "about to fail" in (err.value.data or {})["logTail"]
    assert "about to fail" in said


async def test_devcontainer_with_a_local_feature(
    docker: aiodocker.Docker, store: cache.BuildCache, shared: SharedBuilds, tmp_path: Path
) -> None:
    base = await busybox_image(docker)
    dev = tmp_path / ".devcontainer"
    (dev / "hello").mkdir(parents=True)
    (dev / "devcontainer.json").write_text(
        f'{{\n  // a base with no registry\n  "image": "{base}",\n'
        '  "features": {"./hello": {"greeting": "hi there"},},\n'
        '  "postCreateCommand": "cat /opt/greeting",\n}\n'
    )
    (dev / "hello" / "devcontainer-feature.json").write_text(
        '{"id": "hello", "options": {"greeting": {"type": "string", "default": "hello"}},'
        ' "containerEnv": {"HELLO_HOME": "/opt"}, "postStartCommand": "echo feature started"}'
    )
    (dev / "hello" / "install.sh").write_text(
        '#!/bin/sh\nset -e\necho "$GREETING as $_REMOTE_USER" > /opt/greeting\n'
    )
    built = await b.ensure_environment(docker, None, tmp_path, store=store, builds=shared,
                                       say=lambda _: None, workspace=WS)  # fmt: skip
    assert await _cat(docker, built.image, "/opt/greeting") == "hi there as root\n"
    env = (await docker.images.inspect(built.image))["Config"]["Env"]
    assert "HELLO_HOME=/opt" in env
    assert built.devcontainer is not None
    assert built.devcontainer.lifecycle == {"postCreateCommand": "cat /opt/greeting"}
    assert built.feature_lifecycle == [{"postStartCommand": "echo feature started"}]


@pytest.mark.parametrize("answers", [False, True], ids=["refused", "silent"])
async def test_unreachable_oci_feature_is_refused_fast(
    docker: aiodocker.Docker, store: cache.BuildCache, shared: SharedBuilds, tmp_path: Path,
    answers: bool,
) -> None:  # fmt: skip
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        if answers:  # accepts, then never says a word
            listener.listen()
        port = listener.getsockname()[1]
        fid = f"127.0.0.1:{port}/devcontainers/features/node:1"
        (tmp_path / ".devcontainer.json").write_text(
            f'{{"image": "x", "features": {{"{fid}": {{"version": "22"}}}}}}'
        )
        # The fetch gives up by itself: the outer timeout only keeps a hang from stalling the run.
        with pytest.raises(FeatureUnavailable) as err:
            async with asyncio.timeout(60):
                await b.ensure_environment(docker, None, tmp_path, store=store, builds=shared,
                                           say=lambda _: None, workspace=WS)  # fmt: skip
    assert fid in err.value.message
    assert f"registry 127.0.0.1:{port}" in err.value.message


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv)
    assert await proc.wait() == 0


async def test_a_machine_environment_from_a_repo(
    docker: aiodocker.Docker, store: cache.BuildCache, shared: SharedBuilds, tmp_path: Path
) -> None:
    base = await busybox_image(docker)
    origin = tmp_path / "origin"
    await _run("git", "init", "-q", "-b", "main", str(origin))
    (origin / ".devcontainer.json").write_text(
        f'{{"image": "{base}", // found by auto-detection\n'
        '"containerEnv": {"APP": "${containerWorkspaceFolder}"},\n'
        '"postStartCommand": "echo up",}'
    )
    await _run("git", "-C", str(origin), "add", ".")
    await _run("git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@t",
               "commit", "-q", "-m", "env")  # fmt: skip
    repo = Repo(url=str(origin), branch="main", path="src/app")
    got = await build_for_machine(docker, store, repo, None, shared=shared,
                                  checkouts=tmp_path / "co", home="/home/fleet",
                                  say=lambda _: None)  # fmt: skip
    assert got.built.image == (await docker.images.inspect(base))["Id"]  # used as it is
    assert got.lifecycle is not None
    assert got.lifecycle.devcontainer.container_env == {"APP": "/home/fleet/src/app"}
    assert got.lifecycle.cwd == "src/app"
    assert got.lifecycle.image_env == {}  # an imported root has no ENV


async def test_checkout_is_shallow_and_follows_the_branch(
    shared: SharedBuilds, tmp_path: Path
) -> None:
    origin = tmp_path / "origin"
    git = ["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@t"]
    run = _run

    await run("git", "init", "-q", "-b", "main", str(origin))
    for n in (1, 2):
        (origin / "Dockerfile").write_text(f"FROM scratch # {n}\n")
        await run(*git, "add", "Dockerfile")
        await run(*git, "commit", "-q", "-m", str(n))
    repo = Repo(url=str(origin), branch="main", path="src/app")
    got = await checkout(repo, tmp_path / "cache", locks=shared.checkouts)
    assert (got / "Dockerfile").read_text() == "FROM scratch # 2\n"
    (origin / "Dockerfile").write_text("FROM scratch # 3\n")
    await run(*git, "commit", "-q", "-am", "3")
    (got / "stray").write_text("left by a build")
    assert await checkout(repo, tmp_path / "cache", locks=shared.checkouts) == got
    assert (got / "Dockerfile").read_text() == "FROM scratch # 3\n"
    assert not (got / "stray").exists()


PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("reached")
except OSError as exc:
    print(type(exc).__name__)
"""


@pytest.mark.timeout(180)
async def test_a_build_step_reaches_nothing_of_the_host(
    docker: aiodocker.Docker, store: cache.BuildCache, shared: SharedBuilds, tmp_path: Path,
    docker_image: tuple[str, str],
) -> None:  # fmt: skip
    """NATS listens on the machines' network's gateway address (docker machines connect there):
    a build step on the engine's default bridge reaches it (the control), one of a platform's
    build (``isolated``: the fleet-builds network, which the host refuses) does not."""
    gateway, image = docker_image
    (tmp_path / "probe.py").write_text(PROBE)
    got = {}
    with socket.create_server(("0.0.0.0", 0)) as nats_like:  # as NATS listens for machines
        port = nats_like.getsockname()[1]
        for isolated in (False, True):
            (tmp_path / "Dockerfile").write_text(
                f"FROM {image}\nCOPY probe.py /tmp/probe.py\n"
                f"RUN python3 /tmp/probe.py {gateway} {port} > /tmp/result  # {isolated}\n"
            )
            built = await b.ensure_environment(
                docker, b.DockerfileSource(), tmp_path, builds=shared, say=lambda _: None,
                workspace=WS,
                store=cache.BuildCache(**{**store.__dict__, "isolated": isolated}),
            )  # fmt: skip
            got[isolated] = (await _cat(docker, built.image, "/tmp/result")).strip()
    assert got[False] == "reached"  # the control: the probe can tell
    assert got[True] in ("TimeoutError", "ConnectionRefusedError", "OSError"), got


async def test_a_build_on_an_engine_elsewhere_keeps_its_network() -> None:
    """A rule of this host guards nothing for an engine on another host: a build through such
    a client runs on the network it was given, and neither bridge nor rule is made."""
    remote = aiodocker.Docker("tcp://192.0.2.1:2375")  # TEST-NET-1: never reached
    try:
        assert await build_network.isolated_network(remote, "fleet-machines") == "fleet-machines"
    finally:
        await remote.close()
