"""A machine's configuration (environments.hook.machine_config): a gvisor machine is pointed at
the egress proxy where its own host said its gvisor machines reach it; a namespaces machine at
the proxy in its own namespace."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.daemon.machine_files import CronTable
from contracts.models import Machine, Runtime
from contracts.status import MachineStatus
from controlplane.machines.machine_config import InstanceConfig
from controlplane.store import Store
from environments.hook import machine_config

PROXIED = InstanceConfig(platform_env={}, instance_env={}, cron=CronTable(jobs=[]),
                         ca_bundle=None, secrets=["TOKEN"], proxied=True)  # fmt: skip


def machine(runtime: Runtime, host_id: str | None) -> Machine:
    now = datetime.now(UTC)
    return Machine(id="m-0123456789abcdef", instance_id="i-0123456789abcdef", provider="local",
                   status=MachineStatus.SETTING_UP, status_reason="", runtime=runtime,
                   host_id=host_id, created_at=now, updated_at=now)  # fmt: skip


async def test_a_gvisor_machine_reaches_the_proxy_its_host_recorded(store: Store) -> None:
    await store.hosts.beat("h-a", 0, 1.0, proxy_url="http://10.0.2.2:7070")
    await store.hosts.beat("h-b", 0, 1.0, proxy_url="http://192.0.2.9:7070")
    on_a = await machine_config(store, PROXIED, machine("gvisor", "h-a"))
    assert (on_a.proxied, on_a.proxy_url) == (True, "http://10.0.2.2:7070")
    # A namespaces machine goes through the proxy in its own namespace.
    local = await machine_config(store, PROXIED, machine("namespaces", "h-a"))
    assert (local.proxied, local.proxy_url) == (True, "")
    # A host that serves its gvisor machines no proxy: they are pointed at none.
    await store.hosts.beat("h-c", 0, 1.0)
    bare = await machine_config(store, PROXIED, machine("gvisor", "h-c"))
    assert (bare.proxied, bare.proxy_url) == (False, "")
