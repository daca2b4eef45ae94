"""The daemon's settings, from FLEET_* environment variables set by the machine's provider."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from base.env_settings import name_env_var


class DaemonSettings(msgspec.Struct, kw_only=True, frozen=True):
    nats_url: str
    machine_id: str
    machine_token: str
    #: The machine's home; ``~`` and relative paths in RPCs resolve against it.
    home: str
    #: Per-stream cap on captured command output (bytes); more is cut and flagged.
    exec_output_cap: int = 256 * 1024
    #: Seconds between heartbeats on machine.heartbeat.<id>.
    heartbeat_s: float = 5.0
    #: A signed request issued more than this before the daemon started is refused (its id
    #: may have been seen by the previous daemon); room for the clocks' difference.
    boot_skew_s: float = 2.0
    #: Code interpreter contexts (kernels) a machine may have at once (machines.code.*).
    code_contexts_max: int = 8
    #: The most pixels a desktop screenshot has (machines.desktop.*): a larger one is scaled
    #: down to it (the default: a 1920x1080 screen whole).
    desktop_max_pixels: int = 1920 * 1080
    env: str = "dev"
    log_level: str = "info"

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DaemonSettings:
        environ = os.environ if environ is None else environ
        missing = [
            f"FLEET_{n}"
            for n in ("NATS_URL", "MACHINE_ID", "MACHINE_TOKEN")
            if not environ.get(f"FLEET_{n}")
        ]
        if missing:
            raise ValueError(f"fleet-daemon needs {', '.join(missing)} in its environment")
        raw: dict[str, str] = {
            k[6:].lower(): v
            for k, v in environ.items()
            if k.startswith("FLEET_") and k[6:].lower() in cls.__struct_fields__
        }
        raw.setdefault("home", environ.get("HOME") or str(Path.home()))
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(name_env_var(str(exc), raw, cls)) from None
