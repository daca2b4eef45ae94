"""``FleetClient``'s methods for stopping and starting machines (a mixin: ``client.py`` is full):
``machines.stop``, ``machines.start``, ``machines.pause``, ``machines.resume``,
``instances.setAutoStop``, ``instances.getAutoStop``,
``instances.setRuntime``, ``instances.getRuntime``, and
forks and snapshots: ``machines.fork``, ``machines.snapshot``, ``snapshots.*``."""

from __future__ import annotations

from contracts import (
    gateway_fork as gfk,
    gateway_rpc as g,
    gateway_runtime as grt,
    gateway_stop as gs,
    gateway_types as gt,
)
from contracts.jsonrpc import new_params
from contracts.models import Machine, Runtime
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

    async def pause_machine(self: Calls, machine_id: str) -> Machine:
        """Pause a ready gvisor machine with its memory (a paused one: unchanged); wait for
        ``paused`` with ``wait_for``."""
        params = new_params(gt.MachineRef, machine_id=machine_id)
        return await self.call(gs.MACHINES_PAUSE, params)

    async def resume_machine(self: Calls, machine_id: str) -> Machine:
        """Resume a paused machine (a ready one: unchanged); wait for ``ready``."""
        params = new_params(gt.MachineRef, machine_id=machine_id)
        return await self.call(gs.MACHINES_RESUME, params)

    async def set_autostop(
        self: Calls, instance_id: str, idle_after_s: int, action: gs.AutoStopAction | None = None
    ) -> gs.AutoStop:
        """Pause or stop the instance's machines after ``idle_after_s`` s without activity
        (0: off); ``action`` None: pause a gvisor machine, stop a namespaces one."""
        params = new_params(gs.SetAutoStopParams, instance_id=instance_id,
                            idle_after_s=idle_after_s, action=action)  # fmt: skip
        return await self.call(gs.INSTANCES_SET_AUTOSTOP, params)

    async def get_autostop(self: Calls, instance_id: str) -> gs.AutoStop:
        params = new_params(gt.InstanceRef, instance_id=instance_id)
        return await self.call(gs.INSTANCES_GET_AUTOSTOP, params)

    async def set_runtime(
        self: Calls, instance_id: str, runtime: Runtime | None
    ) -> grt.InstanceRuntime:
        """The runtime of the instance's next machines (None: the platform's)."""
        params = new_params(grt.SetRuntimeParams, instance_id=instance_id, runtime=runtime)
        return await self.call(grt.INSTANCES_SET_RUNTIME, params)

    async def get_runtime(self: Calls, instance_id: str) -> grt.InstanceRuntime:
        params = new_params(gt.InstanceRef, instance_id=instance_id)
        return await self.call(grt.INSTANCES_GET_RUNTIME, params)

    async def fork_machine(
        self: Calls, machine_id: str, count: int = 1, *, memory: bool = False
    ) -> list[Machine]:
        """``count`` new machines with the machine's home as of one instant (it keeps
        running); with ``memory`` (a gvisor machine), its processes too, each fork's going on
        on its own. Wait for each one's ``ready`` with ``wait_for``."""
        params = new_params(gfk.ForkMachineParams, machine_id=machine_id, count=count,
                            memory=memory)  # fmt: skip
        return (await self.call(gfk.MACHINES_FORK, params)).machines

    async def snapshot_machine(
        self: Calls, machine_id: str, name: str, *, memory: bool = False
    ) -> gfk.Snapshot:
        """A named, read-only state of the machine's home, kept until deleted; with
        ``memory`` (a gvisor machine), its processes too: a machine made from it starts with
        them running."""
        params = new_params(gfk.SnapshotParams, machine_id=machine_id, name=name, memory=memory)
        return await self.call(gfk.MACHINES_SNAPSHOT, params)

    async def create_from_snapshot(self: Calls, instance_id: str, snapshot_id: str) -> Machine:
        """One more machine of the instance, with a copy of the snapshot's home (sent once:
        no idempotency key, so a lost answer is not retried)."""
        params = new_params(g.CreateMachineParams, instance_id=instance_id,
                            from_snapshot=snapshot_id)  # fmt: skip
        return await self.call(g.MACHINES_CREATE, params)

    async def list_snapshots(self: Calls, instance_id: str) -> list[gfk.Snapshot]:
        params = new_params(gt.InstanceRef, instance_id=instance_id)
        return (await self.call(gfk.SNAPSHOTS_LIST, params)).snapshots

    async def delete_snapshot(self: Calls, snapshot_id: str) -> bool:
        """Delete the snapshot; machines made from it keep their homes."""
        params = new_params(gfk.SnapshotRef, snapshot_id=snapshot_id)
        return (await self.call(gfk.SNAPSHOTS_DELETE, params)).deleted
