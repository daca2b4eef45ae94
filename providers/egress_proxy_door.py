"""The egress proxy's door on the host, for gvisor machines.

A gvisor machine's network stack has a loopback of its own, where no socket of the host can
listen, so the proxy (providers/egress_proxy.py) serves those machines on one listener of the
host: at the address a gvisor machine reaches NATS at (the host's loopback, which its gateway
maps to, narrowed by the machine's ``fleet_gateway`` table to NATS's ports and this one; or
NATS's own host). A connection there is served as the machine whose pasta holds its other end
(providers/pasta_peer.py): nothing the machine sends says who it is, and a connection no
machine's pasta holds is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import structlog

from base import procinfo
from providers import egress_proxy_http as http
from providers.egress_proxy import EgressProxy, ProxiedMachine
from providers.netns import NETNS_OF
from providers.pasta_peer import holder, socket_inode

log = structlog.get_logger(__name__)


def pasta_pids(owners: list[str]) -> list[int]:
    """The pids of the pasta each of ``owners`` (a machine id, a pool slot) was started under."""
    return [pid for owner in owners for pid in procinfo.env_roots(NETNS_OF, owner)]


@dataclass
class HostDoor:
    proxy: EgressProxy
    #: Where it listens on the host.
    at: tuple[str, int]
    #: False: it listens nowhere and serves nobody (gvisor machines get no proxy).
    enabled: bool = True
    pids_of: Callable[[list[str]], list[int]] = pasta_pids
    #: The machines served here, with the names their pasta was started under.
    _machines: dict[str, tuple[ProxiedMachine, list[str]]] = field(default_factory=dict)
    #: Their pastas' pids, as last found.
    _pids: dict[str, list[int]] = field(default_factory=dict)
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> HostDoor:
        if not self.enabled:
            return self
        try:
            self._server = await asyncio.start_server(self._accept, *self.at,
                                                      limit=http.MAX_HEAD)  # fmt: skip
        except OSError as exc:  # another process of the host has the port
            log.warning("egress.proxy_door_unavailable", address=f"{self.at[0]}:{self.at[1]}",
                      error=str(exc))  # fmt: skip
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()

    @property
    def serving(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The port it listens on (0: it does not)."""
        return self.at[1] if self._server is not None else 0

    def attach(self, machine_id: str, instance_id: str, owners: list[str]) -> None:
        self._machines[machine_id] = (ProxiedMachine(machine_id, instance_id, 0), owners)
        self._pids.pop(machine_id, None)

    def detach(self, machine_id: str) -> None:
        self._machines.pop(machine_id, None)
        self._pids.pop(machine_id, None)

    def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.proxy.spawn(self._identified(r, w), name="egress-proxy-door")

    async def _identified(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        peer, ours = w.get_extra_info("peername"), w.get_extra_info("sockname")
        machine_id = await asyncio.to_thread(self._who, (peer[0], peer[1]), (ours[0], ours[1]))
        found = self._machines.get(machine_id) if machine_id else None
        if found is None:
            log.warning("egress.proxy_door_refused", peer=f"{peer[0]}:{peer[1]}")
            w.write(http.refusal(403, "the egress proxy serves this host's machines only"))
            w.close()
            return
        self.proxy.accept(found[0], r, w)

    def _who(self, peer: tuple[str, int], ours: tuple[str, int]) -> str | None:
        """The machine whose pasta holds the other end of the connection from ``peer``."""
        ours_too = ipaddress.ip_address(peer[0]) in self.proxy.platform_addresses
        inode = socket_inode(peer, ours, by_port=ours_too)
        if inode is None:
            return None
        for fresh in (False, True):  # the pids as last found, then found again
            if fresh or len(self._pids) < len(self._machines):
                self._pids = {mid: self.pids_of(owners)
                              for mid, (_, owners) in list(self._machines.items())}  # fmt: skip
            found = holder(inode, self._pids)
            if found is not None:
                return found
        return None
