"""What `fleet up --ha` runs on top of the servers (fleet.embedded_ha): the settings that make
every process use the cluster, and two replicas of each service.

Replicas of a stage service share its durable consumers (each event goes to one of them);
replicas of the auth callout share NATS's callout requests (a queue group); each gateway
replica listens on its own port: `--port`, then free ports, all printed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleet.embedded import free_port
from fleet.embedded_ha import NATS_NODES, SENTINEL_MASTER

if TYPE_CHECKING:
    from fleet.embedded_ha import HaServers
    from fleet.up import UpOptions

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


def service_plan(names: tuple[str, ...], opts: UpOptions) -> Plan:
    plan: Plan = []
    for module in names:
        count = HA_REPLICAS if opts.ha and module not in SINGLE else 1
        for i in range(count):
            name = module if count == 1 else f"{module}-{i + 1}"
            extra = {}
            if module == "gateway":
                extra["FLEET_PORT"] = str(opts.port if i == 0 else free_port())
            plan.append((name, module, extra))
    return plan
