"""An instance's environment (gateway_rpc.py is full): ``instances.setEnvironment`` and
``instances.getEnvironment``.

An environment is what a machine's root file system comes from: an image of the machine's
Docker engine (``image``), a Dockerfile in one of the instance's repos (``dockerfile``), or a
repo's devcontainer.json (``devcontainer``). ``null`` is auto-detection: a repo of the
instance with a devcontainer file, else the platform's default environment. It applies to the
instance's machines created (or rebuilt) from then on; ``machines.get`` says which environment
and which build of it (``environment``, ``environmentImage``) a machine runs.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated

import msgspec

from contracts.errors import (
    EnvironmentInvalid,
    EnvironmentRefused,
    Forbidden,
    InvalidParams,
    NotFound,
)
from contracts.gateway.types import InstanceId, InstanceRef
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params, Result

#: An image of the engine: a reference (``name[:tag][@digest]``) or an image ID.
IMAGE_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$"
ImageRef = Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=IMAGE_REF_PATTERN)]
#: A repo of the instance, by its checkout path (as ``repos.add`` was given it) or its URL.
RepoRef = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
RepoPath = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
#: The places a devcontainer.json is looked for in a repo, as the spec names them.
DEVCONTAINER_PATHS = re.compile(
    r"\.devcontainer/devcontainer\.json|\.devcontainer\.json|\.devcontainer/[^/]+/devcontainer\.json"
)


def check_in_repo(path: str, field: str, *, dot: bool = False) -> None:
    """A path relative to a repo's root, staying inside it (``.``: the root, when ``dot``)."""
    norm = posixpath.normpath(path) if path else ""
    if not path or path.startswith(("/", "-")) or "\x00" in path or "\\" in path:
        raise ValueError(f"field `{field}` must be a relative path inside the repo")
    if ".." in norm.split("/") or (norm == "." and not dot):
        raise ValueError(f"field `{field}` must stay inside the repo: {path!r}")


class DockerfileSource(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    repo: RepoRef
    #: The Dockerfile, relative to the repo's root.
    path: RepoPath = "Dockerfile"
    #: The build context, relative to the repo's root.
    context: RepoPath = "."

    def __post_init__(self) -> None:
        check_in_repo(self.path, "dockerfile.path")
        check_in_repo(self.context, "dockerfile.context", dot=True)


class DevcontainerSource(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    repo: RepoRef
    #: None: the first of the spec's places the repo has.
    path: RepoPath | None = None

    def __post_init__(self) -> None:
        if self.path is not None and not DEVCONTAINER_PATHS.fullmatch(self.path):
            raise ValueError(
                "field `devcontainer.path` must be .devcontainer/devcontainer.json, "
                f".devcontainer.json or .devcontainer/NAME/devcontainer.json, got {self.path!r}"
            )


class Environment(
    msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Exactly one of its fields."""

    image: ImageRef | None = None
    dockerfile: DockerfileSource | None = None
    devcontainer: DevcontainerSource | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("image", "dockerfile", "devcontainer") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "field `environment` must have exactly one of image, dockerfile, devcontainer"
                + (f" (got {', '.join(given)})" if given else "")
            )

    @property
    def repo(self) -> str | None:
        """The repo the environment comes from (None: an image)."""
        source = self.dockerfile or self.devcontainer
        return source.repo if source is not None else None

    def describe(self) -> str:
        """One line for a machine's record and logs."""
        if self.image is not None:
            return f"image {self.image}"
        if self.dockerfile is not None:
            d = self.dockerfile
            return f"dockerfile {d.repo}:{d.path} (context {d.context})"
        assert self.devcontainer is not None
        return f"devcontainer {self.devcontainer.repo}:{self.devcontainer.path or '(found)'}"


#: ``Machine.environment`` of a machine of the platform's default environment.
DEFAULT_ENVIRONMENT = "default"


class SetEnvironmentParams(Params, kw_only=True):
    instance_id: InstanceId
    #: null: auto-detection (a repo's devcontainer.json, else the platform's default).
    environment: Environment | None


class InstanceEnvironment(Result, kw_only=True):
    instance_id: str
    environment: Environment | None = None


def repo_not_found(env: Environment, known: list[str]) -> InvalidParams:
    """The error of an environment naming a repo the instance does not have."""
    kind = "dockerfile" if env.dockerfile is not None else "devcontainer"
    return InvalidParams(
        f"field `environment.{kind}.repo`: {env.repo!r} is not one of the instance's repos "
        f"({', '.join(known) or 'it has none'})",
        field=f"$.environment.{kind}.repo",
    )


INSTANCES_SET_ENVIRONMENT = MethodSpec(
    "instances.setEnvironment",
    SetEnvironmentParams,
    InstanceEnvironment,
    "Set the environment the instance's machines are made from (null: auto-detection); "
    "machines created or rebuilt from then on get it. A devcontainer.json the platform's host "
    "can fetch is checked now: refused properties are EnvironmentRefused.",
    (NotFound, Forbidden, InvalidParams, EnvironmentRefused, EnvironmentInvalid),
    scope="machines:exec",
    client=ClientMethod("set_environment", "instance_id environment"),
)
INSTANCES_GET_ENVIRONMENT = MethodSpec(
    "instances.getEnvironment",
    InstanceRef,
    InstanceEnvironment,
    "The environment the instance's machines are made from (null: auto-detection).",
    (NotFound, Forbidden),
    scope="machines:read",
    reads=True,
    client=ClientMethod("get_environment", "instance_id"),
)

ENVIRONMENT_METHODS: tuple[AnySpec, ...] = (INSTANCES_SET_ENVIRONMENT, INSTANCES_GET_ENVIRONMENT)
