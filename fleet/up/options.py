"""What `fleet up` is asked to run (its command line, as ``fleet.cli`` parses it): read by the
stack (stack.py) and by the layouts of ``--ha`` and ``--hosts N`` (ha.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass
class UpOptions:
    #: The gateway's; 0: a port the kernel gives, held while fleet up runs and printed.
    port: int = 8080
    #: Machines' pages (services.gateway.previews.preview); 0: as for ``port``; None: ``port`` + 1,
    #: or 0 beside a ``port`` of 0.
    preview_port: int | None = None
    #: E2B's SDKs' listener (services.gateway.e2b); None: ``port`` + 2, or 0 beside a ``port``
    #: of 0.
    e2b_port: int | None = None
    host: str = "127.0.0.1"
    data_dir: Path = Path(".fleet-data")
    nats_url: str | None = None
    redis_url: str | None = None
    env: str = "dev"
    #: Local machines in bubblewrap sandboxes (False: --no-sandbox, not isolated).
    sandbox: bool = True
    #: machines.create's default provider (docker: the image is built first, if missing).
    provider: Literal["local", "docker"] = "local"
    #: machines.create's default runtime (--runtime); None: FLEET_RUNTIME's, else namespaces.
    runtime: Literal["namespaces", "gvisor"] | None = None
    #: --ha: the clustered layout on this host (fleet.up.embedded_ha, fleet.up.ha).
    ha: bool = False
    #: --hosts N: N hosts on this machine, a provisioner each (fleet.up.ha); 0: one host.
    hosts: int = 0
