"""An environment's image: built once per content hash on the machine's Docker engine, shared by
concurrent callers, its log streamed line by line, cached across restarts under
``<repository>:<hash>`` with least-recently-used eviction (environments/cache.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiodocker
import aiohttp
import structlog

from base import hostile_fs
from contracts.errors import BuildFailed, EnvironmentInvalid
from environments import (
    build_limits,
    build_network,
    cache,
    devcontainer as dc,
    dockerfile,
    features as ft,
)
from environments.shared_builds import TAIL_LINES, Say, SharedBuilds
from environments.sources import find_devcontainer, hash_tree, present, read, walk

log = structlog.get_logger(__name__)

#: Changes when what a build makes from the same inputs changes.
RECIPE = "fleetd-env/1"
#: Refuses (ImageRefused) an image the environment may not use (a FROM, a devcontainer's image).
CheckImage = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class DockerfileSource:
    """A Dockerfile in the repo (paths relative to its root)."""

    path: str = "Dockerfile"
    context: str = "."


@dataclass(frozen=True)
class DevcontainerSource:
    """A devcontainer.json in the repo; None: the first of the spec's places it has."""

    path: str | None = None


EnvironmentSource = DockerfileSource | DevcontainerSource


@dataclass(frozen=True)
class BuiltEnvironment:
    #: The image ID (``sha256:...``) on the engine.
    image: str
    #: The content hash of everything the image was made from: the build's id.
    build_id: str
    #: The devcontainer.json's settings; None for a Dockerfile environment.
    devcontainer: dc.Devcontainer | None
    #: Lifecycle commands of the features, in install order, run before the file's own.
    feature_lifecycle: list[dict[str, dc.Command]] = field(default_factory=list)


@dataclass
class _Plan:
    dockerfile: bytes | None
    image: str | None
    context: str
    args: dict[str, str]
    target: str | None
    features: list[ft.Feature]
    devcontainer: dc.Devcontainer | None

    def images(self) -> list[str]:
        """The images the build starts from: the file's image, the Dockerfile's FROMs."""
        if self.dockerfile is None:
            return [self.image] if self.image else []
        return dockerfile.image_refs(self.dockerfile, self.args)

    def content_hash(self, checkout: Path) -> str:
        h = hashlib.sha256(RECIPE.encode())
        feats = [[f.id, f.options, f.container_env] for f in self.features]
        recipe = {"dockerfile": (self.dockerfile or b"").hex(), "image": self.image,
                  "args": self.args, "target": self.target, "features": feats}  # fmt: skip
        h.update(json.dumps(recipe, sort_keys=True).encode())
        if self.dockerfile is not None:
            hash_tree(checkout / self.context, h)
        for f in self.features:
            hash_tree(f.root, h)
        return h.hexdigest()


async def ensure_environment(docker: aiodocker.Docker, source: EnvironmentSource | None,
                             checkout: Path, *, store: cache.BuildCache, builds: SharedBuilds,
                             say: Say, workspace: str, check_image: CheckImage | None = None,
                             ) -> BuiltEnvironment:  # fmt: skip
    """The image of ``source`` (None: the checkout's devcontainer.json, found in the spec's
    places) in ``checkout``, a host-side checkout of its repo (sources.checkout), built on
    ``docker`` unless a build of the same content hash is there. ``workspace`` is the repo's
    checkout in the machine (``${containerWorkspaceFolder}``). Concurrent calls for one hash
    share one build of ``builds``; every line of its log goes to each caller's ``say``.

    Raises EnvironmentRefused, EnvironmentInvalid (the file, a missing image), FeatureUnavailable
    or BuildFailed (with the log's tail): the machine fails at stage ``environment``."""
    if source is None:
        found = find_devcontainer(checkout)
        if found is None:
            raise EnvironmentInvalid("the repo has no devcontainer.json")
        source = DevcontainerSource(found)
    with tempfile.TemporaryDirectory(prefix="fleetd-features-") as tmp:
        plan = await _plan(source, checkout, workspace, Path(tmp), store)
        if check_image is not None:
            for ref in plan.images():
                await check_image(ref)
        if plan.dockerfile is None and not plan.features:
            assert plan.image is not None
            image = await _image_id(docker, plan.image)
            return BuiltEnvironment(image, image, plan.devcontainer)
        digest = await asyncio.to_thread(plan.content_hash, checkout)
        image = await builds.build(
            digest, say, lambda tell: _build(docker, plan, checkout, digest, store, tell)
        )
    lifecycles = [f.lifecycle for f in plan.features if f.lifecycle]
    return BuiltEnvironment(image, digest, plan.devcontainer, lifecycles)


async def _plan(source: EnvironmentSource, checkout: Path, workspace: str, tmp: Path,
                store: cache.BuildCache) -> _Plan:  # fmt: skip
    if isinstance(source, DockerfileSource):
        rel = dc.in_repo(source.path, "dockerfile.path")
        text = read(checkout, rel)
        dockerfile.check_sources(text, rel)
        context = _context_dir(checkout, source.context)
        return _Plan(text, None, context, {}, None, [], None)
    path = source.path or find_devcontainer(checkout)
    if path is None:
        raise EnvironmentInvalid("the repo has no devcontainer.json")
    conf = dc.parse(read(checkout, path, dc.MAX_CONFIG_BYTES), path, workspace=workspace)
    feats = []
    for n, (fid, given) in enumerate(conf.features.items()):
        opts = _options(given)
        if fid.startswith("./"):
            feats.append(ft.local_feature(checkout, path, fid, opts))
        else:
            feats.append(await ft.oci_feature(fid, opts, tmp / str(n), store.feature_timeout_s,
                                              store.feature_blob_hosts))  # fmt: skip
    if conf.build is None:
        return _Plan(None, conf.image, ".", {}, None, feats, conf)
    b = conf.build
    text = read(checkout, b.dockerfile)
    dockerfile.check_sources(text, b.dockerfile)
    return _Plan(text, None, _context_dir(checkout, b.context), b.args, b.target, feats, conf)


def _options(given: Any) -> dict[str, Any]:
    """A feature's options as the file gives them: an object, or a version alone."""
    return given if isinstance(given, dict) else {"version": given}


def check_devcontainer(checkout: Path, path: str | None, workspace: str) -> str | None:
    """The devcontainer.json at ``path`` (None: the first of the spec's places) and its local
    features held, now, to the rules a machine's build holds them to: EnvironmentRefused or
    EnvironmentInvalid as ``ensure_environment`` would raise them (an OCI feature is checked
    when it is fetched, at the build). The path checked; None when the checkout has no such
    file (yet)."""
    path = path or find_devcontainer(checkout)
    if path is None or not present(checkout, path):
        return None
    conf = dc.parse(read(checkout, path, dc.MAX_CONFIG_BYTES), path, workspace=workspace)
    for fid, given in conf.features.items():
        if fid.startswith("./"):
            ft.local_feature(checkout, path, fid, _options(given))
    return path


def _context_dir(checkout: Path, rel: str) -> str:
    """``rel``, a folder of the checkout reached through no link at any component."""
    rel = dc.in_repo(rel, "context")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    top = hostile_fs.open_top(checkout)
    try:
        os.close(hostile_fs.open_dir_at(top, parts))
    except OSError:
        raise EnvironmentInvalid(
            f"build context {rel!r} is not a folder of the repo (links are never followed)"
        ) from None
    finally:
        os.close(top)
    return rel


async def _build(docker: aiodocker.Docker, plan: _Plan, checkout: Path, digest: str,
                 store: cache.BuildCache, say: Say) -> str:  # fmt: skip
    tag = f"{store.repository}:{digest[:32]}"
    found = await cache.lookup(docker, store, tag)
    if found is not None:
        say(f"environment {digest[:12]}: cached as {tag}")
        return found
    image = base = None
    deadline = asyncio.get_running_loop().time() + store.build_timeout_s
    if plan.dockerfile is not None:
        # Their ONBUILD triggers run in this build: held to the Dockerfile's own rule.
        await dockerfile.check_base_images(
            docker, dockerfile.base_images(plan.dockerfile, plan.args)
        )
        stage = tag if not plan.features else f"{tag}-base"
        with tempfile.TemporaryFile() as ctx:
            await asyncio.to_thread(_tar_context, ctx, checkout, plan)
            base = image = await _run_build(docker, ctx, stage, plan.args, plan.target, store,
                                            say, deadline)  # fmt: skip
    if plan.features:
        base = base or await _image_id(docker, plan.image or "")
        config = (await docker.images.inspect(base))["Config"]
        # The image's ONBUILD triggers run in the features' build over it: the same rule.
        triggers = "\n".join(config.get("OnBuild") or []).encode()
        dockerfile.check_sources(triggers, f"image {plan.image or base}", onbuild=True)
        user = str(config.get("User") or "")
        conf = plan.devcontainer
        remote = (conf and (conf.remote_user or conf.container_user)) or user or "root"
        with tempfile.TemporaryFile() as ctx:
            await asyncio.to_thread(_tar_features, ctx, base, user, remote, plan.features)
            image = await _run_build(docker, ctx, tag, {}, None, store, say, deadline)
        if plan.dockerfile is not None:
            await cache.untag(docker, f"{tag}-base")
    assert image is not None
    await cache.record(docker, store, tag)
    return image


def _tar_context(out: IO[bytes], checkout: Path, plan: _Plan) -> None:
    top = checkout / plan.context
    with tarfile.open(fileobj=out, mode="w") as tar:
        for rel, _ in walk(top):
            tar.add(top / rel, arcname=rel, recursive=False)  # a link stays a link
        _add_bytes(tar, ".fleetd.Dockerfile", plan.dockerfile or b"")
    out.seek(0)


def _tar_features(out: IO[bytes], base: str, user: str, remote: str,
                  feats: list[ft.Feature]) -> None:  # fmt: skip
    with tarfile.open(fileobj=out, mode="w") as tar:
        for n, f in enumerate(feats):
            for rel, _ in walk(f.root):
                tar.add(f.root / rel, arcname=f"features/{n}/{rel}", recursive=False)
            _add_bytes(tar, f"features/{n}/devcontainer-features.env",
                       ft.env_file(f, remote, user or "root"))  # fmt: skip
        _add_bytes(tar, ".fleetd.Dockerfile", ft.layer(base, user, feats).encode())
    out.seek(0)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


async def _run_build(docker: aiodocker.Docker, context: IO[bytes], tag: str,
                     args: dict[str, str], target: str | None, store: cache.BuildCache,
                     say: Say, deadline: float) -> str:  # fmt: skip
    """The image built from ``context``, tagged ``tag``, by ``deadline`` (the loop's time)
    and within the build's limits (build_limits); BuildFailed with the log's tail."""
    params: dict[str, Any] = {"t": tag, "dockerfile": ".fleetd.Dockerfile", "rm": "1",
                              "forcerm": "1", **build_limits.params(store)}  # fmt: skip
    if args:
        params["buildargs"] = json.dumps(args)
    if target:
        params["target"] = target
    network = store.network
    if store.isolated:
        network = await build_network.isolated_network(docker, network)
    if network:
        params["networkmode"] = network
    lines: deque[str] = deque(maxlen=TAIL_LINES)
    image: str | None = None
    async with build_limits.Steps(docker, store) as steps:

        def tell(line: str) -> None:
            steps.heard(line)
            say(line)

        try:
            image = await _stream(docker, params, context, lines, tell, deadline)
        except TimeoutError:
            await steps.remove()
            raise build_limits.exceeded(store, "time") from None
    tail = "\n".join(lines)
    if image is None:
        await steps.remove()
        over = steps.failed_as(tail)
        if over is not None:
            raise build_limits.exceeded(store, over)
        raise BuildFailed(f"the image build failed:\n{tail}", data={"logTail": tail})
    await build_limits.check_image(docker, store, tag)
    return image


async def _stream(docker: aiodocker.Docker, params: dict[str, Any], context: IO[bytes],
                  lines: deque[str], say: Say, deadline: float) -> str | None:  # fmt: skip
    """The engine's build, its log said line by line; its image ID (None: it failed).
    TimeoutError at ``deadline``: the connection closes, which ends the engine's build."""
    image: str | None = None
    headers = {"Content-Type": "application/x-tar"}
    left = max(0.001, deadline - asyncio.get_running_loop().time())
    async with asyncio.timeout(left):
        async with docker._query("build", "POST", params=params, headers=headers,
                                 data=context, timeout=aiohttp.ClientTimeout(total=left),
                                 ) as resp:  # fmt: skip
            async for raw in resp.content:
                image = _on_message(raw, lines, say) or image
    return image


def _on_message(raw: bytes, lines: deque[str], say: Say) -> str | None:
    """One message of the engine's build stream: its log lines said, the image ID returned;
    an error becomes a line of the log, and the build has no image."""
    try:
        msg = json.loads(raw)
    except ValueError:
        return None
    if "error" in msg:
        text = str(msg.get("error"))
        lines.append(text)
        say(text)
        return None
    for line in str(msg.get("stream", "")).splitlines():
        if line.strip():
            lines.append(line)
            say(line)
    aux = msg.get("aux")
    return str(aux["ID"]) if isinstance(aux, dict) and "ID" in aux else None


async def _image_id(docker: aiodocker.Docker, ref: str) -> str:
    try:
        return str((await docker.images.inspect(ref))["Id"])
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            raise EnvironmentInvalid(
                f"image {ref!r} is not on the machine's Docker engine"
            ) from None
        raise
