"""Benchmark 26: environments. machines.create to ready from a cached custom environment
against the default environment, cold and from a warm pool of that environment; and the first
build of a Dockerfile (``environments.build``) against ``docker build`` of the same Dockerfile.

The custom environment is a Dockerfile (``FROM`` the platform's machine image, one ``RUN``
more), built once through ``environments.build`` and then named by its cached image
(``fleetd-env:<id>``): the machines then run the platform's runtime from its read-only volume,
as any environment's do. Two `fleet up` stacks side by side: a cold one (no pool), where
samples alternate between an instance of the custom environment and one of the default; and a
warm one with ``FLEET_WARM_POOL=docker@fleetd-env:<id>=1``, sampled only once its pool is full
again, a sample counting only if its container came from the pool. Build samples alternate
too, each on a Dockerfile no cache has seen (a fresh line in its ``RUN``):
``environments.build`` (the repo fetched, the content hashed, the engine's build API) against
the ``docker`` CLI building the same Dockerfile from a plain folder. A resolve of the cached
Dockerfile environment (``environments.build`` again, a cache hit) is timed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from pathlib import Path

import aiodocker

from bench.common import Figure, Report, percentile, temp_dir
from bench.stack import FleetUp, Gateway, servers
from bench.warm_pool import _Side as Side
from bench.warm_pool_docker import _pool_full, _pooled, _remove
from contracts.gateway.env_builds import ENVIRONMENTS_BUILD, BuildEnvironmentParams
from contracts.gateway.environments import (
    INSTANCES_SET_ENVIRONMENT,
    DockerfileSource,
    Environment,
    SetEnvironmentParams,
)
from contracts.gateway.rpc import REPOS_ADD, REPOS_REMOVE, AddRepoParams, RemoveRepoParams
from controlplane.settings import Settings
from fleet.up import prepare

GIT = ("-c", "user.name=bench", "-c", "user.email=bench@fleetd")


#: The branch that keeps the first build's Dockerfile (later builds commit over main).
_FIRST = "bench26-first"


def _commit(origin: Path, dockerfile: str) -> None:
    if not (origin / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main", str(origin)], check=True)
    (origin / "Dockerfile").write_text(dockerfile)
    subprocess.run(["git", "-C", str(origin), "add", "."], check=True)
    subprocess.run(["git", "-C", str(origin), *GIT, "commit", "-qm", "env"], check=False)


def _dockerfile(image: str) -> str:
    return f"FROM {image}\nRUN echo {uuid.uuid4().hex} > /tmp/fleetd-bench-env\n"


async def _set_env(gw: Gateway, instances: list[str], env: Environment) -> None:
    await gw.batch(INSTANCES_SET_ENVIRONMENT, [
        SetEnvironmentParams(instance_id=i, environment=env) for i in instances
    ])  # fmt: skip


async def _build(gw: Gateway, instance: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    built = await gw.call(ENVIRONMENTS_BUILD, BuildEnvironmentParams(instance_id=instance))
    return time.perf_counter() - t0, built.id


async def _adopt(gw: Gateway, instances: list[str], origin: Path, branch: str,
                 env_tag: str) -> None:  # fmt: skip
    """Each instance builds the environment itself (a cache hit: the same content), so that the
    build is one it may name (``fleetd-env:ID``: an instance runs only its own builds), then
    names it; the repo goes again, so its machines clone nothing the other side's do not."""
    await gw.batch(REPOS_ADD, [AddRepoParams(instance_id=i, url=str(origin), branch=branch,
                                             path="app") for i in instances])  # fmt: skip
    await _set_env(gw, instances, Environment(dockerfile=DockerfileSource(repo="app")))
    for i in instances:
        await _build(gw, i)
    await gw.batch(REPOS_REMOVE, [RemoveRepoParams(instance_id=i, path="app") for i in instances])
    await _set_env(gw, instances, Environment(image=env_tag))


def _docker_build(folder: Path, tag: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", "build", "-q", "-t", tag, str(folder)], check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - t0


async def run(report: Report, quick: bool) -> None:
    n = 3 if quick else 10
    print(f"[26] environments: {n} creates each (custom cold, default cold, custom warm), "
          f"{n} first builds against docker build")  # fmt: skip
    tags: list[str] = []
    with temp_dir() as root:
        gateway, image = await prepare(Settings(data_dir=str(root / "build")), "[26]")
        origin = root / "origin"
        _commit(origin, _dockerfile(image))
        async with aiodocker.Docker() as docker:
            try:
                await _run(report, n, root, gateway, image, origin, docker, tags)
            finally:
                for tag in tags:  # this run's images only: the engine is shared
                    # still held by a container being removed: the cache evicts it later
                    with contextlib.suppress(aiodocker.DockerError):
                        await docker.images.delete(tag, noprune=False)


async def _run(report: Report, n: int, root: Path, gateway: str, image: str, origin: Path,
               docker: aiodocker.Docker, tags: list[str]) -> None:  # fmt: skip
    with (
        servers(root / "cold", host=gateway) as (cns, cvk),
        FleetUp(root / "cold", cns.url, cvk.url, {"FLEET_WARM_POOL": "docker=0"}) as cup,
    ):
        builder = Gateway(cup.url)
        custom, default = Side(cup, cns.url, "docker"), Side(cup, cns.url, "docker")
        try:
            await custom.start(n + 1)
            await default.start(n + 1)
            b = custom.instances.pop()
            await builder.call(REPOS_ADD, AddRepoParams(instance_id=b, url=str(origin),
                                                        branch="main", path="app"))  # fmt: skip
            await _set_env(builder, [b], Environment(dockerfile=DockerfileSource(repo="app")))
            _, build_id = await _build(builder, b)
            env_tag = f"fleetd-env:{build_id}"
            tags.append(env_tag)
            keep = ["git", "-C", str(origin), "branch", "-f", _FIRST, "main"]
            await asyncio.to_thread(subprocess.run, keep, check=True)
            hits = [(await _build(builder, b))[0] for _ in range(n)]
            await _adopt(builder, custom.instances, origin, _FIRST, env_tag)
            cold = await _alternate(custom, default, n)
            firsts, plain = await _builds(builder, b, origin, image, root, n, tags)
            await _warm(report, n, root, gateway, env_tag, docker, cold, origin)
        finally:
            await custom.close()
            await default.close()
            await builder.close()
            await _remove(docker, cup)
    _report(report, cold, hits, firsts, plain)


async def _alternate(custom: Side, default: Side, n: int) -> dict[str, list[float]]:
    await custom.sample()  # unmeasured: the services' first calls warm their caches
    await default.sample()
    out: dict[str, list[float]] = {"custom": [], "default": []}
    for _ in range(n):
        out["custom"].append((await custom.sample())[1]["ready"])
        out["default"].append((await default.sample())[1]["ready"])
    return out


async def _builds(gw: Gateway, instance: str, origin: Path, image: str, root: Path, n: int,
                  tags: list[str]) -> tuple[list[float], list[float]]:  # fmt: skip
    firsts, plain = [], []
    for i in range(n):
        _commit(origin, _dockerfile(image))
        took, build_id = await _build(gw, instance)
        firsts.append(took)
        tags.append(f"fleetd-env:{build_id}")
        folder = root / f"plain-{i}"
        folder.mkdir()
        (folder / "Dockerfile").write_text(_dockerfile(image))
        tag = f"fleetd-bench26:{uuid.uuid4().hex[:12]}"
        plain.append(await asyncio.to_thread(_docker_build, folder, tag))
        tags.append(tag)
    return firsts, plain


async def _warm(report: Report, n: int, root: Path, gateway: str, env_tag: str,
                docker: aiodocker.Docker, cold: dict[str, list[float]],
                origin: Path) -> None:  # fmt: skip
    pool = {"FLEET_WARM_POOL": f"docker@{env_tag}=1"}
    with (
        servers(root / "warm", host=gateway) as (wns, wvk),
        FleetUp(root / "warm", wns.url, wvk.url, pool) as wup,
    ):
        warm = Side(wup, wns.url, "docker")
        try:
            await warm.start(n + 1)
            await _adopt(warm.gw, warm.instances, origin, _FIRST, env_tag)
            await _pool_full(docker, wup)
            await warm.sample()
            cold["warm"], missed = [], 0
            for _ in range(n):
                await _pool_full(docker, wup)
                mid, marks = await warm.sample()
                if await _pooled(docker, mid):
                    cold["warm"].append(marks["ready"])
                else:
                    missed += 1
        finally:
            await warm.close()
            await _remove(docker, wup)
    if missed:
        report.note(f"[26] {missed} warm sample(s) did not come from the pool (left out)")


def _report(report: Report, t: dict[str, list[float]], hits: list[float], firsts: list[float],
            plain: list[float]) -> None:  # fmt: skip
    c50, d50 = percentile(t["custom"], 50), percentile(t["default"], 50)
    report.add(Figure("26", "create-to-ready p50, cached custom environment, cold", c50, "s",
                      d50, "default environment, cold", "<= 1.2x", c50 <= 1.2 * d50))  # fmt: skip
    w50 = percentile(t["warm"], 50) if t.get("warm") else None
    met = w50 is not None and w50 <= 0.050
    report.add(Figure("26", "create-to-ready p50, custom environment, warm pool", w50, "s",
                      c50, "custom cold", "<= 50 ms", met))  # fmt: skip
    f50, p50 = percentile(firsts, 50), percentile(plain, 50)
    report.add(Figure("26", "first build of a Dockerfile (environments.build) p50", f50, "s",
                      p50, "docker build", "<= 1.1x", f50 <= 1.1 * p50))  # fmt: skip
    report.add(Figure("26", "environments.build of a cached build p50", percentile(hits, 50),
                      "s"))  # fmt: skip
