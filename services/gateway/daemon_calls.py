"""The gateway's one path to a machine's daemon for a caller: the caller's access to the
machine checked (a stopped or archived machine refused at once), the machine woken when the
call is one that wakes it, the call counted as activity unless it is a look, then the daemon
method called."""

from __future__ import annotations

from contracts.events import WakeBy
from contracts.jsonrpc import MethodSpec, P, R
from controlplane.daemon_client import DaemonClient
from services.gateway.access import Access, Caller
from services.gateway.wake import WAKES


class DaemonCalls:
    def __init__(self, *, access: Access, daemons: DaemonClient) -> None:
        self.access = access
        self.daemons = daemons

    async def __call__(
        self,
        c: Caller,
        machine_id: str,
        spec: MethodSpec[P, R],
        params: P,
        *,
        look: bool = False,
        wake: WakeBy | None = None,
        timeout_s: float | None = None,
    ) -> R:
        """``spec`` on the caller's machine. ``look``: a look (a console polls it) that does
        not count as activity for auto-stop, nor wakes the machine; ``wake``: what wakes it
        (by default what ``spec`` says, its ``wakes``); ``timeout_s``: the daemon client's
        default when None."""
        if not look and wake is None:
            wake = WAKES.get(spec.name)
        await self.access.live_machine(c, machine_id, active=not look,
                                       wake=None if look else wake)  # fmt: skip
        return await self.daemons.call(machine_id, spec, params, timeout_s=timeout_s)
