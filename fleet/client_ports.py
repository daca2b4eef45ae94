"""``FleetClient``'s methods for a machine's ports (a mixin: ``client.py`` is full):
``machines.ports``, ``machines.previewTicket`` and ``instances.setSshKeys``."""

from __future__ import annotations

from contracts import gateway_ssh as ssh, ports as pt
from contracts.jsonrpc import new_params
from fleet.client_retry import Calls


class PortsClient:
    async def machine_ports(self: Calls, machine_id: str) -> pt.PortList:
        """The TCP ports listening in the machine (loopback or any address)."""
        params = new_params(pt.MachinePortsParams, machine_id=machine_id)
        return await self.call(pt.MACHINES_PORTS, params)

    async def preview_ticket(self: Calls, machine_id: str, port: int) -> pt.PreviewTicket:
        """A single-use ticket that opens the port's preview URL in a browser."""
        params = new_params(pt.PreviewTicketParams, machine_id=machine_id, port=port)
        return await self.call(pt.MACHINES_PREVIEW_TICKET, params)

    async def set_ssh_keys(self: Calls, instance_id: str, keys: list[str]) -> ssh.SshKeysResult:
        """Replace the instance's SSH public keys; pushed to its running machines at once."""
        params = new_params(ssh.SetSshKeysParams, instance_id=instance_id, keys=keys)
        return await self.call(ssh.INSTANCES_SET_SSH_KEYS, params)
