"""A stage replica that takes events and never finishes them, for the recovery test.

``python -m tests.integration.holder <nats-url>``: one consumer (durable ``test``, the stage
defaults from ``Settings``) whose handler prints ``holding <machineId>`` and then waits forever,
so the event stays unacked until the process dies.
"""

from __future__ import annotations

import asyncio
import sys

import msgspec

from contracts.bus.events import MachineCreated
from controlplane.bus import Bus
from controlplane.events.consumer import stage_consumer
from controlplane.settings import Settings


async def main(nats_url: str) -> None:
    settings = msgspec.structs.replace(Settings.from_env(), nats_url=nats_url)

    async def hold(event: MachineCreated) -> None:
        print(f"holding {event.machine_id}", flush=True)
        await asyncio.Event().wait()

    async def never(event: MachineCreated, reason: str) -> None:
        raise AssertionError(reason)

    async with (
        Bus(settings, name="holder") as bus,
        stage_consumer(
            bus, settings, durable="test", event_type=MachineCreated, handler=hold, give_up=never
        ),
    ):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
