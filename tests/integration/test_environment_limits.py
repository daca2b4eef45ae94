"""Environment builds and host-side clones held to their limits, as an attacker who owns the
repo would test them (issue 45, findings 2, 3 and 10), on the real Docker engine and real git:
a build over its memory, time or disk fails with a named error and leaves no container
behind; ``ADD <url>`` never reaches the host's loopback; a clone's ssh offers none of the
host's identities; a clone over its disk or time fails and leaves no checkout behind."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiodocker
import pytest

from base.keyed_locks import KeyedLocks
from contracts.errors import BuildLimitExceeded, EnvironmentRefused
from contracts.models import Repo
from environments import build as b, cache
from environments.host_git import CloneLimits
from environments.shared_builds import SharedBuilds
from environments.sources import checkout
from tests.environments import busybox_image, docker, shared, store

__all__ = ["docker", "shared", "store"]  # fixtures, imported for their tests

WS = "/home/fleet/src/app"
RUNNING_IN = re.compile(r"Running in ([0-9a-f]{12})")


def _with(store: cache.BuildCache, **changes: object) -> cache.BuildCache:
    return cache.BuildCache(**{**store.__dict__, **changes})  # type: ignore[arg-type]


async def _over_a_limit(docker: aiodocker.Docker, store: cache.BuildCache, tmp_path: Path,
                        step: str) -> tuple[BuildLimitExceeded, list[str]]:  # fmt: skip
    base = await busybox_image(docker)
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nRUN {step}\n")
    said: list[str] = []
    with pytest.raises(BuildLimitExceeded) as err:
        async with SharedBuilds() as shared:
            await b.ensure_environment(docker, b.DockerfileSource(), tmp_path, store=store,
                                       builds=shared, say=said.append, workspace=WS)  # fmt: skip
    return err.value, said


async def _nothing_left(docker: aiodocker.Docker, store: cache.BuildCache,
                        said: list[str]) -> None:  # fmt: skip
    """The step's container is gone and no image of the build is tagged."""
    ran = RUNNING_IN.findall("\n".join(said))
    assert ran, said  # the step did start
    for cid in ran:
        with pytest.raises(aiodocker.DockerError) as gone:
            await docker.containers.get(cid)
        assert gone.value.status == 404
    assert await cache.entries(docker, store) == []


async def test_a_build_step_over_its_memory_limit_fails_by_name(
    docker: aiodocker.Docker, store: cache.BuildCache, tmp_path: Path
) -> None:
    # dd's one 256 MiB buffer, filled from /dev/zero: resident, over a 64 MiB build.
    err, said = await _over_a_limit(
        docker, _with(store, build_memory_mb=64), tmp_path,
        "busybox dd if=/dev/zero of=/dev/null bs=256M count=1",
    )  # fmt: skip
    assert err.data is not None
    assert err.data["limit"] == "memory", err
    assert "64 MB" in err.message
    await _nothing_left(docker, store, said)


@pytest.mark.timeout(240)
async def test_a_build_over_its_time_fails_by_name_and_leaves_nothing(
    docker: aiodocker.Docker, store: cache.BuildCache, tmp_path: Path
) -> None:
    err, said = await _over_a_limit(docker, _with(store, build_timeout_s=5.0), tmp_path,
                                    "sleep 100000")  # fmt: skip
    assert err.data is not None
    assert err.data["limit"] == "time", err
    await _nothing_left(docker, store, said)


@pytest.mark.timeout(240)
async def test_a_build_step_over_its_disk_limit_fails_by_name_and_leaves_nothing(
    docker: aiodocker.Docker, store: cache.BuildCache, tmp_path: Path
) -> None:
    """The step writes past the cap, then stays: only a watch of what it writes stops it
    (a check of the image at the end never comes before the step's time is up)."""
    err, said = await _over_a_limit(
        docker, _with(store, build_disk_mb=16, build_timeout_s=180.0), tmp_path,
        "busybox dd if=/dev/zero of=/big bs=1M count=48 && sleep 100000",
    )  # fmt: skip
    assert err.data is not None
    assert err.data["limit"] == "disk", err
    assert "16 MB" in err.message
    await _nothing_left(docker, store, said)


async def test_a_build_over_its_disk_limit_in_steps_leaves_no_image(
    docker: aiodocker.Docker, store: cache.BuildCache, tmp_path: Path
) -> None:
    """Steps each under the cap, together over it: the build fails and its image goes."""
    err, _ = await _over_a_limit(
        docker, _with(store, build_disk_mb=24), tmp_path,
        "busybox dd if=/dev/zero of=/a bs=1M count=14\n"
        "RUN busybox dd if=/dev/zero of=/b bs=1M count=14",
    )  # fmt: skip
    assert err.data is not None
    assert err.data["limit"] == "disk", err
    assert await cache.entries(docker, store) == []


class _Seen(BaseHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b"the host's loopback secret\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def loopback_service() -> Iterator[tuple[int, list[str]]]:
    """A service on the host's loopback only (as a metadata service or valkey would be)."""
    seen: list[str] = []
    handler = type("Handler", (_Seen,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    "spelling",
    [
        "ADD http://127.0.0.1:{port}/secret /secret",
        "add \\\n  --chown=0:0 \\\n  http://127.0.0.1:{port}/secret /secret",
    ],
    ids=["plain", "continued"],
)
async def test_add_of_a_url_never_reaches_the_hosts_loopback(
    docker: aiodocker.Docker, store: cache.BuildCache, shared: SharedBuilds, tmp_path: Path,
    loopback_service: tuple[int, list[str]], spelling: str,
) -> None:  # fmt: skip
    port, seen = loopback_service
    base = await busybox_image(docker)
    dev = tmp_path / ".devcontainer"
    dev.mkdir()
    (dev / "Dockerfile").write_text(f"FROM {base}\n{spelling.format(port=port)}\n")
    (dev / "devcontainer.json").write_text('{"build": {"dockerfile": "Dockerfile"}}')
    with pytest.raises(EnvironmentRefused) as err:
        await b.ensure_environment(docker, None, tmp_path, store=store, builds=shared,
                                   say=lambda _: None, workspace=WS)  # fmt: skip
    assert "ADD" in err.value.message
    assert ".devcontainer/Dockerfile:2" in err.value.message
    assert seen == []


@pytest.mark.parametrize("built_as", ["features", "dockerfile"])
async def test_an_onbuild_add_of_a_base_image_never_reaches_the_hosts_loopback(
    docker: aiodocker.Docker, store: cache.BuildCache, shared: SharedBuilds, tmp_path: Path,
    loopback_service: tuple[int, list[str]], built_as: str,
) -> None:  # fmt: skip
    """A base image whose ONBUILD trigger fetches a URL, then a devcontainer with a feature
    built over it (the trigger would run in the feature's build), or a Dockerfile FROM it
    (named through a build argument)."""
    port, seen = loopback_service
    base = await busybox_image(docker)
    tag = f"fleet-test-onbuild:{uuid.uuid4().hex[:10]}"
    with_trigger = (await docker.images.inspect(base))["Id"]
    container = await docker.containers.create({"Image": with_trigger, "Cmd": ["true"]})
    try:
        await docker._query_json(
            "commit", "POST", params={"container": container.id, "repo": tag.split(":")[0],
                                      "tag": tag.split(":")[1]},
            data={"OnBuild": [f"ADD http://127.0.0.1:{port}/secret /secret"]},
        )  # fmt: skip
    finally:
        await container.delete(force=True)
    try:
        dev = tmp_path / ".devcontainer"
        (dev / "f").mkdir(parents=True)
        (dev / "devcontainer.json").write_text(f'{{"image": "{tag}", "features": {{"./f": {{}}}}}}')
        if built_as == "dockerfile":
            (dev / "Dockerfile").write_text("ARG BASE=nothing\nFROM ${BASE} AS first\nFROM first\n")
            (dev / "devcontainer.json").write_text(
                f'{{"build": {{"dockerfile": "Dockerfile", "args": {{"BASE": "{tag}"}}}}}}'
            )
        (dev / "f" / "devcontainer-feature.json").write_text('{"id": "f"}')
        (dev / "f" / "install.sh").write_text("#!/bin/sh\ntrue\n")
        with pytest.raises(EnvironmentRefused, match="ONBUILD"):
            await b.ensure_environment(docker, None, tmp_path, store=store, builds=shared,
                                       say=lambda _: None, workspace=WS)  # fmt: skip
        assert seen == []
    finally:
        await docker.images.delete(tag, force=True)


async def _git(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec("git", "-c", "user.name=t", "-c",
                                                "user.email=t@t", *argv)  # fmt: skip
    assert await proc.wait() == 0


async def _origin(tmp_path: Path, files: dict[str, bytes]) -> Path:
    origin = tmp_path / "origin"
    await _git("init", "-q", "-b", "main", str(origin))
    for name, data in files.items():
        (origin / name).write_bytes(data)
    await _git("-C", str(origin), "add", ".")
    await _git("-C", str(origin), "commit", "-q", "-m", "files")
    return origin


SSH_SHIM = """#!/bin/sh
# Stands for ssh: records what the real ssh would use to authenticate with exactly these
# arguments and this environment (ssh -G resolves it, connects nowhere), then serves the
# repo here (the last argument is the remote command) as an ssh server would.
{{ env; echo "--- home"; ls -A "$HOME" 2>&1; echo "--- ssh -G"; /usr/bin/ssh -G "$@"; }} \\
  > {record} 2>&1
for last; do :; done
exec sh -c "$last"
"""


async def test_a_clone_offers_none_of_the_hosts_ssh_identities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone over ssh of a real repo, with an ssh that tells what it would offer: no key
    of the host's (root's ~/.ssh, whatever HOME says), no agent, no ssh config of the host,
    and a HOME of its own that is empty."""
    origin = await _origin(tmp_path, {"README": b"private\n"})
    shims = tmp_path / "bin"
    shims.mkdir()
    record = tmp_path / "ssh-record"
    (shims / "ssh").write_text(SSH_SHIM.format(record=record))
    (shims / "ssh").chmod(0o755)
    fake_home = tmp_path / "root-home"
    (fake_home / ".ssh").mkdir(parents=True)
    (fake_home / ".ssh" / "id_ed25519").write_text("a key of the host's\n")
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(fake_home))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    repo = Repo(url=f"ssh://localhost{origin}", branch="main", path="src/app")
    got = await checkout(repo, tmp_path / "cache", locks=KeyedLocks())
    assert (got / "README").read_text() == "private\n"  # the clone went through the shim
    text = record.read_text()
    env, _, rest = text.partition("--- home\n")
    listing, _, resolved = rest.partition("--- ssh -G\n")
    variables = dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
    assert "SSH_AUTH_SOCK" not in variables
    assert variables.get("HOME") not in (None, str(fake_home), "/root"), variables
    assert listing.strip() == ""  # its HOME is empty
    assert variables["GIT_CONFIG_NOSYSTEM"] == "1"
    assert variables["GIT_CONFIG_GLOBAL"] == "/dev/null"
    options = [line.split(" ", 1) for line in resolved.splitlines() if " " in line]
    identities = [v for k, v in options if k == "identityfile"]
    assert identities == ["none"], resolved
    assert ("identityagent", "none") in [tuple(o) for o in options], resolved


async def test_a_clone_over_its_disk_cap_fails_by_name_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    origin = await _origin(tmp_path, {"big": os.urandom(3 * 2**20), "small": b"x"})
    repo = Repo(url=str(origin), branch="main", path="src/app")
    with pytest.raises(BuildLimitExceeded) as err:
        await checkout(repo, tmp_path / "cache", locks=KeyedLocks(), limits=CloneLimits(disk_mb=1))
    assert err.value.data is not None
    assert err.value.data["limit"] == "disk"
    assert list((tmp_path / "cache").iterdir()) == []


async def test_a_clone_over_its_time_fails_by_name_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts, then never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        repo = Repo(url=f"git://127.0.0.1:{silent.getsockname()[1]}/r.git", branch="main",
                    path="src/app")  # fmt: skip
        with pytest.raises(BuildLimitExceeded) as err:
            await checkout(repo, tmp_path / "cache", locks=KeyedLocks(),
                           limits=CloneLimits(time_s=2.0))  # fmt: skip
    assert err.value.data is not None
    assert err.value.data["limit"] == "time"
    assert list((tmp_path / "cache").iterdir()) == []
