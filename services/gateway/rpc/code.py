"""The code interpreter's gateway methods (contracts.gateway.code): ``machines.code.*``.

The others pass through to the daemon's (``MethodSpec.passes``): the caller's machine is
checked (and woken, as an exec wakes it), then its daemon runs the kernels
(daemon/code/kernels.py). A call that may start a kernel waits for it on top of its own timeout.

``machines.code.run`` POSTed to ``/rpc/stream`` streams as ``machines.execStream`` does
(exec_stream.py): its daemon runs ``tool.code.runStream``, whose parts (``CodeRunPart``) go to
its caller's ``output`` as they are published, every one before the answer. The stream
closed before its answer (the client left), ``tool.code.cancelRun`` ends the run.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable

import msgspec

from contracts.bus.events import WakeBy
from contracts.daemon import code as dc
from contracts.gateway import code as gc
from contracts.rpc.jsonrpc import handles
from controlplane.bus import Bus
from controlplane.calls.daemon_client import EXEC_MARGIN_S, DaemonClient
from services.gateway.auth import Access, Caller
from services.gateway.rpc.daemon_calls import DaemonCalls

#: A call that may start a kernel (a new context, a restart, a first run) may take this long.
_STARTING_S = dc.KERNEL_START_S + EXEC_MARGIN_S


class CodeOps:
    def __init__(self, *, access: Access, daemons: DaemonClient, bus: Bus,
                 calls: DaemonCalls) -> None:  # fmt: skip
        self.access = access
        self.daemons = daemons
        self.bus = bus
        self.calls = calls

    @handles(gc.MACHINES_CODE_RUN)
    async def machines_code_run(self, p: gc.MachineCodeRunParams, c: Caller) -> dc.CodeRunResult:
        run = dc.CodeRunParams(code=p.code, language=p.language, context_id=p.context_id,
                               timeout_s=p.timeout_s, env=p.env)  # fmt: skip
        # Past its timeout the daemon interrupts the kernel, and waits a moment for it to stop.
        wait = p.timeout_s + _STARTING_S + dc.INTERRUPT_GRACE_S
        sink = c.output
        if sink is None:  # a plain POST /rpc: one answer
            return await self.calls(c, p.machine_id, dc.CODE_RUN, run, timeout_s=wait)
        await self.access.live_machine(c, p.machine_id, wake=WakeBy.EXEC)
        params = dc.CodeRunStreamParams(
            **msgspec.structs.asdict(run), stream_id=secrets.token_hex(16)
        )

        machine = self.daemons.machine(p.machine_id)
        # The client gone (the stream closed), the run is ended: interrupted if it runs.
        cancel = (dc.CODE_CANCEL_RUN, dc.StreamRef(stream_id=params.stream_id))

        def call() -> Awaitable[dc.CodeRunResult]:
            return machine.call_or_undo(dc.CODE_RUN_STREAM, params, wait, cancel)

        return await machine.with_output(self.bus.nc, params.stream_id, sink, call)
