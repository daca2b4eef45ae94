"""One call from a machine's environment to what the platform needs of it: the repo checked out
on the host, the image built (or found), and the record its lifecycle commands run from."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiodocker

from contracts.models import Repo
from environments.build import (
    BuiltEnvironment,
    CheckImage,
    EnvironmentSource,
    ensure_environment,
)
from environments.cache import BuildCache
from environments.lifecycle_commands import MachineLifecycle
from environments.shared_builds import Say, SharedBuilds
from environments.sources import checkout
from environments.users import image_user, wanted


@dataclass(frozen=True)
class MachineEnvironment:
    built: BuiltEnvironment
    #: What ``store.lifecycles.save`` keeps for the machine; None: no devcontainer.
    lifecycle: MachineLifecycle | None


async def build_for_machine(docker: aiodocker.Docker, cache: BuildCache, repo: Repo,
                            source: EnvironmentSource | None, *, shared: SharedBuilds,
                            checkouts: Path, home: str, say: Say,
                            git_env: Mapping[str, str] | None = None,
                            check_image: CheckImage | None = None,
                            ) -> MachineEnvironment:  # fmt: skip
    """Check ``repo`` out under ``checkouts`` (host side), build ``source`` from it (None: its
    devcontainer.json) on ``docker``; ``home`` is the machine's home as its processes see it
    (the repo is at ``home/repo.path``: ``${containerWorkspaceFolder}``). Raises what
    ``ensure_environment`` and ``sources.checkout`` raise; ``check_image`` refuses an image the
    environment may not start from. Its checkout and build are ``shared``'s (the process's)."""
    tree = await checkout(repo, checkouts, locks=shared.checkouts, env=git_env,
                          limits=cache.clone)  # fmt: skip
    workspace = posixpath.join(home, repo.path)
    built = await ensure_environment(docker, source, tree, store=cache, builds=shared, say=say,
                                     workspace=workspace, check_image=check_image)  # fmt: skip
    if built.devcontainer is None:
        return MachineEnvironment(built, None)
    listed = (await docker.images.inspect(built.image))["Config"].get("Env") or []
    image_env = {name: value for name, _, value in (str(v).partition("=") for v in listed)}
    dev = built.devcontainer
    spec = wanted(dev.remote_user, dev.container_user)
    user = await image_user(docker, built.image, spec)
    life = MachineLifecycle(devcontainer=dev, image_env=image_env, cwd=repo.path, user=user,
                            root=spec is not None and user is None,
                            feature_lifecycle=built.feature_lifecycle)  # fmt: skip
    return MachineEnvironment(built, life)
