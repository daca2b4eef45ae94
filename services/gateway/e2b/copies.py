"""E2B's snapshots and forks in fleetd's (docs/fork-snapshots.md):

- ``POST /sandboxes/{id}/snapshots {name?, memory?}``: ``machines.snapshot``, with the
  sandbox's memory on a gvisor machine unless ``memory: false``; its id is the snapshot's, and
  ``Sandbox.create(<that id>)`` makes a sandbox of it (a machine of the same instance, made
  from it: ``machines.create {fromSnapshot}``);
- ``GET /snapshots?sandboxID=&name=``: ``snapshots.list`` of the sandbox's instance (of every
  sandbox's instance the caller reads, without one); ``DELETE /templates/{snapshotId}``:
  ``snapshots.delete``;
- ``POST /sandboxes/{id}/fork {count?, timeout?}``: ``machines.fork`` (with memory on gvisor),
  each fork a sandbox of its own, ready, as its source's template and metadata.
"""

from __future__ import annotations

import secrets

import msgspec

from contracts.e2b import control as api
from contracts.errors import FleetError, NotFound
from contracts.gateway.fork import (
    MACHINES_FORK,
    MACHINES_SNAPSHOT,
    SNAPSHOTS_DELETE,
    SNAPSHOTS_LIST,
    ForkMachineParams,
    Snapshot,
    SnapshotParams,
    SnapshotRef,
)
from contracts.gateway.types import InstanceRef
from contracts.people import MACHINES_READ
from services.gateway.auth import Caller
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.sandboxes import Sandboxes


class Copies:
    def __init__(self, sandboxes: Sandboxes, calls: Calls) -> None:
        self._sandboxes = sandboxes
        self._calls = calls

    async def snapshot(self, sandbox_id: str, body: api.NewSnapshot,
                       caller: Caller) -> api.SnapshotInfo:  # fmt: skip
        _, machine = await self._sandboxes.find(sandbox_id, caller)
        memory = machine.runtime == "gvisor" and body.memory is not False
        made = await self._calls(MACHINES_SNAPSHOT, SnapshotParams(
            machine_id=sandbox_id, name=body.name or f"e2b-{secrets.token_hex(4)}",
            memory=memory), caller)  # fmt: skip
        return _info(made)

    async def snapshots(self, sandbox_id: str | None, name: str | None,
                        caller: Caller) -> list[api.SnapshotInfo]:  # fmt: skip
        if sandbox_id:
            instances = [(await self._sandboxes.find(sandbox_id, caller))[0].instance_id]
        else:
            store = self._sandboxes.store
            records = await store.e2b.many(await store.e2b.ids())
            instances = sorted({r.instance_id for r in records
                                if caller.may(r.instance_id, MACHINES_READ)})  # fmt: skip
        out = []
        for instance_id in instances:
            got = await self._calls(SNAPSHOTS_LIST, InstanceRef(instance_id=instance_id),
                                    caller)  # fmt: skip
            out += [_info(s) for s in got.snapshots if name in (None, s.name)
                    and (not sandbox_id or s.machine_id == sandbox_id)]  # fmt: skip
        return out

    async def delete(self, snapshot_id: str, caller: Caller) -> bool:
        try:
            got = await self._calls(SNAPSHOTS_DELETE, SnapshotRef(snapshot_id=snapshot_id), caller)
        except NotFound:
            return False
        return got.deleted

    async def fork(self, sandbox_id: str, body: api.ForkRequest,
                   caller: Caller) -> list[dict[str, object]]:  # fmt: skip
        record, machine = await self._sandboxes.find(sandbox_id, caller)
        forked = await self._calls(MACHINES_FORK, ForkMachineParams(
            machine_id=sandbox_id, count=body.count,
            memory=machine.runtime == "gvisor"), caller)  # fmt: skip
        like = api.NewSandbox(template_id=record.template_id, timeout=body.timeout,
                              metadata=record.metadata,
                              auto_pause=record.on_timeout == "pause")  # fmt: skip
        out: list[dict[str, object]] = []
        for m in forked.machines:
            try:
                made = await self._sandboxes.adopt(m, like, caller)
                out.append({"sandbox": msgspec.to_builtins(made)})
            except FleetError as exc:
                out.append({"error": {"code": exc.http_status, "message": exc.message}})
        return out


def _info(snapshot: Snapshot) -> api.SnapshotInfo:
    return api.SnapshotInfo(snapshot_id=snapshot.id, names=[snapshot.name])
