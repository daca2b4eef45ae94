"""The environments' builds cache (environments/cache.py): ``environments.list``,
``environments.build`` and ``environments.delete``, and the host methods behind them.

A build lives on one host's Docker engine, so the gateway asks that host's provisioner
(contracts/host/rpc.py); ``hostId`` names it (default: the platform's own host). A build's
``id`` is its content hash as the image's tag carries it (``fleetd-env:<id>``); any unique
prefix of at least 12 characters names it. A build some machine still uses (one neither
archived nor failed, stopped ones included: they start again from it) is not deleted:
``EnvironmentInUse`` names the machines.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.errors import (
    BuildFailed,
    EnvironmentInUse,
    EnvironmentInvalid,
    EnvironmentRefused,
    FeatureUnavailable,
    HostUnavailable,
    ImageNotFound,
    ImageRefused,
    InvalidParams,
    NotFound,
    ProviderError,
    RateLimited,
)
from contracts.gateway.environments import Environment
from contracts.gateway.types import InstanceId
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params, Result

#: A build's id or a prefix of it (lower-case hex).
EnvironmentId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{12,64}$")]
HostId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class EnvironmentBuild(Result, kw_only=True):
    #: The build's content hash (the tag of its image).
    id: str
    #: ``fleetd-env:<id>``.
    image: str
    #: The image ID (``sha256:...``) on the engine.
    image_id: str
    size: int
    #: Unix seconds of its last use (a build, or a machine made from it).
    last_used: float
    #: Machines (neither archived nor failed) that run it, and their instances.
    machines: list[str] = msgspec.field(default_factory=list)
    instances: list[str] = msgspec.field(default_factory=list)


class ListEnvironmentsParams(Params, kw_only=True):
    host_id: HostId | None = None


class EnvironmentList(Result, kw_only=True):
    host_id: str
    #: Least recently used first (the next to be evicted).
    environments: list[EnvironmentBuild]


class BuildEnvironmentParams(Params, kw_only=True):
    instance_id: InstanceId
    host_id: HostId | None = None


class EnvironmentBuilt(Result, kw_only=True):
    instance_id: str
    #: The instance's environment, described in one line.
    environment: str
    #: The build's id (its content hash; an ``image`` environment's is its image ID).
    id: str
    #: The image ID on the engine.
    image_id: str


class DeleteEnvironmentParams(Params, kw_only=True):
    environment_id: EnvironmentId
    host_id: HostId | None = None


class EnvironmentDeleted(Result, kw_only=True):
    id: str
    image: str


_HOST_ERRORS = (HostUnavailable, ProviderError)
ENVIRONMENTS_LIST = MethodSpec(
    "environments.list",
    ListEnvironmentsParams,
    EnvironmentList,
    "The cached environment builds of a host's Docker engine, least recently used first.",
    (InvalidParams, *_HOST_ERRORS),
    scope="admin",
    reads=True,
    client=ClientMethod("list_environments", "host_id"),
)
ENVIRONMENTS_BUILD = MethodSpec(
    "environments.build",
    BuildEnvironmentParams,
    EnvironmentBuilt,
    "Build the instance's environment now (or find its build in the cache); answers when done.",
    (NotFound, InvalidParams, EnvironmentRefused, EnvironmentInvalid, FeatureUnavailable,
     BuildFailed, ImageNotFound, ImageRefused, RateLimited, *_HOST_ERRORS),
    scope="machines:exec", budget="build",
    client=ClientMethod("build_environment", "instance_id host_id"),
)  # fmt: skip
ENVIRONMENTS_DELETE = MethodSpec(
    "environments.delete",
    DeleteEnvironmentParams,
    EnvironmentDeleted,
    "Remove a cached build; refused with EnvironmentInUse while a machine runs it.",
    (NotFound, InvalidParams, EnvironmentInUse, *_HOST_ERRORS),
    scope="admin",
    client=ClientMethod("delete_environment", "environment_id host_id"),
)
ENV_BUILD_METHODS: tuple[AnySpec, ...] = (
    ENVIRONMENTS_LIST, ENVIRONMENTS_BUILD, ENVIRONMENTS_DELETE,
)  # fmt: skip

HOST_LIST_ENVIRONMENTS = MethodSpec(
    "host.listEnvironments", ListEnvironmentsParams, EnvironmentList,
    "This host's cached environment builds.", (ProviderError,),
)  # fmt: skip
HOST_BUILD_ENVIRONMENT = MethodSpec(
    "host.buildEnvironment", BuildEnvironmentParams, EnvironmentBuilt,
    "Build an instance's environment on this host's engine.", ENVIRONMENTS_BUILD.errors,
)  # fmt: skip
HOST_DELETE_ENVIRONMENT = MethodSpec(
    "host.deleteEnvironment", DeleteEnvironmentParams, EnvironmentDeleted,
    "Remove one of this host's cached builds.", ENVIRONMENTS_DELETE.errors,
)  # fmt: skip


class CheckEnvironmentParams(Params, kw_only=True):
    instance_id: InstanceId
    #: As the gateway stores it (its repo by checkout path).
    environment: Environment


class EnvironmentChecked(Result, kw_only=True):
    #: The devcontainer.json checked (its path in the repo); None: none was, ``skipped`` says
    #: why (the repo could not be fetched, has credentials, or has no such file yet).
    path: str | None = None
    skipped: str | None = None


HOST_CHECK_ENVIRONMENT = MethodSpec(
    "host.checkEnvironment", CheckEnvironmentParams, EnvironmentChecked,
    "Hold an instance's devcontainer.json and its local features to the rules a machine's "
    "resolution holds them to, at instances.setEnvironment.",
    (EnvironmentRefused, EnvironmentInvalid, ProviderError),
)  # fmt: skip
HOST_ENV_BUILD_METHODS: tuple[AnySpec, ...] = (
    HOST_LIST_ENVIRONMENTS, HOST_BUILD_ENVIRONMENT, HOST_DELETE_ENVIRONMENT,
    HOST_CHECK_ENVIRONMENT,
)  # fmt: skip
