"""The gateway's ``HostControl`` in memory: the provisioner's own host methods called directly,
without the NATS hop (the real hop: tests/integration/test_hosts.py)."""

from __future__ import annotations

from contracts import host_rpc as h
from contracts.models import Machine
from services.provisioner.host_rpc import HostMethods


class InProcessHosts:
    def __init__(self, methods: HostMethods) -> None:
        self.methods = methods

    async def restart(self, machine: Machine) -> bool:
        params = h.HostMachineParams(machine_id=machine.id)
        return (await self.methods.restart_daemon(params, None)).restarted

    async def install_code(self, machine: Machine, target_ref: str) -> str:
        params = h.InstallCodeParams(machine_id=machine.id, target_ref=target_ref)
        return (await self.methods.install_code(params, None)).message

    async def apply_egress(self, machine: Machine) -> bool:
        params = h.HostMachineParams(machine_id=machine.id)
        return (await self.methods.apply_egress(params, None)).applied
