"""``FleetClient``'s methods that make a machine or act on one through its provider (a mixin:
``client.py`` is full): ``machines.create``, ``machines.rebuild``, ``machines.restart``.

Create and rebuild send one ``idempotencyKey`` per logical call, so they are the methods
``call(..., resend_cut=True)`` sends again when the connection broke after the request went
out: the gateway may have run it, and the key makes running it again answer the same machine."""

from __future__ import annotations

import uuid

from contracts import gateway_machines as gm, gateway_rpc as g
from contracts.jsonrpc import new_params
from contracts.models import Machine, ProviderName, Runtime
from fleet.client_retry import Calls


class MachinesClient:
    async def create_machine(
        self: Calls,
        instance_id: str,
        provider: ProviderName | None = None,
        *,
        idempotency_key: str | None = None,
        runtime: Runtime | None = None,
    ) -> Machine:
        """The instance's machine, on ``provider`` (omitted: the platform's default), of
        ``runtime`` (omitted: the instance's, else the platform's). One key
        per logical create (``idempotency_key``, else a new random one), sent with each retry
        of it: a retry whose first answer was lost gets that machine, not a second one."""
        key = idempotency_key or uuid.uuid4().hex
        params = new_params(g.CreateMachineParams, instance_id=instance_id, provider=provider,
                            idempotency_key=key, runtime=runtime)  # fmt: skip
        return await self.call(g.MACHINES_CREATE, params, resend_cut=True)

    async def rebuild_machine(
        self: Calls, instance_id: str, *, idempotency_key: str | None = None
    ) -> Machine:
        """Archive the instance's current machine and make a new one. One key per logical
        rebuild, as for ``create_machine``: a retry whose first answer was lost gets the machine
        that rebuild made, and neither archives it nor makes a third."""
        key = idempotency_key or uuid.uuid4().hex
        params = new_params(g.RebuildMachineParams, instance_id=instance_id, idempotency_key=key)
        return await self.call(g.MACHINES_REBUILD, params, resend_cut=True)

    async def restart_machine(self: Calls, machine_id: str) -> Machine:
        """Restart the machine's daemon in place; its background processes keep running."""
        params = new_params(gm.RestartParams, machine_id=machine_id)
        return await self.call(gm.MACHINES_RESTART, params)
