"""``FleetClient``'s methods for stopping and starting machines (a mixin: ``client.py`` is full):
``machines.stop``, ``machines.start``, ``instances.setAutoStop``, ``instances.getAutoStop``, and
``machines.fork``."""

from __future__ import annotations

from contracts import gateway_fork as gfk, gateway_stop as gs, gateway_types as gt
from contracts.jsonrpc import new_params
from contracts.models import Machine
from fleet.client_retry import Calls


class StopClient:
    async def stop_machine(self: Calls, machine_id: str) -> Machine:
        """Stop the machine: its processes end, its home stays (a stopped one: unchanged)."""
        return await self.call(gs.MACHINES_STOP, new_params(gt.MachineRef, machine_id=machine_id))

    async def start_machine(self: Calls, machine_id: str) -> Machine:
        """Start a stopped machine again (a running one: unchanged); wait for ``ready`` with
        ``wait_for``."""
        params = new_params(gt.MachineRef, machine_id=machine_id)
        return await self.call(gs.MACHINES_START, params)

    async def set_autostop(self: Calls, instance_id: str, idle_after_s: int) -> gs.AutoStop:
        """Stop the instance's machines after ``idle_after_s`` s without activity (0: off)."""
        params = new_params(gs.SetAutoStopParams, instance_id=instance_id,
                            idle_after_s=idle_after_s)  # fmt: skip
        return await self.call(gs.INSTANCES_SET_AUTOSTOP, params)

    async def get_autostop(self: Calls, instance_id: str) -> gs.AutoStop:
        params = new_params(gt.InstanceRef, instance_id=instance_id)
        return await self.call(gs.INSTANCES_GET_AUTOSTOP, params)

    async def fork_machine(self: Calls, machine_id: str, count: int = 1) -> list[Machine]:
        """``count`` new machines with the machine's home as of one instant (it keeps
        running); wait for each one's ``ready`` with ``wait_for``."""
        params = new_params(gfk.ForkMachineParams, machine_id=machine_id, count=count)
        return (await self.call(gfk.MACHINES_FORK, params)).machines
