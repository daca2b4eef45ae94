"""The gateway's one path to a machine's daemon for a caller: the caller's access to the
machine checked (a stopped or archived machine refused at once), the machine woken when the
call is one that wakes it, the call counted as activity unless it is a look, then the daemon
method called. A gateway method whose spec says it passes through to a daemon method
(``MethodSpec.passes``) is served here, with no handler of its own (``passing``)."""

from __future__ import annotations

from typing import Any

from contracts.bus.events import WakeBy
from contracts.rpc.jsonrpc import AnySpec, Handler, MethodSpec, P, R
from controlplane.calls.daemon_client import EXEC_MARGIN_S, DaemonClient
from services.gateway.auth import Access, Caller
from services.gateway.rpc.wake import WAKES


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

    def passing(self, spec: AnySpec) -> Handler[Any, Any, Caller]:
        """The handler of a gateway method that passes through to a daemon method."""
        passes = spec.passes
        if passes is None:
            raise ValueError(f"{spec.name} does not pass through to a daemon method")
        timeout_s = None if passes.takes_s is None else passes.takes_s + EXEC_MARGIN_S

        async def handle(p: Any, c: Caller) -> Any:
            return await self(c, p.machine_id, passes.method, passes.params_of(p),
                              look=passes.look, timeout_s=timeout_s)  # fmt: skip

        return handle
