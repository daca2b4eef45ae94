"""A machine's configuration, as the platform pushes it: the CA bundle, the .env and the cron
table. One place, used by the setup pusher (at setup) and the gateway (machines.refreshEnv),
so a refresh writes exactly what a setup would."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection

import msgspec

from base.ca_bundle import system_bundle
from base.dotenv import build_env_file, proxy_and_ca_vars, render
from contracts.daemon import machine_files as mf
from contracts.daemon.machine_files import CronJob, CronTable
from contracts.daemon.rpc import WriteFileParams, WriteFileResult
from contracts.errors import FleetError
from contracts.gateway.rpc import RefreshFailure
from contracts.gateway.secrets import MACHINE_PROXY_URL, placeholder
from contracts.gateway.ssh import AUTHORIZED_KEYS, authorized_keys
from contracts.models import Machine, Repo
from controlplane.calls.daemon_client import MachineClient
from controlplane.security.crypto import SecretBox
from controlplane.security.secret_ca import instance_ca
from controlplane.settings import Settings
from controlplane.store import Store

_CRON_ENCODER = msgspec.json.Encoder()
#: How many machines one fan-out writes to at once: enough to keep NATS busy, few enough that
#: memory and the daemons' answers stay bounded.
FAN_OUT_CONCURRENCY = 256
#: Instance configs read at once before a fan-out (half the Redis pool of a process).
CONFIG_LOADS = 32
#: Machines whose daemon is up and set up: the ones a refresh (or a live push) reaches.


class InstanceConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What every machine of one instance gets, read once per push (or per refresh)."""

    platform_env: dict[str, str]
    instance_env: dict[str, str]
    cron: CronTable
    ca_bundle: str | None
    #: The instance's SSH public keys, written at setup only (instances.setSshKeys pushes
    #: later changes itself).
    ssh_keys: list[str] = []
    #: The container's variables (a devcontainer's containerEnv and remoteEnv), for every
    #: process of the machine; written at setup (empty: none).
    container_env: dict[str, str] = {}
    #: The instance's secrets' names: each gets its placeholder in the .env, and the machine
    #: goes out through the egress proxy, trusting the instance's CA (``secrets_ca``).
    secrets: list[str] = []
    secrets_ca: str | None = None
    #: Whether the machine goes out through the egress proxy: its instance has secrets, or
    #: a repo over HTTPS with credentials (``for_machine`` says no for a machine the proxy
    #: cannot serve).
    proxied: bool = False
    #: Where it reaches the proxy, when not at ``MACHINE_PROXY_URL`` (a gvisor machine's).
    proxy_url: str = ""

    def bundle(self) -> str | None:
        """The CA bundle a machine gets: the platform's (``FLEET_CA_BUNDLE``), then, when it
        goes through the proxy, its instance's CA and the system's CAs (the bundle replaces
        the system's for whoever reads the CA variables)."""
        if not self.proxied or self.secrets_ca is None:
            return self.ca_bundle
        return "".join([self.ca_bundle or "", self.secrets_ca, system_bundle()])


def for_machine(cfg: InstanceConfig, machine: Machine, gvisor_proxy: str) -> InstanceConfig:
    """``cfg`` as ``machine`` gets it: a gvisor machine's stack has a loopback of its own, so
    it reaches the proxy at the host's door, ``gvisor_proxy`` (empty: none, and then it is
    pointed at no proxy)."""
    if machine.runtime == "gvisor" and cfg.proxied:
        return msgspec.structs.replace(cfg, proxied=bool(gvisor_proxy), proxy_url=gvisor_proxy)
    return cfg


async def load_instance_config(
    store: Store, settings: Settings, instance_id: str
) -> InstanceConfig:
    platform, instance = await store.env_maps(instance_id)
    cfg = instance_config(settings, platform, instance, await store.get_cron(instance_id))
    return await with_secrets(store, settings, cfg, instance_id)


async def with_secrets(
    store: Store, settings: Settings, cfg: InstanceConfig, instance_id: str
) -> InstanceConfig:
    """``cfg`` with the instance's secrets' names and, if its machines go out through the
    egress proxy, its CA (made now if it has none yet)."""
    names = await store.secrets.names(instance_id)
    if not names and not any(proxied_repo(r) for r in await store.list_repos(instance_id)):
        return cfg
    ca = await instance_ca(store, SecretBox(settings.secret_key), instance_id)
    return msgspec.structs.replace(cfg, secrets=names, secrets_ca=ca.cert_pem, proxied=True)


def proxied_repo(repo: Repo) -> bool:
    """Whether the egress proxy gives ``repo``'s clones, fetches and pushes its credentials
    (git over HTTPS, as basic auth): the machine then never holds them."""
    return repo.has_credentials and repo.url.lower().startswith("https://")


def instance_config(
    settings: Settings, platform: dict[str, str], instance: dict[str, str], cron: list[CronJob],
    ssh_keys: list[str] | None = None,
) -> InstanceConfig:  # fmt: skip
    """The configuration from values read already (a setup reads them with the rest of its
    inputs in one round trip: ``store.stages.setup_inputs``)."""
    ca_path = settings.ca_bundle_path
    return InstanceConfig(
        platform_env=platform,
        instance_env=instance,
        cron=CronTable(jobs=cron),
        ca_bundle=ca_path.read_text() if ca_path is not None else None,
        ssh_keys=ssh_keys or [],
    )


async def load_instance_configs(
    store: Store, settings: Settings, instance_ids: Collection[str]
) -> dict[str, InstanceConfig]:
    """Each instance's config, CONFIG_LOADS at a time: a refresh of 10,000 machines (one per
    instance) read them one after the other, two round trips each, before writing to any."""
    gate = asyncio.Semaphore(CONFIG_LOADS)

    async def one(iid: str) -> tuple[str, InstanceConfig]:
        async with gate:
            return iid, await load_instance_config(store, settings, iid)

    return dict(await asyncio.gather(*(one(i) for i in instance_ids)))


def cron_json(table: CronTable) -> str:
    return _CRON_ENCODER.encode(table).decode() + "\n"


def proxy_url(settings: Settings) -> str:
    """Where a proxied machine's HTTP clients go: the configured proxy, else the platform's
    egress proxy in the machine's own namespace."""
    return settings.egress_proxy or MACHINE_PROXY_URL


def git_env(settings: Settings, url: str = "") -> dict[str, str]:
    """What a git command the platform runs in a proxied machine needs to go through the
    egress proxy and trust its instance's CA (the .env's own lines are not in its
    environment); git expands the ``~`` of a config path."""
    proxy = url or proxy_url(settings)
    return {**proxy_and_ca_vars(egress_proxy=proxy, no_proxy=settings.no_proxy),
            "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.sslCAInfo",
            "GIT_CONFIG_VALUE_0": "~/" + mf.CA_FILE}  # fmt: skip


def env_content(cfg: InstanceConfig, settings: Settings, ca_path: str | None) -> str:
    """The .env: a secret's variable holds its placeholder, never its value, and a machine of
    an instance with secrets goes out through the egress proxy."""
    proxy = (cfg.proxy_url or proxy_url(settings)) if cfg.proxied else settings.egress_proxy
    return build_env_file(
        cfg.platform_env,
        {**cfg.instance_env, **{name: placeholder(name) for name in cfg.secrets}},
        egress_proxy=proxy,
        no_proxy=settings.no_proxy,
        ca_path=ca_path,
    )


async def fan_out(
    machines: list[Machine], push: Callable[[Machine], Awaitable[None]]
) -> list[RefreshFailure]:
    """``push`` to every machine, FAN_OUT_CONCURRENCY at a time; a machine that fails is
    reported, never fatal to the others."""
    gate = asyncio.Semaphore(FAN_OUT_CONCURRENCY)

    async def one(m: Machine) -> RefreshFailure | None:
        async with gate:
            try:
                await push(m)
            except FleetError as exc:
                return RefreshFailure(machine_id=m.id, code=exc.code, message=exc.message)
            return None

    results = await asyncio.gather(*(one(m) for m in machines))
    return [f for f in results if f is not None]


async def push_config(
    mc: MachineClient, cfg: InstanceConfig, settings: Settings, *, cron: bool = True
) -> tuple[str, int]:
    """Write the CA bundle (its path goes into the .env), then the .env and (unless
    ``cron=False``: an env refresh) the cron table, the container's variables and the SSH
    keys in one request (a JSON-RPC
    batch: one signed round trip, not several); returns the .env's path and size."""
    ca_path = None
    bundle = cfg.bundle()
    if bundle is not None:
        ca_path = (await mc.write_file("~/" + mf.CA_FILE, bundle, 0o644)).path
    env = WriteFileParams(path="~/" + mf.ENV_FILE, content=env_content(cfg, settings, ca_path),
                          mode=0o600)  # fmt: skip
    if not cron:
        written = await mc.write_file(env.path, env.content, env.mode)
        return written.path, written.bytes_written
    table = WriteFileParams(path="~/" + mf.CRON_FILE, content=cron_json(cfg.cron), mode=0o600)
    # Written at every setup, empty too: a fork's home holds its source's.
    container = WriteFileParams(path="~/" + mf.CONTAINER_ENV_FILE,
                                content=render(cfg.container_env), mode=0o600)  # fmt: skip
    files = [env, table, container]
    if cfg.ssh_keys:  # a setup: no keys, no file (sshd then takes no key at all)
        files.append(WriteFileParams(path=AUTHORIZED_KEYS, content=authorized_keys(cfg.ssh_keys),
                                     mode=0o600))  # fmt: skip
    written, *_ = await mc.write_files(files)
    return written.path, written.bytes_written


async def push_cron(mc: MachineClient, table: CronTable) -> WriteFileResult:
    return await mc.write_file("~/" + mf.CRON_FILE, cron_json(table), 0o600)
