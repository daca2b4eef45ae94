"""A call that waits long for a machine's daemon (a command, a code run) ends once an event says
the daemon is gone (the machine paused to disk, stopped, archived, its host lost), not at its
timeout: a sandbox paused at its timeout in the middle of a run answers its caller at once."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from contracts.bus import subjects
from contracts.bus.subjects import EventKind
from contracts.daemon.rpc import ExecCommandParams
from contracts.errors import DaemonUnavailable
from contracts.ids import new_machine_id
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, static_key
from tests.conftest import MACHINE_TOKEN


@pytest.mark.parametrize(
    ("kind", "became"), [(EventKind.PAUSED, "paused"), (EventKind.LOST, "lost with its host")]
)
async def test_a_long_call_ends_when_its_machine_goes(
    bus: Bus, kind: EventKind, became: str
) -> None:
    machine_id, asked = new_machine_id(), asyncio.Event()

    async def never_answers(_: Msg) -> None:  # a daemon that went away mid-call
        asked.set()

    await bus.nc.subscribe(subjects.daemon_rpc(machine_id), cb=never_answers)
    daemons = DaemonClient(bus.nc, keys=static_key(MACHINE_TOKEN))
    run = ExecCommandParams(command=["sleep", "600"], timeout_s=600)
    call = asyncio.ensure_future(daemons.machine(machine_id).exec(run))
    await asyncio.wait_for(asked.wait(), 10)
    # Another machine's end, and an event of this one that is no end, leave the call waiting.
    await bus.nc.publish(subjects.event(kind, new_machine_id()), b"{}")
    await bus.nc.publish(subjects.heartbeat(machine_id), b"{}")
    await bus.nc.flush()
    assert not call.done()
    await bus.nc.publish(subjects.event(kind, machine_id), b"{}")
    with pytest.raises(DaemonUnavailable, match=f"was {became} before it answered"):
        await asyncio.wait_for(call, 30)
