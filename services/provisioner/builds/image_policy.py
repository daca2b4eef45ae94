"""The images an instance's environment may use on a Docker engine other instances share:
registry-named images, the platform's own (the machine image and its base), and the
instance's own builds and fork or snapshot layers. Anything else is ImageRefused: another
instance's build (``fleetd-env:*``) or layer (``fleetd-layer:*``, which holds that machine's
writes outside its home), and any image named by its ID or an ID's prefix (the engine finds an
image by a prefix of its ID when no tag has that name).

A refusal is the same whether or not the engine has the image, so that neither
``environments.build`` nor a machine's failure tells one instance of another's images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiodocker

from contracts.errors import ImageNotFound, ImageRefused, ProviderError
from controlplane.store import Store
from environments.dockerfile import image_refs, pulled
from providers.docker import BASE_REPO, IMAGE_REPO, LAYER_REPO

#: The platform's images every instance may run.
PLATFORM_REPOS = frozenset({IMAGE_REPO, BASE_REPO})
#: The platform's repositories of tenants' images: every other ``fleetd-*`` name is private.
PRIVATE_PREFIX = "fleetd-"
_HEX = re.compile(r"(sha256:)?[0-9a-f]+")
_DEFAULT_DOMAINS = ("docker.io", "index.docker.io")


@dataclass(frozen=True)
class Reference:
    #: The repository as the engine keeps it, its Docker Hub domain and ``library/`` left out.
    name: str
    tag: str | None
    digest: str | None

    @property
    def canonical(self) -> str:
        """How the engine lists it in RepoTags (``name:tag``) or RepoDigests."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or 'latest'}"


def parse(ref: str) -> Reference:
    """``ref`` (``[domain/]path[:tag][@digest]``) as the engine reads it."""
    rest, _, digest = ref.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    name, tag = (rest[:colon], rest[colon + 1 :]) if colon > slash else (rest, None)
    first, _, tail = name.partition("/")
    if tail and first in _DEFAULT_DOMAINS:
        name = tail
    if name.startswith("library/") and name.count("/") == 1:
        name = name.removeprefix("library/")
    return Reference(name, tag, digest or None)


@dataclass(frozen=True)
class ImagePolicy:
    instance_id: str
    #: The machines and snapshots of the instance: the owners of layers it may use.
    layer_owners: frozenset[str]
    #: The image IDs its machines ran and environments.build made for it: its own builds.
    own_images: frozenset[str]

    def _refused(self, ref: str, why: str) -> ImageRefused:
        return ImageRefused(
            f"image {ref!r} is not one instance {self.instance_id} may use: {why}; use a "
            "registry-named image, the platform's, or one of the instance's own builds",
            data={"image": ref},
        )

    def private(self, ref: str) -> Reference | None:
        """Refuse what is refused by its name alone; the reference if it names a private
        repository (one of the instance's builds, which only its image ID tells)."""
        if _HEX.fullmatch(ref):
            raise self._refused(ref, "an image ID, or a prefix of one")
        parsed = parse(ref)
        if not parsed.name.startswith(PRIVATE_PREFIX) or parsed.name in PLATFORM_REPOS:
            return None
        if parsed.name == LAYER_REPO:
            if parsed.tag in self.layer_owners and parsed.digest is None:
                return None
            raise self._refused(ref, "another machine's layer")
        return parsed

    async def check(self, docker: aiodocker.Docker, ref: str) -> None:
        """ImageRefused unless the instance may use ``ref`` (a Dockerfile's FROM, say) and
        every image its ``ONBUILD`` triggers name: they run in a build that starts from it.
        A registry image the engine lacks is pulled first, to read them (the build would pull
        it anyway)."""
        if self.private(ref) is not None:
            await self._own_build(docker, ref)
        info = await pulled(docker, ref)
        config = (info or {}).get("Config")
        triggers = config.get("OnBuild") if isinstance(config, dict) else None
        for trigger in triggers or []:
            for named in image_refs(str(trigger).encode(), {}):
                if self.private(named) is not None:
                    await self._own_build(docker, named)

    async def image_id(self, docker: aiodocker.Docker, ref: str) -> str:
        """The ID of ``ref`` on the engine, if the instance may use it: ImageRefused, else
        ImageNotFound when the engine has no image that ``ref`` names (by a tag or a digest,
        not an ID prefix)."""
        if self.private(ref) is not None:
            return await self._own_build(docker, ref)
        info = await _inspect(docker, ref)
        if info is None or not _names(info, parse(ref)):
            raise ImageNotFound(f"image {ref!r} is not on the machine's Docker engine")
        return str(info["Id"])

    async def _own_build(self, docker: aiodocker.Docker, ref: str) -> str:
        info = await _inspect(docker, ref)
        if info is None or str(info["Id"]) not in self.own_images or not _names(info, parse(ref)):
            raise self._refused(ref, "not a build of this instance's")
        return str(info["Id"])


def _names(info: dict[str, object], ref: Reference) -> bool:
    """Whether the engine found ``info`` by ``ref``'s tag or digest (not an ID prefix)."""
    listed = [*(info.get("RepoTags") or []), *(info.get("RepoDigests") or [])]  # type: ignore[misc]
    return ref.canonical in {parse(str(t)).canonical for t in listed}


async def _inspect(docker: aiodocker.Docker, ref: str) -> dict[str, object] | None:
    try:
        info: dict[str, object] = await docker.images.inspect(ref)
    except aiodocker.DockerError as exc:
        if exc.status in (400, 404):
            return None
        raise ProviderError(f"docker: looking for image {ref!r}: {exc.message}") from None
    return info


async def for_instance(store: Store, instance_id: str) -> ImagePolicy:
    """The policy of ``instance_id``, from its machines (any status: a stopped or archived
    machine's build is still the instance's), its snapshots and the builds made for it."""
    machines = await store.list_machines(instance_id)
    snapshots = await store.snapshots.of_instance(instance_id)
    owners = {m.id for m in machines} | {s.id for s in snapshots}
    images = {m.environment_image for m in machines if m.environment_image}
    images |= await store.environments.builds(instance_id)
    return ImagePolicy(instance_id, frozenset(owners), frozenset(images))
