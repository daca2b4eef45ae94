"""One settings object per process, read from ``FLEET_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

PREFIX = "FLEET_"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    #: One URL, or several separated by commas (the servers of a cluster).
    nats_url: str = "nats://127.0.0.1:4222"
    #: NATS credentials of this service process (empty: connect without them).
    nats_user: str = ""
    nats_password: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: JetStream replicas of the event stream (3 on a 3-node cluster; 1 for one server).
    stream_replicas: int = 1
    data_dir: str = ".fleet-data"
    #: Fernet key that encrypts machine tokens at rest.
    secret_key: str = ""
    admin_token: str = ""
    env: Literal["dev", "prod"] = "dev"
    log_level: str = "info"
    # gateway
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1024 * 1024
    #: Prometheus ``GET /metrics`` of a service without an HTTP server of its own (0: none).
    #: Each process needs its own port; the gateway serves /metrics on ``port`` instead.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # consumers
    ack_wait_s: float = 30.0
    max_deliver: int = 5
    concurrency: int = 64
    # daemon RPC
    rpc_timeout_s: float = 10.0
    # setup
    clone_timeout_s: float = 300.0
    egress_proxy: str = ""
    no_proxy: str = "localhost,127.0.0.1,::1"
    #: Path (on the platform) of a PEM bundle to install on machines; empty: none.
    ca_bundle: str = ""
    # probe
    probe_delay_s: float = 0.0
    probe_timeout_s: float = 60.0
    probe_interval_s: float = 0.5
    # liveness
    #: Seconds between daemon heartbeats (local daemons get the same value).
    heartbeat_s: float = 5.0
    #: Missed heartbeats after which a ready machine is marked unresponsive.
    missed_heartbeats: int = 3
    # boot
    #: How long a provisioned machine's daemon has to report ready before the machine fails.
    boot_timeout_s: float = 120.0
    # versions
    #: The git SHA the platform runs (deployments set it); empty: the code repo's HEAD.
    git_sha: str = ""
    #: The git repository machines get their daemon code from on machines.refreshCode;
    #: empty: the checkout fleetd runs from.
    code_repo: str = ""
    # codemode (services/codemode): runs at once per replica, and each run's sandbox limits
    codemode_concurrency: int = 20
    codemode_cpu_s: int = 60
    codemode_memory_mb: int = 512
    codemode_processes: int = 64
    # auth callout
    #: Account nkey seed ("SA...") with which the auth callout signs its answers and the
    #: machines' user JWTs; its public key is the server's ``auth_callout.issuer``.
    callout_issuer_seed: str = ""
    #: The NATS account the callout binds machines to (where the services and the stream are).
    callout_account: str = "APP"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        names = set(cls.__struct_fields__)
        raw = {
            key[len(PREFIX) :].lower(): value
            for key, value in environ.items()
            if key.startswith(PREFIX) and key[len(PREFIX) :].lower() in names
        }
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(_name_env_var(str(exc))) from None

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def ca_bundle_path(self) -> Path | None:
        return Path(self.ca_bundle) if self.ca_bundle else None

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        out: dict[str, str] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            out[PREFIX + name.upper()] = str(value)
        return out


def _name_env_var(message: str) -> str:
    # msgspec says "... - at `$.probe_timeout_s`"; users set FLEET_PROBE_TIMEOUT_S.
    if "`$." in message:
        head, _, tail = message.partition("`$.")
        field = tail.split("`", 1)[0]
        return f"{PREFIX}{field.upper()}: {head.removesuffix(' - at ').strip()}"
    return f"invalid settings: {message}"
