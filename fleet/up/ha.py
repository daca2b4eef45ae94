"""What `fleet up --ha` and `fleet up --hosts N` run on top of the servers: the settings that
make every process use the cluster (fleet.up.embedded_ha), and the processes of each service.

Replicas of a stage service share its durable consumers (each event goes to one of them);
replicas of the auth callout share NATS's callout requests (a queue group); each gateway
replica listens on its own port: `--port`, then ports `fleet up` holds for them, all printed.
With --hosts N, each of N hosts on this machine has a provisioner of its own (two with
--ha): its own FLEET_HOST_ID (host-1 ... host-N), data dir (<data-dir>/hosts/host-<i>) and share of
FLEET_SANDBOX_UIDS; FLEET_HOST_CAPACITY and FLEET_WARM_POOL apply to each (docs/hosts.md).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from base.wait import wait_until
from contracts.errors import FleetError
from contracts.gateway.hosts import HOSTS_LIST, HostList
from contracts.rpc.jsonrpc import decode_response
from fleet.up.embedded import ServerStartError
from fleet.up.embedded_ha import NATS_NODES, SENTINEL_MASTER

if TYPE_CHECKING:
    from fleet.up.embedded_ha import HaServers
    from fleet.up.options import UpOptions

#: Processes per service with --ha. Codemode keeps one: a run lives in the replica that
#: started it (its sandbox and its event stream), so a second adds no failover for it.
HA_REPLICAS = 2
SINGLE = ("codemode",)

#: (process name, service package, extra environment) of each process to run.
Plan = list[tuple[str, str, dict[str, str]]]


def ha_settings(servers: HaServers) -> dict[str, object]:
    """Settings fields for the clustered layout (passed to every service)."""
    return {
        "stream_replicas": NATS_NODES,  # the stream and, inheriting it, every durable consumer
        "redis_sentinels": servers.sentinel_addrs,
        "redis_sentinel_master": SENTINEL_MASTER,
    }


def host_ids(opts: UpOptions) -> list[str]:
    """The hosts --hosts N runs on this machine (none without it: the one host it is)."""
    return [f"host-{i + 1}" for i in range(opts.hosts)]


def host_data_dir(data_dir: Path, host_id: str) -> Path:
    return data_dir / "hosts" / host_id


def host_uids(uids: tuple[int, int] | None, index: int, count: int) -> str:
    """Host ``index``'s share of FLEET_SANDBOX_UIDS: on one machine, no two hosts may give
    their machines the same uid (each allocates from the machines of its own data dir)."""
    if uids is None:
        return ""
    size = (uids[1] - uids[0] + 1) // count
    if size < 1:
        raise ValueError(f"FLEET_SANDBOX_UIDS: {uids[0]}-{uids[1]} is too few for {count} hosts")
    first = uids[0] + index * size
    return f"{first}-{first + size - 1}"


def service_plan(
    names: tuple[str, ...],
    opts: UpOptions,
    uids: tuple[int, int] | None = None,
    *,
    hold: Callable[[], int],
) -> Plan:
    """``hold``: a port held for a gateway replica beyond the first
    (`fleet.up.embedded.held_ports`), which `fleet up` prints and restarts the replica on."""
    plan: Plan = []
    for module in names:
        if module == "provisioner" and opts.hosts:
            plan += _host_provisioners(opts, uids)
            continue
        count = HA_REPLICAS if opts.ha and module not in SINGLE else 1
        for i in range(count):
            name = module if count == 1 else f"{module}-{i + 1}"
            extra = {}
            if module == "gateway":
                extra["FLEET_PORT"] = str(opts.port if i == 0 else hold())
            if module == "gateway" and i > 0:  # the first's previews are on the settings' port
                extra["FLEET_PREVIEW_PORT"] = str(hold())
                extra["FLEET_E2B_PORT"] = str(hold())
            plan.append((name, module, extra))
    return plan


def _host_provisioners(opts: UpOptions, uids: tuple[int, int] | None) -> Plan:
    plan: Plan = []
    hosts = host_ids(opts)
    for index, host in enumerate(hosts):
        extra = {
            "FLEET_HOST_ID": host,
            "FLEET_DATA_DIR": str(host_data_dir(opts.data_dir.resolve(), host)),
            "FLEET_SANDBOX_UIDS": host_uids(uids, index, len(hosts)),
        }
        replicas = HA_REPLICAS if opts.ha else 1
        for i in range(replicas):
            name = f"provisioner-{host}" + (f"-{i + 1}" if replicas > 1 else "")
            plan.append((name, "provisioner", extra))
    return plan


def hosts_announced(url: str, token: str) -> set[str]:
    """The hosts the gateway at ``url`` lists (``hosts.list``); none while it cannot answer."""
    body = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": HOSTS_LIST.name})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(url + "/rpc", data=body, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as r:  # noqa: S310
            listed = decode_response(r.read(), HostList)
    except (OSError, FleetError):
        return set()
    return {h.host_id for h in listed.hosts}


def wait_hosts_announced(
    url: str, token: str, hosts: list[str], alive: Callable[[], None], timeout_s: float = 60.0
) -> None:
    """Until every one of ``hosts`` has announced itself: a ``hosts.drain`` or a placement right
    after the banner must find them all. ``alive`` raises when a service died meanwhile."""

    def announced() -> bool:
        if set(hosts) <= hosts_announced(url, token):
            return True
        alive()
        return False

    if not wait_until(announced, within_s=timeout_s, every_s=0.05):
        raise ServerStartError(f"hosts {', '.join(hosts)} did not all announce themselves "
                               f"in {timeout_s:g}s")  # fmt: skip
