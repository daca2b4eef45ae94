"""What only a machine's own host can do to it (restart its daemon, install code for it, copy its
home), asked of that host's provisioners over NATS (contracts/host/rpc.py): the gateway holds
no provider and reaches no host's data dir or Docker engine itself.

A host method is one declaration: its spec (contracts/host/rpc.py, how long it is waited for
in ``HOST_WAITS``) and its handler on the host (``@handles``, services/provisioner). The gateway
asks any of them through one caller, ``HostCalls``: ``await hosts(spec, params, machine=m)``."""

from __future__ import annotations

import itertools
from typing import Any, Protocol

from nats.aio.client import Client as NATS

from contracts.host import rpc as h
from contracts.models import Machine
from contracts.rpc.jsonrpc import AnySpec, Handler, MethodSpec, P, R
from controlplane.calls.host_call import call_host
from services.gateway.auth import Access, Caller


class HostCalls(Protocol):
    async def __call__(self, spec: MethodSpec[P, R], params: P, *, machine: Machine | None = None,
                       host: str | None = None) -> R:  # fmt: skip
        """``spec`` on the host of ``machine`` (else ``host``; neither, or a machine recorded
        before hosts were: this deployment's default host)."""


class HostClient:
    """``HostCalls`` over NATS: one request to ``host.<hostId>.rpc``, waited for as the method's
    ``HostWait`` says."""

    def __init__(self, nc: NATS, *, default_host_id: str, timeout_s: float,
                 install_timeout_s: float, build_timeout_s: float = 3600.0) -> None:  # fmt: skip
        self._nc = nc
        self._default = default_host_id
        self._waits = {"rpc": timeout_s, "copy": install_timeout_s, "build": build_timeout_s}
        self._ids = itertools.count(1)

    async def __call__(self, spec: MethodSpec[P, R], params: P, *, machine: Machine | None = None,
                       host: str | None = None) -> R:  # fmt: skip
        wait = h.wait_of(spec)
        timeout_s = self._waits[wait.kind] + wait.extra_s
        if wait.with_command:  # the command's own time, and the RPC's on top of it
            timeout_s += float(getattr(params, "timeout_s", 0.0))
        on = (machine.host_id if machine else host) or self._default
        return await call_host(self._nc, on, spec, params, timeout_s, request_id=next(self._ids),
                               machine_id=machine.id if machine else None)  # fmt: skip


def host_passing(spec: AnySpec, access: Access, hosts: HostCalls) -> Handler[Any, Any, Caller]:
    """The handler of a gateway method that passes through to a host method (``PassThrough``
    with ``host``): the caller's access to the machine checked, then the method asked of the
    machine's host."""
    passes = spec.passes
    if passes is None or not passes.host:
        raise ValueError(f"{spec.name} does not pass through to a host method")

    async def handle(p: Any, c: Caller) -> Any:
        machine = await access.machine(c, p.machine_id)
        return await hosts(passes.method, passes.params_of(p), machine=machine)

    return handle
